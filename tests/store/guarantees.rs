//! Two of the store's guarantees, each on both backends and each able to fail:
//!
//! - **Atomicity**: a commit that fails after some of its writes (a trigger makes the
//!   checkpoint upsert, the last write of a commit, raise) leaves none of its effects behind.
//! - **Order independence** (docs/semantics.md, rule 3), as a property: any arrival order, duplicates and
//!   split into batches give the tables an independent oracle computes, a plain fold over the
//!   events sorted by (timestamp, event id) in which HELP changes nothing.
//! - **One event per message across paths** (docs/semantics.md, rule 10), as a property: the
//!   same messages brought by Kinesis, the Event Streams webhook, the Messaging webhook and
//!   replay, with differing detections and receive times, in any order, duplicated and batched
//!   any way, give the events and status an oracle computes from the written ranking rules.

use std::collections::BTreeMap;

use optout::event::{Detection, OptEvent, OptOutType, TestEvent, TimeSource};
use optout::store::query::{DeadLetterFilter, TestEventFilter};
use optout::store::{
    Batch, CheckpointUpdate, DeadLetter, EventFilter, IngestPath, Reader, StatusFilter,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::events::*;

use crate::common::db::{self, Db};

both_backends! {
    a_commit_failing_at_its_checkpoint_leaves_nothing;
}

fn ev(id: &str, t: OptOutType, from: &str, service: Option<&str>, at: i64) -> OptEvent {
    let mut e = opt_event(id, t, from, at);
    e.messaging_service_sid = service.map(Into::into);
    e
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
fn full_batch(shard: &str, tag: &str, seq: &str) -> Batch {
    Batch {
        stream: "s".into(),
        shard_id: shard.into(),
        opt_events: positioned(vec![
            ev(
                &format!("EZ{tag}1"),
                OptOutType::Stop,
                "+1",
                Some("MG1"),
                10,
            ),
            ev(&format!("EZ{tag}2"), OptOutType::Start, "+2", None, 20),
            ev(
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
        }),
        ..Batch::default()
    }
}

async fn a_commit_failing_at_its_checkpoint_leaves_nothing(db: Db) {
    let s = &*db.store;
    // A first batch lands, so the failing ones find rows to change (status of +1 and +2, the
    // checkpoint of shard-a) as well as rows to add.
    s.commit(&full_batch("shard-a", "a", "00010"))
        .await
        .unwrap();
    let before = tables(&db.reader).await;
    fail_checkpoint_writes(&db).await;
    // The checkpoint is the last write: opt events, status, dead letters and test events are
    // written by then. Once on a shard whose checkpoint is updated, once on a new one.
    for (shard, tag, seq) in [("shard-a", "b", "00020"), ("shard-b", "c", "00005")] {
        let mut b = full_batch(shard, tag, seq);
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
    let mut runner = TestRunner::new(Config::with_cases(48));
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
                    ev(
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
                let mut status: Vec<String> = db
                    .reader
                    .all(&StatusFilter::default())
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.subscriber.starts_with(&prefix))
                    .map(|r| format!("{}|{}|{}|{}", r.subscriber, r.scope, r.status, r.event_id))
                    .collect();
                status.sort();
                let stored = db
                    .reader
                    .all(&EventFilter::default())
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.subscriber.starts_with(&prefix))
                    .count();
                (status, stored)
            });
            prop_assert_eq!(status, oracle(&events));
            prop_assert_eq!(stored, events.len());
            Ok(())
        })
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
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

// ---------------------------------------------------------------------------------------------
// One event per message across paths, against an oracle

/// One message, and the paths that bring it.
#[derive(Debug, Clone)]
struct Message {
    /// The message's event id on the CloudEvent paths; its SID (if it has one) on the Messaging
    /// webhook.
    cloud_id: String,
    sid: Option<String>,
    opt_out_type: OptOutType,
    subscriber: String,
    service: Option<&'static str>,
    /// Twilio's event time, seconds from `ts(0)`.
    at: i64,
    /// (path, detection, receive delay in ms for the Messaging webhook).
    arrivals: Vec<(IngestPath, Detection, i64)>,
}

