//! Upgrades of databases holding rows:
//! - PostgreSQL's native types: a database filled by the old schema (text times, 0/1 flags) is
//!   converted in place by migration 3, keeps every value to the microsecond, reads the same
//!   through the API's queries, gains the analysts' views, and takes new commits;
//! - one event per message (SQLite 6, PostgreSQL 4): identity, paths and sets_status are
//!   derived from the rows in place, on both backends, and new copies of an old message join it.

use std::sync::Arc;

use futures_util::TryStreamExt;
use optout::store::query::DeadLetterFilter;
use optout::store::{EventFilter, IngestPath, Reader, StatusFilter};
use sqlx::{Connection, Row};

fn admin_url() -> String {
    std::env::var("OPTOUT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty database; dropped (best effort) by the returned guard.
async fn fresh_database() -> (String, DropDb) {
    let admin = admin_url();
    let name = format!("optout_query_mig_{:016x}", fastrand::u64(..));
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    (format!("{base}/{name}"), DropDb(admin, name))
}

struct DropDb(String, String);

impl Drop for DropDb {
    fn drop(&mut self) {
        crate::common::db::drop_pg_database(self.0.clone(), self.1.clone());
    }
}

/// The schema and rows an optout before migration 3 wrote.
const OLD: &str = "
INSERT INTO opt_events (event_id, opt_out_type, inferred, account_sid, messaging_service_sid,
  sender, subscriber, scope, body, message_sid, occurred_at, schema_version, stream_name,
  shard_id, sequence_number, recorded_at, detection, rule) VALUES
 ('E1', 'STOP', 0, 'AC1', 'MG1', '+15559870002', '+15551230001', 'MG1', 'stop', 'SM1',
  '2026-03-01T12:00:04.512301Z', 5, 's', 'a', '1', '2026-03-01T12:00:05.000000Z', 'twilio', NULL),
 ('E2', 'START', 1, 'AC1', NULL, '+15559870002', '+15551230002', '+15559870002', 'start', NULL,
  '2026-03-02T00:00:00.000001Z', 4, 's', 'a', '2', '2026-03-02T00:00:01.000000Z', 'keyword', NULL);
INSERT INTO opt_status VALUES
 ('AC1', 'MG1', '+15551230001', 'MG1', '+15559870002', 'opted_out', '2026-03-01T12:00:04.512301Z', 'E1'),
 ('AC1', '+15559870002', '+15551230002', NULL, '+15559870002', 'opted_in', '2026-03-02T00:00:00.000001Z', 'E2');
INSERT INTO checkpoints VALUES ('s', 'a', '2', 1, '2026-03-02T00:00:01.000000Z');
INSERT INTO dead_letters VALUES ('s', 'a', '3', 'pk', 'not JSON', '\\x00ff', '2026-03-02T00:00:02.000000Z');
INSERT INTO sink_test_events VALUES ('T1', 'AC1', NULL, 's', 'a', '4', '2026-03-02T00:00:03.000000Z');
INSERT INTO optout_migrations VALUES (1, 'init', 'x'), (2, 'detection', 'x');
";

#[tokio::test]
async fn old_text_columns_become_native_types_in_place() {
    let (url, _guard) = fresh_database().await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(include_str!("../../migrations/postgres/0001_init.sql"))
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::raw_sql(include_str!("../../migrations/postgres/0002_detection.sql"))
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE optout_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TEXT NOT NULL)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::raw_sql(OLD).execute(&mut c).await.unwrap();

    // Opening for writing migrates.
    let store = optout::store::open(&url, 2).await.unwrap();

    let types: Vec<(String, String, String)> = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name IN ('occurred_at', 'recorded_at', \
         'changed_at', 'updated_at', 'inferred', 'finished', 'data') \
         AND table_name NOT IN ('current_opt_outs', 'opt_events_daily') ORDER BY 1, 2",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    let tz = "timestamp with time zone";
    assert_eq!(
        types,
        [
            t("changes", "occurred_at", tz),
            t("changes", "recorded_at", tz),
            t("checkpoints", "finished", "boolean"),
            t("checkpoints", "updated_at", tz),
            t("dead_letters", "data", "bytea"),
            t("dead_letters", "recorded_at", tz),
            t("opt_events", "inferred", "boolean"),
            t("opt_events", "occurred_at", tz),
            t("opt_events", "recorded_at", tz),
            t("opt_status", "changed_at", tz),
            t("sink_test_events", "occurred_at", tz),
            t("sink_test_events", "recorded_at", tz),
        ]
    );

    // Every value kept, to the microsecond, and read back in the API's form.
    let reader = Arc::new(Reader::open(&url, 1).await.unwrap());
    let events: Vec<_> = reader
        .clone()
        .export(EventFilter::default(), None, None)
        .try_concat()
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].occurred_at, "2026-03-01T12:00:04.512301Z");
    assert_eq!(events[1].occurred_at, "2026-03-02T00:00:00.000001Z");
    assert!(!events[0].inferred && events[1].inferred);
    let status = reader.all(&StatusFilter::default()).await.unwrap();
    assert_eq!(status[0].changed_at, "2026-03-02T00:00:00.000001Z");
    let dead: Vec<_> = reader
        .clone()
        .export(DeadLetterFilter, None, None)
        .try_concat()
        .await
        .unwrap();
    assert_eq!(
        (dead[0].data_base64.as_str(), dead[0].recorded_at.as_str()),
        ("AP8=", "2026-03-02T00:00:02.000000Z")
    );
    let checkpoints = store.checkpoints("s").await.unwrap();
    assert!(checkpoints[0].finished);
    assert_eq!(checkpoints[0].updated_at, "2026-03-02T00:00:01.000000Z");

    // The views, queried without a cast.
    let outs: Vec<(String, bool)> =
        sqlx::query("SELECT subscriber, opted_out_at < '2026-03-02'::date FROM current_opt_outs")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(outs, [("+15551230001".to_string(), true)]);
    let daily: Vec<(String, String, i64)> =
        sqlx::query("SELECT day::text, opt_out_type, events FROM opt_events_daily ORDER BY day")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    assert_eq!(
        daily,
        [
            ("2026-03-01".to_string(), "STOP".to_string(), 1),
            ("2026-03-02".to_string(), "START".to_string(), 1)
        ]
    );
}

