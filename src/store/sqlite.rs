//! SQLite specifics: opening the file in WAL mode, and the lock that keeps one runner per file.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::StoreError;
use super::schema::Dialect;
use super::sql::SqlStore;

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    ///
    /// One connection: SQLite has one writer at a time anyway, and a single connection never
    /// meets `SQLITE_BUSY` from itself. WAL lets `optout status` read while `run` writes.
    pub async fn open_sqlite(path: &str) -> Result<Self, StoreError> {
        super::install_drivers();
        let url = if path == ":memory:" {
            "sqlite::memory:".to_string()
        } else {
            format!("sqlite://{path}?mode=rwc")
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Dialect::Sqlite.migrate(&pool).await?;
        Ok(SqlStore {
            pool,
            dialect: Dialect::Sqlite,
            runner_lock: std::sync::Mutex::new(None),
            sqlite_path: (path != ":memory:").then(|| path.to_string()),
        })
    }

    /// Takes an exclusive OS lock on `<db>.lock`, held until the process exits (a `kill -9`
    /// releases it too). A sidecar file, because closing any descriptor of the database file
    /// itself would drop SQLite's own POSIX locks.
    pub(super) fn claim_runner_lock(&self) -> Result<(), StoreError> {
        let Some(path) = &self.sqlite_path else {
            return Ok(());
        };
        let mut held = self.runner_lock.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return Ok(());
        }
        let lock_path = format!("{path}.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        match file.try_lock() {
            Ok(()) => {
                *held = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(StoreError::Locked { path: path.clone() })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}
