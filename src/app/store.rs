//! Opening the store for a command, with failures in one line that names the cause and never
//! the password: a wrong `--store` is a usage error, an unreachable or refusing database a
//! run-time one.

use std::sync::Arc;

use super::AppError;
use crate::store::query::QueryError;
use crate::store::{self, Reader, RevocationScope, Store, StoreError};

/// Opens the store for writing (`run`, `replay`, `migrate`), creating and migrating it.
pub(super) async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, AppError> {
    store::open(url, max_connections)
        .await
        .map_err(|e| open_failed(url, e))
}

/// Opens the store's read side: `connections` read-only connections of its own, so that
/// queries never wait behind the consumer's commits (never creates, migrates or writes),
/// answering status under `scope` (`--revocation-scope`).
pub(super) async fn open_reader(
    url: &str,
    connections: u32,
    scope: RevocationScope,
) -> Result<Arc<Reader>, AppError> {
    match Reader::open(url, connections).await {
        Ok(reader) => Ok(Arc::new(reader.with_revocation_scope(scope))),
        Err(QueryError::Invalid(message)) => Err(AppError::Usage(message)),
        Err(QueryError::Store(e)) => Err(open_failed(url, e)),
    }
}

/// `optout migrate`: creates or upgrades the store's schema, then closes it. Returns the
/// store's URL as it may be shown (its password hidden).
pub async fn migrate(url: &str) -> Result<String, AppError> {
    open(url, 2).await?.close().await;
    Ok(store::redact(url))
}

impl From<StoreError> for AppError {
    /// A mistake in what was asked (a wrong URL, a store held by another runner, a missing or
    /// older file) is the user's to fix; anything else failed at run time.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidUrl { .. }
            | StoreError::Locked { .. }
            | StoreError::NotFound { .. }
            | StoreError::Schema(_) => AppError::Usage(e.to_string()),
            StoreError::Database(sqlx::Error::Configuration(_))
            | StoreError::Connect(sqlx::Error::Configuration(_)) => AppError::Usage(format!(
                "invalid --store: {}",
                store::redact(&e.to_string())
            )),
            other => AppError::Store(other),
        }
    }
}

impl From<QueryError> for AppError {
    /// A query the store cannot answer as asked is the user's to fix.
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(message) => AppError::Usage(message),
            QueryError::Store(e) => e.into(),
        }
    }
}

/// A store that could not be opened, reported against the (redacted) URL, in one line that
/// names the cause.
fn open_failed(url: &str, e: StoreError) -> AppError {
    let url = store::redact(url);
    match e {
        StoreError::Database(db) | StoreError::Connect(db) if is_tls_failure(&db) => {
            AppError::Open(format!(
                "cannot open store {url}: {} (TLS: check sslmode, that sslrootcert names the CA \
                 that signed the server's certificate, e.g. the RDS bundle, and with verify-full \
                 that the host is a name in that certificate)",
                store::redact(&db.to_string())
            ))
        }
        StoreError::Database(db) | StoreError::Connect(db)
            if !matches!(db, sqlx::Error::Configuration(_)) =>
        {
            AppError::Open(format!(
                "cannot open store {url}: {}",
                store::redact(&db.to_string())
            ))
        }
        StoreError::Migration { version, source } => AppError::Open(format!(
            "cannot migrate store {url} (migration {version}): {}",
            store::redact(&source.to_string())
        )),
        other => other.into(),
    }
}

/// Whether a connection failed in the TLS handshake (sqlx reports a refused certificate as an
/// I/O error that carries rustls's message).
fn is_tls_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io.to_string().contains("certificate"),
        _ => false,
    }
}
