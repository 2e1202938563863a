//! Every released schema version upgrades to this binary's, on both backends, with rows in
//! every table, in one transaction.
//!
//! Generic over the migrations: the embedded files (`migrations/<backend>/NNNN_name.sql`) are
//! read in order, so a migration added later is covered without touching this file. For each
//! version N below the head: a database is built by applying migrations 1..N as optout did
//! (in one transaction, recorded in `optout_migrations`), one row is written in every table
//! with a value made from each column's type and name, and the store is opened (which
//! migrates it to the head). Then:
//! - the rows are read back through the store and the query API (an opt event, a status, a
//!   checkpoint, a dead letter, a test event, a lease) and every table that held a row still
//!   holds it;
//! - the upgrade is one transaction: with the recording of the *last* migration made to fail,
//!   the upgrade from N fails and the database holds exactly the schema and rows of version N
//!   (so migrations N+1.. that ran before it were rolled back too); once the fault is removed
//!   the upgrade succeeds.
//!
//! A table whose columns need a value this file cannot guess (a new CHECK constraint) makes
//! the row's INSERT fail with the database's message: add the column to [`text_value`].

use optout::store::query::{DeadLetterFilter, TestEventFilter};
use optout::store::{EventFilter, Reader, StatusFilter};
use sqlx::{AnyConnection, Connection, Row};

use crate::common::db::{drop_pg_database, pg_admin_url};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The embedded migrations of `backend`, in order: (version, name, SQL).
fn embedded(backend: Backend) -> Vec<(i64, String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        });
    let mut all: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
            let (n, name) = stem.split_once('_').unwrap();
            (
                n.parse().unwrap(),
                name.to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    all.sort();
    let versions: Vec<i64> = all.iter().map(|m| m.0).collect();
    assert_eq!(
        versions,
        (1..=all.len() as i64).collect::<Vec<_>>(),
        "migrations numbered 1..N without gaps"
    );
    all
}

/// An empty database of `backend`: its URL, and what drops it.
struct Empty {
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Drop for Empty {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            drop_pg_database(admin, name);
        }
    }
}

async fn empty(backend: Backend) -> Empty {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/old.db?mode=rwc", dir.path().display());
            Empty {
                url,
                _dir: Some(dir),
                pg: None,
            }
        }
        Backend::Postgres => {
            let admin = pg_admin_url();
            let name = format!("optout_mig_all_{:016x}", fastrand::u64(..));
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await
                .unwrap();
            let (base, _) = admin.rsplit_once('/').unwrap();
            Empty {
                url: format!("{base}/{name}"),
                _dir: None,
                pg: Some((admin, name)),
            }
        }
    }
}

async fn connect(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.unwrap()
}

/// Applies migrations 1..=`n` in one transaction, recorded as optout records them.
async fn build_at(c: &mut AnyConnection, migrations: &[(i64, String, String)], n: i64) {
    let mut tx = c.begin().await.unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS optout_migrations (version BIGINT PRIMARY KEY, \
         name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    for (version, name, sql) in migrations.iter().take(n as usize) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("migration {version}: {e}"));
        sqlx::query(
            "INSERT INTO optout_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name.as_str())
        .bind("2026-01-01T00:00:00.000000Z")
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// (column, declared type) of each table but the migrations' own, by table name.
async fn tables(c: &mut AnyConnection, backend: Backend) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let names: Vec<String> = match backend {
        Backend::Sqlite => {
            sqlx::query(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> 'optout_migrations' ORDER BY name",
            )
            .fetch_all(&mut *c)
            .await
        }
        Backend::Postgres => {
            sqlx::query(
                "SELECT table_name::text AS name FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
                 AND table_name <> 'optout_migrations' ORDER BY 1",
            )
            .fetch_all(&mut *c)
            .await
        }
    }
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("name"))
    .collect();
    for t in names {
        let rows = match backend {
            Backend::Sqlite => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT name, type FROM pragma_table_info('{t}') ORDER BY cid"
            )))
            .fetch_all(&mut *c)
            .await
            .unwrap(),
            Backend::Postgres => sqlx::query(
                "SELECT column_name::text AS name, data_type::text AS type \
                 FROM information_schema.columns WHERE table_schema = 'public' \
                 AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(&t)
            .fetch_all(&mut *c)
            .await
            .unwrap(),
        };
        let cols = rows
            .iter()
            .map(|r| (r.get::<String, _>("name"), r.get::<String, _>("type")))
            .collect();
        out.push((t, cols));
    }
    out
}

