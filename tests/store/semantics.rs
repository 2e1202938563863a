//! The store's semantics (docs/semantics.md, rules 2 to 6), run against both backends from one
//! set of tests: SQLite in a temporary file, and PostgreSQL in a fresh database per test on
//! the machine's server (`OPTOUT_TEST_PG`, default postgres://postgres@127.0.0.1:5432/test).
//! Order independence as a property and atomicity under a failing write are in
//! tests/store/guarantees.rs.

use optout::event::{OptOutType, TestEvent};
use optout::store::query::{DeadLetterFilter, TestEventFilter};
use optout::store::{
    Batch, CheckpointUpdate, DeadLetter, EventFilter, Positioned, Reader, StatusFilter,
};

use crate::common::events::{batch, opt_event as ev, ts};

use crate::common::db::{self, Db};
use crate::common::effects::{self, Effects};

both_backends! {
    duplicates_change_nothing;
    latest_event_by_timestamp_wins;
    ties_go_to_the_larger_event_id;
    help_is_recorded_but_changes_no_status;
    scope_is_service_else_sender;
    checkpoint_commits_with_the_batch;
    dead_letters_keep_raw_bytes;
    test_events_are_kept_once;
    queries_filter;
    migrations_are_idempotent;
}

async fn status_of(reader: &Reader, subscriber: &str) -> Vec<(String, String, String)> {
    let filter = StatusFilter {
        subscriber: Some(subscriber.into()),
        ..StatusFilter::default()
    };
    reader
        .all(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.scope, r.status, r.event_id))
        .collect()
}

async fn duplicates_change_nothing(db: Db) {
    effects::install(&db.url).await;
    let s = &*db.store;
    let first = s
        .commit(&batch("a", vec![ev("EZ1", OptOutType::Stop, "+1", 10)]))
        .await
        .unwrap();
    assert_eq!((first.opt_events_new, first.status_changes), (1, 1));
    // The same id again, even with other content, from another shard: ignored.
    let mut again = ev("EZ1", OptOutType::Start, "+1", 99);
    again.body = Some("different".into());
    let second = s.commit(&batch("b", vec![again])).await.unwrap();
    assert_eq!(
        (
            second.opt_events_new,
            second.opt_events_duplicate,
            second.status_changes
        ),
        (0, 1, 0)
    );
    let events = db.reader.all(&EventFilter::default()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].opt_out_type, "STOP");
    assert_eq!(events[0].shard_id, "a");
    assert_eq!(
        status_of(&db.reader, "+1").await,
        [("MG1".into(), "opted_out".into(), "EZ1".into())]
    );
    // Counted by triggers, not by rows a key keeps unique: one insert, one status change.
    let counted = Effects::read(&db.url).await;
    counted.assert_none_twice();
    assert_eq!(counted.keys("event"), ["EZ1"]);
    assert_eq!(counted.keys("status"), ["AC1|MG1|+1|EZ1"]);
}

