//! What differs between the SQL dialects: migrations, the database clock, row locking and
//! lease fencing.
//!
//! Migrations are embedded in the binary, numbered, append-only, and applied at start-up in
//! one transaction (both SQLite and PostgreSQL have transactional DDL). PostgreSQL takes an
//! advisory lock first so that several instances starting together migrate once.

use sqlx::AnyPool;
use sqlx::{Any, Row, Transaction};

use super::StoreError;
use super::model::LeaseToken;

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Embedded SQLite (one instance).
    Sqlite,
    /// PostgreSQL (several instances with leases).
    Postgres,
}

/// `(version, name, sql)`; never edit a released entry, add a new one.
type Migration = (i64, &'static str, &'static str);

const SQLITE: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "leases",
        include_str!("../../migrations/sqlite/0002_leases.sql"),
    ),
    (
        3,
        "detection",
        include_str!("../../migrations/sqlite/0003_detection.sql"),
    ),
    (
        4,
        "query",
        include_str!("../../migrations/sqlite/0004_query.sql"),
    ),
    (
        5,
        "storable_times",
        include_str!("../../migrations/sqlite/0005_storable_times.sql"),
    ),
    (
        6,
        "identity",
        include_str!("../../migrations/sqlite/0006_identity.sql"),
    ),
    (
        7,
        "changes_outbox",
        include_str!("../../migrations/sqlite/0007_changes_outbox.sql"),
    ),
    (
        8,
        "honoured",
        include_str!("../../migrations/sqlite/0008_honoured.sql"),
    ),
    (
        9,
        "daily",
        include_str!("../../migrations/sqlite/0009_daily.sql"),
    ),
    (
        10,
        "feed_mode",
        include_str!("../../migrations/sqlite/0010_feed_mode.sql"),
    ),
];

const POSTGRES: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "detection",
        include_str!("../../migrations/postgres/0002_detection.sql"),
    ),
    (
        3,
        "native_types",
        include_str!("../../migrations/postgres/0003_native_types.sql"),
    ),
    (
        4,
        "identity",
        include_str!("../../migrations/postgres/0004_identity.sql"),
    ),
    (
        5,
        "changes_outbox",
        include_str!("../../migrations/postgres/0005_changes_outbox.sql"),
    ),
    (
        6,
        "honoured",
        include_str!("../../migrations/postgres/0006_honoured.sql"),
    ),
    (
        7,
        "daily",
        include_str!("../../migrations/postgres/0007_daily.sql"),
    ),
    (
        8,
        "feed_mode",
        include_str!("../../migrations/postgres/0008_feed_mode.sql"),
    ),
    (
        9,
        "daily_per_statement",
        include_str!("../../migrations/postgres/0009_daily_per_statement.sql"),
    ),
];

