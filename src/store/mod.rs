//! Persistence: the [`Store`] trait and its backends.
//!
//! A store keeps the opt events (unique by CloudEvent id), the current opt status per
//! subscriber, the dead letters, the sink test events and the per-shard checkpoints. The one
//! write path, [`Store::commit`], applies a whole batch *and* the shard's checkpoint in one
//! transaction, which is what makes every record's effect land exactly once across crashes.
//!
//! The backend is picked from the URL scheme at start-up, as atuin does: `sqlite://` for the
//! embedded default (one instance), `postgres://` for several instances sharing a stream.

mod lease;
mod model;
mod postgres;
mod schema;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use model::*;
pub use schema::Dialect;
pub use sql::SqlStore;

/// What can go wrong at the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend we have, or is malformed; the user must fix the setting.
    #[error("invalid store URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Another `optout run` holds this SQLite file.
    #[error(
        "another `optout run` is already using {path}; stop it first, or use PostgreSQL (`--store postgres://…`) to run several instances"
    )]
    Locked { path: String },
    /// The checkpoint write was refused because this worker no longer holds the shard's lease.
    #[error("lease on shard {shard_id} was lost (taken over by another worker); not committing")]
    LeaseLost { shard_id: String },
    /// The database failed; usually worth retrying (connection lost, busy, restarted).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed; the schema is not what this binary expects.
    #[error("migration {version} failed: {source}")]
    Migration { version: i64, source: sqlx::Error },
    /// Any other I/O problem (lock file).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(e) => !matches!(
                e,
                sqlx::Error::ColumnDecode { .. }
                    | sqlx::Error::ColumnNotFound(_)
                    | sqlx::Error::TypeNotFound { .. }
                    | sqlx::Error::Decode(_)
            ),
            StoreError::Io(_) => true,
            _ => false,
        }
    }
}

impl From<StoreError> for crate::kinesis::ProcessError {
    /// What the consumer engine needs to know of a store failure: retry, or stop the shard.
    fn from(e: StoreError) -> Self {
        crate::kinesis::ProcessError {
            message: e.to_string(),
            retryable: e.is_retryable(),
            lost_ownership: matches!(e, StoreError::LeaseLost { .. }),
        }
    }
}

/// The persistence contract shared by every backend.
///
/// Designed for several workers: commits may carry a [`LeaseToken`], and then only land while
/// the lease is held (fencing), on both backends; SQLite normally has one runner and no leases.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short backend name for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Applies one batch's effects and the shard's checkpoint atomically.
    ///
    /// Duplicate opt events (same id) are ignored; status follows the latest event by
    /// timestamp (ties: larger event id) whatever order events arrive in.
    async fn commit(&self, batch: &Batch) -> Result<CommitSummary, StoreError>;

    /// Every checkpoint recorded for a stream.
    async fn checkpoints(&self, stream: &str) -> Result<Vec<Checkpoint>, StoreError>;

    /// Current opt status rows matching the filter, ordered by account, scope, subscriber.
    async fn status(&self, filter: &StatusFilter) -> Result<Vec<StatusRow>, StoreError>;

    /// Opt events matching the filter, ordered by time then id.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError>;

    /// Subscribers whose latest STOP/START signal is a phrase revocation (see
    /// [`RevocationRow`]), ordered by time then event id.
    async fn revocations(
        &self,
        filter: &RevocationFilter,
    ) -> Result<Vec<RevocationRow>, StoreError>;

    /// All dead letters, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetterRow>, StoreError>;

    /// All sink test events, oldest first.
    async fn test_events(&self) -> Result<Vec<TestEventRow>, StoreError>;

    /// Cheap liveness probe of the database (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Claims the right to run the consumer from this process.
    ///
    /// SQLite: an exclusive OS lock on the database file, so a second `optout run` refuses to
    /// start. PostgreSQL: nothing to do here (leases coordinate the workers).
    async fn claim_single_runner(&self) -> Result<(), StoreError>;
}

/// Opens the SQL store named by `url` and runs its migrations: the concrete type, which is
/// both a [`Store`] and a [`crate::kinesis::LeaseStore`]. `max_connections` sizes the
/// PostgreSQL pool (about one per shard this worker may read); SQLite always uses one.
pub async fn open_sql(url: &str, max_connections: u32) -> Result<Arc<SqlStore>, StoreError> {
    Ok(Arc::new(match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => SqlStore::open_sqlite(&path).await?,
        StoreUrl::Postgres(url) => SqlStore::open_postgres(&url, max_connections).await?,
    }))
}

/// Opens the store named by `url` (see [`open_sql`]).
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open_sql(url, max_connections).await?)
}

/// Opens the store for `optout run`: with PostgreSQL, also its leases, so that several
/// workers can share the stream; with SQLite, no leases (one runner per file).
pub async fn open_for_run(
    url: &str,
    max_connections: u32,
) -> Result<(Arc<dyn Store>, Option<Arc<dyn crate::kinesis::LeaseStore>>), StoreError> {
    let store = open_sql(url, max_connections).await?;
    let leases: Option<Arc<dyn crate::kinesis::LeaseStore>> = match store.dialect() {
        schema::Dialect::Postgres => Some(store.clone()),
        schema::Dialect::Sqlite => None,
    };
    Ok((store, leases))
}

/// Registers sqlx's SQLite and PostgreSQL drivers with the `any` driver (idempotent).
fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// Path of the SQLite file (`:memory:` for a private in-memory database).
    Sqlite(String),
    /// A PostgreSQL connection URL, as given.
    Postgres(String),
}

impl StoreUrl {
    /// Parses `sqlite://PATH`, `sqlite:PATH`, `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("no file path; use sqlite://optout.db"));
            }
            return Ok(StoreUrl::Sqlite(path.to_string()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        Err(invalid(
            "unsupported scheme; use sqlite://PATH (embedded) or postgres://USER@HOST/DB",
        ))
    }
}

/// Hides the password in a connection URL before it reaches a log line or an error.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        assert_eq!(
            StoreUrl::parse("sqlite://optout.db").unwrap(),
            StoreUrl::Sqlite("optout.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/optout.db").unwrap(),
            StoreUrl::Sqlite("/var/lib/optout.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite::memory:").unwrap(),
            StoreUrl::Sqlite(":memory:".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgres://u@localhost/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        let err = StoreUrl::parse("mysql://root:hunter2@h/db").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unsupported scheme"), "{msg}");
        assert!(!msg.contains("hunter2"), "password leaked: {msg}");
        assert!(StoreUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