/// The time every time column gets.
const AT: &str = "2026-03-01T12:00:00.000000Z";

/// A text column's value, by name: the values the CHECK constraints allow, and a consistent
/// opt event (E1, STOP) with its status, checkpoint, dead letter, test event and lease.
fn text_value(column: &str) -> String {
    match column {
        "opt_out_type" => "STOP",
        "status" => "opted_out",
        "detection" => "twilio",
        "time_source" => "twilio",
        "paths" => "kinesis",
        "event_id" => "E1",
        "identity" => "SM00000000000000000000000000000001",
        "message_sid" => "SM00000000000000000000000000000001",
        "account_sid" => "AC1",
        "messaging_service_sid" | "scope" => "MG1",
        "sender" => "+15559870002",
        "subscriber" => "+15551230001",
        "stream_name" => "s",
        "shard_id" => "shardId-000000000000",
        "sequence_number" => "1",
        "test_id" => "T1",
        "owner" => "w1",
        "reason" => "not JSON: kept across upgrades",
        "body" => "STOP",
        c if c.ends_with("_at") => AT,
        _ => "x",
    }
    .to_string()
}

/// A literal for `column` of declared type `ty`.
fn literal(backend: Backend, column: &str, ty: &str) -> String {
    let ty = ty.to_ascii_lowercase();
    let flag = matches!(column, "inferred" | "finished" | "truncated");
    if ty.contains("bool") {
        return if flag { "false" } else { "true" }.into();
    }
    if ty.contains("int") {
        return match column {
            "schema_version" => "5",
            _ if flag => "0",
            _ => "1",
        }
        .into();
    }
    if ty.contains("blob") || ty.contains("bytea") {
        return match backend {
            Backend::Sqlite => "X'7B7D'".into(),
            Backend::Postgres => "'\\x7b7d'".into(),
        };
    }
    format!("'{}'", text_value(column).replace('\'', "''"))
}

/// Writes one row in every table.
async fn fill(c: &mut AnyConnection, backend: Backend) -> Vec<String> {
    let mut filled = Vec::new();
    for (table, cols) in tables(c, backend).await {
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let values: Vec<String> = cols.iter().map(|(n, t)| literal(backend, n, t)).collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            values.join(", ")
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        filled.push(table);
    }
    filled
}

/// Rows per table.
async fn counts(c: &mut AnyConnection, backend: Backend) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (table, _) in tables(c, backend).await {
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"
        )))
        .fetch_one(&mut *c)
        .await
        .unwrap()
        .get(0);
        out.push((table, n));
    }
    out
}

/// The schema as the database describes it: tables, columns, indexes, views, constraints.
async fn schema(c: &mut AnyConnection, backend: Backend) -> Vec<String> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT type || ' ' || name || ' ' || COALESCE(sql, '') AS d FROM sqlite_master \
             WHERE name NOT LIKE 'inject_%' ORDER BY type, name"
        }
        Backend::Postgres => {
            "SELECT d FROM ( \
             SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type AS d \
             FROM information_schema.columns WHERE table_schema = 'public' \
             UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' \
             UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || \
             pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
             UNION ALL SELECT 'view ' || viewname FROM pg_views WHERE schemaname = 'public' \
             ) s ORDER BY d"
        }
    };
    sqlx::query(sql)
        .fetch_all(&mut *c)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("d"))
        .collect()
}

