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
pub mod query;
mod schema;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use model::*;
pub use query::Reader;
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
    /// A query command was pointed at a SQLite file that does not exist (it never creates one).
    #[error(
        "no optout database at {path}: check --store, or create it with `optout migrate` (or `optout run`)"
    )]
    NotFound { path: String },
    /// The database holds no optout schema, or an older one than this binary reads.
    #[error("{0}")]
    Schema(String),
    /// The database could not be reached or opened; the cause is the database's own words.
    #[error("{0}")]
    Connect(sqlx::Error),
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

/// What a store failure means for the batch that met it (DESIGN.md, "Errors at the store
/// boundary").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The database or the way to it failed (connection lost, timeout, serialization failure,
    /// restart, disk full): retry the same batch with backoff.
    Transient,
    /// The database refused a value in the batch (encoding, constraint, size limit): retrying
    /// the same rows fails the same way, so find the record and dead-letter it.
    Data,
    /// This worker's lease on the shard is gone: stop the shard.
    LeaseLost,
    /// Neither: a schema mismatch, a read-only database, a bad setting. Needs an operator.
    Fatal,
}

impl StoreError {
    /// Classifies the failure (PostgreSQL by SQLSTATE class, SQLite by primary result code).
    pub fn kind(&self) -> FailureKind {
        match self {
            StoreError::Database(e) | StoreError::Migration { source: e, .. } => sqlx_kind(e),
            StoreError::LeaseLost { .. } => FailureKind::LeaseLost,
            StoreError::Io(_) => FailureKind::Transient,
            StoreError::Connect(e) => match sqlx_kind(e) {
                FailureKind::Transient => FailureKind::Transient,
                _ => FailureKind::Fatal,
            },
            _ => FailureKind::Fatal,
        }
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == FailureKind::Transient
    }
}

/// See [`StoreError::kind`].
fn sqlx_kind(e: &sqlx::Error) -> FailureKind {
    use sqlx::Error as E;
    match e {
        E::Database(db) => match db.code() {
            Some(code) => db_code_kind(&code),
            None => FailureKind::Fatal,
        },
        E::Encode(_) => FailureKind::Data,
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => FailureKind::Transient,
        _ => FailureKind::Fatal,
    }
}

/// A database error code: a PostgreSQL SQLSTATE (always five characters, often all digits,
/// like `23514`) or a SQLite extended result code (a number below 10,000 whose low byte is the
/// primary code).
fn db_code_kind(code: &str) -> FailureKind {
    if code.len() < 5
        && let Ok(n) = code.parse::<u32>()
    {
        return match n & 0xff {
            // BUSY, LOCKED, IOERR, FULL, PROTOCOL
            5 | 6 | 10 | 13 | 15 => FailureKind::Transient,
            // TOOBIG, CONSTRAINT, MISMATCH (RANGE, a bind-index bug, is no data's fault)
            18..=20 => FailureKind::Data,
            _ => FailureKind::Fatal,
        };
    }
    match code.get(..2) {
        // connection exception, transaction rollback (serialization, deadlock), insufficient
        // resources, operator intervention (shutdown, restart), system error, lock not available
        Some("08" | "40" | "53" | "57" | "58") => FailureKind::Transient,
        _ if code == "55P03" => FailureKind::Transient,
        // data exception (bad encoding, NUL, out of range), integrity constraint, program limit
        // exceeded (index row too large)
        Some("22" | "23" | "54") => FailureKind::Data,
        _ => FailureKind::Fatal,
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

    /// Closes the connections cleanly: SQLite then folds its write-ahead log back into the
    /// database file, so the file alone is a complete copy.
    async fn close(&self);

    /// Claims the right to run the consumer from this process.
    ///
    /// SQLite: an exclusive OS lock on the database file, so a second `optout run` refuses to
    /// start. PostgreSQL: nothing to do here (leases coordinate the workers).
    async fn claim_single_runner(&self) -> Result<(), StoreError>;
}

/// Opens the SQL store named by `url` for `access`: the concrete type, which is both a
/// [`Store`] and the lease table's owner. `max_connections` sizes the PostgreSQL pool
/// (about one per shard this worker may read); SQLite always uses one.
pub async fn open_sql_with(
    url: &str,
    max_connections: u32,
    access: Access,
) -> Result<Arc<SqlStore>, StoreError> {
    Ok(Arc::new(match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => SqlStore::open_sqlite(&path, access).await?,
        StoreUrl::Postgres(url) => SqlStore::open_postgres(&url, max_connections, access).await?,
    }))
}

