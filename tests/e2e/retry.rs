//! `optout dead-letters --retry`: stored raw records decoded again, those that now decode
//! stored with their dead letters removed in the same transaction, on both backends.
//!
//! - A record the database refused (a trigger, as in `poison`) is retried: a dry run says it
//!   would be stored and changes nothing; with the trigger still there `--apply` leaves it
//!   as it was; once the trigger is lifted it is stored, exactly once (counted by triggers),
//!   and a second retry changes nothing. An undecodable record stays a dead letter.
//! - A dead letter an older decoder refused is stored as the way in that brought it would
//!   store it: a Messaging webhook form at the time it was received, a Kinesis record at its
//!   own shard and sequence number, no checkpoint moved; `--since` and `--reason` choose.

use crate::common::db::Db;
use crate::common::optout::*;
use crate::common::records::*;
use crate::common::{effects, twilio, webhooks};

use optout::store::{Batch, DeadLetter};
use serde_json::Value;

/// Lifts the trigger of [`super::poison::refuse_poison`]: the fix an operator makes.
pub(super) async fn lift_poison(db: &Db) {
    use sqlx::Connection;
    let sql = if db.url.starts_with("postgres") {
        "DROP TRIGGER refuse_poison ON opt_events"
    } else {
        "DROP TRIGGER refuse_poison"
    };
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
}

