//! PostgreSQL specifics: a connection pool sized for the shard count, read-only for queries.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::schema::Dialect;
use super::sql::SqlStore;
use super::{Access, StoreError};

/// Query sessions refuse writes even if a bug tried one; a role that may only SELECT works.
const READ_ONLY_SESSION: &str = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY";

/// A writer's transaction lasts milliseconds. One left open for longer belongs to a worker
/// that was paused mid-commit (SIGSTOP, a frozen VM): it still holds its row locks, and every
/// other worker's lease housekeeping would queue behind them until it resumed. The server
/// ends such a session instead; the paused worker's commit then fails when it resumes, and
/// is retried under a lease that fencing refuses.
const WRITER_SESSION: &str = "SET idle_in_transaction_session_timeout = '10s'";

/// Connects to PostgreSQL at `url` with up to `max_connections`: for [`Access::ReadWrite`]
/// migrating the schema, for [`Access::ReadOnly`] only checking it (and every session refuses
/// writes).
///
/// One probe connection is made first, so that a failure ("connection refused", "password
/// authentication failed", "database … does not exist") is reported at once with its cause
/// instead of as a pool timeout after retries.
pub(super) async fn open_pool(
    url: &str,
    max_connections: u32,
    access: Access,
) -> Result<sqlx::AnyPool, StoreError> {
    super::install_drivers();
    use sqlx::ConnectOptions;
    // No statement logging: sqlx would log every slow statement whole at WARN.
    let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
    let session = match access {
        Access::ReadWrite => "SELECT 1",
        Access::ReadOnly => READ_ONLY_SESSION,
    };
    super::probe(&options, session).await?;
    let mut pool = AnyPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(Duration::from_secs(10));
    let session_setup = match access {
        Access::ReadOnly => READ_ONLY_SESSION,
        Access::ReadWrite => WRITER_SESSION,
    };
    pool = pool.after_connect(move |conn, _meta| {
        Box::pin(async move {
            conn.execute(session_setup).await?;
            Ok(())
        })
    });
    let pool = pool.connect_with(options).await?;
    match access {
        Access::ReadWrite => {
            Dialect::Postgres.migrate(&pool).await?;
        }
        Access::ReadOnly => Dialect::Postgres.check_schema(&pool).await?,
    }
    Ok(pool)
}

/// One `READ ONLY` session for `/readyz`, made when first used: a connection of its own, so a
/// busy read pool never holds the probe up, and made lazily, so that query commands, which
/// never probe, never open it. A probe waits at most 2 s for it, within a kubelet's timeout.
pub(super) fn probe_pool(url: &str) -> Result<sqlx::AnyPool, StoreError> {
    use sqlx::ConnectOptions;
    let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
    Ok(AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(READ_ONLY_SESSION).await?;
                Ok(())
            })
        })
        .connect_lazy_with(options))
}

impl SqlStore {
    /// Connects to PostgreSQL at `url` for writing, with up to `max_connections`.
    pub(super) async fn open_postgres(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Ok(SqlStore {
            pool: open_pool(url, max_connections, Access::ReadWrite).await?,
            dialect: Dialect::Postgres,
            runner_lock: std::sync::Mutex::new(None),
            sqlite_path: None,
            file: None,
            replaced: Default::default(),
            wal_backoff_until: std::sync::Mutex::new(None),
            outbox_targets: Default::default(),
            revocation_scope: Default::default(),
        })
    }
}