/// Opens the store named by `url` for writing, creating and migrating it as needed.
pub async fn open_sql(url: &str, max_connections: u32) -> Result<Arc<SqlStore>, StoreError> {
    open_sql_with(url, max_connections, Access::ReadWrite).await
}

/// Opens the store named by `url` for writing (see [`open_sql`]).
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open_sql(url, max_connections).await?)
}

/// Opens the store named by `url` for queries only (see [`Access::ReadOnly`]).
pub async fn open_read_only(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open_sql_with(url, max_connections, Access::ReadOnly).await?)
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
            // Shown without its parameters: an unknown key's value may be a misplaced password.
            check_postgres_params(url).map_err(|reason| StoreError::InvalidUrl {
                url: format!("{}?…", redact(url).split('?').next().unwrap_or_default()),
                reason,
            })?;
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        Err(invalid(
            "unsupported scheme; use sqlite://PATH (embedded) or postgres://USER@HOST/DB",
        ))
    }
}

/// The query parameters sqlx's PostgreSQL driver understands (sqlx-postgres 0.9, `parse.rs`).
const POSTGRES_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Refuses a parameter sqlx does not know. sqlx would ignore it with a warning that logs its
/// value, so a misspelt `passwd=` would print a password (and a misspelt `sslmode` silently
/// weaken TLS). The URL is read the way sqlx reads it; one it cannot read is left to sqlx,
/// whose parse errors hold no part of the URL.
fn check_postgres_params(url: &str) -> Result<(), String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    for (key, _) in parsed.query_pairs() {
        if !POSTGRES_PARAMS.contains(&&*key) && !key.starts_with("options[") {
            return Err(format!(
                "unknown parameter `{key}`; PostgreSQL URLs take {}",
                POSTGRES_PARAMS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Hides the password in a connection URL before it reaches a log line or an error.
///
/// Errs on the side of hiding too much: every spelling sqlx accepts is covered, including
/// passwords that contain raw `@`, `:`, `/`, `?` or `%` (userinfo runs to the *last* `@`),
/// `password=` query parameters (keys compared after percent-decoding, any case) and libpq-style
/// `key=value` strings. A query value that itself contains `@` makes the host part hidden too.
pub fn redact(url: &str) -> String {
    let (prefix, rest) = split_scheme(url);
    let authority = rest.split('?').next().unwrap_or_default();
    // Userinfo before any `?`: hide it whole, whatever it contains (`&`, `=`, `@`...).
    if let Some(at) = authority.rfind('@')
        && let Some((user, _)) = rest[..at].split_once(':')
    {
        return format!("{prefix}{user}:***{}", redact_password_params(&rest[at..]));
    }
    // Parameters first, so that an `@` inside a `password=` value cannot pass for userinfo;
    // then userinfo whose password holds a raw `?`.
    let rest = redact_password_params(rest);
    match rest
        .rfind('@')
        .and_then(|at| Some((rest[..at].split_once(':')?.0, at)))
    {
        Some((user, at)) => format!("{prefix}{user}:***{}", &rest[at..]),
        None => format!("{prefix}{rest}"),
    }
}

/// Splits `scheme://` (or `scheme:` followed by slashes) from the rest; no scheme, no prefix.
fn split_scheme(url: &str) -> (&str, &str) {
    if let Some(i) = url.find("://") {
        return url.split_at(i + 3);
    }
    let is_scheme = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    };
    match url.split_once(':') {
        Some((scheme, rest)) if is_scheme(scheme) => {
            let slashes = rest.len() - rest.trim_start_matches('/').len();
            url.split_at(scheme.len() + 1 + slashes)
        }
        _ => ("", url),
    }
}

/// Replaces the value of every `password=` pair. A key starts after `?`, `&`, `;` or
/// whitespace; a value runs to the next `&`, `;` or whitespace (so a raw `@`, `?` or `:` in
/// it stays hidden).
fn redact_password_params(s: &str) -> String {
    let ends_value = |c: char| c == '&' || c == ';' || c.is_whitespace();
    let mut out = String::with_capacity(s.len());
    for segment in s.split_inclusive(ends_value) {
        let (pair, end) = match segment.char_indices().last() {
            Some((i, c)) if ends_value(c) => segment.split_at(i),
            _ => (segment, ""),
        };
        match pair.find('=') {
            Some(eq) if is_password_key(pair[..eq].rsplit('?').next().unwrap_or_default()) => {
                out.push_str(&pair[..=eq]);
                out.push_str("***");
            }
            _ => out.push_str(pair),
        }
        out.push_str(end);
    }
    out
}

/// Whether a query key, once percent-decoded, names a password (`password`, `PassWord`, `p%61ssword`).
fn is_password_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let key = decoded.trim();
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("pass")
}

#[cfg(test)]
mod tests;
