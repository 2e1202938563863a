//! SQLite specifics: opening the file (private, in WAL mode, or read-only for queries), and
//! the lock that keeps one runner per file.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::schema::Dialect;
use super::sql::SqlStore;
use super::{Access, StoreError};

/// Run on every connection that writes: WAL lets `optout status` read while `run` writes.
/// `synchronous = FULL` syncs the log at every commit, so a commit that returned survives a
/// power cut, not only a crash of the process: a webhook answered 2xx is a promise to Twilio,
/// which will not send that message again. (Kinesis alone could afford NORMAL, whose last
/// commits may roll back with their checkpoint and be read again.)
const READ_WRITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";
/// Run on every query connection: never write, even by mistake. Reading the schema makes a
/// file that is no database fail here, with SQLite's own words.
const READ_ONLY_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA query_only = ON; SELECT count(*) FROM sqlite_master;";

/// Opens the SQLite database at `path`: for [`Access::ReadWrite`], creating it (mode 0600: it
/// holds phone numbers) and migrating it; for [`Access::ReadOnly`], only if it exists, without
/// writing anything, and checking its schema is this binary's.
///
/// One connection: SQLite has one writer at a time anyway, and a single connection never meets
/// `SQLITE_BUSY` from itself.
pub(super) async fn open_pool(path: &str, access: Access) -> Result<sqlx::AnyPool, StoreError> {
    super::install_drivers();
    let memory = path == ":memory:";
    if !memory {
        match access {
            Access::ReadWrite => create_private(Path::new(path))?,
            Access::ReadOnly if !Path::new(path).exists() => {
                return Err(StoreError::NotFound {
                    path: path.to_string(),
                });
            }
            Access::ReadOnly => {}
        }
    }
    let pool = match access {
        Access::ReadWrite => {
            let url = if memory {
                "sqlite::memory:".to_string()
            } else {
                format!("sqlite://{path}?mode=rw")
            };
            let pool = connect(&url, READ_WRITE_PRAGMAS).await?;
            Dialect::Sqlite.migrate(&pool).await?;
            pool
        }
        Access::ReadOnly => {
            let url = format!("sqlite://{path}?mode=ro");
            match connect(&url, READ_ONLY_PRAGMAS).await {
                Ok(pool) => pool,
                // A WAL database in a directory we may not write (a read-only copy) cannot
                // create its `-shm` file: read it as immutable instead, but only when it has
                // no write-ahead log to miss (immutable reads ignore the `-wal`).
                Err(StoreError::Connect(e) | StoreError::Database(e))
                    if cannot_open(&e) && wal_is_empty(path) =>
                {
                    tracing::warn!(path, error = %e, "Cannot open the database's shared memory; reading it as an immutable file.");
                    connect(&format!("{url}&immutable=true"), READ_ONLY_PRAGMAS).await?
                }
                Err(e) => return Err(e),
            }
        }
    };
    if access == Access::ReadOnly {
        Dialect::Sqlite.check_schema(&pool).await?;
    }
    Ok(pool)
}

impl SqlStore {
    /// Opens (creating and migrating) the SQLite database at `path` for writing.
    pub(super) async fn open_sqlite(path: &str) -> Result<Self, StoreError> {
        let pool = open_pool(path, Access::ReadWrite).await?;
        Ok(SqlStore {
            pool,
            dialect: Dialect::Sqlite,
            runner_lock: std::sync::Mutex::new(None),
            sqlite_path: (path != ":memory:").then(|| path.to_string()),
        })
    }

    /// Takes an exclusive OS lock on `<db>.lock`, held until the process exits (a `kill -9`
    /// releases it too). A sidecar file, because closing any descriptor of the database file
    /// itself would drop SQLite's own POSIX locks. The lock is named after the file's
    /// canonical path, so a symlink or a `..` in `--store` still meets the same lock.
    pub(super) fn claim_runner_lock(&self) -> Result<(), StoreError> {
        let Some(path) = &self.sqlite_path else {
            return Ok(());
        };
        let mut held = self.runner_lock.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return Ok(());
        }
        let canonical = std::fs::canonicalize(path)?;
        let mut lock_path = canonical.into_os_string();
        lock_path.push(".lock");
        let file = private_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(lock_path))?;
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

/// Opens a one-connection pool on `url`, first with a single probe connection so that a
/// failure is reported at once with its cause ("file is not a database", "unable to open
/// database file") rather than as a pool timeout.
async fn connect(url: &str, pragmas: &'static str) -> Result<sqlx::AnyPool, StoreError> {
    let options = AnyConnectOptions::from_str(url)?;
    super::probe(&options, pragmas).await?;
    Ok(AnyPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute(pragmas).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?)
}

/// Whether `<path>-wal` is absent or empty: then the main file alone is the whole database.
fn wal_is_empty(path: &str) -> bool {
    std::fs::metadata(format!("{path}-wal")).map_or(true, |m| m.len() == 0)
}

/// SQLite's `SQLITE_CANTOPEN` or `SQLITE_READONLY` (primary codes 14 and 8).
fn cannot_open(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 8 | 14)),
        _ => false,
    }
}

/// Creates the database file readable and writable by its owner only (0600), whatever the
/// umask, if it does not exist yet. SQLite gives its `-wal` and `-shm` files the database
/// file's mode, so they are private too.
fn create_private(path: &Path) -> Result<(), StoreError> {
    match private_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", path.display()),
        ))),
    }
}

fn private_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}
