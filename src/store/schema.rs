//! What differs between the SQL dialects: migrations and lease fencing.
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

const SQLITE: &[Migration] = &[(
    1,
    "init",
    include_str!("../../migrations/sqlite/0001_init.sql"),
)];

const POSTGRES: &[Migration] = &[(
    1,
    "init",
    include_str!("../../migrations/postgres/0001_init.sql"),
)];

impl Dialect {
    /// Backend name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    fn migrations(self) -> &'static [Migration] {
        match self {
            Dialect::Sqlite => SQLITE,
            Dialect::Postgres => POSTGRES,
        }
    }

    /// Applies the migrations this database has not seen yet; returns how many ran.
    pub async fn migrate(self, pool: &AnyPool) -> Result<usize, StoreError> {
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

    /// Fencing: fails with [`StoreError::LeaseLost`] unless `lease` still holds the shard,
    /// and keeps the lease row locked until the transaction ends so no one can take it
    /// between this check and the commit.
    pub async fn check_lease(
        self,
        tx: &mut Transaction<'_, Any>,
        stream: &str,
        shard_id: &str,
        lease: &LeaseToken,
    ) -> Result<(), StoreError> {
        if self == Dialect::Sqlite {
            return Ok(()); // One runner per file, enforced by the OS lock.
        }
        let held = sqlx::query(
            "SELECT token FROM leases WHERE stream_name = $1 AND shard_id = $2 \
             AND owner = $3 AND token = $4 FOR UPDATE",
        )
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
