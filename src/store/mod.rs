//! Persistence. Two interfaces, one per direction:
//! - [`Store`], the write side: one batch's effects committed atomically with its shard's
//!   checkpoint ([`Store::commit`], which is what makes every record's effect land exactly once
//!   across crashes), the checkpoints, the lease table ([`Leases`]) and closing;
//! - [`Reader`] ([`query`]), the read side: every read, in keyset pages or streamed exports,
//!   on connections of its own.
//!
//! One SQL implementation serves SQLite and PostgreSQL (`sql.rs`); the backend is picked from
//! the URL scheme at start-up (`url.rs`), as atuin does: `sqlite://` for the embedded default
//! (one instance), `postgres://` for several instances sharing a stream. The store imports
//! nothing of the engine, the application or HTTP.

mod arrivals;
mod backlog;
mod batched;
mod changes;
mod error;
mod lease;
pub mod metrics;
mod model;
mod multirow;
mod opt_events;
mod outbox;
mod outbox_sql;
mod postgres;
pub mod query;
mod schema;
mod sql;
mod sqlite;
mod sqlite_file;
mod status;
mod url;

use std::sync::Arc;

use async_trait::async_trait;

pub use error::{FailureKind, StoreError};
pub use lease::Leases;
pub use model::*;
pub use outbox::{
    Change, Item, Outbox, OutboxTarget, ResyncSummary, Settle, Settlement, TargetBacklog,
};
pub use query::Reader;
pub use url::{StoreUrl, redact};

use sql::SqlStore;

pub(crate) use outbox::change_of;

/// Resolves when a commit in this process next writes changes to the feed (long-polls of the
/// feed wait on it between reads).
pub(crate) fn changes_notified() -> tokio::sync::futures::Notified<'static> {
    changes::CHANGED.notified()
}

/// How a command uses the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `run`, `replay`, `migrate`: creates the database if needed and migrates it.
    ReadWrite,
    /// Queries: never creates, migrates or writes; works on a read-only file or with a
    /// PostgreSQL role that may only SELECT, and refuses a schema older than the binary's.
    ReadOnly,
}

/// The write side of the store, shared by every backend.
///
/// Designed for several workers: commits may carry a [`LeaseToken`], and then only land while
/// the lease is held (fencing), on both backends; SQLite normally has one runner and no leases.
///
/// Every store is also an [`Outbox`]: the commit writes the outbox items, and the composition
/// root hands the same store to the dispatchers that claim and settle them (an
/// `Arc<dyn Store>` coerces to `Arc<dyn Outbox>`).
#[async_trait]
pub trait Store: Leases + Outbox + Send + Sync + 'static {
    /// Short backend name for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Whether several processes may write this store at once (PostgreSQL): they then share
    /// a stream's shards through leases. SQLite has one runner per file.
    fn shared(&self) -> bool;

    /// Applies one batch's effects and the shard's checkpoint atomically.
    ///
    /// An opt event already stored under the same identity (the message SID, else the event
    /// id) is merged into the stored one, which records every path that brought it; status
    /// follows the latest event by time (ties: larger event id) whatever order events and
    /// their copies arrive in.
    async fn commit(&self, batch: &Batch) -> Result<CommitSummary, StoreError>;

    /// How far an opt-out reaches in what the next commits write to the change feed and the
    /// outbox (`--revocation-scope`): under `account` and `all` a commit answers every key of
    /// the touched subscribers' groups that the store has seen again, as the sender's check
    /// in that mode does. `scope` until set.
    fn set_revocation_scope(&self, mode: RevocationScope);

    /// Answers every key the store has seen again under the current mode, writing a change
    /// (and outbox items for the current targets) where the answer differs from the last one
    /// recorded, and enqueues every current answer for `new_target` (a target added after the
    /// changes were written). Idempotent: a second run writes nothing.
    async fn resync(&self, new_target: Option<&OutboxTarget>) -> Result<ResyncSummary, StoreError>;

    /// Every checkpoint recorded for a stream.
    async fn checkpoints(&self, stream: &str) -> Result<Vec<Checkpoint>, StoreError>;

    /// Cheap liveness probe of the database.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes the connections cleanly: SQLite then folds its write-ahead log back into the
    /// database file, so the file alone is a complete copy.
    async fn close(&self);

    /// Periodic upkeep while a command writes, called by the composition root about once a
    /// second. SQLite: fails with [`StoreError::Replaced`] once the database file was deleted
    /// or replaced under the process (every commit refuses from then on), reports the
    /// write-ahead log's size (`optout_sqlite_wal_bytes`) and truncates it when readers allow.
    /// PostgreSQL: nothing.
    async fn upkeep(&self) -> Result<(), StoreError>;

    /// Claims the right to run the consumer from this process.
    ///
    /// SQLite: an exclusive OS lock on the database file, so a second `optout run` refuses to
    /// start. PostgreSQL: nothing to do here (leases coordinate the workers).
    async fn claim_single_runner(&self) -> Result<(), StoreError>;
}

/// Opens the store named by `url` for writing, creating and migrating it as needed.
/// `max_connections` sizes the PostgreSQL pool (about one per shard this worker may read);
/// SQLite always uses one.
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => SqlStore::open_sqlite(&path).await?,
        StoreUrl::Postgres(url) => SqlStore::open_postgres(&url, max_connections).await?,
    }))
}

/// Longest wait for the first connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens one connection and runs `sql` on it, so that a store that cannot be reached or read
/// fails at once with the database's own reason, instead of a pool retrying in silence until
/// its timeout says only "pool timed out".
async fn probe(
    options: &sqlx::any::AnyConnectOptions,
    sql: &'static str,
) -> Result<(), StoreError> {
    use sqlx::{Connection, Executor};
    let attempt = async {
        let mut conn = sqlx::AnyConnection::connect_with(options).await?;
        conn.execute(sql).await?;
        conn.close().await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StoreError::Connect(e)),
        Err(_) => Err(StoreError::Connect(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        )))),
    }
}

/// Registers sqlx's SQLite and PostgreSQL drivers with the `any` driver (idempotent).
fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}
