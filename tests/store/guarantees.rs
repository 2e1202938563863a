//! Two of the store's guarantees, each on both backends and each able to fail:
//!
//! - **Atomicity**: a commit that fails after some of its writes (a trigger makes the
//!   checkpoint upsert, the last write of a commit, raise) leaves none of its effects behind.
//! - **Order independence** (docs/semantics.md, rule 3), as a property: any arrival order, duplicates and
//!   split into batches give the tables an independent oracle computes, a plain fold over the
//!   events sorted by (timestamp, event id) in which HELP changes nothing.
//!
//! The same across paths (Kinesis, the webhooks, replay) is in `paths.rs`.

use std::collections::BTreeMap;

use optout::event::{OptEvent, OptOutType, TestEvent};
use optout::store::query::{DeadLetterFilter, TestEventFilter};
use optout::store::{Batch, CheckpointUpdate, DeadLetter, EventFilter, Reader, StatusFilter};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::common::events::*;
use crate::common::seed;

use crate::common::db::{self, Db, runtime};

both_backends! {
    a_commit_failing_at_its_checkpoint_leaves_nothing;
}

/// Every table, as JSON, in a stable order.
async fn tables(r: &Reader) -> [Vec<String>; 5] {
    fn rows<T: serde::Serialize>(v: Vec<T>) -> Vec<String> {
        let mut v: Vec<String> = v
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        v.sort();
        v
    }
    [
        rows(r.all(&StatusFilter::default()).await.unwrap()),
        rows(r.all(&EventFilter::default()).await.unwrap()),
        rows(r.all(&DeadLetterFilter).await.unwrap()),
        rows(r.all(&TestEventFilter).await.unwrap()),
        rows(r.shard_states("s").await.unwrap().0),
    ]
}

/// Makes every insert or update of a checkpoint raise, in the backend's own trigger language.
async fn fail_checkpoint_writes(db: &Db) {
    use sqlx::Connection;
    if db.url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        for when in ["INSERT", "UPDATE"] {
            let sql = format!(
                "CREATE TRIGGER fail_checkpoint_{when} BEFORE {when} ON checkpoints \
                 BEGIN SELECT RAISE(ABORT, 'injected checkpoint failure'); END"
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
        }
    } else {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE FUNCTION fail_checkpoint() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected checkpoint failure'; END $$; \
             CREATE TRIGGER fail_checkpoint BEFORE INSERT OR UPDATE ON checkpoints \
             FOR EACH ROW EXECUTE FUNCTION fail_checkpoint();",
        )
        .execute(&mut c)
        .await
        .unwrap();
    }
}

/// A batch with every kind of effect: new and repeated opt events (status changes), a dead
/// letter, a test event and a checkpoint, on `shard`.
fn full_batch(shard: &str, tag: &str, seq: &str, previous: Option<&str>) -> Batch {
    Batch {
        stream: "s".into(),
        shard_id: shard.into(),
        opt_events: positioned(vec![
            scoped_event(
                &format!("EZ{tag}1"),
                OptOutType::Stop,
                "+1",
                Some("MG1"),
                10,
            ),
            scoped_event(&format!("EZ{tag}2"), OptOutType::Start, "+2", None, 20),
            scoped_event(
                &format!("EZ{tag}3"),
                OptOutType::Help,
                "+3",
                Some("MG1"),
                30,
            ),
        ]),
        test_events: positioned(vec![TestEvent {
            test_id: format!("test-{tag}"),
            account_sid: "AC1".into(),
            occurred_at: Some(ts(0)),
        }]),
        dead_letters: vec![DeadLetter {
            sequence_number: format!("9{tag}"),
            partition_key: Some("pk".into()),
            reason: "not JSON".into(),
            data: tag.as_bytes().to_vec(),
        }],
        checkpoint: Some(CheckpointUpdate {
            sequence_number: Some(seq.into()),
            finished: false,
            previous: previous.map(Into::into),
        }),
        ..Batch::default()
    }
}

