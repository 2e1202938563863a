//! The change feed and the transactional outbox (docs/semantics.md, "Changes"), on both
//! backends:
//! - a change is written exactly once per change of a subscriber's answer: re-reads, copies
//!   and late older events that change no answer write nothing (examples, and a property
//!   against a plain oracle over shuffled, duplicated, batched events);
//! - the outbox's claim: per ordering key the oldest pending item only, failed items do not
//!   block, a claim not settled within `hold` is taken over, a settlement by a dispatcher that
//!   lost its claim is ignored;
//! - the feed read while writers commit returns every change exactly once, in order per key
//!   (on PostgreSQL with several writers at once), and no writer commits a change past one
//!   with a smaller id still open;
//! - a long-poll answers once a change commits and holds no connection while it waits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use optout::event::{Detection, OptEvent, OptOutType};
use optout::store::query::{DeliveryFilter, PageRequest};
use optout::store::{Batch, Change, OutboxTarget, Reader, Settle, Settlement, Store};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::common::db::{self, Db, runtime};
use crate::common::effects::{self, Effects};
use crate::common::events::{batch, opt_event as ev, positioned, scoped_event};
use crate::common::seed;

both_backends! {
    a_change_is_written_once;
    phrase_revocations_change_send_allowed;
    targets_get_one_item_per_change_they_want;
    claim_takes_the_oldest_pending_item_per_key;
    a_dead_dispatchers_claim_is_taken_over;
    retries_wait_until_due;
    feed_read_while_writers_commit_sees_each_change_once;
    long_poll_answers_a_commit_and_holds_no_connection;
}

/// Every change in the feed after `cursor`, read page by page (pages of `limit`).
async fn feed_from(reader: &Reader, mut cursor: Option<String>, limit: u32) -> Vec<Change> {
    let mut all = Vec::new();
    loop {
        let req = PageRequest::parse(Some(limit), cursor.as_deref()).unwrap();
        let page = reader.changes(&req).await.unwrap();
        if page.items.is_empty() {
            return all;
        }
        all.extend(page.items);
        cursor = page.next_cursor;
    }
}

async fn feed(reader: &Reader) -> Vec<Change> {
    feed_from(reader, None, 1000).await
}

/// (subscriber, status, reason, event id) of each change.
fn brief(changes: &[Change]) -> Vec<(String, String, String, String)> {
    changes
        .iter()
        .map(|c| {
            (
                c.subscriber.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.event_id.clone(),
            )
        })
        .collect()
}

fn row(sub: &str, status: &str, reason: &str, id: &str) -> (String, String, String, String) {
    (sub.into(), status.into(), reason.into(), id.into())
}

fn phrase(id: &str, from: &str, at: i64) -> OptEvent {
    let mut e = ev(id, OptOutType::Stop, from, at);
    e.detection = Detection::Phrase;
    e.rule = Some("builtin:stop-texting".into());
    e.body = Some("stop texting me".into());
    e
}

fn all_target(name: &str) -> OutboxTarget {
    OutboxTarget {
        name: name.into(),
        wants: Arc::new(|_| true),
    }
}