async fn latest_event_by_timestamp_wins(db: Db) {
    let s = &*db.store;
    // START at t=20 arrives first, the older STOP at t=10 arrives late: status stays opted_in.
    s.commit(&batch("a", vec![ev("EZ2", OptOutType::Start, "+1", 20)]))
        .await
        .unwrap();
    let late = s
        .commit(&batch("a", vec![ev("EZ1", OptOutType::Stop, "+1", 10)]))
        .await
        .unwrap();
    assert_eq!((late.opt_events_new, late.status_changes), (1, 0));
    assert_eq!(
        status_of(&db.reader, "+1").await,
        [("MG1".into(), "opted_in".into(), "EZ2".into())]
    );
    // A newer STOP wins.
    s.commit(&batch("a", vec![ev("EZ3", OptOutType::Stop, "+1", 30)]))
        .await
        .unwrap();
    let rows = db
        .reader
        .all(&StatusFilter {
            subscriber: Some("+1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows[0].status, "opted_out");
    assert_eq!(rows[0].changed_at, "2026-03-01T12:00:30.000000Z");
    assert_eq!(
        db.reader.all(&EventFilter::default()).await.unwrap().len(),
        3
    );
}

async fn ties_go_to_the_larger_event_id(db: Db) {
    let s = &*db.store;
    s.commit(&batch(
        "a",
        vec![
            ev("EZb", OptOutType::Stop, "+1", 10),
            ev("EZa", OptOutType::Start, "+1", 10),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        status_of(&db.reader, "+1").await,
        [("MG1".into(), "opted_out".into(), "EZb".into())]
    );
}

async fn help_is_recorded_but_changes_no_status(db: Db) {
    let s = &*db.store;
    let r = s
        .commit(&batch("a", vec![ev("EZh", OptOutType::Help, "+1", 10)]))
        .await
        .unwrap();
    assert_eq!((r.opt_events_new, r.status_changes), (1, 0));
    assert!(status_of(&db.reader, "+1").await.is_empty());
    s.commit(&batch(
        "a",
        vec![
            ev("EZs", OptOutType::Stop, "+1", 5),
            ev("EZh2", OptOutType::Help, "+1", 50),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        status_of(&db.reader, "+1").await,
        [("MG1".into(), "opted_out".into(), "EZs".into())]
    );
    let helps = db
        .reader
        .all(&EventFilter {
            opt_out_type: Some(OptOutType::Help),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(helps.len(), 2);
}

async fn scope_is_service_else_sender(db: Db) {
    let s = &*db.store;
    let mut no_service = ev("EZ2", OptOutType::Start, "+1", 20);
    no_service.messaging_service_sid = None;
    no_service.sender = "+15550000009".into();
    s.commit(&batch(
        "a",
        vec![ev("EZ1", OptOutType::Stop, "+1", 10), no_service],
    ))
    .await
    .unwrap();
    // Two scopes, two independent statuses.
    assert_eq!(
        status_of(&db.reader, "+1").await,
        [
            ("+15550000009".into(), "opted_in".into(), "EZ2".into()),
            ("MG1".into(), "opted_out".into(), "EZ1".into()),
        ]
    );
}

async fn checkpoint_commits_with_the_batch(db: Db) {
    let s = &*db.store;
    let mut b = batch("shard-1", vec![ev("EZ1", OptOutType::Stop, "+1", 10)]);
    b.checkpoint = Some(CheckpointUpdate {
        sequence_number: Some("00001".into()),
        finished: false,
        previous: None,
    });
    s.commit(&b).await.unwrap();
    // An empty end-of-shard batch keeps the sequence number and marks the shard finished.
    let end = Batch {
        stream: "s".into(),
        shard_id: "shard-1".into(),
        checkpoint: Some(CheckpointUpdate {
            sequence_number: None,
            finished: true,
            previous: Some("00001".into()),
        }),
        ..Batch::default()
    };
    s.commit(&end).await.unwrap();
    let cps = s.checkpoints("s").await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].sequence_number.as_deref(), Some("00001"));
    assert!(cps[0].finished);
    assert!(s.checkpoints("other-stream").await.unwrap().is_empty());

    // Atomicity: a batch refused at commit (lease not held) leaves neither its
    // events, nor status, nor checkpoint behind.
    let mut fenced = batch("shard-2", vec![ev("EZ9", OptOutType::Stop, "+9", 10)]);
    fenced.checkpoint = Some(CheckpointUpdate {
        sequence_number: Some("00009".into()),
        finished: false,
        previous: None,
    });
    fenced.lease = Some(optout::store::LeaseToken {
        owner: "nobody".into(),
        token: 42,
    });
    let result = s.commit(&fenced).await;
    // Both backends fence: a batch carrying a lease that is not held is refused.
    assert!(
        matches!(result, Err(optout::store::StoreError::LeaseLost { .. })),
        "{result:?}"
    );
    assert!(
        status_of(&db.reader, "+9").await.is_empty(),
        "fenced batch leaked"
    );
    let cps = s.checkpoints("s").await.unwrap();
    assert!(cps.iter().all(|c| c.shard_id != "shard-2"));
}

async fn dead_letters_keep_raw_bytes(db: Db) {
    effects::install(&db.url).await;
    let s = &*db.store;
    let raw = vec![0xff, 0x00, b'{', b'"', 0x80];
    let dl = DeadLetter {
        sequence_number: "0042".into(),
        partition_key: Some("pk".into()),
        reason: "not JSON: expected value".into(),
        data: raw.clone(),
    };
    let b = Batch {
        stream: "s".into(),
        shard_id: "shard-0".into(),
        dead_letters: vec![dl.clone()],
        ..Batch::default()
    };
    assert_eq!(s.commit(&b).await.unwrap().dead_letters, 1);
    // Re-reading the same record (after a crash) does not store it twice: counted by a
    // trigger, since the table's key would hide a second insert.
    assert_eq!(s.commit(&b).await.unwrap().dead_letters, 0);
    let counted = Effects::read(&db.url).await;
    assert_eq!(counted.keys("dead_letter"), ["s|shard-0|0042"]);
    counted.assert_none_twice();
    let rows = db.reader.all(&DeadLetterFilter).await.unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&rows[0].data_base64)
        .unwrap();
    assert_eq!(decoded, raw);
    assert_eq!(rows[0].shard_id, "shard-0");
    assert_eq!(rows[0].sequence_number, "0042");
    assert_eq!(rows[0].partition_key.as_deref(), Some("pk"));
    assert_eq!(rows[0].reason, "not JSON: expected value");
}

async fn test_events_are_kept_once(db: Db) {
    effects::install(&db.url).await;
    let s = &*db.store;
    let t = TestEvent {
        test_id: "95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11".into(),
        account_sid: "AC1".into(),
        occurred_at: Some(ts(0)),
    };
    let b = Batch {
        stream: "s".into(),
        shard_id: "shard-0".into(),
        test_events: vec![Positioned {
            sequence_number: "1".into(),
            value: t,
        }],
        ..Batch::default()
    };
    assert_eq!(s.commit(&b).await.unwrap().test_events, 1);
    assert_eq!(s.commit(&b).await.unwrap().test_events, 0);
    let counted = Effects::read(&db.url).await;
    assert_eq!(
        counted.keys("test_event"),
        ["95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11"]
    );
    counted.assert_none_twice();
    let rows = db.reader.all(&TestEventFilter).await.unwrap();
    assert_eq!(rows[0].test_id, "95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11");
    assert_eq!(
        rows[0].occurred_at.as_deref(),
        Some("2026-03-01T12:00:00.000000Z")
    );
}

async fn queries_filter(db: Db) {
    let s = &*db.store;
    let mut other_account = ev("EZ3", OptOutType::Stop, "+2", 30);
    other_account.account_sid = "AC2".into();
    s.commit(&batch(
        "a",
        vec![
            ev("EZ1", OptOutType::Stop, "+1", 10),
            ev("EZ2", OptOutType::Start, "+2", 20),
            other_account,
        ],
    ))
    .await
    .unwrap();
    let since = db
        .reader
        .all(&EventFilter {
            since: Some(ts(20)),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = since.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["EZ2", "EZ3"]);
    let stops = db
        .reader
        .all(&EventFilter {
            opt_out_type: Some(OptOutType::Stop),
            subscriber: Some("+2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].account_sid, "AC2");
    let ac2 = db
        .reader
        .all(&StatusFilter {
            accounts: vec!["AC2".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ac2.len(), 1);
    let both = db
        .reader
        .all(&StatusFilter {
            accounts: vec!["AC1".into(), "AC2".into()],
            scope: Some("MG1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(both.len(), 3);
}

async fn migrations_are_idempotent(db: Db) {
    // Opening again runs no migration twice and keeps the data.
    db.store
        .commit(&batch("a", vec![ev("EZ1", OptOutType::Stop, "+1", 10)]))
        .await
        .unwrap();
    // Re-running a migration would fail here: its CREATE TABLEs have no IF NOT EXISTS.
    optout::store::open(&db.url, 2).await.unwrap().close().await;
    assert_eq!(
        db::open_reader(&db.url)
            .await
            .all(&EventFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_second_runner_on_one_sqlite_file_is_refused() {
    let db = db::sqlite().await;
    db.store.claim_single_runner().await.unwrap();
    let other = optout::store::open(&db.url, 2).await.unwrap();
    let err = other.claim_single_runner().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("another `optout run` is already using"),
        "{err}"
    );
}
