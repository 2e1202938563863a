//! `--revocation-scope account|all` on both backends (docs/semantics.md, rule 12): an honoured
//! opt-out in one scope reaches every scope of its account (or of every account), a START
//! re-opts only its own scope, an unhonoured phrase revocation reaches nowhere else, and every
//! status query (live, point in time, history, the sender's check) follows the mode of the
//! reader that answers, with no reprocessing of stored events.
//!
//! As a property: over shuffled events (types, detections, honoured or not, accounts, scopes,
//! duplicates), the live status and the status at an instant match a plain oracle in every
//! mode.

use std::collections::BTreeMap;
use std::sync::Arc;

use optout::event::{Detection, OptEvent, OptOutType};
use optout::store::query::{AsOfFilter, HistoryFilter, LookupFilter};
use optout::store::{Reader, RevocationScope, StatusFilter};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::common::db::{self, Db, runtime};
use crate::common::events::*;
use crate::common::seed;

both_backends! {
    an_opt_out_reaches_the_other_scopes_of_its_account;
    a_start_reopts_only_its_own_scope;
    an_unhonoured_phrase_reaches_no_other_scope;
    all_reaches_across_accounts;
    as_of_and_history_follow_the_mode;
    a_scope_never_written_to_is_answered;
}

const SCOPE: RevocationScope = RevocationScope::Scope;
const ACCOUNT: RevocationScope = RevocationScope::Account;
const ALL: RevocationScope = RevocationScope::All;

/// A reader of `db` answering under `mode`.
async fn reader(db: &Db, mode: RevocationScope) -> Reader {
    Reader::open(&db.url, 2)
        .await
        .unwrap()
        .with_revocation_scope(mode)
}

/// A Twilio-flagged event of `account`, in Messaging Service `scope`.
fn ev(id: &str, t: OptOutType, account: &str, scope: &str, from: &str, at: i64) -> OptEvent {
    let mut e = scoped_event(id, t, from, Some(scope), at);
    e.account_sid = account.into();
    e
}

/// A phrase-detected revocation ("stop texting me") Twilio did not block.
fn phrase(id: &str, account: &str, scope: &str, from: &str, at: i64) -> OptEvent {
    let mut e = ev(id, OptOutType::Stop, account, scope, from, at);
    e.detection = Detection::Phrase;
    e.rule = Some("builtin-2026.1:stop-texting".into());
    e.body = Some("please stop texting me".into());
    e
}

async fn commit(db: &Db, events: Vec<OptEvent>, honour: bool) {
    let mut b = batch("a", events);
    b.honor_revocations = honour;
    db.store.commit(&b).await.unwrap();
}

/// `(account, scope, status, event id, origin scope)` of every live row of `who`.
async fn status(r: &Reader, who: &str) -> Vec<(String, String, String, String, Option<String>)> {
    let filter = StatusFilter {
        subscriber: Some(who.into()),
        ..Default::default()
    };
    r.all(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.account_sid, s.scope, s.status, s.event_id, s.origin_scope))
        .collect()
}

fn row(
    account: &str,
    scope: &str,
    status: &str,
    id: &str,
    origin: Option<&str>,
) -> (String, String, String, String, Option<String>) {
    (
        account.into(),
        scope.into(),
        status.into(),
        id.into(),
        origin.map(Into::into),
    )
}

/// The sender's check for `who` in `scope` (any if `None`) of `accounts`.
async fn may_send(r: &Reader, who: &str, scope: Option<&str>, accounts: &[&str]) -> (bool, String) {
    let l = r
        .lookup(&LookupFilter {
            subscriber: who.into(),
            scope: scope.map(Into::into),
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
        })
        .await
        .unwrap();
    (l.send_allowed, l.reason)
}