async fn a_change_is_written_once(db: Db) {
    effects::install(&db.url).await;
    let s = &*db.store;
    let stop = ev("EZ1", OptOutType::Stop, "+1", 10);
    let first = s.commit(&batch("a", vec![stop.clone()])).await.unwrap();
    assert_eq!(first.changes, 1);
    // The same batch read again, a copy from another shard, a HELP, a later STOP (same
    // answer) and a late older START (not the latest): no answer changes.
    for b in [
        batch("a", vec![stop.clone()]),
        batch("b", vec![stop.clone()]),
        batch("a", vec![ev("EZ2", OptOutType::Help, "+1", 11)]),
        batch("a", vec![ev("EZ3", OptOutType::Stop, "+1", 12)]),
        batch("a", vec![ev("EZ4", OptOutType::Start, "+1", 5)]),
    ] {
        assert_eq!(s.commit(&b).await.unwrap().changes, 0);
    }
    // A START after them: one change; another scope: its own change.
    let later = s
        .commit(&batch("a", vec![ev("EZ5", OptOutType::Start, "+1", 20)]))
        .await
        .unwrap();
    assert_eq!(later.changes, 1);
    let mut other = scoped_event("EZ6", OptOutType::Stop, "+1", Some("MG2"), 30);
    other.message_sid = Some("SMEZ6".into());
    s.commit(&batch("a", vec![other])).await.unwrap();
    let changes = feed(&db.reader).await;
    assert_eq!(
        brief(&changes),
        [
            row("+1", "opted_out", "twilio_stop", "EZ1"),
            row("+1", "opted_in", "opted_in", "EZ5"),
            row("+1", "opted_out", "twilio_stop", "EZ6"),
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert!(changes[1].send_allowed);
    assert_eq!(changes[2].scope, "MG2");
    assert_eq!(changes[0].occurred_at, "2026-03-01T12:00:10.000000Z");
    assert_eq!(changes[0].message_sid.as_deref(), Some("SMEZ1"));
    let counted = Effects::read(&db.url).await;
    counted.assert_none_twice();
    assert_eq!(counted.distinct("change"), 3);
}

async fn phrase_revocations_change_send_allowed(db: Db) {
    let s = &*db.store;
    // Unhonoured: status stays, but the sender's check says no; a later Twilio STOP changes
    // the reason (Twilio blocks it now), a START allows again.
    s.commit(&batch("a", vec![phrase("EZ1", "+1", 10)]))
        .await
        .unwrap();
    s.commit(&batch("a", vec![ev("EZ2", OptOutType::Stop, "+1", 20)]))
        .await
        .unwrap();
    s.commit(&batch("a", vec![ev("EZ3", OptOutType::Start, "+1", 30)]))
        .await
        .unwrap();
    let changes = feed(&db.reader).await;
    assert_eq!(
        brief(&changes),
        [
            row("+1", "opted_out", "phrase_revocation", "EZ1"),
            row("+1", "opted_out", "twilio_stop", "EZ2"),
            row("+1", "opted_in", "opted_in", "EZ3"),
        ]
    );
    assert_eq!(changes[0].detection, "phrase");
    assert_eq!(changes[0].rule.as_deref(), Some("builtin:stop-texting"));
    assert!(!changes[0].send_allowed);
    // The answer agrees with the sender's check.
    let lookup = db
        .reader
        .lookup(&optout::store::query::LookupFilter {
            subscriber: "+1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(lookup.send_allowed, changes[2].send_allowed);
}

async fn targets_get_one_item_per_change_they_want(db: Db) {
    effects::install(&db.url).await;
    let s = &db.store;
    s.set_outbox_targets(vec![
        all_target("notify:0"),
        OutboxTarget {
            name: "twilio-consent".into(),
            wants: Arc::new(|c: &Change| c.reason == "phrase_revocation"),
        },
    ]);
    let events = vec![
        phrase("EZ1", "+1", 10),
        ev("EZ2", OptOutType::Stop, "+2", 10),
    ];
    let summary = s.commit(&batch("a", events.clone())).await.unwrap();
    assert_eq!((summary.changes, summary.outbox_items), (2, 3));
    // Read again: nothing more.
    assert_eq!(s.commit(&batch("a", events)).await.unwrap().outbox_items, 0);
    let items = db.reader.all(&DeliveryFilter::default()).await.unwrap();
    let mut got: Vec<(String, String, String)> = items
        .iter()
        .map(|i| (i.target.clone(), i.subscriber.clone(), i.state.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("notify:0".into(), "+1".into(), "pending".into()),
            ("notify:0".into(), "+2".into(), "pending".into()),
            ("twilio-consent".into(), "+1".into(), "pending".into()),
        ]
    );
    // Keys: 32 hex digits, one per item.
    assert!(
        items
            .iter()
            .all(|i| i.key.len() == 32 && i.key.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    let only = DeliveryFilter {
        target: Some("twilio-consent".into()),
        state: Some("pending".into()),
    };
    assert_eq!(db.reader.all(&only).await.unwrap().len(), 1);
    let bad = DeliveryFilter {
        state: Some("lost".into()),
        ..Default::default()
    };
    assert!(db.reader.all(&bad).await.is_err());
    // No targets: the feed still fills, no items.
    s.set_outbox_targets(Vec::new());
    let none = s
        .commit(&batch("a", vec![ev("EZ3", OptOutType::Stop, "+3", 10)]))
        .await
        .unwrap();
    assert_eq!((none.changes, none.outbox_items), (1, 0));
    let counted = Effects::read(&db.url).await;
    counted.assert_none_twice();
    assert_eq!(counted.distinct("outbox"), 3);
}

fn settle(id: i64, attempts: u32, settle: Settle) -> Settlement {
    Settlement {
        id,
        attempts,
        settle,
    }
}

/// Subscribers of claimed items, in claim order.
fn subs(items: &[optout::store::Item]) -> Vec<String> {
    items.iter().map(|i| i.change.subscriber.clone()).collect()
}

async fn claim_takes_the_oldest_pending_item_per_key(db: Db) {
    let s = &db.store;
    s.set_outbox_targets(vec![all_target("t")]);
    for (id, t, sub, at) in [
        ("EZ1", OptOutType::Stop, "+1", 10),
        ("EZ2", OptOutType::Start, "+1", 20),
        ("EZ3", OptOutType::Stop, "+2", 10),
        ("EZ4", OptOutType::Stop, "+1", 30),
    ] {
        s.commit(&batch("a", vec![ev(id, t, sub, at)]))
            .await
            .unwrap();
    }
    let now = SystemTime::now();
    let hold = Duration::from_secs(60);
    let first = s.claim("t", "w1", 10, now, hold).await.unwrap();
    assert_eq!(subs(&first), ["+1", "+2"]);
    assert_eq!(first[0].change.event_id, "EZ1");
    assert_eq!(first[0].ordering_key, "AC1/MG1/+1");
    // Claimed items are nobody else's; the next of +1 waits for the first.
    assert!(s.claim("t", "w2", 10, now, hold).await.unwrap().is_empty());
    assert!(
        s.claim("other", "w2", 10, now, hold)
            .await
            .unwrap()
            .is_empty()
    );
    s.settle("w1", &[settle(first[0].id, 1, Settle::Delivered)])
        .await
        .unwrap();
    let second = s.claim("t", "w2", 10, now, hold).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].change.event_id, "EZ2");
    // Given up: the later item of the key goes on, the failure stays visible.
    s.settle(
        "w2",
        &[settle(
            second[0].id,
            3,
            Settle::Failed {
                reason: "410 Gone".into(),
            },
        )],
    )
    .await
    .unwrap();
    let third = s.claim("t", "w2", 10, now, hold).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].change.event_id, "EZ4");
    let failed = db
        .reader
        .all(&DeliveryFilter {
            state: Some("failed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 3);
    assert_eq!(failed[0].last_error.as_deref(), Some("410 Gone"));
    assert!(failed[0].settled_at.is_some());
    let backlog = s.backlog(now).await.unwrap();
    assert_eq!(backlog.len(), 1);
    assert_eq!((backlog[0].pending, backlog[0].failed), (2, 1));
    assert!(backlog[0].oldest_pending_secs.is_some());
}

async fn a_dead_dispatchers_claim_is_taken_over(db: Db) {
    let s = &db.store;
    s.set_outbox_targets(vec![all_target("t")]);
    s.commit(&batch("a", vec![ev("EZ1", OptOutType::Stop, "+1", 10)]))
        .await
        .unwrap();
    let now = SystemTime::now();
    let hold = Duration::from_secs(30);
    let dead = s.claim("t", "dead", 10, now, hold).await.unwrap();
    assert_eq!(dead.len(), 1);
    // Within the hold, nobody takes it; after it, another dispatcher does.
    let soon = now + Duration::from_secs(29);
    assert!(
        s.claim("t", "live", 10, soon, hold)
            .await
            .unwrap()
            .is_empty()
    );
    let later = now + Duration::from_secs(31);
    let taken = s.claim("t", "live", 10, later, hold).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].key, dead[0].key, "a retry keeps the item's key");
    // The dead one wakes and reports: ignored; the new owner's report counts.
    let late = settle(
        dead[0].id,
        1,
        Settle::Failed {
            reason: "stale".into(),
        },
    );
    s.settle("dead", &[late]).await.unwrap();
    let items = db.reader.all(&DeliveryFilter::default()).await.unwrap();
    assert_eq!(items[0].state, "pending");
    assert_eq!(items[0].claimed_by.as_deref(), Some("live"));
    s.settle("live", &[settle(taken[0].id, 2, Settle::Delivered)])
        .await
        .unwrap();
    let items = db.reader.all(&DeliveryFilter::default()).await.unwrap();
    assert_eq!(
        (items[0].state.as_str(), items[0].attempts),
        ("delivered", 2)
    );
    assert!(
        s.claim("t", "live", 10, later, hold)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn retries_wait_until_due(db: Db) {
    let s = &db.store;
    s.set_outbox_targets(vec![all_target("t")]);
    s.commit(&batch("a", vec![ev("EZ1", OptOutType::Stop, "+1", 10)]))
        .await
        .unwrap();
    let now = SystemTime::now();
    let hold = Duration::from_secs(30);
    let item = s.claim("t", "w", 1, now, hold).await.unwrap().remove(0);
    let at = now + Duration::from_secs(120);
    let retry = Settle::RetryAt {
        at,
        reason: "503".into(),
    };
    s.settle("w", &[settle(item.id, 1, retry)]).await.unwrap();
    assert!(
        s.claim("t", "w", 1, now + Duration::from_secs(119), hold)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s.claim("t", "w", 1, at, hold).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    let listed = db.reader.all(&DeliveryFilter::default()).await.unwrap();
    assert_eq!(listed[0].last_error.as_deref(), Some("503"));
}

async fn feed_read_while_writers_commit_sees_each_change_once(db: Db) {
    effects::install(&db.url).await;
    let writers = if db.store.shared() { 3 } else { 1 };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store: Arc<dyn Store> = db::open_store(&db.url).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..60i64 {
                // Subscribers shared between writers, alternating STOP and START.
                let t = if (i / 3) % 2 == 0 {
                    OptOutType::Stop
                } else {
                    OptOutType::Start
                };
                let e = ev(
                    &format!("EZ{w}x{i:03}"),
                    t,
                    &format!("+{}", i % 3),
                    i * 10 + w,
                );
                store
                    .commit(&batch(&format!("w{w}"), vec![e]))
                    .await
                    .unwrap();
            }
            store.close().await;
        }));
    }
    let mut seen: Vec<Change> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut done = false;
    loop {
        let req = PageRequest::parse(Some(7), cursor.as_deref()).unwrap();
        let page = db.reader.changes(&req).await.unwrap();
        if page.items.is_empty() {
            if done {
                break;
            }
            done = tasks.iter().all(|t| t.is_finished());
            tokio::task::yield_now().await;
            continue;
        }
        seen.extend(page.items);
        cursor = page.next_cursor;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = feed(&db.reader).await;
    assert!(!all.is_empty());
    assert_eq!(
        seen.iter().map(|c| c.cursor).collect::<Vec<_>>(),
        all.iter().map(|c| c.cursor).collect::<Vec<_>>(),
        "the reader following the cursor saw every change once"
    );
    // Per key, consecutive changes differ, and the last is today's answer.
    let mut last: BTreeMap<String, &Change> = BTreeMap::new();
    for c in &all {
        if let Some(prev) = last.get(&c.subscriber) {
            assert_ne!((&prev.status, &prev.reason), (&c.status, &c.reason));
        }
        last.insert(c.subscriber.clone(), c);
    }
    for (sub, c) in last {
        let lookup = db
            .reader
            .lookup(&optout::store::query::LookupFilter {
                subscriber: sub,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            (lookup.status.as_str(), lookup.reason.as_str()),
            (c.status.as_str(), c.reason.as_str())
        );
    }
    Effects::read(&db.url).await.assert_none_twice();
}

async fn long_poll_answers_a_commit_and_holds_no_connection(db: Db) {
    let s = &db.store;
    s.commit(&batch("a", vec![ev("EZ1", OptOutType::Stop, "+1", 10)]))
        .await
        .unwrap();
    let first = db.reader.changes(&PageRequest::default()).await.unwrap();
    let cursor = first.next_cursor.clone().unwrap();
    // Caught up: an immediate answer is empty and keeps the cursor.
    let req = PageRequest::parse(None, Some(&cursor)).unwrap();
    let empty = db.reader.changes(&req).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.next_cursor.as_deref(), Some(cursor.as_str()));
    // Reads again every 5 s unless a local commit wakes it: between its reads, every sample
    // below falls in a wait.
    let reader = db.reader.clone();
    reader.set_feed_poll(Duration::from_secs(5));
    let poll = tokio::spawn(async move {
        reader
            .changes_wait(&req, Duration::from_secs(20))
            .await
            .unwrap()
    });
    // While it waits, the read pool lends no connection. Counted, not timed: a connection the
    // poll held would be in use at every sample until its next read (5 s on), while one the
    // pool is still taking back or opening on a loaded machine shows at a few samples only.
    // So the pool must be seen with none in use while the poll still waits.
    let mut samples = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!poll.is_finished());
        samples.push(db.reader.connections_in_use());
        if samples.last() == Some(&0) {
            break;
        }
        assert!(
            samples.len() < 40,
            "a connection stayed in use while the poll waited: {samples:?}"
        );
    }
    if samples.len() > 1 {
        eprintln!("connections in use until the pool was seen free: {samples:?}");
    }
    if db.store.shared() {
        let busy = busy_sessions(&db.url).await;
        assert!(busy.is_empty(), "a session works for the poll: {busy:?}");
    }
    s.commit(&batch("a", vec![ev("EZ2", OptOutType::Start, "+1", 20)]))
        .await
        .unwrap();
    // Well before its 20 s are up (a bound, not a measurement).
    let page = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long-poll answered the commit")
        .unwrap();
    assert_eq!(
        brief(&page.items),
        [row("+1", "opted_in", "opted_in", "EZ2")]
    );
    // A wait that ends with nothing to say.
    let req = PageRequest::parse(None, page.next_cursor.as_deref()).unwrap();
    let quiet = db
        .reader
        .changes_wait(&req, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(quiet.items.is_empty());
    // Shutdown ends a waiting long-poll at once, with nothing to say, and every later one.
    let reader = db.reader.clone();
    let waiting = tokio::spawn(async move {
        reader
            .changes_wait(&req, Duration::from_secs(20))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    db.reader.end_waits();
    let ended = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("end_waits ended the long-poll")
        .unwrap();
    assert!(ended.items.is_empty());
}

/// Client sessions on the test's PostgreSQL database doing anything but waiting for a client
/// (this one excluded), each as `state: query`. Only client backends: an autovacuum worker on
/// the freshly written tables shows as `active` too, and once did under load.
async fn busy_sessions(url: &str) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "SELECT state || ': ' || left(query, 120) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND backend_type = 'client backend' AND state <> 'idle'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect()
}

/// The advisory lock the writers of changes take turns on (`src/store/changes.rs`).
const FEED_LOCK: i64 = 0x6f70_746f_7574_2e63;

#[tokio::test]
async fn postgres_feed_never_passes_a_change_still_to_commit() {
    use sqlx::Connection;
    let db = db::postgres().await;
    // A writer mid-commit, as the store writes: the feed's lock, then a change (the smaller id).
    let mut a = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut ta = a.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FEED_LOCK)
        .execute(&mut *ta)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO changes (account_sid, scope, sender, subscriber, status, send_allowed, \
         reason, event_id, opt_out_type, detection, occurred_at, recorded_at) VALUES ('AC1', \
         'MG1', '+2', '+a', 'opted_out', false, 'twilio_stop', 'EZa', 'STOP', 'twilio', now(), \
         now())",
    )
    .execute(&mut *ta)
    .await
    .unwrap();
    // Another commit with a change cannot take a larger id and commit before it.
    let store = db.store.clone();
    let commit = tokio::spawn(async move {
        let e = ev("EZb", OptOutType::Stop, "+b", 10);
        store.commit(&batch("a", vec![e])).await.unwrap()
    });
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!commit.is_finished(), "committed past an open change");
        let page = db.reader.changes(&PageRequest::default()).await.unwrap();
        assert!(page.items.is_empty(), "handed out {:?}", brief(&page.items));
        assert_eq!(page.next_cursor, None);
    }
    ta.commit().await.unwrap();
    assert_eq!(commit.await.unwrap().changes, 1);
    let all = feed(&db.reader).await;
    assert_eq!(
        all.iter()
            .map(|c| c.subscriber.as_str())
            .collect::<Vec<_>>(),
        ["+a", "+b"]
    );
    assert!(all[0].cursor < all[1].cursor);
}

