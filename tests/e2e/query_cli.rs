//! The query commands as a user runs them: `history`, `status --as-of`, `--limit`, CSV that a
//! spreadsheet cannot run, and a table that fits 120 columns with its summary line.

use std::process::Command;

use chrono::{TimeZone, Utc};
use optout::event::{Detection, OptEvent, OptOutType};
use optout::store::{Batch, Positioned};

#[macro_use]
mod common;

use common::db as support_db;

fn ev(id: &str, t: OptOutType, scope: &str, from: &str, at: i64, body: &str) -> OptEvent {
    OptEvent {
        event_id: id.into(),
        opt_out_type: t,
        inferred: false,
        detection: Detection::Twilio,
        rule: None,
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        messaging_service_sid: Some(scope.into()),
        sender: "+15559870002".into(),
        subscriber: from.into(),
        body: Some(body.into()),
        message_sid: None,
        occurred_at: Utc.timestamp_opt(1_772_366_400 + at, 0).unwrap(),
        schema_version: Some(5),
    }
}

fn optout(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_optout"))
        .arg("--store")
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
