//! The read side against both backends: keyset pages stay exact while the consumer writes,
//! point-in-time status equals the live table at the newest event (any arrival order), a
//! number's history, and the per-number lookup.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::TryStreamExt;
use optout::event::{Detection, OptEvent, OptOutType};
use optout::store::query::{AsOfFilter, HistoryFilter, LookupFilter, PageRequest};
use optout::store::{EventFilter, Reader, StatusFilter};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::common::events::*;

use crate::common::db as support_db;

use support_db::Db;

both_backends! {
    pages_are_exact_while_the_consumer_writes;
    as_of_follows_the_live_rules;
    history_shows_the_status_after_each_event;
    lookup_answers_for_one_number;
    lookup_is_conservative_and_never_cut_silently;
    as_of_at_the_newest_event_is_the_live_table;
}

fn ev(id: &str, t: OptOutType, account: &str, scope: &str, from: &str, at: i64) -> OptEvent {
    let mut e = opt_event(id, t, from, at);
    e.account_sid = account.into();
    e.messaging_service_sid = Some(scope.into());
    e
}

async fn reader(db: &Db) -> Arc<Reader> {
    Arc::new(Reader::open(&db.url, 2).await.unwrap())
}

/// 6,000 events are paged through 7 rows short of a thousand at a time while another task
/// commits 3,000 more, half of them earlier than the cursor: each original event comes back
/// exactly once, and no event twice.
async fn pages_are_exact_while_the_consumer_writes(db: Db) {
    let store = db.store.clone();
    for chunk in 0..6 {
        let events = (0..1_000)
            .map(|i| {
                let n = chunk * 1_000 + i;
                ev(
                    &format!("EV{n:06}"),
                    OptOutType::Stop,
                    "AC1",
                    "MG1",
                    &format!("+1555{n:07}"),
                    n,
                )
            })
            .collect();
        store.commit(&batch("a", events)).await.unwrap();
    }
    let reader = reader(&db).await;
    let writer = tokio::spawn(async move {
        for chunk in 0..30 {
            let events = (0..100)
                .map(|i| {
                    let n = chunk * 100 + i;
                    // Before and after the rows being paged, interleaved.
                    let at = if n % 2 == 0 { n * 2 } else { 10_000 + n };
                    ev(
                        &format!("EW{n:06}"),
                        OptOutType::Start,
                        "AC1",
                        "MG1",
                        "+15550000000",
                        at,
                    )
                })
                .collect();
            store.commit(&batch("b", events)).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let mut seen = HashSet::new();
    let mut req = PageRequest::parse(Some(993), None).unwrap();
    loop {
        let page = reader.page(&EventFilter::default(), &req).await.unwrap();
        assert!(page.items.len() <= 993);
        for e in page.items {
            assert!(seen.insert(e.event_id.clone()), "{} twice", e.event_id);
        }
        match page.next_cursor {
            Some(c) => req = PageRequest::parse(Some(993), Some(&c)).unwrap(),
            None => break,
        }
    }
    writer.await.unwrap();
    for n in 0..6_000 {
        assert!(seen.contains(&format!("EV{n:06}")), "EV{n:06} skipped");
    }
    // The export is the same pages chained, and a cursor from another list is refused.
    let all: Vec<_> = reader
        .clone()
        .export(EventFilter::default(), None, None)
        .try_concat()
        .await
        .unwrap();
    assert_eq!(all.len(), 9_000);
    let status_cursor = reader
        .page(
            &StatusFilter::default(),
            &PageRequest::parse(Some(1), None).unwrap(),
        )
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    let wrong = PageRequest::parse(Some(10), Some(&status_cursor)).unwrap();
    let err = reader
        .page(&EventFilter::default(), &wrong)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another list"), "{err}");
}

fn as_of(account: &str, at: i64) -> AsOfFilter {
    AsOfFilter {
        at: ts(at),
        subscriber: None,
        scope: None,
        accounts: vec![account.into()],
        honor_revocations: false,
    }
}

async fn all_status<L: optout::store::query::Listing>(reader: &Arc<Reader>, l: L) -> Vec<L::Row> {
    reader
        .clone()
        .export(l, None, None)
        .try_concat()
        .await
        .unwrap()
}

async fn as_of_follows_the_live_rules(db: Db) {
    let s = &*db.store;
    let mut phrase = ev("E4", OptOutType::Stop, "AC1", "MG1", "+1", 40);
    phrase.detection = Detection::Phrase;
    s.commit(&batch(
        "a",
        vec![
            ev("E1", OptOutType::Stop, "AC1", "MG1", "+1", 10),
            ev("E2", OptOutType::Start, "AC1", "MG1", "+1", 20),
            ev("E3", OptOutType::Help, "AC1", "MG1", "+1", 30),
            phrase,
            // A tie: the larger id wins.
            ev("E6", OptOutType::Start, "AC1", "MG1", "+2", 10),
            ev("E5", OptOutType::Stop, "AC1", "MG1", "+2", 10),
        ],
    ))
    .await
    .unwrap();
    let r = reader(&db).await;
    let at = |secs| {
        let r = r.clone();
        async move {
            all_status(&r, as_of("AC1", secs))
                .await
                .into_iter()
                .map(|row| (row.subscriber, row.status, row.event_id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(at(9).await, []);
    let row = |s: &str, st: &str, id: &str| (s.to_string(), st.to_string(), id.to_string());
    assert_eq!(
        at(10).await,
        [row("+1", "opted_out", "E1"), row("+2", "opted_in", "E6")]
    );
    assert_eq!(at(25).await[0], row("+1", "opted_in", "E2"));
    // HELP changes nothing; an unhonoured phrase revocation neither.
    assert_eq!(at(45).await[0], row("+1", "opted_in", "E2"));
    let mut honour = as_of("AC1", 45);
    honour.honor_revocations = true;
    assert_eq!(all_status(&r, honour).await[0].event_id, "E4");
}

async fn history_shows_the_status_after_each_event(db: Db) {
    let s = &*db.store;
    // Arrives out of order; the history is in time order.
    s.commit(&batch(
        "a",
        vec![
            ev("H3", OptOutType::Start, "AC1", "MG1", "+1", 30),
            ev("H1", OptOutType::Help, "AC1", "MG1", "+1", 10),
            ev("H2", OptOutType::Stop, "AC1", "MG1", "+1", 20),
            ev("H4", OptOutType::Stop, "AC1", "MG2", "+1", 25),
            ev("X1", OptOutType::Stop, "AC1", "MG1", "+2", 5),
        ],
    ))
    .await
    .unwrap();
    let r = reader(&db).await;
    let filter = HistoryFilter {
        subscriber: "+1".into(),
        scope: None,
        honor_revocations: false,
    };
    let rows: Vec<_> = all_status(&r, filter.clone())
        .await
        .into_iter()
        .map(|h| (h.event_id, h.scope, h.status_after))
        .collect();
    let row = |id: &str, sc: &str, st: Option<&str>| {
        (id.to_string(), sc.to_string(), st.map(str::to_string))
    };
    assert_eq!(
        rows,
        [
            row("H1", "MG1", None),
            row("H2", "MG1", Some("opted_out")),
            row("H4", "MG2", Some("opted_out")),
            row("H3", "MG1", Some("opted_in")),
        ]
    );
    let only_mg2 = HistoryFilter {
        scope: Some("MG2".into()),
        ..filter
    };
    assert_eq!(all_status(&r, only_mg2).await.len(), 1);
}

async fn lookup_answers_for_one_number(db: Db) {
    let s = &*db.store;
    s.commit(&batch(
        "a",
        vec![
            ev("L1", OptOutType::Stop, "AC1", "MG1", "+15551230001", 10),
            ev("L2", OptOutType::Start, "AC1", "MG2", "+15551230001", 10),
        ],
    ))
    .await
    .unwrap();
    let r = reader(&db).await;
    let look = |scope: Option<&str>, who: &str| LookupFilter {
        subscriber: who.into(),
        scope: scope.map(str::to_string),
        accounts: vec!["AC1".into()],
    };
    let out = r.lookup(&look(Some("MG1"), "+15551230001")).await.unwrap();
    assert_eq!(
        (out.status.as_str(), out.send_allowed),
        ("opted_out", false)
    );
    assert_eq!(out.items.len(), 1);
    let inn = r.lookup(&look(Some("MG2"), "+15551230001")).await.unwrap();
    assert_eq!((inn.status.as_str(), inn.send_allowed), ("opted_in", true));
    let any = r.lookup(&look(None, "+15551230001")).await.unwrap();
    assert_eq!((any.status.as_str(), any.items.len()), ("opted_out", 2));
    let never = r.lookup(&look(None, "+15559999999")).await.unwrap();
    assert_eq!(
        (never.status.as_str(), never.send_allowed),
        ("no_opt_event_seen", true)
    );
    assert!(never.items.is_empty());
}

/// The sender's check reads the latest signal per scope, whatever its detection: a phrase
/// revocation the consumer did not honour (status table untouched) still forbids the send,
/// named by reason, event and rule; a later START allows it again. A number in 1,001 scopes,
/// out in the last one only, is not allowed without a scope, and its scopes come in pages.
async fn lookup_is_conservative_and_never_cut_silently(db: Db) {
    let s = &*db.store;
    let who = "+15551230009";
    let mut phrase = ev("P1", OptOutType::Stop, "AC1", "MG1", who, 20);
    phrase.detection = Detection::Phrase;
    phrase.inferred = true;
    phrase.rule = Some("builtin-2026.1:stop-texting".into());
    s.commit(&batch(
        "a",
        vec![ev("P0", OptOutType::Start, "AC1", "MG1", who, 10), phrase],
    ))
    .await
    .unwrap();
    let r = reader(&db).await;
    let look = |scope: Option<&str>, who: &str| LookupFilter {
        subscriber: who.into(),
        scope: scope.map(str::to_string),
        accounts: Vec::new(),
    };
    let live = all_status(&r, StatusFilter::default()).await;
    assert_eq!(live[0].status, "opted_in", "the phrase was not honoured");
    let out = r.lookup(&look(Some("MG1"), who)).await.unwrap();
    assert_eq!(
        (out.status.as_str(), out.send_allowed, out.reason.as_str()),
        ("opted_out", false, "phrase_revocation")
    );
    assert_eq!(out.event_id.as_deref(), Some("P1"));
    assert_eq!(out.rule.as_deref(), Some("builtin-2026.1:stop-texting"));
    let item = &out.items[0];
    assert_eq!(
        (item.send_allowed, item.live_status.as_deref()),
        (false, Some("opted_in"))
    );
    // A later START (any detection) allows it again; a keyword STOP after that forbids it.
    s.commit(&batch(
        "a",
        vec![ev("P2", OptOutType::Start, "AC1", "MG1", who, 30)],
    ))
    .await
    .unwrap();
    let back = r.lookup(&look(Some("MG1"), who)).await.unwrap();
    assert_eq!(
        (back.send_allowed, back.reason.as_str()),
        (true, "opted_in")
    );
    let mut keyword = ev("P3", OptOutType::Stop, "AC1", "MG1", who, 40);
    keyword.detection = Detection::Keyword;
    keyword.inferred = true;
    s.commit(&batch("a", vec![keyword])).await.unwrap();
    let out = r.lookup(&look(None, who)).await.unwrap();
    assert_eq!(
        (out.send_allowed, out.reason.as_str()),
        (false, "keyword_stop")
    );
    // Twilio's reassigned-number opt-out (the number changed hands) forbids it in its scope,
    // after a START there, and says why.
    let elsewhere = "+15559870003";
    s.commit(&batch(
        "a",
        vec![ev("R0", OptOutType::Start, "AC1", elsewhere, who, 50)],
    ))
    .await
    .unwrap();
    let mut reassigned = ev("R1", OptOutType::Stop, "AC1", elsewhere, who, 60);
    reassigned.detection = Detection::Reassigned;
    reassigned.messaging_service_sid = None;
    reassigned.sender = elsewhere.into();
    reassigned.body = None;
    s.commit(&batch("a", vec![reassigned])).await.unwrap();
    let out = r.lookup(&look(Some(elsewhere), who)).await.unwrap();
    assert_eq!(
        (
            out.send_allowed,
            out.reason.as_str(),
            out.event_id.as_deref()
        ),
        (false, "reassigned_number", Some("R1"))
    );

    // 1,001 scopes: in everywhere but the last, by sort order.
    let many = "+15551230010";
    let events: Vec<OptEvent> = (0..1_001)
        .map(|i| {
            let t = if i == 1_000 {
                OptOutType::Stop
            } else {
                OptOutType::Start
            };
            ev(
                &format!("M{i:04}"),
                t,
                "AC1",
                &format!("MG{i:04}"),
                many,
                50,
            )
        })
        .collect();
    s.commit(&batch("m", events)).await.unwrap();
    let first = r.lookup(&look(None, many)).await.unwrap();
    assert_eq!(first.items.len(), 1_000);
    assert!(first.items.iter().all(|i| i.send_allowed));
    assert!(first.next_cursor.is_some(), "the cut is said");
    assert_eq!(
        (
            first.send_allowed,
            first.status.as_str(),
            first.event_id.as_deref()
        ),
        (false, "opted_out", Some("M1000")),
        "the answer covers every scope, not only the page"
    );
    let req = PageRequest::parse(Some(1_000), first.next_cursor.as_deref()).unwrap();
    let rest = r.lookup_page(&look(None, many), &req).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].scope, "MG1000");
    assert!(!rest.items[0].send_allowed);
    assert_eq!((rest.send_allowed, rest.next_cursor), (false, None));
}

/// Events for a handful of numbers and scopes, with colliding times (ties) and every type.
fn arb_events() -> impl Strategy<Value = Vec<(u8, u8, u8, i64)>> {
    prop::collection::vec((0u8..3, 0u8..2, 0u8..3, 0i64..6), 1..24)
}

/// For any set of events, in any arrival order and batching, `--as-of` at the newest event's
/// time gives exactly the live table. Each case writes under its own account.
async fn as_of_at_the_newest_event_is_the_live_table(db: Db) {
    let r = reader(&db).await;
    let test = format!("as_of_at_the_newest_event on {}", db.store.backend());
    let config = crate::common::seed::proptest_config(&test, 24, file!());
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (arb_events(), any::<u64>(), 1usize..5);
    let mut cases = Vec::new();
    for _ in 0..24 {
        cases.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for (case, (events, seed, batch_size)) in cases.into_iter().enumerate() {
        let account = format!("ACprop{case}");
        let mut all: Vec<OptEvent> = events
            .iter()
            .enumerate()
            .map(|(i, &(who, scope, kind, at))| {
                let t = [OptOutType::Stop, OptOutType::Start, OptOutType::Help][kind as usize];
                ev(
                    &format!("E{case}-{i:02}"),
                    t,
                    &account,
                    &format!("MG{scope}"),
                    &format!("+1{who}"),
                    at,
                )
            })
            .collect();
        let newest = all.iter().map(|e| e.occurred_at).max().unwrap();
        fastrand::Rng::with_seed(seed).shuffle(&mut all);
        for chunk in all.chunks(batch_size) {
            db.store.commit(&batch("p", chunk.to_vec())).await.unwrap();
        }
        let live = all_status(
            &r,
            StatusFilter {
                accounts: vec![account.clone()],
                ..StatusFilter::default()
            },
        )
        .await;
        let then = all_status(
            &r,
            AsOfFilter {
                at: newest,
                ..as_of(&account, 0)
            },
        )
        .await;
        assert_eq!(
            then, live,
            "case {case}: {events:?} seed {seed} batches of {batch_size}"
        );
    }
}
