//! The change feed and the outbox under the writer's `--revocation-scope` (docs/semantics.md,
//! "Changes"), on both backends:
//! - under `account` an opt-out in one scope writes a change, and outbox items naming each
//!   scope's own sender, for every scope of its account where the subscriber was seen; under
//!   `all` for every account; under `scope` only its own (the other suites);
//! - a START re-opens only its own scope, exactly when the sender's check says so;
//! - as a property: after shuffled events, the last change of every key gives the answer
//!   (status, reason) a reader in the same mode gives for it;
//! - `Store::resync` after a switch of mode writes exactly the changes that make the feed
//!   agree with the reader again, a second run writes nothing, and a new target gets every
//!   current answer once;
//! - on PostgreSQL, two writers adding scopes of the same numbers at once still leave every
//!   key's last change equal to the reader's answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use optout::event::{Detection, OptEvent, OptOutType};
use optout::store::query::{DeliveryFilter, LookupFilter, PageRequest};
use optout::store::{Change, OutboxTarget, Reader, RevocationScope, Store};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::common::db::{self, Db, runtime};
use crate::common::events::{batch, scoped_event};
use crate::common::seed;

both_backends! {
    an_opt_out_changes_every_seen_scope_of_its_account;
    all_reaches_every_account;
    resync_after_a_switch_writes_what_the_mode_implies;
}

const SCOPE: RevocationScope = RevocationScope::Scope;
const ACCOUNT: RevocationScope = RevocationScope::Account;
const ALL: RevocationScope = RevocationScope::All;

/// A Twilio-flagged event of `account`, in Messaging Service `scope`.
fn ev(id: &str, t: OptOutType, account: &str, scope: &str, from: &str, at: i64) -> OptEvent {
    let mut e = scoped_event(id, t, from, Some(scope), at);
    e.account_sid = account.into();
    e
}

fn every_change(name: &str) -> OutboxTarget {
    OutboxTarget {
        name: name.into(),
        wants: Arc::new(|_| true),
    }
}

async fn commit(s: &dyn Store, events: Vec<OptEvent>) -> (u64, u64) {
    let sum = s.commit(&batch("a", events)).await.unwrap();
    (sum.changes, sum.outbox_items)
}

/// The whole feed, in order.
async fn feed(reader: &Reader) -> Vec<Change> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let req = PageRequest::parse(Some(1000), cursor.as_deref()).unwrap();
        let page = reader.changes(&req).await.unwrap();
        if page.items.is_empty() {
            return all;
        }
        all.extend(page.items);
        cursor = page.next_cursor;
    }
}

/// `account|scope|status|reason|event|origin scope` of a change, as [`answer`] writes it.
fn brief(c: &Change) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        c.account_sid,
        c.scope,
        c.status,
        c.reason,
        c.event_id,
        c.origin_scope.as_deref().unwrap_or("")
    )
}

/// The feed's changes after the first `skip`, briefly.
async fn new_changes(reader: &Reader, skip: usize) -> Vec<String> {
    feed(reader).await.iter().skip(skip).map(brief).collect()
}

/// The last change per key (account, scope, subscriber).
fn heads(changes: &[Change]) -> BTreeMap<(String, String, String), String> {
    changes
        .iter()
        .map(|c| {
            let key = (c.account_sid.clone(), c.scope.clone(), c.subscriber.clone());
            (key, brief(c))
        })
        .collect()
}

/// A reader of `db` answering under `mode`.
async fn reader(db: &Db, mode: RevocationScope) -> Reader {
    Reader::open(&db.url, 1)
        .await
        .unwrap()
        .with_revocation_scope(mode)
}