/// Makes the recording of migration `version` fail, as a failing last statement would.
async fn inject_failure(c: &mut AnyConnection, backend: Backend, version: i64) {
    let sql = match backend {
        Backend::Sqlite => format!(
            "CREATE TRIGGER inject_failure BEFORE INSERT ON optout_migrations \
             WHEN NEW.version = {version} BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        ),
        Backend::Postgres => format!(
            "CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.version = {version} THEN RAISE EXCEPTION 'injected failure'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER inject_failure BEFORE INSERT ON optout_migrations \
             FOR EACH ROW EXECUTE FUNCTION inject_failure();"
        ),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *c)
        .await
        .unwrap();
}

async fn remove_failure(c: &mut AnyConnection, backend: Backend) {
    let sql = match backend {
        Backend::Sqlite => "DROP TRIGGER inject_failure",
        Backend::Postgres => {
            "DROP TRIGGER inject_failure ON optout_migrations; DROP FUNCTION inject_failure()"
        }
    };
    sqlx::raw_sql(sql).execute(&mut *c).await.unwrap();
}

/// The rows [`fill`] wrote, read through the store and the query API at the head.
async fn check_rows(url: &str, filled: &[String]) {
    let store = optout::store::open(url, 2).await.unwrap();
    let reader = Reader::open(url, 2).await.unwrap();
    let events = reader.all(&EventFilter::default()).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (
            e.event_id.as_str(),
            e.opt_out_type.as_str(),
            e.subscriber.as_str(),
            e.occurred_at.as_str()
        ),
        ("E1", "STOP", "+15551230001", AT)
    );
    let status = reader.all(&StatusFilter::default()).await.unwrap();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(
        (status[0].status.as_str(), status[0].event_id.as_str()),
        ("opted_out", "E1")
    );
    let dead = reader.all(&DeadLetterFilter).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "not JSON: kept across upgrades");
    assert_eq!(dead[0].data_base64, "e30=");
    let tests = reader.all(&TestEventFilter).await.unwrap();
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0].test_id, "T1");
    let cps = store.checkpoints("s").await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].sequence_number.as_deref(), Some("1"));
    if filled.iter().any(|t| t == "leases") {
        let (_, leases, _) = reader.shard_states("s").await.unwrap();
        assert_eq!(leases.len(), 1, "{leases:?}");
        assert_eq!(leases[0].owner.as_deref(), Some("w1"));
    }
    reader.close().await;
    store.close().await;
}

async fn every_version_upgrades_with_its_rows(backend: Backend) {
    let migrations = embedded(backend);
    let head = migrations.len() as i64;
    for n in 1..head {
        let db = empty(backend).await;
        let mut c = connect(&db.url).await;
        build_at(&mut c, &migrations, n).await;
        let filled = fill(&mut c, backend).await;
        let (schema_n, counts_n) = (schema(&mut c, backend).await, counts(&mut c, backend).await);

        // The last migration fails: nothing of the upgrade stays.
        inject_failure(&mut c, backend, head).await;
        let failed = optout::store::open(&db.url, 1).await;
        assert!(
            failed.is_err(),
            "{backend:?} {n}→{head}: the injected failure was not seen"
        );
        assert_eq!(
            schema(&mut c, backend).await,
            schema_n,
            "{backend:?} {n}→{head}: a failed upgrade changed the schema"
        );
        assert_eq!(counts(&mut c, backend).await, counts_n);
        remove_failure(&mut c, backend).await;

        optout::store::open(&db.url, 1).await.unwrap().close().await;
        let versions: Vec<i64> = sqlx::query("SELECT version FROM optout_migrations ORDER BY 1")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, (1..=head).collect::<Vec<_>>());
        let after = counts(&mut c, backend).await;
        for (table, n_rows) in &counts_n {
            if let Some((_, now)) = after.iter().find(|(t, _)| t == table) {
                assert!(now >= n_rows, "{backend:?} {n}→{head}: {table} lost rows");
            }
        }
        c.close().await.unwrap();
        check_rows(&db.url, &filled).await;
        eprintln!("{backend:?}: version {n} with rows in {filled:?} upgraded to {head}");
    }
}

#[tokio::test]
async fn every_sqlite_version_upgrades_with_its_rows_in_one_transaction() {
    every_version_upgrades_with_its_rows(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_postgres_version_upgrades_with_its_rows_in_one_transaction() {
    every_version_upgrades_with_its_rows(Backend::Postgres).await;
}