/// Rows an older optout stored with times no backend should hold: a STOP in year 10000 (the
/// latest event of its number, so its status row carries that time), a START in year 0 (its
/// number's only event), and a test event in year 10000.
const LEGACY: &str = "
INSERT INTO opt_events (event_id, opt_out_type, inferred, account_sid, messaging_service_sid,
  sender, subscriber, scope, body, message_sid, occurred_at, schema_version, stream_name,
  shard_id, sequence_number, recorded_at, detection, rule) VALUES
 ('E9', 'STOP', 0, 'AC1', 'MG1', '+15559870002', '+15551230001', 'MG1', 'stop', NULL,
  '+10000-01-01T00:00:00.000000Z', 5, 's', 'a', '9', '2026-03-03T00:00:00.000000Z', 'twilio', NULL),
 ('E0', 'START', 0, 'AC1', 'MG1', '+15559870002', '+15551230003', 'MG1', 'start', NULL,
  '0000-06-01T00:00:00.000000Z', 5, 's', 'a', '10', '2026-03-03T00:00:00.000000Z', 'twilio', NULL);
UPDATE opt_status SET changed_at = '+10000-01-01T00:00:00.000000Z', event_id = 'E9'
  WHERE subscriber = '+15551230001';
INSERT INTO opt_status VALUES
 ('AC1', 'MG1', '+15551230003', 'MG1', '+15559870002', 'opted_in', '0000-06-01T00:00:00.000000Z', 'E0');