// ---------------------------------------------------------------------------------------------
// Exactly once against an oracle

/// The answer per (subscriber, scope) after `events`, computed without the store: the latest
/// STOP or START by (time, event id), whatever its detection (phrase revocations are not
/// honoured here, so they only ever take `send_allowed` away).
fn answers(events: &[OptEvent]) -> BTreeMap<(String, String), (String, String)> {
    let mut sorted: Vec<&OptEvent> = events
        .iter()
        .filter(|e| e.opt_out_type != OptOutType::Help)
        .collect();
    sorted.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
    let mut out = BTreeMap::new();
    for e in sorted {
        let reason = match (e.opt_out_type, e.detection) {
            (OptOutType::Start, _) => "opted_in",
            (_, Detection::Phrase) => "phrase_revocation",
            _ => "twilio_stop",
        };
        let scope = e.messaging_service_sid.clone().unwrap_or(e.sender.clone());
        out.insert(
            (e.subscriber.clone(), scope),
            (reason.to_string(), e.event_id.clone()),
        );
    }
    out
}

/// The changes the oracle expects, batch after batch: a key's change whenever its answer
/// (the reason; the status follows from it) differs from the one before.
fn oracle(batches: &[Vec<OptEvent>]) -> Vec<String> {
    let mut seen: Vec<OptEvent> = Vec::new();
    let mut before = BTreeMap::new();
    let mut out = Vec::new();
    for b in batches {
        seen.extend(b.iter().cloned());
        let now = answers(&seen);
        for (key, (reason, event)) in &now {
            if before.get(key).map(|(r, _): &(String, String)| r) != Some(reason) {
                out.push(format!("{}|{}|{reason}|{event}", key.0, key.1));
            }
        }
        before = now;
    }
    out.sort();
    out
}

