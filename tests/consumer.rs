//! End to end: the `optout` binary against a real Kinesis emulator (ferrokinesis by default;
//! `OPTOUT_TEST_EMULATOR=kinesis-local` for the npm one) and a SQLite store.
//!
//! Each scenario makes its own stream and store, writes Twilio-shaped records, runs the
//! consumer as a user would, and checks the exact contents of every table.

#[path = "common/optout.rs"]
mod common;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::Value;

const ACCOUNT: &str = "AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a";
const STOP_FIXTURE_ID: &str = "EZ7a1c3e5b9d2f4a6c8e0b1d3f5a7c9e1b";
const START_FIXTURE_ID: &str = "EZ0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a";

/// The scenario's hand-made records: `(records, dead-letter payloads)`.
fn mixed_records() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let dead = vec![
        b"not json at all".to_vec(),
        br#"{"specversion":"1.0","type":"com.twilio.messaging.inbound-message.received","id":"EZtrunc"#.to_vec(),
        // An opt event without `from`: cannot be attributed, must not vanish.
        serde_json::to_vec(&{
            let mut v: Value = serde_json::from_slice(&inbound(
                "EZnofrom00000000000000000000000000", "+15550000009", "+15559870002", None,
                "STOP", Some("STOP"), "2026-03-01T10:00:00Z", 5,
            ))
            .unwrap();
            v["data"].as_object_mut().unwrap().remove("from");
            v
        })
        .unwrap(),
        inbound(
            "EZunknown0000000000000000000000000", "+15550000008", "+15559870002", None,
            "UNSUBSCRIBE", Some("UNSUBSCRIBE"), "2026-03-01T10:00:00Z", 5,
        ),
    ];
    let mut records = vec![
        fixture("inbound-stop-v5.json"),
        fixture("inbound-start-data-string.json"),
        fixture("inbound-plain-v5.json"),
        fixture("message-delivered.json"),
        fixture("sink-test-event.json"),
        // Out of order: the newer START arrives before the older STOP.
        inbound(
            "EZa1",
            "+15550000001",
            "+15559870002",
            Some("MGtest"),
            "Start",
            Some("START"),
            "2026-03-01T10:00:00.000Z",
            5,
        ),
        inbound(
            "EZa2",
            "+15550000001",
            "+15559870002",
            Some("MGtest"),
            "stop",
            Some("STOP"),
            "2026-03-01T09:00:00.000Z",
            5,
        ),
        // Duplicates (at-least-once delivery): the same event three times.
        inbound(
            "EZb1",
            "whatsapp:+447700900123",
            "+15559990000",
            None,
            "STOP",
            Some("STOP"),
            "2026-03-01T11:00:00Z",
            6,
        ),
        inbound(
            "EZb1",
            "whatsapp:+447700900123",
            "+15559990000",
            None,
            "STOP",
            Some("STOP"),
            "2026-03-01T11:00:00Z",
            6,
        ),
        inbound(
            "EZb1",
            "whatsapp:+447700900123",
            "+15559990000",
            None,
            "STOP",
            Some("STOP"),
            "2026-03-01T11:00:00Z",
            6,
        ),
        // HELP: recorded, no status.
        inbound(
            "EZc1",
            "+15550000003",
            "+15559870002",
            Some("MGtest"),
            "help",
            Some("HELP"),
            "2026-03-01T11:30:00Z",
            5,
        ),
        // optOutType in another case.
        inbound(
            "EZd1",
            "+15550000004",
            "+15559870002",
            Some("MGtest"),
            "sToP",
            Some("stop"),
            "2026-03-01T11:45:00+01:00",
            5,
        ),
        // Schema v4 without optOutType: not an opt event unless --infer-keywords.
        inbound(
            "EZe1",
            "+15550000005",
            "+15559870002",
            Some("MGtest"),
            " STOP ",
            None,
            "2026-03-01T12:00:00Z",
            4,
        ),
        // v5 without optOutType: Twilio decided it is no keyword.
        inbound(
            "EZf1",
            "+15550000006",
            "+15559870002",
            Some("MGtest"),
            "Stop please",
            None,
            "2026-03-01T12:00:00Z",
            5,
        ),
    ];
    records.extend(dead.iter().cloned());
    records.extend(filler(11, 400));
    (records, dead)
}

