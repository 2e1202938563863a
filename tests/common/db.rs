//! Gives each test its own database, on either backend: SQLite in a temporary file, or PostgreSQL in a
//! fresh database on the machine's server (`OPTOUT_TEST_PG`, default
//! postgres://postgres@127.0.0.1:5432/test), dropped when the [`Db`] drops.

use std::sync::Arc;

use optout::store::{EventFilter, EventRow, Reader, StatusFilter, Store};

/// One test's database and a handle on it.
pub struct Db {
    /// The store's write side, as the application sees it.
    pub store: Arc<dyn Store>,
    /// The store's read side, on read-only connections of its own.
    pub reader: Arc<Reader>,
    /// The store URL, to open more handles on the same database.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

/// The PostgreSQL URL tests create their databases from.
pub fn pg_admin_url() -> String {
    std::env::var("OPTOUT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Opens another handle on the database at `url` (migrating it if needed).
pub async fn open_store(url: &str) -> Arc<dyn Store> {
    optout::store::open(url, 4).await.unwrap()
}

/// Opens the read side of the database at `url`, creating and migrating it first if it does
/// not exist yet (a test may look before the process it watches has created it).
pub async fn open_reader(url: &str) -> Arc<Reader> {
    open_store(url).await.close().await;
    Arc::new(Reader::open(url, 2).await.unwrap())
}

/// A fresh SQLite database in a temporary directory.
pub async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/optout.db", dir.path().display());
    let store = open_store(&url).await;
    Db {
        store,
        reader: open_reader(&url).await,
        url,
        _dir: Some(dir),
        pg_drop: None,
    }
}

/// A fresh PostgreSQL database, uniquely named.
pub async fn postgres() -> Db {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let name = format!("optout_test_{:016x}", fastrand::u64(..));
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is needed for this test ({e}); .ci/run starts it")
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => unreachable!("admin URL has a database"),
    };
    let store = open_store(&url).await;
    Db {
        store,
        reader: open_reader(&url).await,
        url,
        _dir: None,
        pg_drop: Some((admin, name)),
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg_drop.take() {
            drop_pg_database(admin, name);
        }
    }
}

/// Drops the PostgreSQL database `name` through `admin`, from a thread of its own (a `Drop`
/// may run inside or outside a runtime). Best effort: a leftover database is harmless and
/// uniquely named.
pub fn drop_pg_database(admin: String, name: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
            }
        });
    })
    .join()
    .ok();
}

/// A current-thread runtime, for property tests that drive async store calls from a
/// synchronous proptest runner.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs each named async test body (`async fn NAME(db: Db)`) against both backends, as
/// `sqlite_backend::NAME` and `postgres_backend::NAME` (the test declares `#[macro_use] mod
/// common;`).
#[allow(unused_macros)]
macro_rules! both_backends {
    ($($name:ident;)*) => {
        mod sqlite_backend {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::db::sqlite().await).await; })*
        }
        mod postgres_backend {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::db::postgres().await).await; })*
        }
    };
}

/// The stored opt events of the subscribers whose number starts with `prefix`: one property
/// case's own, when every case shares a database.
pub async fn events_with_prefix(reader: &Reader, prefix: &str) -> Vec<EventRow> {
    let all = reader.all(&EventFilter::default()).await.unwrap();
    all.into_iter()
        .filter(|e| e.subscriber.starts_with(prefix))
        .collect()
}

/// The status rows of the subscribers whose number starts with `prefix`, each as
/// `subscriber|scope|status|event_id`, sorted: what the order-independence properties hold
/// against their oracles.
pub async fn status_lines(reader: &Reader, prefix: &str) -> Vec<String> {
    let all = reader.all(&StatusFilter::default()).await.unwrap();
    let mut lines: Vec<String> = all
        .into_iter()
        .filter(|r| r.subscriber.starts_with(prefix))
        .map(|r| format!("{}|{}|{}|{}", r.subscriber, r.scope, r.status, r.event_id))
        .collect();
    lines.sort();
    lines
}