/// What the sender's check (`r`, in its mode) answers for every scope `who` has a signal in,
/// keyed and written as [`heads`].
async fn checks(r: &Reader, who: &str) -> BTreeMap<(String, String, String), String> {
    let all = r
        .lookup(&LookupFilter {
            subscriber: who.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    all.items
        .into_iter()
        .map(|i| {
            let key = (i.account_sid.clone(), i.scope.clone(), i.subscriber.clone());
            let line = format!(
                "{}|{}|{}|{}|{}|{}",
                i.account_sid,
                i.scope,
                i.status,
                i.reason,
                i.event_id,
                i.origin_scope.unwrap_or_default()
            );
            (key, line)
        })
        .collect()
}

/// The feed's last change of each key of `who`.
async fn feed_heads(r: &Reader, who: &str) -> BTreeMap<(String, String, String), String> {
    let mut h = heads(&feed(r).await);
    h.retain(|k, _| k.2 == who);
    h
}

async fn an_opt_out_changes_every_seen_scope_of_its_account(db: Db) {
    let s = &*db.store;
    s.set_outbox_targets(vec![every_change("notify:0")]);
    s.set_revocation_scope(ACCOUNT);
    // +1 is seen in MG2 of AC1 and MG3 of AC2, and in no other scope.
    commit(
        s,
        vec![
            ev("F1", OptOutType::Start, "AC1", "MG2", "+1", 10),
            ev("F2", OptOutType::Start, "AC2", "MG3", "+1", 10),
        ],
    )
    .await;
    // A STOP in MG1 of AC1: MG1 and MG2 change, each with its own sender; AC2 does not.
    assert_eq!(
        commit(s, vec![ev("F3", OptOutType::Stop, "AC1", "MG1", "+1", 20)]).await,
        (2, 2)
    );
    assert_eq!(
        new_changes(&db.reader, 2).await,
        [
            "AC1|MG1|opted_out|twilio_stop|F3|",
            "AC1|MG2|opted_out|account_opt_out|F3|MG1",
        ]
    );
    let last = feed(&db.reader).await.pop().unwrap();
    assert_eq!(
        (last.messaging_service_sid.as_deref(), last.send_allowed),
        (Some("MG2"), false)
    );
    assert_eq!(last.origin_account_sid.as_deref(), Some("AC1"));
    // One item per change: the webhook tells each scope.
    let items = db.reader.all(&DeliveryFilter::default()).await.unwrap();
    let got: Vec<(String, String)> = items
        .iter()
        .map(|i| (i.scope.clone(), i.reason.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("MG2".into(), "opted_in".into()),
            ("MG3".into(), "opted_in".into()),
            ("MG1".into(), "twilio_stop".into()),
            ("MG2".into(), "account_opt_out".into()),
        ]
    );
    // The same STOP again, or an older START in MG2: the answers stand.
    assert_eq!(
        commit(s, vec![ev("F3", OptOutType::Stop, "AC1", "MG1", "+1", 20)]).await,
        (0, 0)
    );
    assert_eq!(
        commit(s, vec![ev("F4", OptOutType::Start, "AC1", "MG2", "+1", 15)]).await,
        (0, 0)
    );
    // A later START in MG1 re-opens MG1 only; MG2 stays out (its STOP is from MG1, earlier
    // than nothing of its own): the sender's check says the same.
    assert_eq!(
        commit(s, vec![ev("F5", OptOutType::Start, "AC1", "MG1", "+1", 30)]).await,
        (1, 1)
    );
    assert_eq!(
        new_changes(&db.reader, 4).await,
        ["AC1|MG1|opted_in|opted_in|F5|"]
    );
    // A later START in MG2 re-opens MG2: the opt-out that reached it is older.
    commit(s, vec![ev("F6", OptOutType::Start, "AC1", "MG2", "+1", 40)]).await;
    assert_eq!(
        new_changes(&db.reader, 5).await,
        ["AC1|MG2|opted_in|opted_in|F6|"]
    );
    assert_eq!(
        feed_heads(&db.reader, "+1").await,
        checks(&reader(&db, ACCOUNT).await, "+1").await
    );
}

async fn all_reaches_every_account(db: Db) {
    let s = &*db.store;
    s.set_revocation_scope(ALL);
    commit(
        s,
        vec![
            ev("G1", OptOutType::Start, "AC1", "MG2", "+2", 10),
            ev("G2", OptOutType::Start, "AC2", "MG3", "+2", 10),
            ev("G3", OptOutType::Start, "AC2", "MG3", "+9", 10),
        ],
    )
    .await;
    assert_eq!(
        commit(s, vec![ev("G4", OptOutType::Stop, "AC1", "MG1", "+2", 20)]).await,
        (3, 0)
    );
    assert_eq!(
        new_changes(&db.reader, 3).await,
        [
            "AC1|MG1|opted_out|twilio_stop|G4|",
            "AC1|MG2|opted_out|all_accounts_opt_out|G4|MG1",
            "AC2|MG3|opted_out|all_accounts_opt_out|G4|MG1",
        ]
    );
    assert_eq!(
        feed_heads(&db.reader, "+2").await,
        checks(&reader(&db, ALL).await, "+2").await
    );
    // An unhonoured phrase revocation blocks its own scope only.
    let mut p = ev("G5", OptOutType::Stop, "AC2", "MG3", "+9", 30);
    p.detection = Detection::Phrase;
    p.rule = Some("builtin-2026.1:stop-texting".into());
    commit(s, vec![ev("G6", OptOutType::Start, "AC1", "MG1", "+9", 5)]).await;
    let before = feed(&db.reader).await.len();
    assert_eq!(commit(s, vec![p]).await.0, 1);
    assert_eq!(
        new_changes(&db.reader, before).await,
        ["AC2|MG3|opted_out|phrase_revocation|G5|"]
    );
}

async fn resync_after_a_switch_writes_what_the_mode_implies(db: Db) {
    let s = &*db.store;
    s.set_outbox_targets(vec![every_change("notify:0")]);
    commit(
        s,
        vec![
            ev("H1", OptOutType::Start, "AC1", "MG2", "+3", 10),
            ev("H2", OptOutType::Start, "AC1", "MG3", "+3", 10),
            ev("H3", OptOutType::Stop, "AC1", "MG1", "+3", 20),
            ev("H4", OptOutType::Start, "AC2", "MG1", "+3", 10),
            ev("H5", OptOutType::Stop, "AC1", "MG1", "+4", 10),
        ],
    )
    .await;
    let written = feed(&db.reader).await.len();
    assert_eq!(written, 5);
    // Under `scope` the feed already agrees: nothing to write.
    let none = s.resync(None).await.unwrap();
    assert_eq!((none.keys, none.changes, none.outbox_items), (5, 0, 0));
    s.set_revocation_scope(ACCOUNT);
    let sum = s.resync(None).await.unwrap();
    assert_eq!((sum.keys, sum.changes, sum.outbox_items), (5, 2, 2));
    assert_eq!(
        new_changes(&db.reader, written).await,
        [
            "AC1|MG2|opted_out|account_opt_out|H3|MG1",
            "AC1|MG3|opted_out|account_opt_out|H3|MG1",
        ]
    );
    let account = reader(&db, ACCOUNT).await;
    for who in ["+3", "+4"] {
        assert_eq!(
            feed_heads(&db.reader, who).await,
            checks(&account, who).await
        );
    }
    let again = s.resync(None).await.unwrap();
    assert_eq!((again.changes, again.outbox_items), (0, 0));
    // A new target: every current answer once; a second run adds nothing.
    let new = every_change("notify:1");
    s.set_outbox_targets(vec![every_change("notify:0"), new.clone()]);
    assert_eq!(s.resync(Some(&new)).await.unwrap().target_items, 5);
    assert_eq!(s.resync(Some(&new)).await.unwrap().target_items, 0);
    let items = s
        .claim(
            "notify:1",
            "t",
            100,
            SystemTime::now() + Duration::from_secs(3600),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mut got: Vec<String> = items.iter().map(|i| brief(&i.change)).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "AC1|MG1|opted_out|twilio_stop|H3|",
            "AC1|MG1|opted_out|twilio_stop|H5|",
            "AC1|MG2|opted_out|account_opt_out|H3|MG1",
            "AC1|MG3|opted_out|account_opt_out|H3|MG1",
            "AC2|MG1|opted_in|opted_in|H4|",
        ]
    );
    // Back to `scope`: the two reopen.
    s.set_revocation_scope(SCOPE);
    assert_eq!(s.resync(None).await.unwrap().changes, 2);
}

/// Two writers (two stores, as two processes) at once on PostgreSQL, each adding a scope of
/// the same numbers: one an opt-out, the other an older opt-in. Whichever commits second must
/// answer the first one's key too; without the per-subscriber group lock each could miss the
/// other's uncommitted event and leave the opt-in standing in the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_group_agree_with_the_reader_on_postgres() {
    let db = db::postgres().await;
    let other = db::open_store(&db.url).await;
    for s in [&db.store, &other] {
        s.set_revocation_scope(ACCOUNT);
    }
    let numbers: Vec<String> = (0..40).map(|i| format!("+1777{i:04}")).collect();
    let mut tasks = Vec::new();
    for (i, who) in numbers.iter().enumerate() {
        let stop = ev(&format!("K{i}s"), OptOutType::Stop, "AC1", "MG1", who, 20);
        let start = ev(&format!("K{i}o"), OptOutType::Start, "AC1", "MG2", who, 10);
        for (store, e) in [(db.store.clone(), stop), (other.clone(), start)] {
            tasks.push(tokio::spawn(async move {
                store.commit(&batch("a", vec![e])).await.unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let account = reader(&db, ACCOUNT).await;
    for who in &numbers {
        let want = checks(&account, who).await;
        assert_eq!(want.len(), 2, "{who}: {want:?}");
        assert_eq!(feed_heads(&db.reader, who).await, want, "{who}");
    }
    other.close().await;
}

// ---------------------------------------------------------------------------------------------
// Against the reader

/// Runs the property in `mode` against one database, each case with numbers of its own: the
/// feed's last change of every key is what a reader in `mode` answers for it.
fn feed_matches_the_reader(db: Db, rt: &tokio::runtime::Runtime, mode: RevocationScope) {
    let strategy = (
        prop::collection::vec(
            (
                0u8..3,
                any::<bool>(),
                any::<bool>(),
                0u8..2,
                0u8..2,
                0u8..3,
                0i64..6,
            ),
            1..20,
        ),
        any::<u64>(),
    );
    let test = format!("feed_mode {mode:?} on {}", db.store.backend());
    let mut runner = TestRunner::new(seed::proptest_config(&test, 24, file!()));
    db.store.set_revocation_scope(mode);
    // One reader for the whole run (a pool per look would hold connections until dropped).
    let check = rt.block_on(reader(&db, mode));
    let cases = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(spec, seed)| {
            let case = cases.get() + 1;
            cases.set(case);
            let prefix = format!("+{case}f");
            let events: Vec<(OptEvent, bool)> = spec
                .iter()
                .enumerate()
                .map(
                    |(i, &(t, is_phrase, honoured, who, account, scope, when))| {
                        let id = format!("EF{case:04}{i:03}");
                        let who = format!("{prefix}{who}");
                        let e = super::revocation_scope::arbitrary_event(
                            &id, &who, t, is_phrase, account, scope, when,
                        );
                        (e, honoured)
                    },
                )
                .collect();
            // Shuffled, every third delivered twice (with the same honour: one process).
            let mut order: Vec<usize> = (0..events.len())
                .chain((0..events.len()).step_by(3))
                .collect();
            fastrand::Rng::with_seed(seed).shuffle(&mut order);
            let got = rt.block_on(async {
                for &i in &order {
                    let mut b = batch("a", vec![events[i].0.clone()]);
                    b.honor_revocations = events[i].1;
                    db.store.commit(&b).await.unwrap();
                }
                let mut got = Vec::new();
                for who in 0..2 {
                    let who = format!("{prefix}{who}");
                    got.push((
                        feed_heads(&db.reader, &who).await,
                        checks(&check, &who).await,
                    ));
                }
                got
            });
            // The answer (status, reason): a later event that changes no answer writes no
            // change, so the event and the origin may be older in the feed.
            let answer = |m: BTreeMap<_, String>| -> Vec<String> {
                m.into_values()
                    .map(|v| v.split('|').take(4).collect::<Vec<_>>().join("|"))
                    .collect()
            };
            for (feed, check) in got {
                prop_assert_eq!(answer(feed), answer(check), "under {:?}", mode);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_feed_matches_the_reader_in_every_mode_on_sqlite() {
    let rt = runtime();
    for mode in [SCOPE, ACCOUNT, ALL] {
        let db = rt.block_on(db::sqlite());
        feed_matches_the_reader(db, &rt, mode);
    }
}

#[test]
fn the_feed_matches_the_reader_in_every_mode_on_postgres() {
    let rt = runtime();
    for mode in [SCOPE, ACCOUNT, ALL] {
        let db = rt.block_on(db::postgres());
        feed_matches_the_reader(db, &rt, mode);
    }
}