INSERT INTO sink_test_events VALUES ('T2', 'AC1', '+10000-01-01T00:00:00.000000Z', 's', 'a', '11', '2026-03-03T00:00:00.000000Z');
";

/// What every backend holds after the legacy rows are moved out: the two good events, the
/// status recomputed from them (the number whose latest event went keeps its earlier STOP; the
/// number with no event left has no status), the moved events as dead letters with their
/// reason, and the test event without a time.
async fn check_legacy_moved(url: &str) {
    let reader = Arc::new(Reader::open(url, 1).await.unwrap());
    let events: Vec<_> = reader
        .clone()
        .export(EventFilter::default(), None, None)
        .try_concat()
        .await
        .unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["E1", "E2"]);
    let status = reader.all(&StatusFilter::default()).await.unwrap();
    let status: Vec<(&str, &str, &str)> = status
        .iter()
        .map(|s| {
            (
                s.subscriber.as_str(),
                s.status.as_str(),
                s.event_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            ("+15551230002", "opted_in", "E2"),
            ("+15551230001", "opted_out", "E1"),
        ]
    );
    let dead: Vec<_> = reader
        .clone()
        .export(DeadLetterFilter, None, None)
        .try_concat()
        .await
        .unwrap();
    let moved: Vec<_> = dead.iter().filter(|d| d.sequence_number != "3").collect();
    assert_eq!(moved.len(), 2, "{dead:?}");
    for d in moved {
        assert!(
            d.reason
                .starts_with("bad timestamp: year outside 0001-9999, moved"),
            "{}",
            d.reason
        );
        let whole =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &d.data_base64)
                .unwrap();
        let row: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        assert!(
            ["E9", "E0"].contains(&row["event_id"].as_str().unwrap()),
            "{row}"
        );
    }
    let tests = reader
        .all(&optout::store::query::TestEventFilter)
        .await
        .unwrap();
    let t2 = tests.iter().find(|t| t.test_id == "T2").unwrap();
    assert_eq!(t2.occurred_at, None);
}