fn changes_match_the_oracle(db: Db, rt: &tokio::runtime::Runtime) {
    let strategy = (
        prop::collection::vec((0u8..4, 0u8..3, 0i64..6, any::<bool>()), 1..25),
        any::<u64>(),
        prop::collection::vec(0usize..25, 0..5),
    );
    let test = format!("changes_match_the_oracle on {}", db.store.backend());
    let mut runner = TestRunner::new(seed::proptest_config(&test, 32, file!()));
    let cases = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(spec, seed, cuts)| {
            let case = cases.get() + 1;
            cases.set(case);
            let prefix = format!("+{case}x");
            let events: Vec<OptEvent> = spec
                .iter()
                .enumerate()
                .map(|(i, &(kind, who, at, service))| {
                    let id = format!("EZ{case:04}{i:03}");
                    let from = format!("{prefix}{who}");
                    let mut e = match kind {
                        0 => ev(&id, OptOutType::Stop, &from, at),
                        1 => ev(&id, OptOutType::Start, &from, at),
                        2 => ev(&id, OptOutType::Help, &from, at),
                        _ => phrase(&id, &from, at),
                    };
                    e.messaging_service_sid = service.then(|| "MG1".into());
                    e
                })
                .collect();
            // Every third event twice, shuffled, cut into batches, then all read again.
            let mut order: Vec<usize> = (0..events.len())
                .chain((0..events.len()).step_by(3))
                .collect();
            fastrand::Rng::with_seed(seed).shuffle(&mut order);
            let ordered: Vec<OptEvent> = order.iter().map(|&i| events[i].clone()).collect();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut batches = Vec::new();
            let mut start = 0;
            for &cut in cuts.iter().chain(std::iter::once(&ordered.len())) {
                let end = cut.clamp(start, ordered.len());
                batches.push(ordered[start..end].to_vec());
                start = end;
            }
            batches.push(ordered.clone());
            let got = rt.block_on(async {
                for b in &batches {
                    let b = Batch {
                        stream: "s".into(),
                        shard_id: "a".into(),
                        opt_events: positioned(b.clone()),
                        ..Batch::default()
                    };
                    db.store.commit(&b).await.unwrap();
                }
                let mut got: Vec<String> = feed(&db.reader)
                    .await
                    .into_iter()
                    .filter(|c| c.subscriber.starts_with(&prefix))
                    .map(|c| format!("{}|{}|{}|{}", c.subscriber, c.scope, c.reason, c.event_id))
                    .collect();
                got.sort();
                got
            });
            prop_assert_eq!(got, oracle(&batches));
            Ok(())
        })
        .unwrap();
}

#[test]
fn changes_match_the_oracle_on_sqlite() {
    let rt = runtime();
    let db = rt.block_on(db::sqlite());
    changes_match_the_oracle(db, &rt);
}

#[test]
fn changes_match_the_oracle_on_postgres() {
    let rt = runtime();
    let db = rt.block_on(db::postgres());
    changes_match_the_oracle(db, &rt);
}