impl Dialect {
    /// A time column as the API shows it: `2026-03-01T12:00:04.512000Z`, whatever the backend
    /// (PostgreSQL keeps times as `timestamptz`, SQLite as fixed-width RFC 3339 text).
    pub(super) fn ts_out(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => column.to_string(),
            Dialect::Postgres => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            }
        }
    }

    /// A bound time parameter as the column's type.
    pub(super) fn ts_in(self, placeholder: &str) -> String {
        match self {
            Dialect::Sqlite => placeholder.to_string(),
            Dialect::Postgres => format!("CAST({placeholder} AS timestamptz)"),
        }
    }

    /// Backend name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// SQL expression for the database clock's current time, in ms since the Unix epoch
    /// (BIGINT): lease expiry is judged by one clock, whatever the workers' clocks say.
    pub fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Dialect::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        }
    }

    /// Suffix of a SELECT that locks the rows it returns until the transaction ends. Empty on
    /// SQLite, which has one writer at a time (a transaction's first write takes the lock).
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Like [`Dialect::for_update`], but rows another transaction has locked are skipped
    /// instead of waited for (PostgreSQL), so concurrent takers split the free rows.
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    fn migrations(self) -> &'static [Migration] {
        match self {
            Dialect::Sqlite => SQLITE,
            Dialect::Postgres => POSTGRES,
        }
    }

    /// The schema version this binary writes and reads.
    pub fn latest_version(self) -> i64 {
        self.migrations().last().map_or(0, |m| m.0)
    }

    /// For read-only use: checks that the database holds this binary's schema, without
    /// changing anything. An older schema (or none) is a [`StoreError::Schema`] that says to
    /// run `optout migrate`.
    pub async fn check_schema(self, pool: &AnyPool) -> Result<(), StoreError> {
        let found: Option<i64> = match sqlx::query("SELECT MAX(version) FROM optout_migrations")
            .fetch_one(pool)
            .await
        {
            Ok(row) => row.try_get(0)?,
            Err(sqlx::Error::Database(e)) if is_undefined_table(&*e) => {
                return Err(StoreError::Schema(
                    "the store holds no optout schema: check --store, or create it with `optout migrate`"
                        .into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let expected = self.latest_version();
        match found {
            Some(v) if v >= expected => Ok(()),
            found => Err(StoreError::Schema(format!(
                "the store's schema is version {}, older than this optout's {expected}: run `optout migrate` (as a role that may alter tables)",
                found.unwrap_or(0)
            ))),
        }
    }

    /// Applies the migrations this database has not seen yet; returns how many ran.
    ///
    /// A database already at this binary's version is only read, never written (no DDL, no
    /// lock): a worker that restarts while PostgreSQL is read-only (a failover whose DNS still
    /// names the old writer) then starts, and its commits wait out the failover with the
    /// consumer's backoff instead of the pod crash-looping on `CREATE TABLE IF NOT EXISTS`.
    pub async fn migrate(self, pool: &AnyPool) -> Result<usize, StoreError> {
        if self.is_current(pool).await {
            return Ok(0);
        }
        let mut tx = pool.begin().await?;
        if self == Dialect::Postgres {
            // Several workers may start at once: the first migrates, the others wait here.
            sqlx::query("SELECT pg_advisory_xact_lock(7368464901)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS optout_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM optout_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let mut ran = 0;
        for &(version, name, sql) in self.migrations() {
            if applied.contains(&version) {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|source| StoreError::Migration { version, source })?;
            sqlx::query(
                "INSERT INTO optout_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(name)
            .bind(super::model::format_ts(chrono::Utc::now()))
            .execute(&mut *tx)
            .await?;
            ran += 1;
        }
        tx.commit().await?;
        Ok(ran)
    }

    /// Whether every migration of this binary is recorded as applied (read only; any error,
    /// such as no table yet, is "no", and the full path then reports it).
    async fn is_current(self, pool: &AnyPool) -> bool {
        let Ok(rows) = sqlx::query("SELECT version FROM optout_migrations")
            .fetch_all(pool)
            .await
        else {
            return false;
        };
        let applied: Vec<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
        self.migrations().iter().all(|m| applied.contains(&m.0))
    }

    /// Fencing: fails with [`StoreError::LeaseLost`] unless `lease` still holds the shard.
    ///
    /// PostgreSQL keeps the lease row locked until the transaction ends, so no one can take
    /// it between this check and the commit. SQLite needs no lock: writers are serialised, and
    /// a transaction whose read went stale before its first write fails (`SQLITE_BUSY`)
    /// instead of committing.
    pub async fn check_lease(
        self,
        tx: &mut Transaction<'_, Any>,
        stream: &str,
        shard_id: &str,
        lease: &LeaseToken,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT token FROM leases WHERE stream_name = $1 AND shard_id = $2 \
             AND owner = $3 AND token = $4{}",
            self.for_update()
        );
        // Audited: only a constant locking clause is spliced in; values are bound.
        let held = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream)
            .bind(shard_id)
            .bind(&lease.owner)
            .bind(lease.token)
            .fetch_optional(&mut **tx)
            .await?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::LeaseLost {
                shard_id: shard_id.to_string(),
            }),
        }
    }
}

/// "No such table": PostgreSQL's SQLSTATE 42P01, or SQLite's generic error with that message.
fn is_undefined_table(e: &dyn sqlx::error::DatabaseError) -> bool {
    e.code().as_deref() == Some("42P01") || e.message().starts_with("no such table")
}

/// A set of statements written once for both dialects; only the casts and locks differ.
pub(super) trait Statements: Sized + 'static {
    fn build(d: Dialect) -> Self;
}

/// Statements of one kind built once per dialect, on first use: a commit path's SQL is
/// formatted from constants and the dialect's casts once per process, not per statement.
pub(super) struct PerDialect<T: Statements> {
    sqlite: std::sync::LazyLock<T, fn() -> T>,
    postgres: std::sync::LazyLock<T, fn() -> T>,
}

impl<T: Statements> PerDialect<T> {
    pub(super) const fn new() -> Self {
        PerDialect {
            sqlite: std::sync::LazyLock::new(|| T::build(Dialect::Sqlite)),
            postgres: std::sync::LazyLock::new(|| T::build(Dialect::Postgres)),
        }
    }

    pub(super) fn get(&self, d: Dialect) -> &T {
        match d {
            Dialect::Sqlite => &self.sqlite,
            Dialect::Postgres => &self.postgres,
        }
    }
}

/// A statement of a [`PerDialect`] set, ready to bind.
pub(super) fn audited(
    text: &'static str,
) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    // Audited: every such statement is built once from constants and the dialect's casts.
    sqlx::query(sqlx::AssertSqlSafe(text))
}
