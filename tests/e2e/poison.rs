//! Records no database can store must never stall a shard, and the two backends must end with
//! the same tables.
//!
//! - Decoder level: a STOP whose body holds U+0000 is kept with a sanitized body; one whose
//!   `from` is 3,000 characters or holds U+0000 is dead-lettered (`unstorable field`). Both
//!   through the consumer (on either emulator, SQLite and PostgreSQL) and through replay.
//! - Database level: a record the database itself refuses (a trigger raising a constraint
//!   error, the way PostgreSQL refuses an over-long index row) is isolated by bisecting the
//!   batch, dead-lettered with the database's reason, and everything around it is committed.

use crate::common::optout::*;
use crate::common::records::*;
use crate::common::{db, emulator};

use std::time::Instant;

use optout::event::DecodeOptions;
use optout::pipeline::{RawRecord, Target, commit_records};
use optout::store::{CheckpointUpdate, IngestPath};
use serde_json::Value;

/// The repro: 3 good STOPs, a STOP with U+0000 in its body, 3 more good STOPs, a STOP
/// whose `from` is 3,000 characters, one whose `to` holds U+0000, and a last good one.
fn hostile_shard() -> Vec<Vec<u8>> {
    let stop = |i: usize, from: &str, to: &str, body: &str| {
        Inbound::new(&format!("EZp{i:08}"), from)
            .to(to)
            .service("MGp")
            .body(body)
            .opt_out_type("STOP")
            .at(&format!("2026-03-01T12:00:{i:02}.000Z"))
            .build()
    };
    let long_from = format!("+{}", "5".repeat(2_999));
    vec![
        stop(0, "+15550000000", "+15559870002", "STOP"),
        stop(1, "+15550000001", "+15559870002", "STOP"),
        stop(2, "+15550000002", "+15559870002", "STOP"),
        stop(3, "+15550000003", "+15559870002", "STOP\u{0}now"),
        stop(4, "+15550000004", "+15559870002", "STOP"),
        stop(5, "+15550000005", "+15559870002", "STOP"),
        stop(6, "+15550000006", "+15559870002", "STOP"),
        stop(7, &long_from, "+15559870002", "STOP"),
        stop(8, "+15550000008", "+1555\u{0}9870002", "STOP"),
        stop(9, "+15550000009", "+15559870002", "STOP"),
    ]
}

/// What every backend must hold after [`hostile_shard`].
fn check_hostile(o: &Optout) {
    let events = o.query(&["events"]);
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [0, 1, 2, 3, 4, 5, 6, 9].map(|i| format!("EZp{i:08}")),
        "every storable STOP is stored, in order"
    );
    let sanitized = events
        .iter()
        .find(|e| e["event_id"] == "EZp00000003")
        .unwrap();
    assert_eq!(
        sanitized["body"], "STOP\u{FFFD}now",
        "NUL in a body is replaced, not lost"
    );
    let dead = o.query(&["dead-letters"]);
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("`data.from` is 3000 bytes")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("`data.to` holds U+0000")),
        "{reasons:?}"
    );
    let status = o.query(&["status"]);
    assert_eq!(status.len(), 8);
    assert!(status.iter().all(|s| s["status"] == "opted_out"));
}

/// Consumes one hostile shard into `store_url` and returns the installation for queries.
async fn consume_hostile(store_url: Option<&str>) -> Optout {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("poison");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let put = emulator::put_records(&client, &stream, &keyed(hostile_shard()))
        .await
        .unwrap();
    let last = put
        .iter()
        .map(|(_, seq)| seq.clone())
        .max_by_key(|s| (s.len(), s.clone()));
    let o = match store_url {
        Some(url) => Optout::with_store(emu.env(), url),
        None => Optout::new(emu.env()),
    };
    o.run_to_idle(&stream, &[]);
    let shards = o.query(&["shards", "--stream", &stream]);
    assert_eq!(
        shards[0]["checkpoint"].as_str(),
        last.as_deref(),
        "the shard's checkpoint moved past the hostile records to the last one"
    );
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_records_do_not_stall_a_shard_and_both_backends_agree() {
    let lite = consume_hostile(None).await;
    check_hostile(&lite);
    let pg = db::postgres().await;
    let pg_o = consume_hostile(Some(&pg.url)).await;
    check_hostile(&pg_o);
    let strip = |tables: [Vec<String>; 4]| -> Vec<Vec<String>> {
        // Shard ids and sequence numbers differ between the two streams (and so do the dead
        // letters' ids, which encode them); the rest must not.
        tables
            .into_iter()
            .map(|rows| {
                let mut rows: Vec<String> = rows
                    .into_iter()
                    .map(|r| {
                        let mut v: Value = serde_json::from_str(&r).unwrap();
                        for k in [
                            "id",
                            "shard_id",
                            "sequence_number",
                            "partition_key",
                            "data_base64",
                        ] {
                            v.as_object_mut().unwrap().remove(k);
                        }
                        v.to_string()
                    })
                    .collect();
                rows.sort();
                rows
            })
            .collect()
    };
    assert_eq!(strip(lite.tables()), strip(pg_o.tables()));
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_stores_hostile_files_the_same_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostile.jsonl");
    let mut text = Vec::new();
    for r in hostile_shard() {
        text.extend(r);
        text.push(b'\n');
    }
    std::fs::write(&file, text).unwrap();
    let pg = db::postgres().await;
    for o in [Optout::new(vec![]), Optout::with_store(vec![], &pg.url)] {
        let out = o.output(&["replay", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(summary.contains("8 new"), "{summary}");
        assert!(summary.contains("2 dead letters stored"), "{summary}");
        check_hostile(&o);
    }
}

/// Makes the database refuse, with a constraint error (the same class of refusal as
/// PostgreSQL's "index row size exceeds" or a bad byte), any opt event whose subscriber holds
/// `POISON` or whose body holds `BADBODY`.
pub(super) async fn refuse_poison(db: &db::Db) {
    use sqlx::Connection;
    if db.url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.subscriber LIKE '%POISON%' OR NEW.body LIKE '%BADBODY%' THEN \
             RAISE EXCEPTION 'poison body refused' USING ERRCODE = 'check_violation'; \
             END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT ON opt_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
        )
        .execute(&mut c)
        .await
        .unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON opt_events \
             WHEN NEW.subscriber LIKE '%POISON%' OR NEW.body LIKE '%BADBODY%' \
             BEGIN SELECT RAISE(ABORT, 'poison body refused'); END;",
        )
        .execute(&mut c)
        .await
        .unwrap();
    }
}