/// `optout dead-letters --retry ARGS` as JSON rows, and its summary line (stderr).
fn retry(o: &Optout, args: &[&str]) -> (Vec<Value>, String) {
    let mut all = vec!["dead-letters", "--retry", "--format", "json"];
    all.extend_from_slice(args);
    let out = o.output(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "optout {all:?} failed: {stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("dead letters matched"))
        .unwrap_or_else(|| panic!("no summary line in {stderr}"))
        .to_string();
    (json_rows(&out.stdout), summary)
}

/// (sequence number, outcome) of each row.
fn outcomes(rows: &[Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["sequence_number"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(seq: &str, outcome: &str) -> (String, String) {
    (seq.to_string(), outcome.to_string())
}

async fn a_refused_record_fixed_is_retried_once(db: Db) {
    effects::install(&db.url).await;
    super::poison::refuse_poison(&db).await;
    let stop = |id: &str, from: &str| {
        Inbound::new(id, from)
            .service("MGr")
            .keyword("STOP")
            .at("2026-03-01T12:00:00.000Z")
            .build()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("retry.jsonl");
    let mut text = stop("EZr00000001", "+15550000001");
    text.push(b'\n');
    text.extend(stop("EZr00000002", "+1555POISON"));
    text.extend(b"\nnot json at all\n");
    std::fs::write(&file, text).unwrap();
    let o = Optout::with_store(vec![], &db.url);
    let summary = o.stdout(&["replay", file.to_str().unwrap()]);
    assert!(summary.contains("2 dead letters stored"), "{summary}");
    let before = o.tables();

    // A dry run decodes and says; it writes nothing.
    let (rows, summary) = retry(&o, &[]);
    assert_eq!(
        outcomes(&rows),
        [pair("2", "would_store"), pair("3", "still_dead")]
    );
    assert_eq!(rows[0]["detail"], "STOP (twilio) from +1555POISON in MGr");
    assert!(rows[1]["detail"].as_str().unwrap().starts_with("not JSON"));
    assert!(summary.contains("dry run, nothing changed"), "{summary}");
    assert_eq!(o.tables(), before, "a dry run changed the store");

    // Not fixed yet: the database still refuses it, and it stays a dead letter.
    let (rows, _) = retry(&o, &["--apply", "--reason", "unstorable"]);
    assert_eq!(outcomes(&rows), [pair("2", "refused")]);
    assert!(
        rows[0]["detail"]
            .as_str()
            .unwrap()
            .contains("poison body refused"),
        "{rows:?}"
    );
    assert_eq!(o.tables(), before, "a refused retry changed the store");

    // Fixed: stored, its dead letter gone in the same commit; the undecodable one stays.
    lift_poison(&db).await;
    let (rows, summary) = retry(&o, &["--apply", "--reason", "unstorable"]);
    assert_eq!(outcomes(&rows), [pair("2", "stored")]);
    assert_eq!(rows[0]["detail"], "STOP (twilio) from +1555POISON in MGr");
    assert!(
        summary.starts_with("1 dead letters matched: 1 stored"),
        "{summary}"
    );
    let events = o.query(&["events"]);
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["EZr00000001", "EZr00000002"]);
    let retried = &events[1];
    assert_eq!(
        (&retried["paths"], &retried["sequence_number"]),
        (&Value::from("replay"), &Value::from("2"))
    );
    let status = o.query(&["status", "--subscriber", "+1555POISON"]);
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["status"], "opted_out");
    let dead = o.query(&["dead-letters"]);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["sequence_number"], "3");

    // A second retry is a no-op.
    let after = o.tables();
    let (rows, summary) = retry(&o, &["--apply"]);
    assert_eq!(outcomes(&rows), [pair("3", "still_dead")]);
    assert!(
        summary.starts_with("1 dead letters matched: 0 stored"),
        "{summary}"
    );
    assert_eq!(o.tables(), after, "a second retry changed the store");
    effects::assert_exactly_once(&db.url, 2).await;
}

async fn an_older_decoders_dead_letters_are_stored_as_their_way_in(db: Db) {
    let form = twilio::form_body(&twilio::inbound_params(
        &webhooks::sid(7),
        &webhooks::subscriber(7),
        Some(webhooks::SERVICE),
        "STOP",
        Some("STOP"),
    ));
    let start = webhooks::cloud_event(8, "START", "2026-03-01T10:00:00Z");
    let letter = |seq: &str, data: Vec<u8>| DeadLetter {
        sequence_number: seq.into(),
        partition_key: None,
        reason: "not JSON: an older decoder's reason".into(),
        data,
    };
    for (stream, shard, letter) in [
        ("webhook", webhooks::MESSAGING, letter("f00d", form.clone())),
        ("orders", "shardId-000000000000", letter("4950", start)),
    ] {
        let batch = Batch {
            stream: stream.into(),
            shard_id: shard.into(),
            dead_letters: vec![letter],
            ..Batch::default()
        };
        db.store.commit(&batch).await.unwrap();
    }
    let o = Optout::with_store(vec![], &db.url);
    let dead = o.query(&["dead-letters"]);
    assert_eq!(dead.len(), 2);

    // `--since` after they were recorded, or a reason none has: nothing matches.
    let (rows, summary) = retry(&o, &["--apply", "--since", "9999-01-01T00:00:00Z"]);
    assert!(rows.is_empty(), "{rows:?}");
    assert!(summary.starts_with("0 dead letters matched"), "{summary}");
    let (rows, _) = retry(&o, &["--apply", "--reason", "unstorable"]);
    assert!(rows.is_empty(), "{rows:?}");
    assert_eq!(o.query(&["dead-letters"]).len(), 2);

    let (rows, _) = retry(
        &o,
        &[
            "--apply",
            "--since",
            "2000-01-01T00:00:00Z",
            "--reason",
            "older decoder",
        ],
    );
    let mut got = outcomes(&rows);
    got.sort();
    assert_eq!(got, [pair("4950", "stored"), pair("f00d", "stored")]);
    assert!(o.query(&["dead-letters"]).is_empty());
    let events = o.query(&["events"]);
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e["event_id"] == id)
            .unwrap_or_else(|| panic!("{id} not stored: {events:?}"))
    };
    let web = by_id(&webhooks::sid(7));
    assert_eq!(web["paths"], "messaging_webhook");
    assert_eq!(web["time_source"], "received");
    let recorded = dead
        .iter()
        .find(|d| d["sequence_number"] == "f00d")
        .unwrap();
    assert_eq!(
        web["occurred_at"], recorded["recorded_at"],
        "a form is received when its dead letter was recorded"
    );
    let kin = by_id(&webhooks::event_id(8));
    assert_eq!(
        (&kin["paths"], &kin["shard_id"], &kin["sequence_number"]),
        (
            &Value::from("kinesis"),
            &Value::from("shardId-000000000000"),
            &Value::from("4950")
        )
    );
    assert!(
        db.store.checkpoints("orders").await.unwrap().is_empty(),
        "a retry moved a checkpoint"
    );
}

both_backends! {
    a_refused_record_fixed_is_retried_once;
    an_older_decoders_dead_letters_are_stored_as_their_way_in;
}

#[test]
fn retry_flags_without_retry_are_usage_errors() {
    for args in [
        &["dead-letters", "--apply"][..],
        &["dead-letters", "--reason", "x"],
        &["dead-letters", "--retry", "--limit", "3"],
        &["dead-letters", "--retry", "--since", "yesterday"],
    ] {
        let (code, _) = output_of(&mut bare_command(args));
        assert_eq!(code, Some(2), "{args:?}");
    }
}