/// A PostgreSQL database of the old schema holding such rows upgrades (migration 3 used to
/// fail on them, leaving every query command refusing the store).
#[tokio::test]
async fn a_postgres_upgrade_moves_unstorable_legacy_times_to_the_dead_letters() {
    let (url, _guard) = fresh_database().await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    for sql in [
        include_str!("../../migrations/postgres/0001_init.sql"),
        include_str!("../../migrations/postgres/0002_detection.sql"),
        "CREATE TABLE optout_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TEXT NOT NULL)",
        OLD,
        LEGACY,
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    let store = optout::store::open(&url, 2).await.unwrap();
    store.close().await;
    check_legacy_moved(&url).await;
}

/// The same rows in a SQLite database of schema 4 (where they sorted as the oldest events)
/// are moved out the same way by migration 5.
#[tokio::test]
async fn a_sqlite_upgrade_moves_unstorable_legacy_times_to_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        let mut c = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        for sql in [
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_leases.sql"),
            include_str!("../../migrations/sqlite/0003_detection.sql"),
            include_str!("../../migrations/sqlite/0004_query.sql"),
            "CREATE TABLE optout_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TEXT NOT NULL)",
            &OLD.replace("'\\x00ff'", "X'00ff'").replace(
                "(2, 'detection', 'x')",
                "(2, 'leases', 'x'), (3, 'detection', 'x'), (4, 'query', 'x')",
            ),
            LEGACY,
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
    let store = optout::store::open(&url, 1).await.unwrap();
    store.close().await;
    check_legacy_moved(&url).await;
}

/// Rows as optout wrote them before the identity migration (SQLite 6, PostgreSQL 4), in the
/// columns both dialects share: two rows with one SID (two subscriptions of different schema
/// versions), phrase revocations honoured (holding the status) and not, a HELP, a replayed
/// row, and a message SID that is no SID.
const BEFORE_IDENTITY: &str = "
INSERT INTO opt_events (event_id, opt_out_type, inferred, account_sid, messaging_service_sid,
  sender, subscriber, scope, body, message_sid, occurred_at, schema_version, stream_name,
  shard_id, sequence_number, recorded_at, detection, rule) VALUES
 ('E1', 'STOP', FALSE, 'AC1', 'MG1', '+2', '+11', 'MG1', 'stop', 'SM0000000000000000000000000000000a',
  '2026-03-01T12:00:01.000000Z', 5, 's', 'a', '1', '2026-03-01T12:00:05.000000Z', 'twilio', NULL),
 ('E1b', 'STOP', FALSE, 'AC1', 'MG1', '+2', '+11', 'MG1', 'stop', 'SM0000000000000000000000000000000a',
  '2026-03-01T12:00:01.000000Z', 6, 's', 'a', '2', '2026-03-01T12:00:05.000000Z', 'twilio', NULL),
 ('E2', 'STOP', TRUE, 'AC1', 'MG1', '+2', '+12', 'MG1', 'stop texting me', 'SM0000000000000000000000000000000b',
  '2026-03-01T12:00:02.000000Z', 5, 's', 'a', '3', '2026-03-01T12:00:05.000000Z', 'phrase', 'r'),
 ('E3', 'STOP', TRUE, 'AC1', 'MG1', '+2', '+13', 'MG1', 'stop texting me', NULL,
  '2026-03-01T12:00:03.000000Z', 5, 's', 'a', '4', '2026-03-01T12:00:05.000000Z', 'phrase', 'r'),
 ('E4', 'HELP', FALSE, 'AC1', 'MG1', '+2', '+14', 'MG1', 'help', NULL,
  '2026-03-01T12:00:04.000000Z', 5, 's', 'a', '5', '2026-03-01T12:00:05.000000Z', 'twilio', NULL),
 ('E5', 'START', FALSE, 'AC1', NULL, '+2', '+15', '+2', 'start', 'SMx',
  '2026-03-01T12:00:05.000000Z', 5, 'replay', 'f@1', '1', '2026-03-01T12:00:05.000000Z', 'twilio', NULL);
INSERT INTO opt_status VALUES
 ('AC1', 'MG1', '+11', 'MG1', '+2', 'opted_out', '2026-03-01T12:00:01.000000Z', 'E1b'),
 ('AC1', 'MG1', '+12', 'MG1', '+2', 'opted_out', '2026-03-01T12:00:02.000000Z', 'E2'),
 ('AC1', '+2', '+15', NULL, '+2', 'opted_in', '2026-03-01T12:00:05.000000Z', 'E5');
";

/// The migration derives identity, paths and sets_status in place, keeps every row, and the
/// upgraded store merges new copies of an old message into it.
async fn identity_columns_are_derived_in_place(url: &str, mut c: sqlx::AnyConnection) {
    sqlx::raw_sql(BEFORE_IDENTITY)
        .execute(&mut c)
        .await
        .unwrap();
    let store = optout::store::open(url, 2).await.unwrap();
    let reader = Reader::open(url, 1).await.unwrap();
    let mut events: Vec<(String, String, String, String)> = reader
        .all(&EventFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event_id, e.identity, e.paths, e.time_source))
        .collect();
    events.sort();
    let row = |id: &str, identity: &str, paths: &str| {
        (
            id.to_string(),
            identity.to_string(),
            paths.to_string(),
            "twilio".to_string(),
        )
    };
    assert_eq!(
        events,
        [
            row("E1", "SM0000000000000000000000000000000a", "kinesis"),
            row("E1b", "E1b", "kinesis"),
            row("E2", "SM0000000000000000000000000000000b", "kinesis"),
            row("E3", "E3", "kinesis"),
            row("E4", "E4", "kinesis"),
            row("E5", "E5", "replay"),
        ]
    );
    let sets: Vec<(String, i64)> = sqlx::query(
        "SELECT event_id, CAST(sets_status AS INTEGER) FROM opt_events ORDER BY event_id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let want: Vec<(String, i64)> = [
        ("E1", 1),
        ("E1b", 1),
        ("E2", 1),
        ("E3", 0),
        ("E4", 0),
        ("E5", 1),
    ]
    .iter()
    .map(|(e, s)| (e.to_string(), *s))
    .collect();
    assert_eq!(
        sets, want,
        "an honoured phrase (holding the status) sets status"
    );
    // A re-read of an old record changes nothing; the Messaging webhook's copy of it joins it.
    let mut e1 = crate::common::events::opt_event("E1", optout::event::OptOutType::Stop, "+11", 1);
    e1.message_sid = Some("SM0000000000000000000000000000000a".into());
    e1.sender = "+2".into();
    let batch = |path, e: optout::event::OptEvent| optout::store::Batch {
        path,
        stream: "s".into(),
        shard_id: "a".into(),
        opt_events: crate::common::events::positioned(vec![e]),
        ..Default::default()
    };
    let summary = store
        .commit(&batch(IngestPath::Kinesis, e1.clone()))
        .await
        .unwrap();
    assert_eq!(
        (summary.opt_events_new, summary.opt_events_duplicate),
        (0, 1)
    );
    let mut sms = e1.clone();
    sms.event_id = "SM0000000000000000000000000000000a".into();
    sms.time_source = optout::event::TimeSource::Received;
    sms.occurred_at += chrono::TimeDelta::seconds(2);
    store
        .commit(&batch(IngestPath::MessagingWebhook, sms))
        .await
        .unwrap();
    let e = reader.all(&EventFilter::default()).await.unwrap();
    let e1 = e.iter().find(|e| e.event_id == "E1").unwrap();
    assert_eq!(e1.paths, "kinesis,messaging_webhook");
    assert_eq!(
        (e1.occurred_at.as_str(), e1.time_source.as_str()),
        ("2026-03-01T12:00:01.000000Z", "twilio")
    );
    assert_eq!(e.len(), 6);
    // The analysts' view is still there.
    let daily: i64 = sqlx::query("SELECT CAST(SUM(events) AS BIGINT) FROM opt_events_daily")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(daily, 6);
    store.close().await;
}