impl Message {
    /// What one path brings of the message.
    fn copy(&self, path: IngestPath, detection: Detection, delay_ms: i64) -> OptEvent {
        let phrase = detection == Detection::Phrase;
        let received = path == IngestPath::MessagingWebhook;
        let mut e = ev(
            &if received {
                self.sid.clone().unwrap_or_default()
            } else {
                self.cloud_id.clone()
            },
            if phrase {
                OptOutType::Stop
            } else {
                self.opt_out_type
            },
            &self.subscriber,
            self.service,
            self.at,
        );
        e.message_sid = self.sid.clone();
        e.detection = detection;
        e.inferred = detection.is_inferred();
        e.rule = phrase.then(|| "builtin-2026.1:stop-texting".to_owned());
        if received {
            e.occurred_at = ts(self.at) + chrono::TimeDelta::milliseconds(delay_ms);
            e.time_source = TimeSource::Received;
            e.schema_version = None;
        }
        e
    }
}

/// The events and status rows expected, computed without the store from the rules as written
/// (docs/semantics.md): per message, Twilio's time if any path brought it (else the earliest
/// receive time), the best detection (twilio > keyword > phrase), the event id of the best path
/// (kinesis > events webhook > replay > messaging webhook), every path; then status as the
/// latest by (time, event id) of the messages whose merged detection may set it.
fn cross_path_oracle(messages: &[Message]) -> (Vec<String>, Vec<String>) {
    let rank = |d: Detection| match d {
        Detection::Twilio => 4,
        Detection::Reassigned => 3,
        Detection::Keyword => 2,
        Detection::Phrase => 1,
    };
    let path_rank = |p: IngestPath| match p {
        IngestPath::Kinesis => 4,
        IngestPath::EventsWebhook => 3,
        IngestPath::Replay => 2,
        IngestPath::MessagingWebhook => 1,
    };
    let mut events = Vec::new();
    let mut merged = Vec::new();
    for m in messages {
        let copies: Vec<(IngestPath, OptEvent)> = m
            .arrivals
            .iter()
            .map(|&(p, d, delay)| (p, m.copy(p, d, delay)))
            .collect();
        let twilio_time = copies
            .iter()
            .filter(|(_, e)| e.time_source == TimeSource::Twilio)
            .map(|(_, e)| e.occurred_at)
            .min();
        let (time, source) = match twilio_time {
            Some(t) => (t, "twilio"),
            None => (
                copies.iter().map(|(_, e)| e.occurred_at).min().unwrap(),
                "received",
            ),
        };
        let best = copies
            .iter()
            .max_by_key(|(_, e)| (rank(e.detection), std::cmp::Reverse(e.opt_out_type)))
            .unwrap();
        let own = copies
            .iter()
            .max_by(|(p, a), (q, b)| {
                (path_rank(*p), std::cmp::Reverse(&a.event_id))
                    .cmp(&(path_rank(*q), std::cmp::Reverse(&b.event_id)))
            })
            .unwrap();
        let mut paths: Vec<&str> = IngestPath::ALL
            .into_iter()
            .filter(|p| copies.iter().any(|(q, _)| q == p))
            .map(|p| p.as_str())
            .collect();
        paths.dedup();
        let identity = m.sid.clone().unwrap_or(m.cloud_id.clone());
        events.push(format!(
            "{}|{}|{}|{}|{}|{}|{}",
            own.1.event_id,
            identity,
            best.1.opt_out_type.as_str(),
            best.1.detection.as_str(),
            optout::store::format_ts(time),
            source,
            paths.join(",")
        ));
        let sets = best.1.detection != Detection::Phrase && best.1.opt_out_type != OptOutType::Help;
        merged.push((sets, time, own.1.event_id.clone(), best.1.opt_out_type, m));
    }
    merged.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    let mut state: BTreeMap<(String, String), (&str, String)> = BTreeMap::new();
    for (sets, _, id, t, m) in merged {
        if !sets {
            continue;
        }
        let status = if t == OptOutType::Stop {
            "opted_out"
        } else {
            "opted_in"
        };
        let scope = m.service.unwrap_or("+15559870002").to_owned();
        state.insert((m.subscriber.clone(), scope), (status, id));
    }
    let status = state
        .into_iter()
        .map(|((sub, scope), (status, id))| format!("{sub}|{scope}|{status}|{id}"))
        .collect();
    events.sort();
    (events, status)
}

