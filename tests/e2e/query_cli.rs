//! The query commands as a user runs them: `history`, `status --as-of`, `--limit`, CSV that a
//! spreadsheet cannot run, and a table that fits 120 columns with its summary line.

use optout::event::{OptEvent, OptOutType};
use optout::store::{Batch, Positioned};

use crate::common::db as support_db;
use crate::common::events::opt_event;

/// An opt event of account `AC0123…` in `scope`, with `body` and no message SID.
fn ev(id: &str, t: OptOutType, scope: &str, from: &str, at: i64, body: &str) -> OptEvent {
    OptEvent {
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        messaging_service_sid: Some(scope.into()),
        body: Some(body.into()),
        message_sid: None,
        ..opt_event(id, t, from, at)
    }
}

/// What `optout ARGS` printed, against the store at `url`.
fn optout(url: &str, args: &[&str]) -> String {
    crate::common::optout::Optout::with_store(Vec::new(), url).stdout(args)
}

#[tokio::test]
async fn history_as_of_limit_csv_and_table() {
    let db = support_db::sqlite().await;
    let mg = "MG0123456789abcdef0123456789abcdef";
    let events = vec![
        ev(
            "E1",
            OptOutType::Stop,
            mg,
            "+15551230001",
            10,
            "=HYPERLINK(\"http://x\")",
        ),
        ev("E2", OptOutType::Start, mg, "+15551230001", 20, "-1+1"),
        ev("E3", OptOutType::Stop, "MG2", "+15551230001", 30, "stop"),
        ev("E4", OptOutType::Stop, mg, "+15551230002", 40, "stop"),
    ];
    let batch = Batch {
        stream: "s".into(),
        shard_id: "a".into(),
        opt_events: events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Positioned {
                sequence_number: i.to_string(),
                value: e,
            })
            .collect(),
        ..Batch::default()
    };
    db.store.commit(&batch).await.unwrap();
    let url = db.url.as_str();

    let history: Vec<serde_json::Value> = optout(
        url,
        &[
            "history",
            "--subscriber",
            "+15551230001",
            "--format",
            "json",
        ],
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let trail: Vec<(&str, &str)> = history
        .iter()
        .map(|h| {
            (
                h["event_id"].as_str().unwrap(),
                h["status_after"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [("E1", "opted_out"), ("E2", "opted_in"), ("E3", "opted_out")]
    );

    // At 12:00:15 only E1 had happened.
    let then = optout(
        url,
        &[
            "status",
            "--as-of",
            "2026-03-01T12:00:15Z",
            "--format",
            "json",
        ],
    );
    let rows: Vec<serde_json::Value> = then
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["event_id"].as_str(), rows[0]["status"].as_str()),
        (Some("E1"), Some("opted_out"))
    );

    let limited = optout(url, &["events", "--format", "json", "--limit", "2"]);
    assert_eq!(limited.lines().count(), 2);

    // CSV: every field, formulas defused, numbers exact.
    let csv_text = optout(url, &["events", "--format", "csv"]);
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let body = header.iter().position(|h| h == "body").unwrap();
    let subscriber = header.iter().position(|h| h == "subscriber").unwrap();
    let recs: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(&recs[0][body], "'=HYPERLINK(\"http://x\")");
    assert_eq!(&recs[1][body], "'-1+1");
    assert_eq!(&recs[0][subscriber], "+15551230001");

    // The table fits 120 columns and ends with the per-scope summary.
    let table = optout(url, &["status"]);
    for line in table.lines() {
        assert!(line.chars().count() <= 120, "{line}");
    }
    assert_eq!(
        table.lines().last().unwrap(),
        format!("(3 rows) opted out/in: 2/1; by scope: {mg} 1/1, MG2 1/0")
    );
}

/// `optout dead-letters` lists raw records cut to their first 1,024 bytes (constant memory
/// whatever they hold); `--id` prints one whole, byte for byte.
#[tokio::test]
async fn dead_letters_are_listed_cut_and_fetched_whole_by_id() {
    use base64::Engine as _;
    let db = support_db::sqlite().await;
    let raw: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let batch = Batch {
        stream: "s".into(),
        shard_id: "a".into(),
        dead_letters: vec![optout::store::DeadLetter {
            sequence_number: "1".into(),
            partition_key: None,
            reason: "not JSON: planted".into(),
            data: raw.clone(),
        }],
        ..Batch::default()
    };
    db.store.commit(&batch).await.unwrap();
    let listed = optout(&db.url, &["dead-letters", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(row["truncated"], true);
    assert_eq!(row["data_bytes"], 700_000);
    let id = row["id"].as_str().unwrap();
    let whole = optout(&db.url, &["dead-letters", "--id", id]);
    let whole: serde_json::Value = serde_json::from_str(whole.trim()).unwrap();
    let data = base64::engine::general_purpose::STANDARD
        .decode(whole["data_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, raw);
    assert_eq!(whole["reason"], "not JSON: planted");
    let o = crate::common::optout::Optout::with_store(Vec::new(), &db.url);
    let missing = o.output(&["dead-letters", "--id", "WyJzIiwiYSIsIjIiXQ"]);
    assert_eq!(missing.status.code(), Some(1));
    let forged = o.output(&["dead-letters", "--id", "not-an-id"]);
    assert_eq!(forged.status.code(), Some(2));
}

/// `optout changes` prints the change feed as JSON lines that resume by cursor, `--follow`
/// prints changes as they commit and exits 0 on SIGTERM, and `optout deliveries` lists the
/// outbox in every format.
#[tokio::test]
async fn changes_follow_and_deliveries() {
    use std::io::BufRead;
    let db = support_db::sqlite().await;
    db.store
        .set_outbox_targets(vec![optout::store::OutboxTarget {
            name: "notify:0".into(),
            wants: std::sync::Arc::new(|_| true),
        }]);
    let commit = |events: Vec<OptEvent>| {
        let batch = Batch {
            stream: "s".into(),
            shard_id: "a".into(),
            opt_events: events
                .into_iter()
                .enumerate()
                .map(|(i, e)| Positioned {
                    sequence_number: i.to_string(),
                    value: e,
                })
                .collect(),
            ..Batch::default()
        };
        let store = db.store.clone();
        async move { store.commit(&batch).await.unwrap() }
    };
    // A commit writes one change per key: the answer after it (E1 and E2 in one batch would
    // be one change, to opted_in).
    commit(vec![opt_event("E1", OptOutType::Stop, "+15551230001", 10)]).await;
    commit(vec![
        opt_event("E2", OptOutType::Start, "+15551230001", 20),
        opt_event("E3", OptOutType::Stop, "+15551230002", 30),
    ])
    .await;
    let url = db.url.as_str();
    let lines = |out: String| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = lines(optout(url, &["changes"]));
    let seen: Vec<(&str, &str)> = all
        .iter()
        .map(|c| {
            (
                c["event_id"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("E1", "twilio_stop"),
            ("E2", "opted_in"),
            ("E3", "twilio_stop")
        ]
    );
    let first = all[0]["cursor"].as_str().unwrap();
    let rest = lines(optout(url, &["changes", "--since-cursor", first]));
    assert_eq!(rest, all[1..]);
    let bad = crate::common::optout::Optout::with_store(Vec::new(), url).output(&[
        "changes",
        "--since-cursor",
        "not-a-cursor",
    ]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a bad cursor is the user's to fix"
    );

    // Following from the last change: a new commit is printed, SIGTERM ends it cleanly.
    let last = all[2]["cursor"].as_str().unwrap().to_string();
    let mut child = crate::common::optout::Optout::with_store(Vec::new(), url)
        .command(&["changes", "--follow", "--since-cursor", &last])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    commit(vec![opt_event("E4", OptOutType::Start, "+15551230002", 40)]).await;
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the followed change is printed");
    let change: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(change["event_id"], "E4");
    assert_eq!(change["send_allowed"], true);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());

    let items = crate::common::optout::json_rows(
        optout(url, &["deliveries", "--format", "json"]).as_bytes(),
    );
    assert_eq!(items.len(), 4);
    assert!(
        items
            .iter()
            .all(|i| i["state"] == "pending" && i["target"] == "notify:0")
    );
    let csv = optout(
        url,
        &["deliveries", "--state", "pending", "--format", "csv"],
    );
    assert_eq!(csv.lines().count(), 5, "a header and four items:\n{csv}");
    let none = optout(
        url,
        &["deliveries", "--state", "failed", "--format", "json"],
    );
    assert!(none.trim().is_empty(), "{none}");
    let table = optout(url, &["deliveries", "--target", "notify:0"]);
    assert!(table.contains("notify:0"), "{table}");
}