#[tokio::test]
async fn sqlite_identity_migration_keeps_rows_and_derives_the_new_columns() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/optout.db?mode=rwc", dir.path().display());
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    for sql in [
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/sqlite/0002_leases.sql"),
        include_str!("../../migrations/sqlite/0003_detection.sql"),
        include_str!("../../migrations/sqlite/0004_query.sql"),
        "CREATE TABLE optout_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TEXT NOT NULL); INSERT INTO optout_migrations VALUES (1, 'init', 'x'), \
         (2, 'leases', 'x'), (3, 'detection', 'x'), (4, 'query', 'x');",
    ] {
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    }
    let url = format!("sqlite://{}/optout.db", dir.path().display());
    identity_columns_are_derived_in_place(&url, c).await;
}

#[tokio::test]
async fn postgres_identity_migration_keeps_rows_and_derives_the_new_columns() {
    use sqlx::Connection;
    let (url, _guard) = fresh_database().await;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    for sql in [
        include_str!("../../migrations/postgres/0001_init.sql"),
        include_str!("../../migrations/postgres/0002_detection.sql"),
        include_str!("../../migrations/postgres/0003_native_types.sql"),
        "CREATE TABLE optout_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TEXT NOT NULL); INSERT INTO optout_migrations VALUES (1, 'init', 'x'), \
         (2, 'detection', 'x'), (3, 'native_types', 'x');",
    ] {
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    }
    identity_columns_are_derived_in_place(&url, c).await;
}
