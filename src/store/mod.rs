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
        assert_eq!(
            redact("postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem"),
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        );
    }

    /// Asserts that `url` redacted keeps none of `secrets` and still shows `keep`.
    fn hides(url: &str, secrets: &[&str], keep: &str) {
        let shown = redact(url);
        for secret in secrets {
            assert!(
                !shown.contains(secret),
                "`{secret}` leaked from {url}: {shown}"
            );
        }
        assert!(shown.contains(keep), "{shown} lost `{keep}`");
    }

    #[test]
    fn redacts_userinfo_with_raw_at_sign() {
        // Cut at the first `@`, the old redaction printed `ss@word`.
        hides(
            "postgres://u:p@ss@word@db.example.com/optout",
            &["p@ss", "ss@word", "word"],
            "@db.example.com/optout",
        );
    }

    #[test]
    fn redacts_userinfo_with_raw_colon_slash_and_percent() {
        hides("postgres://u:pa:ss@h/db", &["pa:ss", "ss@"], "u:***@h/db");
        hides("postgres://u:pa/ss@h/db", &["pa/ss", "pa"], "u:***@h/db");
        hides(
            "postgres://u:100%sure@h/db",
            &["100%sure", "sure"],
            "u:***@h/db",
        );
        hides("postgres://u:pa?ss@h/db", &["pa?ss", "pa"], "u:***@h/db");
        hides(
            "postgres://u:a&password=b@h/db",
            &["a&", "=b"],
            "u:***@h/db",
        );
    }

    #[test]
    fn redacts_percent_encoded_userinfo() {
        hides(
            "postgres://u:p%40ss%3Aw%2Frd%25@h/db",
            &["p%40ss", "%3Aw", "%2Frd", "%25"],
            "u:***@h/db",
        );
    }

    #[test]
    fn redacts_password_query_parameters() {
        // Was printed whole: no userinfo, so the old redaction left it alone.
        hides(
            "postgres://127.0.0.1:1/db?user=u&password=TopSecret1",
            &["TopSecret1"],
            "user=u&password=***",
        );
        hides(
            "postgres://h/db?password=TopSecret1&sslmode=require",
            &["TopSecret1"],
            "&sslmode=require",
        );
        hides(
            "postgres://h/db?sslmode=require&PASSWORD=TopSecret1",
            &["TopSecret1"],
            "sslmode=require",
        );
        hides(
            "postgres://h/db?p%61ssword=TopSecret1",
            &["TopSecret1"],
            "h/db",
        );
        hides(
            "postgres://h/db?password=Top%26Secret%401",
            &["Top", "Secret"],
            "h/db",
        );
        hides(
            "postgres://u:one@h/db?password=two",
            &["one", "two"],
            "u:***@h/db",
        );
        hides(
            "postgres://h/db?password=Top@Secret?1:x",
            &["Top", "Secret", "1:x"],
            "h/db?password=***",
        );
    }

    #[test]
    fn redacts_malformed_and_keyword_spellings() {
        // Not a URL sqlx accepts, but it reaches the "unsupported scheme" error all the same.
        hides("postgres:/u:TopSecret1@h/db", &["TopSecret1"], "u:***@h/db");
        hides("postgresql:u:TopSecret1@h", &["TopSecret1"], "@h");
        hides(
            "host=h user=u password=TopSecret1 dbname=d",
            &["TopSecret1"],
            "dbname=d",
        );
        hides("mysql://root:hunter2@h/db", &["hunter2"], "root:***@h/db");
    }

    #[test]
    fn unknown_postgres_parameters_are_refused_without_their_values() {
        for (url, key) in [
            ("postgres://u@h/db?passwd=TopSecret1", "passwd"),
            (
                "postgres://u@h/db?sslmode=require&ssl_mode=TopSecret1",
                "ssl_mode",
            ),
        ] {
            let msg = StoreUrl::parse(url).unwrap_err().to_string();
            assert!(msg.contains(&format!("unknown parameter `{key}`")), "{msg}");
            assert!(!msg.contains("TopSecret1"), "{msg}");
        }
        let known = "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=a\
                     &options[search_path]=s&password=p&statement-cache-capacity=10";
        assert!(matches!(StoreUrl::parse(known), Ok(StoreUrl::Postgres(_))));
    }

    #[test]
    fn invalid_url_errors_never_show_the_password() {
        for url in [
            "postgres:/u:TopSecret1@h/db",
            "pg://u:TopSecret1@h/db",
            "host=h password=TopSecret1",
        ] {
            let msg = StoreUrl::parse(url).unwrap_err().to_string();
            assert!(!msg.contains("TopSecret1"), "{msg}");
        }
    }
}