/// Arrivals of the same messages from every path, in any order, duplicated and batched any
/// way, give the events and status of the oracle.
fn cross_path_order_independence(db: Db, rt: &tokio::runtime::Runtime) {
    let paths = [
        IngestPath::Kinesis,
        IngestPath::EventsWebhook,
        IngestPath::MessagingWebhook,
        IngestPath::Replay,
    ];
    let detections = [Detection::Twilio, Detection::Keyword, Detection::Phrase];
    let message = (
        (0u8..3, 0u8..3, 0i64..6, any::<bool>(), any::<bool>()),
        prop::collection::vec((0usize..4, 0usize..3, 0i64..4_000), 1..5),
    );
    let strategy = (
        prop::collection::vec(message, 1..12),
        any::<u64>(),
        prop::collection::vec(0usize..40, 0..6),
    );
    let mut runner = TestRunner::new(Config::with_cases(48));
    let cases = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(spec, seed, cuts)| {
            let case = cases.get() + 1;
            cases.set(case);
            let prefix = format!("+{case}p");
            let types = [OptOutType::Stop, OptOutType::Start, OptOutType::Help];
            let messages: Vec<Message> = spec
                .iter()
                .enumerate()
                .map(|(i, ((t, who, at, service, has_sid), arrivals))| {
                    let has_sid = *has_sid;
                    Message {
                        cloud_id: format!("EZ{case:04}{i:03}"),
                        sid: has_sid
                            .then(|| format!("SM{:032x}", ((case as u128) << 16) | i as u128)),
                        opt_out_type: types[*t as usize],
                        subscriber: format!("{prefix}{who}"),
                        service: service.then_some("MG1"),
                        at: *at,
                        arrivals: arrivals
                            .iter()
                            // Without a SID the Messaging webhook cannot bring it.
                            .filter(|(p, _, _)| {
                                has_sid || paths[*p] != IngestPath::MessagingWebhook
                            })
                            .map(|&(p, d, delay)| (paths[p], detections[d], delay))
                            .collect(),
                    }
                })
                .filter(|m| !m.arrivals.is_empty())
                .collect();
            // Every arrival once, every third twice, in a shuffled order.
            let mut all: Vec<(IngestPath, OptEvent)> = messages
                .iter()
                .flat_map(|m| {
                    m.arrivals
                        .iter()
                        .map(|&(p, d, delay)| (p, m.copy(p, d, delay)))
                })
                .collect();
            let again: Vec<_> = all.iter().step_by(3).cloned().collect();
            all.extend(again);
            fastrand::Rng::with_seed(seed).shuffle(&mut all);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (events, status) = rt.block_on(async {
                // Batches of one path each: cut at every change of path and at the drawn cuts.
                let mut start = 0;
                while start < all.len() {
                    let path = all[start].0;
                    let mut end = start + 1;
                    while end < all.len() && all[end].0 == path && !cuts.contains(&end) {
                        end += 1;
                    }
                    let b = Batch {
                        path,
                        stream: path.as_str().into(),
                        shard_id: "a".into(),
                        opt_events: positioned(
                            all[start..end].iter().map(|(_, e)| e.clone()).collect(),
                        ),
                        ..Batch::default()
                    };
                    db.store.commit(&b).await.unwrap();
                    start = end;
                }
                let mut events: Vec<String> = db
                    .reader
                    .all(&EventFilter::default())
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.subscriber.starts_with(&prefix))
                    .map(|e| {
                        format!(
                            "{}|{}|{}|{}|{}|{}|{}",
                            e.event_id,
                            e.identity,
                            e.opt_out_type,
                            e.detection,
                            e.occurred_at,
                            e.time_source,
                            e.paths
                        )
                    })
                    .collect();
                events.sort();
                let mut status: Vec<String> = db
                    .reader
                    .all(&StatusFilter::default())
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.subscriber.starts_with(&prefix))
                    .map(|r| format!("{}|{}|{}|{}", r.subscriber, r.scope, r.status, r.event_id))
                    .collect();
                status.sort();
                (events, status)
            });
            let (want_events, want_status) = cross_path_oracle(&messages);
            prop_assert_eq!(events, want_events);
            prop_assert_eq!(status, want_status);
            Ok(())
        })
        .unwrap();
}

#[test]
fn arrivals_from_every_path_in_any_order_match_the_oracle_on_sqlite() {
    let rt = runtime();
    let db = rt.block_on(db::sqlite());
    cross_path_order_independence(db, &rt);
}

#[test]
fn arrivals_from_every_path_in_any_order_match_the_oracle_on_postgres() {
    let rt = runtime();
    let db = rt.block_on(db::postgres());
    cross_path_order_independence(db, &rt);
}