/// 10,000 records, two of which the database refuses: both are dead-lettered with the
/// database's reason, the 9,998 others are stored, and the checkpoint is the batch's last. A
/// third whose body alone is refused is stored without its body: the opt-out is kept.
async fn database_refusals_are_isolated(db: db::Db) {
    refuse_poison(&db).await;
    const N: usize = 10_000;
    let poison = [1_234, 8_765];
    let bad_body = 5_000;
    let data: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let ts = format!("2026-03-01T12:00:00.{:03}Z", i % 1000);
            let refused = |from: &str, body: &str| {
                let id = format!("EZw{i:08}");
                Inbound::new(&id, from)
                    .service("MGw")
                    .body(body)
                    .opt_out_type("STOP")
                    .at(&ts)
                    .build()
            };
            if poison.contains(&i) {
                refused("+1555POISON", "STOP")
            } else if i == bad_body {
                refused("+15550002222", "STOP BADBODY")
            } else {
                opt_event(i)
            }
        })
        .collect();
    let seqs: Vec<String> = (0..N).map(|i| format!("{i:020}")).collect();
    let records: Vec<RawRecord<'_>> = (0..N)
        .map(|i| RawRecord::new(&seqs[i], Some("pk"), &data[i]))
        .collect();
    let target = Target {
        path: IngestPath::Kinesis,
        stream: "s".into(),
        shard_id: "shardId-000000000000".into(),
        lease: None,
        honor_revocations: false,
        ..Target::default()
    };
    let cp = CheckpointUpdate {
        sequence_number: Some(seqs[N - 1].clone()),
        finished: false,
        previous: None,
    };
    let started = Instant::now();
    let done = commit_records(
        &*db.store,
        &target,
        &records,
        Some(cp),
        DecodeOptions::default(),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    eprintln!(
        "{}: isolated {} refused records in a {N}-record batch with {} commits in {:.0} ms",
        db.store.backend(),
        done.unstorable,
        done.commits,
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(done.unstorable, 2);
    assert_eq!(done.counts.opt_events, (N - 2) as u64);
    assert_eq!(done.counts.dead_letters, 2);
    assert_eq!(done.summary.opt_events_new, (N - 2) as u64);
    let events = db
        .reader
        .all(&optout::store::EventFilter::default())
        .await
        .unwrap();
    assert_eq!(events.len(), N - 2);
    let kept = events
        .iter()
        .find(|e| e.event_id == format!("EZw{bad_body:08}"))
        .expect("the STOP refused for its body is kept");
    assert_eq!(
        (kept.opt_out_type.as_str(), kept.body.as_deref()),
        ("STOP", None)
    );
    let dead = db
        .reader
        .all(&optout::store::query::DeadLetterFilter)
        .await
        .unwrap();
    let dead_seqs: Vec<&str> = dead.iter().map(|d| d.sequence_number.as_str()).collect();
    assert_eq!(
        dead_seqs,
        [seqs[poison[0]].as_str(), seqs[poison[1]].as_str()]
    );
    assert!(
        dead.iter()
            .all(|d| d.reason.starts_with("unstorable: ")
                && d.reason.contains("poison body refused")),
        "{dead:?}"
    );
    let cps = db.store.checkpoints("s").await.unwrap();
    assert_eq!(
        cps[0].sequence_number.as_deref(),
        Some(seqs[N - 1].as_str())
    );
    // Committing the same batch again (a re-read after a crash) changes nothing.
    let again = commit_records(
        &*db.store,
        &target,
        &records,
        None,
        DecodeOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(again.summary.opt_events_new, 0);
    assert_eq!(again.summary.dead_letters, 0);
    assert_eq!(
        db.reader
            .all(&optout::store::EventFilter::default())
            .await
            .unwrap()
            .len(),
        N - 2
    );
}

#[tokio::test]
async fn database_refusals_are_isolated_on_sqlite() {
    database_refusals_are_isolated(db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_refusals_are_isolated_on_postgres() {
    database_refusals_are_isolated(db::postgres().await).await;
}