fn ids(rows: &[Value], field: &str) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_string())
        .collect()
}

fn status_map(rows: &[Value]) -> BTreeSet<(String, String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["subscriber"].as_str().unwrap().to_string(),
                r["scope"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["event_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn set<const N: usize>(
    items: [(&str, &str, &str, &str); N],
) -> BTreeSet<(String, String, String, String)> {
    items
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_stream_over_four_shards() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("mixed");
    support::create_stream(&client, &stream, 4).await.unwrap();
    let (records, dead) = mixed_records();
    let placed = support::put_records(&client, &stream, &keyed(records.clone()))
        .await
        .unwrap();
    let shards_used: BTreeSet<_> = placed.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(
        shards_used.len(),
        4,
        "records should spread over all shards"
    );

    let optout = Optout::new(emu.env());
    let logs = optout.run_to_idle(&stream, &[]);
    assert_eq!(
        records_read(&logs),
        records.len() as u64,
        "every record read exactly once"
    );

    // " STOP " (v4) and "Stop please" (v5) arrive without optOutType: phrase revocations,
    // recorded with their rule, status untouched (not honoured by default).
    let phrases = optout.query(&["events", "--detection", "phrase"]);
    assert_eq!(
        ids(&phrases, "event_id"),
        ["EZe1", "EZf1"].iter().map(|s| s.to_string()).collect()
    );
    assert!(
        phrases
            .iter()
            .all(|e| e["rule"] == "builtin-2026.1:fcc-word")
    );
    let events = optout.query(&["events", "--detection", "twilio"]);
    assert_eq!(
        ids(&events, "event_id"),
        [
            STOP_FIXTURE_ID,
            START_FIXTURE_ID,
            "EZa1",
            "EZa2",
            "EZb1",
            "EZc1",
            "EZd1"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    assert_eq!(events.len(), 7, "duplicates stored once: {events:#?}");
    let d1 = events.iter().find(|e| e["event_id"] == "EZd1").unwrap();
    assert_eq!(d1["opt_out_type"], "STOP");
    assert_eq!(d1["occurred_at"], "2026-03-01T10:45:00.000000Z");
    assert_eq!(d1["inferred"], false);
    let stop = events
        .iter()
        .find(|e| e["event_id"] == STOP_FIXTURE_ID)
        .unwrap();
    assert_eq!(stop["account_sid"], ACCOUNT);
    assert_eq!(stop["subscriber"], "+15551230001");
    assert_eq!(stop["sender"], "+15559870002");
    assert_eq!(
        stop["messaging_service_sid"],
        "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c"
    );
    assert_eq!(stop["body"], "Stop");
    assert_eq!(stop["schema_version"], 5);
    assert!(stop["shard_id"].as_str().unwrap().starts_with("shardId-"));
    assert!(!stop["sequence_number"].as_str().unwrap().is_empty());

    assert_eq!(
        status_map(&optout.query(&["status"])),
        set([
            (
                "+15551230001",
                "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c",
                "opted_in",
                START_FIXTURE_ID
            ),
            ("+15550000001", "MGtest", "opted_in", "EZa1"),
            (
                "whatsapp:+447700900123",
                "+15559990000",
                "opted_out",
                "EZb1"
            ),
            ("+15550000004", "MGtest", "opted_out", "EZd1"),
        ])
    );

    let dead_rows = optout.query(&["dead-letters"]);
    let stored: BTreeSet<Vec<u8>> = dead_rows
        .iter()
        .map(|r| {
            base64::engine::general_purpose::STANDARD
                .decode(r["data_base64"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(
        stored,
        dead.iter().cloned().collect(),
        "raw bytes kept exactly"
    );
    let reasons: Vec<&str> = dead_rows
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    for needle in ["not JSON", "missing field", "unknown optOutType"] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no `{needle}` in {reasons:?}"
        );
    }
    assert!(
        dead_rows
            .iter()
            .all(|r| r["partition_key"].as_str().is_some_and(|k| k.len() == 32))
    );

    let tests = optout.query(&["test-events"]);
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0]["test_id"], "95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11");
    assert_eq!(tests[0]["account_sid"], ACCOUNT);
    assert!(
        logs.iter()
            .any(|l| l["test_id"] == "95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11"),
        "the test id is logged for the operator"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn infer_keywords_marks_old_schema_bodies() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("infer");
    support::create_stream(&client, &stream, 1).await.unwrap();
    let records = vec![
        inbound(
            "EZe1",
            "+15550000005",
            "+15559870002",
            Some("MGtest"),
            " STOP ",
            None,
            "2026-03-01T12:00:00Z",
            4,
        ),
        inbound(
            "EZe2",
            "+15550000005",
            "+15559870002",
            Some("MGtest"),
            "Stop please",
            None,
            "2026-03-01T12:01:00Z",
            4,
        ),
        inbound(
            "EZe3",
            "+15550000006",
            "+15559870002",
            Some("MGtest"),
            "STOP",
            None,
            "2026-03-01T12:01:00Z",
            5,
        ),
    ];
    support::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let optout = Optout::new(emu.env());
    optout.run_to_idle(&stream, &["--infer-keywords"]);
    // "Stop please" and a v5 "STOP" without optOutType are phrase revocations, not keywords.
    let phrases = optout.query(&["events", "--detection", "phrase"]);
    assert_eq!(phrases.len(), 2, "{phrases:#?}");
    let events = optout.query(&["events", "--detection", "keyword"]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_id"], "EZe1");
    assert_eq!(events[0]["inferred"], true);
    assert_eq!(events[0]["schema_version"], 4);
    assert_eq!(
        status_map(&optout.query(&["status"])),
        set([("+15550000005", "MGtest", "opted_out", "EZe1")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_reads_nothing_twice_and_misses_nothing() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("resume");
    support::create_stream(&client, &stream, 2).await.unwrap();
    let first = vec![
        inbound(
            "EZr1",
            "+15550000001",
            "+15559870002",
            Some("MGr"),
            "STOP",
            Some("STOP"),
            "2026-03-01T10:00:00Z",
            5,
        ),
        b"garbage one".to_vec(),
    ];
    let mut first_all = first.clone();
    first_all.extend(filler(3, 100));
    support::put_records(&client, &stream, &keyed(first_all.clone()))
        .await
        .unwrap();
    let optout = Optout::new(emu.env());
    let logs = optout.run_to_idle(&stream, &[]);
    assert_eq!(records_read(&logs), first_all.len() as u64);

    // More records, including an old opt event delivered again.
    let mut second = vec![
        first[0].clone(),
        inbound(
            "EZr2",
            "+15550000001",
            "+15559870002",
            Some("MGr"),
            "START",
            Some("START"),
            "2026-03-01T11:00:00Z",
            5,
        ),
        b"garbage two".to_vec(),
    ];
    second.extend(filler(4, 50));
    support::put_records(&client, &stream, &keyed(second.clone()))
        .await
        .unwrap();
    let logs = optout.run_to_idle(&stream, &[]);
    assert_eq!(
        records_read(&logs),
        second.len() as u64,
        "the second run reads exactly the new records"
    );
    assert_eq!(
        ids(&optout.query(&["events"]), "event_id"),
        ["EZr1", "EZr2"].map(String::from).into()
    );
    assert_eq!(optout.query(&["dead-letters"]).len(), 2);
    assert_eq!(
        status_map(&optout.query(&["status"])),
        set([("+15550000001", "MGr", "opted_in", "EZr2")])
    );
    // A third run finds nothing new.
    assert_eq!(records_read(&optout.run_to_idle(&stream, &[])), 0);
}

/// Split shard 0 and merge shards 1 and 2, with records before and after: every record is
/// read once, and each child only after its parents are read to the end.
#[tokio::test(flavor = "multi_thread")]
async fn resharding_reads_parents_before_children() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("reshard");
    support::create_stream(&client, &stream, 3).await.unwrap();
    let before: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            inbound(
                &format!("EZp{i:02}"),
                &format!("+1555000{i:04}"),
                "+15559870002",
                Some("MGx"),
                "STOP",
                Some("STOP"),
                "2026-03-01T10:00:00Z",
                5,
            )
        })
        .collect();
    support::put_records(&client, &stream, &keyed(before.clone()))
        .await
        .unwrap();
    let (children, merged) = split_0_merge_1_2(&client, &stream).await;
    // Same subscribers opt back in, later: only children hold the START events.
    let after: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            inbound(
                &format!("EZc{i:02}"),
                &format!("+1555000{i:04}"),
                "+15559870002",
                Some("MGx"),
                "START",
                Some("START"),
                "2026-03-01T11:00:00Z",
                5,
            )
        })
        .collect();
    support::put_records(&client, &stream, &keyed(after.clone()))
        .await
        .unwrap();

    let optout = Optout::new(emu.env());
    let logs = optout.run_to_idle(&stream, &[]);
    assert_eq!(records_read(&logs), 60, "every record read exactly once");
    assert_children_after_parents(&logs, &children, &merged);
    // `optout shards` shows the lineage and where each shard stands.
    let shards = optout.query(&["shards", "--stream", &stream]);
    assert_eq!(shards.len(), 6, "{shards:#?}");
    let row = |id: &str| shards.iter().find(|r| r["shard_id"] == id).unwrap().clone();
    for parent in [
        "shardId-000000000000",
        "shardId-000000000001",
        "shardId-000000000002",
    ] {
        assert_eq!(row(parent)["state"], "closed");
        assert_eq!(row(parent)["finished"], true);
    }
    assert_eq!(row(&children[0])["parent_shard_id"], "shardId-000000000000");
    assert_eq!(
        row(&merged)["adjacent_parent_shard_id"],
        "shardId-000000000002"
    );
    assert_eq!(row(&merged)["state"], "open");
    assert_eq!(row(&merged)["finished"], false);
    assert!(
        shards.iter().all(|r| r["owner"].is_null()),
        "SQLite holds no leases"
    );
    assert_eq!(optout.query(&["events"]).len(), 60);
    let status = optout.query(&["status"]);
    assert_eq!(status.len(), 30);
    assert!(
        status.iter().all(|r| r["status"] == "opted_in"),
        "{status:#?}"
    );
}

/// Resharding while the consumer runs: shard discovery finds the children.
#[tokio::test(flavor = "multi_thread")]
async fn resharding_while_running_loses_nothing() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("live-reshard");
    support::create_stream(&client, &stream, 3).await.unwrap();
    let optout = Optout::new(emu.env());
    let child = optout.spawn_run(&stream, &[]);
    let stop = |i: usize| {
        inbound(
            &format!("EZs{i:03}"),
            &format!("+1555100{i:04}"),
            "+15559870002",
            None,
            "STOP",
            Some("STOP"),
            "2026-03-01T10:00:00Z",
            5,
        )
    };
    let first: Vec<_> = (0..20).map(stop).collect();
    support::put_records(&client, &stream, &keyed(first))
        .await
        .unwrap();
    let store = optout::store::open(&optout.store, 1).await.unwrap();
    let count = |n: usize| {
        let store = store.clone();
        async move {
            store
                .events(&Default::default())
                .await
                .map(|e| e.len() >= n)
                .unwrap_or(false)
        }
    };
    support::wait_for("first 20 events", Duration::from_secs(60), || count(20))
        .await
        .unwrap();
    split_0_merge_1_2(&client, &stream).await;
    let second: Vec<_> = (20..60).map(stop).collect();
    support::put_records(&client, &stream, &keyed(second))
        .await
        .unwrap();
    support::wait_for("all 60 events", Duration::from_secs(60), || count(60))
        .await
        .unwrap();
    // Graceful stop: SIGTERM → exit 0.
    let logs = child.terminate();
    assert_eq!(records_read(&logs), 60);
    assert_eq!(optout.query(&["events"]).len(), 60);
}

/// `kill -9` in the middle of a backlog, restart: the same tables as an uninterrupted run.
#[tokio::test(flavor = "multi_thread")]
async fn crash_mid_backlog_then_restart_gives_the_same_tables() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("crash");
    support::create_stream(&client, &stream, 4).await.unwrap();
    let n = match emu.kind {
        support::EmulatorKind::Ferrokinesis => 20_000,
        support::EmulatorKind::KinesisLocal => 1_500,
    };
    let mut synth = optout::synth::Synth::new(optout::synth::MixOptions {
        seed: 99,
        opt_ratio: 0.1,
        subscribers: 50,
    });
    let mut records: Vec<Vec<u8>> = vec![synth.test_event()];
    records.extend((0..n).map(|_| synth.next_record().1));
    records.extend((0..20).map(|i| format!("broken record {i}").into_bytes()));
    fastrand::Rng::with_seed(5).shuffle(&mut records);
    support::put_records(&client, &stream, &keyed(records.clone()))
        .await
        .unwrap();

    let reference = Optout::new(emu.env());
    reference.run_to_idle(&stream, &[]);
    let expected = reference.tables();
    assert!(
        expected[1].len() > 100,
        "the scenario should hold many opt events"
    );

    let crashed = Optout::new(emu.env());
    let mut child = crashed.spawn_run(&stream, &[]);
    let store = optout::store::open(&crashed.store, 1).await.unwrap();
    let s = &store;
    let stream_ref = &stream;
    support::wait_for(
        "a first checkpoint",
        Duration::from_secs(60),
        || async move {
            s.checkpoints(stream_ref)
                .await
                .map(|c| !c.is_empty())
                .unwrap_or(false)
        },
    )
    .await
    .unwrap();
    child.kill_9();
    let partial = s.events(&Default::default()).await.unwrap().len();
    crashed.run_to_idle(&stream, &[]);
    let after = crashed.tables();
    assert_eq!(after[0], expected[0], "status differs after a crash");
    assert_eq!(after[1], expected[1], "events differ after a crash");
    assert_eq!(after[2], expected[2], "dead letters differ after a crash");
    assert_eq!(after[3], expected[3], "test events differ after a crash");
    eprintln!(
        "killed with {partial} of {} opt events stored",
        expected[1].len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_mistakes_exit_2_with_one_useful_line() {
    let emu = support::ferrokinesis().await;
    let optout = Optout::new(emu.env());
    let cases: &[(&[&str], &str)] = &[
        (&["run"], "--stream"),
        (
            &["run", "--stream", "s", "--initial-position", "sideways"],
            "trim-horizon",
        ),
        (
            &[
                "run",
                "--stream",
                "s",
                "--initial-position",
                "at-timestamp=yesterday",
            ],
            "RFC 3339",
        ),
        (
            &["run", "--stream", "s", "--poll-interval-ms", "0"],
            "poll-interval-ms",
        ),
        (&["events", "--since", "last week"], "RFC 3339"),
        (&["events", "--type", "stahp"], "stop"),
        (&["status", "--format", "xml"], "table"),
        (
            &["produce", "--stream", "s", "--opt-ratio", "2"],
            "between 0 and 1",
        ),
        (&["frobnicate"], "frobnicate"),
        (&["run", "--stream", "no-such-stream-here"], "not found"),
    ];
    for (args, needle) in cases {
        let out = optout.output(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "optout {args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
        assert_eq!(lines.len(), 1, "optout {args:?}: not one line: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(
            lines[0].contains(needle),
            "optout {args:?}: `{needle}` not in: {stderr}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_optout"))
        .args(["status", "--store", "mysql://root:hunter2@db/optout"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sqlite://") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_sqlite_file_refuses_to_start() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("lock");
    support::create_stream(&client, &stream, 1).await.unwrap();
    let optout = Optout::new(emu.env());
    let mut first = optout.spawn_run(&stream, &[]);
    let store = optout::store::open(&optout.store, 1).await.unwrap();
    let s = &store;
    let st = &stream;
    // The first runner holds the lock once it has read the (empty) shard.
    support::put_records(&client, &stream, &keyed(filler(1, 3)))
        .await
        .unwrap();
    support::wait_for(
        "the first runner to checkpoint",
        Duration::from_secs(30),
        || async move {
            s.checkpoints(st)
                .await
                .map(|c| !c.is_empty())
                .unwrap_or(false)
        },
    )
    .await
    .unwrap();
    let out = optout.output(&["run", "--stream", &stream, "--exit-when-idle", "1"]);
    first.kill_9();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another `optout run` is already using"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_uses_the_same_semantics_and_dedup() {
    let emu = support::ferrokinesis().await;
    let optout = Optout::new(emu.env());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.jsonl");
    let mut lines = vec![
        fixture("inbound-stop-v5.json"),
        fixture("inbound-start-data-string.json"),
        fixture("message-delivered.json"),
        b"{broken".to_vec(),
        fixture("inbound-stop-v5.json"),
    ];
    lines.push(Vec::new()); // blank lines are ignored
    let text: Vec<u8> = lines.join(&b'\n');
    std::fs::write(&file, &text).unwrap();
    let path = file.to_str().unwrap();
    let out = optout.output(&["replay", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("3 opt events (2 new, 1 already stored)"),
        "{summary}"
    );
    assert!(summary.contains("1 dead letters"), "{summary}");
    // Again, from stdin: everything is already stored.
    let mut child = optout
        .command(&["replay", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("(0 new, 3 already stored)"));
    assert_eq!(optout.query(&["events"]).len(), 2);
    let dead = optout.query(&["dead-letters"]);
    assert_eq!(
        dead.len(),
        2,
        "one per source: file line 4 and stdin line 4"
    );
    // Each replay run is a pseudo-shard of its own: `FILE@RUN-TIME`.
    assert!(dead.iter().any(|d| {
        d["shard_id"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("{path}@")))
            && d["sequence_number"] == "4"
    }));
    assert_eq!(
        status_map(&optout.query(&["status"])),
        set([(
            "+15551230001",
            "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c",
            "opted_in",
            START_FIXTURE_ID
        )])
    );
    let out = optout.output(&["replay", "/no/such/file.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_api_serves_health_metrics_and_queries() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::unique_stream("http");
    support::create_stream(&client, &stream, 1).await.unwrap();
    let records = vec![
        fixture("inbound-stop-v5.json"),
        fixture("sink-test-event.json"),
        b"junk".to_vec(),
    ];
    support::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let optout = Optout::new(emu.env());
    let worker = optout.spawn_run(&stream, &["--http-addr", &addr]);
    let store = optout::store::open(&optout.store, 1).await.unwrap();
    let s = &store;
    support::wait_for("the STOP event", Duration::from_secs(30), || async move {
        s.events(&Default::default())
            .await
            .map(|e| e.len() == 1)
            .unwrap_or(false)
    })
    .await
    .unwrap();
    assert_eq!(http_get(&addr, "/healthz").await.0, 200);
    assert_eq!(
        http_get(&addr, "/readyz").await,
        (200, "ready\n".to_string())
    );
    let (code, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(code, 200);
    // Whole lines, so that `… 1` cannot match `… 10`.
    for line in [
        "optout_records_total{outcome=\"opt_event\"} 1",
        "optout_records_total{outcome=\"dead_letter\"} 1",
        "optout_dead_letters_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    let (code, body) = http_get(&addr, "/v1/status?subscriber=%2B15551230001").await;
    assert_eq!(code, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    let rows = page["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "opted_out");
    let (_, body) = http_get(&addr, "/v1/events?type=stop&since=2026-03-01T00:00:00Z").await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, body) = http_get(&addr, "/v1/test-events").await;
    assert!(
        body.contains("95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11"),
        "{body}"
    );
    let (_, body) = http_get(&addr, "/v1/dead-letters").await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(http_get(&addr, "/v1/events?since=yesterday").await.0, 400);
    worker.terminate();
}

/// Iterators expire after 5 minutes on AWS; here after 1 s, and the consumer idles longer than
/// that between polls: every poll meets `ExpiredIteratorException` and must renew from its
/// checkpoint, without losing or re-reading records.
#[tokio::test(flavor = "multi_thread")]
async fn expired_iterators_are_renewed_from_the_checkpoint() {
    let emu = support::ferrokinesis_with(ferrokinesis::store::StoreOptions {
        iterator_ttl_seconds: 1,
        ..support::ferrokinesis_options()
    })
    .await;
    let client = emu.client().await;
    let stream = support::unique_stream("expiry");
    support::create_stream(&client, &stream, 1).await.unwrap();
    let o = Optout::new(emu.env());
    let worker = o.spawn_run(&stream, &["--poll-interval-ms", "1500"]);
    write(&client, &stream, 0, 40, 20, Duration::from_millis(10)).await;
    let store = optout::store::open(&o.store, 1).await.unwrap();
    let s = &store;
    let w = &worker;
    if let Err(e) = support::wait_for("40 events", Duration::from_secs(30), || async move {
        event_count(&**s).await >= 40
    })
    .await
    {
        panic!("{e}: {}", w.raw_log());
    }
    let w = &worker;
    support::wait_for(
        "an expired iterator",
        Duration::from_secs(30),
        || async move {
            w.logs().iter().any(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("iterator expired"))
            })
        },
    )
    .await
    .unwrap();
    write(&client, &stream, 40, 80, 20, Duration::from_millis(10)).await;
    wait_for_events(&**s, 80, Duration::from_secs(30)).await;
    let logs = worker.terminate();
    assert_eq!(records_read(&logs), 80, "nothing read twice");
    check_tables(&o, 80);
}

/// `at-timestamp` starts at a point in time.
#[tokio::test(flavor = "multi_thread")]
async fn initial_position_at_timestamp() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("position");
    support::create_stream(&client, &stream, 2).await.unwrap();
    write(&client, &stream, 0, 40, 40, Duration::ZERO).await;
    // Arrival times have millisecond precision: leave a clear gap between the two batches.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write(&client, &stream, 40, 80, 40, Duration::ZERO).await;

    let at = Optout::new(emu.env());
    let position = format!(
        "at-timestamp={}",
        between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    at.run_to_idle(&stream, &["--initial-position", &position]);
    let got = ids(&at.query(&["events"]), "event_id");
    let want: BTreeSet<String> = (40..80).map(|i| format!("EZw{i:08}")).collect();
    assert_eq!(got, want, "at-timestamp reads exactly the second batch");
}

/// `latest` skips what is already in the stream and reads what comes after it started.
///
/// ferrokinesis only: kinesis-local 0.6.2 sometimes never returns records written within about
/// a second after a LATEST iterator's first (empty) read, although its NextShardIterator is
/// followed as AWS documents (seen in 1 of 3 runs; the same flow 3 s later always worked).
#[tokio::test(flavor = "multi_thread")]
async fn initial_position_latest() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::unique_stream("latest");
    support::create_stream(&client, &stream, 2).await.unwrap();
    write(&client, &stream, 0, 80, 40, Duration::ZERO).await;
    let latest = Optout::new(emu.env());
    let worker = latest.spawn_run(&stream, &["--initial-position", "latest"]);
    let w = &worker;
    support::wait_for(
        "both shards polled",
        Duration::from_secs(30),
        || async move {
            w.logs()
                .iter()
                .filter(|l| l["message"] == "Reading shard.")
                .count()
                == 2
        },
    )
    .await
    .unwrap();
    // The LATEST iterators exist once the shards are polled; wait for a caught-up poll.
    let store = optout::store::open(&latest.store, 1).await.unwrap();
    write(&client, &stream, 80, 100, 20, Duration::ZERO).await;
    let s = &store;
    if let Err(e) = support::wait_for("the new events", Duration::from_secs(30), || async move {
        event_count(&**s).await >= 20
    })
    .await
    {
        panic!("{e}: {}", worker.raw_log());
    }
    worker.terminate();
    let got = ids(&latest.query(&["events"]), "event_id");
    let want: BTreeSet<String> = (80..100).map(|i| format!("EZw{i:08}")).collect();
    assert_eq!(
        got, want,
        "latest reads only what was written after it started"
    );
}

/// With `latest`, an iterator renewed before anything was committed must not jump to the tip
/// again: records written between the first poll and the renewal would be skipped.
#[tokio::test(flavor = "multi_thread")]
async fn latest_survives_expired_iterators_without_skipping() {
    let emu = support::ferrokinesis_with(ferrokinesis::store::StoreOptions {
        iterator_ttl_seconds: 1,
        ..support::ferrokinesis_options()
    })
    .await;
    let client = emu.client().await;
    let stream = support::unique_stream("latest-expiry");
    support::create_stream(&client, &stream, 1).await.unwrap();
    write(&client, &stream, 1000, 1010, 10, Duration::ZERO).await; // before start: skipped
    // Older than the 2 s margin `latest` keeps when it has to renew an iterator.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let o = Optout::new(emu.env());
    let worker = o.spawn_run(
        &stream,
        &["--initial-position", "latest", "--poll-interval-ms", "1500"],
    );
    let w = &worker;
    support::wait_for(
        "the first poll at latest",
        Duration::from_secs(30),
        || async move { w.logs().iter().any(|l| l["message"] == "Reading shard.") },
    )
    .await
    .unwrap();
    // Written while the reader idles with an iterator that will expire before its next poll.
    write(&client, &stream, 0, 40, 20, Duration::from_millis(10)).await;
    let store = optout::store::open(&o.store, 1).await.unwrap();
    let s = &store;
    wait_for_events(&**s, 40, Duration::from_secs(30)).await;
    worker.terminate();
    check_tables(&o, 40);
}
