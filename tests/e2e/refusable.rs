//! Records a backend would refuse are refused by the decoder instead, the same on both
//! backends: timestamps outside years 0001-9999, and a flood of them, which no longer costs a
//! bisection per record nor a log line per record.

use crate::common::db;
use crate::common::optout::*;
use crate::common::records::*;

use optout::event::DecodeOptions;
use optout::pipeline::{RawRecord, Target, commit_records};

/// Years outside 0001-9999 (in UTC) are dead letters on both backends alike (PostgreSQL used
/// to dead-letter them after a bisection while SQLite stored `+10000-…` as the oldest event).
#[tokio::test(flavor = "multi_thread")]
async fn years_outside_0001_9999_are_dead_letters_on_both_backends() {
    let stop = |i: usize, at: &str| {
        Inbound::new(&format!("EZy{i:08}"), &format!("+1555000000{i}"))
            .opt_out_type("STOP")
            .at(at)
            .build()
    };
    let lines = [
        stop(0, "2026-03-01T12:00:00Z"),
        stop(1, "0000-01-01T00:00:00Z"),
        stop(2, "+10000-01-01T00:00:00Z"),
        stop(3, "0001-01-01T00:30:00+01:00"),
        stop(4, "9999-12-31T23:30:00-01:00"),
        stop(5, "9999-12-31T23:59:59.999999Z"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("years.jsonl");
    std::fs::write(&file, lines.join(&b'\n')).unwrap();
    let pg = db::postgres().await;
    let mut tables = Vec::new();
    for o in [Optout::new(vec![]), Optout::with_store(vec![], &pg.url)] {
        let out = o.output(&["replay", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = o.query(&["events"]);
        let ids: Vec<&str> = events
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["EZy00000000", "EZy00000005"]);
        let dead = o.query(&["dead-letters"]);
        let lines: Vec<&str> = dead
            .iter()
            .map(|d| d["sequence_number"].as_str().unwrap())
            .collect();
        assert_eq!(lines, ["2", "3", "4", "5"]);
        let outside = dead
            .iter()
            .filter(|d| {
                d["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("bad timestamp: year outside 0001-9999")
            })
            .count();
        assert_eq!(
            outside, 3,
            "year 0, and years 0 and 10000 once in UTC: {dead:?}"
        );
        for d in &dead {
            // `+10000-…` is no time at all to the decoder; the others are years outside.
            let reason = d["reason"].as_str().unwrap();
            assert!(reason.starts_with("bad timestamp: "), "{reason}");
        }
        let mut t: Vec<String> = events
            .iter()
            .chain(&dead)
            .map(|r| {
                let mut r = r.clone();
                for k in ["id", "shard_id", "recorded_at"] {
                    r.as_object_mut().unwrap().remove(k);
                }
                r.to_string()
            })
            .collect();
        t.sort();
        tables.push(t);
    }
    assert_eq!(tables[0], tables[1], "both backends hold the same");
}

/// 1,000 records of which every tenth has a timestamp PostgreSQL would refuse (year 0, which
/// the decoder's parser reads): the decoder
/// dead-letters them, so the batch commits in one transaction instead of a bisection per
/// record, and the log holds one line for the batch, not one per record.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refusable_records_is_one_commit_and_one_log_line() {
    const N: usize = 1_000;
    let record = |i: usize| {
        let at = if i % 10 == 3 {
            "0000-01-01T00:00:00Z".to_string()
        } else {
            format!("2026-03-01T12:{:02}:{:02}Z", i / 60 % 60, i % 60)
        };
        Inbound::new(&format!("EZf{i:08}"), &format!("+1555{i:07}"))
            .opt_out_type("STOP")
            .at(&at)
            .build()
    };
    let pg = db::postgres().await;
    let data: Vec<Vec<u8>> = (0..N).map(record).collect();
    let seqs: Vec<String> = (0..N).map(|i| format!("{i:06}")).collect();
    let records: Vec<RawRecord<'_>> = (0..N)
        .map(|i| RawRecord::new(&seqs[i], None, &data[i]))
        .collect();
    let target = Target {
        stream: "s".into(),
        shard_id: "flood".into(),
        ..Target::default()
    };
    let done = commit_records(
        &*pg.store,
        &target,
        &records,
        None,
        DecodeOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(done.commits, 1, "no bisection");
    assert_eq!(done.counts.dead_letters, (N / 10) as u64);
    assert_eq!(
        done.unstorable, 0,
        "nothing left for the database to refuse"
    );

    // Through replay, with the logs: a summary line per block.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flood.jsonl");
    let mut text = Vec::new();
    for i in 0..2 * N {
        text.extend(if i % 10 == 7 {
            b"not json".to_vec()
        } else {
            record(N + i)
        });
        text.push(b'\n');
    }
    std::fs::write(&file, text).unwrap();
    let o = Optout::with_store(vec![], &pg.url);
    let out = o.output(&["replay", file.to_str().unwrap()]);
    assert!(out.status.success());
    let logs = json_lines(&out.stderr);
    let about_records = logs.iter().filter(|l| !l["shard_id"].is_null()).count();
    assert!(
        about_records <= 2,
        "{about_records} log lines for one block of 2,000 records: {logs:?}"
    );
    let summary = logs
        .iter()
        .find(|l| l["dead_letters"].is_u64())
        .expect("a summary line");
    assert_eq!(summary["dead_letters"], 400);
}