async fn an_opt_out_reaches_the_other_scopes_of_its_account(db: Db) {
    commit(
        &db,
        vec![
            ev("E1", OptOutType::Start, "AC1", "MG2", "+1", 10),
            ev("E2", OptOutType::Stop, "AC1", "MG1", "+1", 20),
            ev("E3", OptOutType::Start, "AC2", "MG3", "+1", 5),
        ],
        false,
    )
    .await;
    // The mode is the reader's: the same rows, three answers, nothing rewritten.
    assert_eq!(
        status(&reader(&db, SCOPE).await, "+1").await,
        [
            row("AC1", "MG1", "opted_out", "E2", None),
            row("AC1", "MG2", "opted_in", "E1", None),
            row("AC2", "MG3", "opted_in", "E3", None),
        ]
    );
    let account = reader(&db, ACCOUNT).await;
    assert_eq!(
        status(&account, "+1").await,
        [
            row("AC1", "MG1", "opted_out", "E2", None),
            row("AC1", "MG2", "opted_out", "E2", Some("MG1")),
            row("AC2", "MG3", "opted_in", "E3", None),
        ]
    );
    let full = account
        .all(&StatusFilter {
            scope: Some("MG2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(full[0].origin_account_sid.as_deref(), Some("AC1"));
    assert_eq!(
        may_send(&account, "+1", Some("MG2"), &[]).await,
        (false, "account_opt_out".into())
    );
    assert_eq!(
        may_send(&account, "+1", Some("MG3"), &[]).await,
        (true, "opted_in".into())
    );
    let l = account
        .lookup(&LookupFilter {
            subscriber: "+1".into(),
            scope: Some("MG2".into()),
            accounts: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        (l.origin_account_sid.as_deref(), l.origin_scope.as_deref()),
        (Some("AC1"), Some("MG1"))
    );
    assert_eq!(l.items[0].reason, "account_opt_out");
    assert_eq!(
        may_send(&reader(&db, SCOPE).await, "+1", Some("MG2"), &[]).await,
        (true, "opted_in".into())
    );
}

async fn a_start_reopts_only_its_own_scope(db: Db) {
    commit(
        &db,
        vec![
            ev("S1", OptOutType::Stop, "AC1", "MG1", "+2", 10),
            ev("S2", OptOutType::Start, "AC1", "MG2", "+2", 20),
        ],
        false,
    )
    .await;
    let r = reader(&db, ACCOUNT).await;
    // The START is later than the STOP: MG2 sends again, MG1 does not.
    assert_eq!(
        status(&r, "+2").await,
        [
            row("AC1", "MG1", "opted_out", "S1", None),
            row("AC1", "MG2", "opted_in", "S2", None),
        ]
    );
    commit(
        &db,
        vec![
            ev("S3", OptOutType::Stop, "AC1", "MG1", "+2", 30),
            ev("S4", OptOutType::Start, "AC1", "MG1", "+2", 40),
        ],
        false,
    )
    .await;
    // The START in MG1 re-opts MG1 only: the STOP at 30 still holds MG2.
    assert_eq!(
        status(&r, "+2").await,
        [
            row("AC1", "MG1", "opted_in", "S4", None),
            row("AC1", "MG2", "opted_out", "S3", Some("MG1")),
        ]
    );
    assert_eq!(
        may_send(&r, "+2", None, &[]).await,
        (false, "account_opt_out".into())
    );
    assert_eq!(
        may_send(&r, "+2", Some("MG1"), &[]).await,
        (true, "opted_in".into())
    );
}

async fn an_unhonoured_phrase_reaches_no_other_scope(db: Db) {
    commit(
        &db,
        vec![
            ev("P0", OptOutType::Start, "AC1", "MG2", "+3", 5),
            ev("Q0", OptOutType::Start, "AC1", "MG2", "+4", 5),
        ],
        false,
    )
    .await;
    // Stored without --honor-revocations: recorded, not honoured.
    commit(&db, vec![phrase("P1", "AC1", "MG1", "+3", 10)], false).await;
    // Stored with it: honoured.
    commit(&db, vec![phrase("Q1", "AC1", "MG1", "+4", 10)], true).await;
    let r = reader(&db, ACCOUNT).await;
    assert_eq!(
        status(&r, "+3").await,
        [row("AC1", "MG2", "opted_in", "P0", None)]
    );
    // The conservative sender's check still blocks its own scope, and only that one.
    assert_eq!(
        may_send(&r, "+3", Some("MG1"), &[]).await,
        (false, "phrase_revocation".into())
    );
    assert_eq!(
        may_send(&r, "+3", Some("MG2"), &[]).await,
        (true, "opted_in".into())
    );
    assert_eq!(
        status(&r, "+4").await,
        [
            row("AC1", "MG1", "opted_out", "Q1", None),
            row("AC1", "MG2", "opted_out", "Q1", Some("MG1")),
        ]
    );
    assert_eq!(
        may_send(&r, "+4", Some("MG2"), &[]).await,
        (false, "account_opt_out".into())
    );
}

async fn all_reaches_across_accounts(db: Db) {
    commit(
        &db,
        vec![
            ev("A1", OptOutType::Start, "AC2", "MG3", "+5", 10),
            ev("A2", OptOutType::Stop, "AC1", "MG1", "+5", 20),
            ev("A3", OptOutType::Start, "AC3", "MG4", "+5", 30),
        ],
        false,
    )
    .await;
    let r = reader(&db, ALL).await;
    assert_eq!(
        status(&r, "+5").await,
        [
            row("AC1", "MG1", "opted_out", "A2", None),
            row("AC2", "MG3", "opted_out", "A2", Some("MG1")),
            // A later START re-opts its own scope, whatever the mode.
            row("AC3", "MG4", "opted_in", "A3", None),
        ]
    );
    assert_eq!(
        may_send(&r, "+5", Some("MG3"), &["AC2"]).await,
        (false, "all_accounts_opt_out".into())
    );
    assert_eq!(
        may_send(&reader(&db, ACCOUNT).await, "+5", Some("MG3"), &["AC2"]).await,
        (true, "opted_in".into())
    );
}

async fn as_of_and_history_follow_the_mode(db: Db) {
    commit(
        &db,
        vec![
            ev("T1", OptOutType::Start, "AC1", "MG2", "+6", 10),
            ev("T2", OptOutType::Stop, "AC1", "MG1", "+6", 20),
            ev("T3", OptOutType::Help, "AC1", "MG2", "+6", 30),
        ],
        false,
    )
    .await;
    let as_of = |secs| AsOfFilter {
        at: ts(secs),
        subscriber: Some("+6".into()),
        scope: Some("MG2".into()),
        accounts: vec![],
        honor_revocations: false,
    };
    let at = |r: Arc<Reader>, secs| async move {
        let rows = r.all(&as_of(secs)).await.unwrap();
        rows.into_iter()
            .map(|s| (s.status, s.event_id, s.origin_scope))
            .collect::<Vec<_>>()
    };
    let account = Arc::new(reader(&db, ACCOUNT).await);
    let scope = Arc::new(reader(&db, SCOPE).await);
    let out = (
        "opted_out".to_string(),
        "T2".to_string(),
        Some("MG1".into()),
    );
    let opted_in = ("opted_in".to_string(), "T1".to_string(), None);
    assert_eq!(at(account.clone(), 15).await, vec![opted_in.clone()]);
    assert_eq!(at(account.clone(), 25).await, vec![out]);
    assert_eq!(at(scope.clone(), 25).await, vec![opted_in]);
    // History: the HELP in MG2 after the STOP in MG1 leaves MG2 opted out, account-wide.
    let history = |r: Arc<Reader>| async move {
        let filter = HistoryFilter {
            subscriber: "+6".into(),
            scope: None,
            honor_revocations: false,
        };
        r.all(&filter)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.event_id, h.status_after))
            .collect::<Vec<_>>()
    };
    let h = |id: &str, st: &str| (id.to_string(), Some(st.to_string()));
    assert_eq!(
        history(account).await,
        [
            h("T1", "opted_in"),
            h("T2", "opted_out"),
            h("T3", "opted_out")
        ]
    );
    assert_eq!(
        history(scope).await,
        [
            h("T1", "opted_in"),
            h("T2", "opted_out"),
            h("T3", "opted_in")
        ]
    );
}

async fn a_scope_never_written_to_is_answered(db: Db) {
    commit(
        &db,
        vec![
            ev("U1", OptOutType::Stop, "AC1", "MG1", "+7", 10),
            // MG9 is known in AC1, from another number.
            ev("U2", OptOutType::Start, "AC1", "MG9", "+8", 10),
        ],
        false,
    )
    .await;
    let account = reader(&db, ACCOUNT).await;
    // Known in the account: answered for it.
    let l = account
        .lookup(&LookupFilter {
            subscriber: "+7".into(),
            scope: Some("MG9".into()),
            accounts: vec![],
        })
        .await
        .unwrap();
    assert!(!l.send_allowed);
    assert_eq!((l.items.len(), l.items[0].account_sid.as_str()), (1, "AC1"));
    // Named by the caller: answered for that account.
    assert_eq!(
        may_send(&account, "+7", Some("MG7"), &["AC1"]).await,
        (false, "account_opt_out".into())
    );
    // Another account: not reached under `account`, reached under `all`.
    assert_eq!(
        may_send(&account, "+7", Some("MG7"), &["AC2"]).await,
        (true, "no_opt_event_seen".into())
    );
    assert_eq!(
        may_send(&reader(&db, ALL).await, "+7", Some("MG7"), &[]).await,
        (false, "all_accounts_opt_out".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Against an oracle

/// One generated event: type, detection, honoured, account, scope, time.
#[derive(Debug, Clone)]
struct Spec {
    event: OptEvent,
    honoured: bool,
}

/// The expected status rows at `at` (all if `None`) under `mode`, computed without the store:
/// per key, the latest own honoured STOP/START, overruled by a later honoured STOP of the same
/// number in another scope of the group.
fn oracle(specs: &[Spec], mode: RevocationScope, at: Option<i64>) -> Vec<String> {
    type Key = (String, String, String);
    let key = |e: &OptEvent| {
        (
            e.subscriber.clone(),
            e.account_sid.clone(),
            e.messaging_service_sid.clone().unwrap_or(e.sender.clone()),
        )
    };
    let counts = |s: &&Spec| {
        matches!(s.event.opt_out_type, OptOutType::Stop | OptOutType::Start)
            && (s.event.detection != Detection::Phrase || s.honoured)
            && at.is_none_or(|t| s.event.occurred_at <= ts(t))
    };
    let order = |s: &Spec| (s.event.occurred_at, s.event.event_id.clone());
    let mut own: BTreeMap<Key, &Spec> = BTreeMap::new();
    for s in specs.iter().filter(counts) {
        let k = key(&s.event);
        if own.get(&k).is_none_or(|o| order(o) < order(s)) {
            own.insert(k, s);
        }
    }
    own.iter()
        .map(|(k, o)| {
            let reaching = specs
                .iter()
                .filter(counts)
                .filter(|g| g.event.opt_out_type == OptOutType::Stop)
                .filter(|g| {
                    let gk = key(&g.event);
                    gk.0 == k.0
                        && gk != *k
                        && match mode {
                            RevocationScope::Scope => false,
                            RevocationScope::Account => gk.1 == k.1,
                            RevocationScope::All => true,
                        }
                })
                .max_by_key(|g| order(g))
                .filter(|g| order(g) > order(o));
            let (status, id, origin) = match reaching {
                Some(g) => ("opted_out", &g.event.event_id, key(&g.event).2),
                None => (
                    match o.event.opt_out_type {
                        OptOutType::Stop => "opted_out",
                        _ => "opted_in",
                    },
                    &o.event.event_id,
                    String::new(),
                ),
            };
            format!("{}|{}|{}|{status}|{id}|{origin}", k.0, k.1, k.2)
        })
        .collect()
}

fn rows(rows: Vec<optout::store::StatusRow>, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = rows
        .into_iter()
        .filter(|r| r.subscriber.starts_with(prefix))
        .map(|r| {
            format!(
                "{}|{}|{}|{}|{}|{}",
                r.subscriber,
                r.account_sid,
                r.scope,
                r.status,
                r.event_id,
                r.origin_scope.unwrap_or_default()
            )
        })
        .collect();
    v.sort();
    v
}

/// One event of a drawn spec: type (STOP, START, HELP by `t`), a phrase revocation when
/// `is_phrase` and a STOP, account `AC{account}`, scope MG1, MG2 or the sender's number (by
/// `scope`), at minute `when`. Shared with the change feed's property (`feed_mode.rs`).
#[allow(clippy::too_many_arguments)]
pub(super) fn arbitrary_event(
    id: &str,
    subscriber: &str,
    t: u8,
    is_phrase: bool,
    account: u8,
    scope: u8,
    when: i64,
) -> OptEvent {
    let t = [OptOutType::Stop, OptOutType::Start, OptOutType::Help][t as usize];
    let service = [Some("MG1"), Some("MG2"), None][scope as usize];
    let mut e = scoped_event(id, t, subscriber, service, when);
    e.account_sid = format!("AC{account}");
    if is_phrase && t == OptOutType::Stop {
        e.detection = Detection::Phrase;
        e.rule = Some("builtin-2026.1:stop-texting".into());
    }
    e
}

/// Runs the property against one database, each case with numbers of its own.
fn modes_match_the_oracle(db: Db, rt: &tokio::runtime::Runtime) {
    let strategy = (
        prop::collection::vec(
            (
                0u8..3,
                any::<bool>(),
                any::<bool>(),
                0u8..3,
                0u8..2,
                0u8..3,
                0i64..6,
            ),
            1..25,
        ),
        any::<u64>(),
        0i64..7,
    );
    let test = format!("revocation_scope_modes on {}", db.store.backend());
    let mut runner = TestRunner::new(seed::proptest_config(&test, 32, file!()));
    let readers: Vec<(RevocationScope, Reader)> = rt.block_on(async {
        let mut v = Vec::new();
        for mode in [SCOPE, ACCOUNT, ALL] {
            v.push((mode, reader(&db, mode).await));
        }
        v
    });
    let cases = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(spec, seed, at)| {
            let case = cases.get() + 1;
            cases.set(case);
            let prefix = format!("+{case}y");
            let specs: Vec<Spec> = spec
                .iter()
                .enumerate()
                .map(
                    |(i, &(t, is_phrase, honoured, who, account, scope, when))| {
                        let id = format!("EY{case:04}{i:03}");
                        let who = format!("{prefix}{who}");
                        let event = arbitrary_event(&id, &who, t, is_phrase, account, scope, when);
                        Spec { event, honoured }
                    },
                )
                .collect();
            // Shuffled, every third delivered twice (with the same honour: one process).
            let mut order: Vec<usize> = (0..specs.len())
                .chain((0..specs.len()).step_by(3))
                .collect();
            fastrand::Rng::with_seed(seed).shuffle(&mut order);
            let got = rt.block_on(async {
                for &i in &order {
                    let mut b = batch("a", vec![specs[i].event.clone()]);
                    b.honor_revocations = specs[i].honoured;
                    db.store.commit(&b).await.unwrap();
                }
                let mut got = Vec::new();
                for (mode, r) in &readers {
                    let live = r.all(&StatusFilter::default()).await.unwrap();
                    let as_of = AsOfFilter {
                        at: ts(at),
                        subscriber: None,
                        scope: None,
                        accounts: vec![],
                        honor_revocations: false,
                    };
                    let then = r.all(&as_of).await.unwrap();
                    got.push((*mode, rows(live, &prefix), rows(then, &prefix)));
                }
                got
            });
            for (mode, live, then) in got {
                let mut want = oracle(&specs, mode, None);
                want.sort();
                prop_assert_eq!(live, want, "live status under {:?}", mode);
                let mut want = oracle(&specs, mode, Some(at));
                want.sort();
                prop_assert_eq!(then, want, "status at {} under {:?}", at, mode);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn every_mode_matches_the_oracle_on_sqlite() {
    let rt = runtime();
    let db = rt.block_on(db::sqlite());
    modes_match_the_oracle(db, &rt);
}

#[test]
fn every_mode_matches_the_oracle_on_postgres() {
    let rt = runtime();
    let db = rt.block_on(db::postgres());
    modes_match_the_oracle(db, &rt);
}