async fn a_commit_failing_at_its_checkpoint_leaves_nothing(db: Db) {
    let s = &*db.store;
    // A first batch lands, so the failing ones find rows to change (status of +1 and +2, the
    // checkpoint of shard-a) as well as rows to add.
    s.commit(&full_batch("shard-a", "a", "00010", None))
        .await
        .unwrap();
    let before = tables(&db.reader).await;
    fail_checkpoint_writes(&db).await;
    // The checkpoint is the last write: opt events, status, dead letters and test events are
    // written by then. Once on a shard whose checkpoint is updated, once on a new one.
    let cases = [
        ("shard-a", "b", "00020", Some("00010")),
        ("shard-b", "c", "00005", None),
    ];
    for (shard, tag, seq, previous) in cases {
        let mut b = full_batch(shard, tag, seq, previous);
        // Later events for the subscribers of the first batch: they would change status.
        for p in &mut b.opt_events {
            p.value.occurred_at = ts(100);
        }
        let result = s.commit(&b).await;
        assert!(result.is_err(), "the trigger did not fire: {result:?}");
        assert_eq!(
            tables(&db.reader).await,
            before,
            "a failed commit on {shard} left effects behind"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Order independence against an oracle

/// The expected status rows, computed without the store: sort by (timestamp, event id), fold,
/// last STOP or START wins per (subscriber, scope); HELP changes nothing; scope is the
/// messaging service, else the sender.
fn oracle(events: &[OptEvent]) -> Vec<String> {
    let mut sorted: Vec<&OptEvent> = events.iter().collect();
    sorted.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
    let mut state: BTreeMap<(String, String), (&str, String)> = BTreeMap::new();
    for e in sorted {
        let status = match e.opt_out_type {
            OptOutType::Stop => "opted_out",
            OptOutType::Start => "opted_in",
            _ => continue,
        };
        let scope = e.messaging_service_sid.clone().unwrap_or(e.sender.clone());
        state.insert((e.subscriber.clone(), scope), (status, e.event_id.clone()));
    }
    state
        .into_iter()
        .map(|((sub, scope), (status, id))| format!("{sub}|{scope}|{status}|{id}"))
        .collect()
}

/// Runs the property against one database: each case uses its own subscribers and event ids
/// (a prefix), so one database serves every case.
fn order_independence(db: Db, rt: &tokio::runtime::Runtime) {
    let strategy = (
        prop::collection::vec((0u8..3, 0u8..4, 0i64..6, any::<bool>()), 1..30),
        any::<u64>(),
        prop::collection::vec(0usize..30, 0..5),
    );
    let test = format!("order_independence on {}", db.store.backend());
    let mut runner = TestRunner::new(seed::proptest_config(&test, 48, file!()));
    let cases = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(spec, seed, cuts)| {
            // Shrinking reruns cases: each run still gets a prefix of its own.
            let case = cases.get() + 1;
            cases.set(case);
            let prefix = format!("+{case}x");
            let types = [OptOutType::Stop, OptOutType::Start, OptOutType::Help];
            let events: Vec<OptEvent> = spec
                .iter()
                .enumerate()
                .map(|(i, &(t, who, at, service))| {
                    let service = service.then_some("MG1");
                    let id = format!("EZ{case:04}{i:03}");
                    scoped_event(
                        &id,
                        types[t as usize],
                        &format!("{prefix}{who}"),
                        service,
                        at,
                    )
                })
                .collect();
            // Duplicates too: every third event is delivered twice.
            let mut order: Vec<usize> = (0..events.len())
                .chain((0..events.len()).step_by(3))
                .collect();
            fastrand::Rng::with_seed(seed).shuffle(&mut order);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (status, stored) = rt.block_on(async {
                let s = &*db.store;
                let ordered: Vec<OptEvent> = order.iter().map(|&i| events[i].clone()).collect();
                let mut start = 0;
                for &cut in cuts.iter().chain(std::iter::once(&ordered.len())) {
                    let end = cut.clamp(start, ordered.len());
                    let b = Batch {
                        stream: "s".into(),
                        shard_id: "a".into(),
                        opt_events: positioned(ordered[start..end].to_vec()),
                        ..Batch::default()
                    };
                    s.commit(&b).await.unwrap();
                    start = end;
                }
                let status = db::status_lines(&db.reader, &prefix).await;
                let stored = db::events_with_prefix(&db.reader, &prefix).await.len();
                (status, stored)
            });
            prop_assert_eq!(status, oracle(&events));
            prop_assert_eq!(stored, events.len());
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_order_and_batching_match_the_oracle_on_sqlite() {
    let rt = runtime();
    let db = rt.block_on(db::sqlite());
    order_independence(db, &rt);
}

#[test]
fn any_order_and_batching_match_the_oracle_on_postgres() {
    let rt = runtime();
    let db = rt.block_on(db::postgres());
    order_independence(db, &rt);
}
