//! SQLite specifics: opening the file (private, in WAL mode, or read-only for queries), the
//! lock that keeps one runner per file, and the upkeep of a file in use (still the one opened,
//! its write-ahead log folded back).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{ConnectOptions, Executor, Row};

use super::schema::Dialect;
use super::sql::SqlStore;
use super::sqlite_file::{FileIdentity, RunnerLock, identity_lock, tighten_modes};
use super::{Access, StoreError};

/// A write-ahead log larger than this is folded back and truncated (when readers allow it) at
/// the next upkeep. SQLite's own checkpoints (every 1,000 pages, 4 MiB) never truncate the
/// file and cannot restart the log while readers keep arriving, so under steady API reads the
/// log grew without bound (374 MB next to a 387 MB database).
const WAL_TRUNCATE_BYTES: u64 = 16 << 20;
/// After a truncating checkpoint that readers held up (or that failed), the next attempt
/// waits this long; one that succeeds may be followed at the next upkeep.
const WAL_CHECKPOINT_BACKOFF: Duration = Duration::from_secs(10);
/// How long a truncating checkpoint may wait for readers on older snapshots; meanwhile it
/// holds the write lock, so commits wait too. Read transactions last milliseconds.
const WAL_CHECKPOINT_WAIT_MS: u32 = 1_000;

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
            Access::ReadWrite => {
                create_private(Path::new(path))?;
                tighten_modes(path);
            }
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
        let memory = path == ":memory:";
        Ok(SqlStore {
            pool,
            dialect: Dialect::Sqlite,
            runner_lock: std::sync::Mutex::new(None),
            sqlite_path: (!memory).then(|| path.to_string()),
            file: if memory { None } else { FileIdentity::of(path) },
            replaced: Default::default(),
            wal_backoff_until: std::sync::Mutex::new(None),
            outbox_targets: Default::default(),
            revocation_scope: Default::default(),
        })
    }

    /// Fails with [`StoreError::Replaced`], for this and every later call, once the file at
    /// the store's path is no longer the one opened (deleted, or replaced by another file).
    pub(super) fn check_file(&self) -> Result<(), StoreError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.replaced.load(Ordering::Relaxed) {
            // Even if put back since: what was committed meanwhile is gone; start again.
            return Err(StoreError::Replaced {
                path: self.sqlite_path.clone().unwrap_or_default(),
                how: "deleted or replaced",
            });
        }
        file.check()
            .inspect_err(|_| self.replaced.store(true, Ordering::Relaxed))
    }

    /// SQLite's upkeep (see [`super::Store::upkeep`]): the file check, the log's size as a
    /// metric, and a truncating checkpoint once it has grown.
    pub(super) async fn sqlite_upkeep(&self) -> Result<(), StoreError> {
        self.check_file()?;
        let Some(path) = &self.sqlite_path else {
            return Ok(());
        };
        let wal = std::fs::metadata(format!("{path}-wal")).map_or(0, |m| m.len());
        super::metrics::sqlite_wal_bytes(wal);
        if wal <= WAL_TRUNCATE_BYTES {
            return Ok(());
        }
        let backoff = || {
            self.wal_backoff_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if backoff().is_some_and(|t| t > std::time::Instant::now()) {
            return Ok(());
        }
        let held_up = match self.truncate_wal().await {
            Ok(true) => {
                let after = std::fs::metadata(format!("{path}-wal")).map_or(0, |m| m.len());
                super::metrics::sqlite_wal_bytes(after);
                tracing::debug!(
                    before = wal,
                    after,
                    "Write-ahead log folded back and truncated."
                );
                false
            }
            Ok(false) => {
                tracing::debug!(
                    bytes = wal,
                    "Readers held the write-ahead log; will try again."
                );
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "Checkpoint of the write-ahead log failed.");
                true
            }
        };
        *backoff() = held_up.then(|| std::time::Instant::now() + WAL_CHECKPOINT_BACKOFF);
        Ok(())
    }

    /// `wal_checkpoint(TRUNCATE)`, waiting at most [`WAL_CHECKPOINT_WAIT_MS`] for readers;
    /// `true` when the log was reset.
    async fn truncate_wal(&self) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "PRAGMA busy_timeout = {WAL_CHECKPOINT_WAIT_MS}"
        )))
        .await?;
        let done = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
        conn.execute("PRAGMA busy_timeout = 10000").await?;
        let row = match done {
            Ok(row) => row,
            Err(e) if e.as_database_error().is_some() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(row.try_get::<i64, _>(0)? == 0)
    }

    /// Takes the runner's locks, held until the store closes (a `kill -9` releases them too):
    /// a `flock` on the database file itself, its identity, so that a hard link or a symlink
    /// meets the same lock; and, for versions before it that only know that one, an exclusive
    /// lock on the sidecar `<db>.lock`, named after the file's canonical path.
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
        let locked = || StoreError::Locked { path: path.clone() };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(locked()),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let identity = identity_lock(Path::new(path))?.ok_or_else(locked)?;
        *held = Some(RunnerLock {
            _sidecar: file,
            _identity: identity,
        });
        Ok(())
    }
}

/// Opens a one-connection pool on `url`, first with a single probe connection so that a
/// failure is reported at once with its cause ("file is not a database", "unable to open
/// database file") rather than as a pool timeout.
async fn connect(url: &str, pragmas: &'static str) -> Result<sqlx::AnyPool, StoreError> {
    // No statement logging: sqlx would log every slow statement whole at WARN.
    let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
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
