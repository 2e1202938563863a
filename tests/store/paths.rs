//! One event per message across paths (docs/semantics.md, rule 11), as a property on both
//! backends: the same messages brought by Kinesis, the Event Streams webhook, the Messaging
//! webhook and replay, with differing detections and receive times, in any order, duplicated
//! and batched any way, give the events and status an oracle computes from the written
//! ranking rules, without the store's merge code.

use std::collections::BTreeMap;

use optout::event::{Detection, OptEvent, OptOutType, TimeSource};
use optout::store::{Batch, IngestPath};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::common::db::{self, Db, runtime};
use crate::common::events::*;
use crate::common::seed;

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
        let mut e = scoped_event(
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
    let message = (
        (0u8..3, 0u8..3, 0i64..6, any::<bool>(), any::<bool>()),
        prop::collection::vec((0usize..4, 0usize..3, 0i64..4_000), 1..5),
    );
    let strategy = (
        prop::collection::vec(message, 1..12),
        any::<u64>(),
        prop::collection::vec(0usize..40, 0..6),
    );
    let test = format!("cross_path_order_independence on {}", db.store.backend());
    let mut runner = TestRunner::new(seed::proptest_config(&test, 48, file!()));
    let cases = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(spec, seed, cuts)| {
            // Shrinking reruns cases: each run still gets a prefix of its own.
            let case = cases.get() + 1;
            cases.set(case);
            check_case(&db, rt, case, &spec, seed, cuts)
        })
        .unwrap();
}

/// One drawn message: (type, subscriber, time, has a service, has a SID), then its arrivals
/// (path, detection, receive delay in ms), as indexes into the lists below.
type Spec = ((u8, u8, i64, bool, bool), Vec<(usize, usize, i64)>);

const PATHS: [IngestPath; 4] = [
    IngestPath::Kinesis,
    IngestPath::EventsWebhook,
    IngestPath::MessagingWebhook,
    IngestPath::Replay,
];
const DETECTIONS: [Detection; 3] = [Detection::Twilio, Detection::Keyword, Detection::Phrase];

/// One case of the property: the messages of `spec`, every arrival once and every third twice,
/// shuffled by `seed` and cut into batches at every change of path and at `cuts`; the events
/// and status stored must be the oracle's. `case` makes the subscribers and ids its own.
fn check_case(
    db: &Db,
    rt: &tokio::runtime::Runtime,
    case: u32,
    spec: &[Spec],
    seed: u64,
    cuts: Vec<usize>,
) -> Result<(), TestCaseError> {
    let prefix = format!("+{case}p");
    let types = [OptOutType::Stop, OptOutType::Start, OptOutType::Help];
    let messages: Vec<Message> = spec
        .iter()
        .enumerate()
        .map(|(i, ((t, who, at, service, has_sid), arrivals))| {
            let has_sid = *has_sid;
            Message {
                cloud_id: format!("EZ{case:04}{i:03}"),
                sid: has_sid.then(|| format!("SM{:032x}", ((case as u128) << 16) | i as u128)),
                opt_out_type: types[*t as usize],
                subscriber: format!("{prefix}{who}"),
                service: service.then_some("MG1"),
                at: *at,
                arrivals: arrivals
                    .iter()
                    // Without a SID the Messaging webhook cannot bring it.
                    .filter(|(p, _, _)| has_sid || PATHS[*p] != IngestPath::MessagingWebhook)
                    .map(|&(p, d, delay)| (PATHS[p], DETECTIONS[d], delay))
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
                opt_events: positioned(all[start..end].iter().map(|(_, e)| e.clone()).collect()),
                ..Batch::default()
            };
            db.store.commit(&b).await.unwrap();
            start = end;
        }
        let mut events: Vec<String> = db::events_with_prefix(&db.reader, &prefix)
            .await
            .into_iter()
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
        let status = db::status_lines(&db.reader, &prefix).await;
        (events, status)
    });
    let (want_events, want_status) = cross_path_oracle(&messages);
    prop_assert_eq!(events, want_events);
    prop_assert_eq!(status, want_status);
    Ok(())
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

/// A case a five-run round under load found failing on PostgreSQL (shrunk by proptest, case
/// 240 of that run): message 6, a START, arrives only by the Messaging webhook, four times
/// with other detections and receive times; message 7, a STOP a second later by Twilio's time,
/// by the Event Streams webhook and as a phrase by the Messaging webhook.
fn recorded_case() -> (Vec<Spec>, u64, Vec<usize>) {
    let none = (0, 0, 0, false, false);
    let spec = vec![
        (none, vec![(0, 0, 0), (0, 0, 0)]),
        (none, vec![(0, 0, 0), (0, 0, 0)]),
        ((2, 0, 0, false, false), vec![(0, 0, 0), (0, 0, 0)]),
        (none, vec![(0, 0, 0)]),
        (none, vec![(0, 0, 0)]),
        (
            none,
            vec![(0, 0, 1), (0, 0, 1982), (0, 0, 2658), (1, 1, 1466)],
        ),
        (
            (1, 2, 2, false, true),
            vec![(2, 2, 3314), (2, 1, 620), (2, 0, 1251), (2, 1, 3)],
        ),
        ((0, 2, 3, false, true), vec![(1, 0, 859), (2, 2, 1213)]),
    ];
    (spec, 18411147970060574281, vec![23, 16, 32])
}

#[test]
fn the_recorded_cross_path_case_matches_the_oracle_on_sqlite() {
    let rt = runtime();
    let db = rt.block_on(db::sqlite());
    let (spec, seed, cuts) = recorded_case();
    check_case(&db, &rt, 240, &spec, seed, cuts).unwrap();
}

#[test]
fn the_recorded_cross_path_case_matches_the_oracle_on_postgres() {
    let rt = runtime();
    let db = rt.block_on(db::postgres());
    let (spec, seed, cuts) = recorded_case();
    check_case(&db, &rt, 240, &spec, seed, cuts).unwrap();
}
