//! The lease table ([`Leases`], part of the write side), the same statements on both backends.
//! The engine reaches it through its own `LeaseStore` trait, implemented by an adapter in
//! [`crate::ingest`]: the store knows nothing of the engine.
//!
//! Every method is one short transaction (most are a single statement), and every time is the
//! database's clock ([`Dialect::now_ms`]), so workers with skewed clocks agree on expiry.
//! Ownership changes are conditional `UPDATE … RETURNING` statements: the condition is checked
//! on the row as it is when written, which makes them race-free. `acquire` picks its rows in a
//! materialised CTE that locks them (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent
//! takers split the free rows instead of waiting for each other; SQLite has one writer at a
//! time). The fencing check at commit is [`Dialect::check_lease`].

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::StoreError;
use super::model::{HeldLease, LeaseRow};
use super::schema::Dialect;
use super::sql::SqlStore;

/// `$first, $first+1, …` for `n` values bound in order.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes `(shard_id, token)` rows, sorted by shard id (`RETURNING` has no order).
fn held_leases(rows: &[AnyRow]) -> Result<Vec<HeldLease>, StoreError> {
    let mut held = rows
        .iter()
        .map(|r| {
            Ok(HeldLease {
                shard_id: r.try_get("shard_id")?,
                token: r.try_get("token")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    held.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    Ok(held)
}

fn lease_row(r: &AnyRow) -> Result<LeaseRow, StoreError> {
    Ok(LeaseRow {
        shard_id: r.try_get("shard_id")?,
        owner: r.try_get("owner")?,
        token: r.try_get("token")?,
        expires_at_ms: r.try_get("expires_at")?,
    })
}

/// The lease statements of one dialect; values are always bound, only the dialect's clock
/// expression, locking clause and `$N` placeholders are spliced in.
struct LeaseSql(Dialect);

impl LeaseSql {
    fn ensure() -> &'static str {
        "INSERT INTO leases (stream_name, shard_id, owner, token, expires_at) \
         VALUES ($1, $2, NULL, 0, 0) ON CONFLICT (stream_name, shard_id) DO NOTHING"
    }

    /// Binds: worker, lease_ms, stream.
    fn renew(&self) -> String {
        format!(
            "UPDATE leases SET expires_at = {now} + $2 WHERE stream_name = $3 AND owner = $1 \
             RETURNING shard_id, token",
            now = self.0.now_ms()
        )
    }

    /// Binds: worker, lease_ms, stream, max, then the `candidates` shard ids.
    fn acquire(&self, candidates: usize) -> String {
        format!(
            "WITH picked AS MATERIALIZED (\
                 SELECT shard_id AS picked_id FROM leases \
                 WHERE stream_name = $3 AND shard_id IN ({ids}) \
                 AND (owner IS NULL OR expires_at < {now}) \
                 ORDER BY shard_id LIMIT $4{lock}) \
             UPDATE leases SET owner = $1, token = token + 1, expires_at = {now} + $2 \
             FROM picked WHERE stream_name = $3 AND shard_id = picked.picked_id \
             RETURNING shard_id, token",
            ids = placeholders(5, candidates),
            now = self.0.now_ms(),
            lock = self.0.for_update_skip_locked(),
        )
    }

    /// Binds: worker, lease_ms, stream, shard id, victim.
    fn steal(&self) -> String {
        format!(
            "UPDATE leases SET owner = $1, token = token + 1, expires_at = {now} + $2 \
             WHERE stream_name = $3 AND shard_id = $4 AND owner = $5 \
             RETURNING shard_id, token",
            now = self.0.now_ms()
        )
    }

    /// Binds: worker, stream, then the `shards` shard ids. A released lease has no owner and
    /// expires at the instant it was given back (the database's clock): free at once, and it
    /// still says when.
    fn release(&self, shards: usize) -> String {
        format!(
            "UPDATE leases SET owner = NULL, expires_at = {} \
             WHERE stream_name = $2 AND owner = $1 AND shard_id IN ({})",
            self.0.now_ms(),
            placeholders(3, shards)
        )
    }

    fn now(&self) -> String {
        format!("SELECT {} AS now_ms", self.0.now_ms())
    }
}

/// Which worker reads which shard, when several workers share a stream: one lease per shard
/// with an owner, an expiry (the database's clock) and a fencing token that grows at every
/// change of owner. Every method is one short transaction.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Makes sure a (free) lease row exists for each shard; existing rows are left alone.
    async fn ensure_leases(&self, stream: &str, shard_ids: &[String]) -> Result<(), StoreError>;

    /// Extends every lease `worker` still holds by `lease_ms` and returns them; a lease taken
    /// over by another worker is absent from the result.
    async fn renew_leases(
        &self,
        stream: &str,
        worker: &str,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, StoreError>;

    /// Takes up to `max` free or expired leases among `candidates` (their token grows).
    async fn acquire_leases(
        &self,
        stream: &str,
        worker: &str,
        candidates: &[String],
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, StoreError>;

    /// Takes one unexpired lease from `victim` (its token grows), if the victim still holds it.
    async fn steal_lease(
        &self,
        stream: &str,
        worker: &str,
        victim: &str,
        shard_id: &str,
        lease_ms: i64,
    ) -> Result<Option<HeldLease>, StoreError>;

    /// Gives up `worker`'s leases on these shards at once: no owner, expiry in the past.
    async fn release_leases(
        &self,
        stream: &str,
        worker: &str,
        shard_ids: &[String],
    ) -> Result<(), StoreError>;

    /// Every lease of the stream, and the database's current time in ms since the epoch.
    async fn leases(&self, stream: &str) -> Result<(Vec<LeaseRow>, i64), StoreError>;
}

/// Every lease of `stream` and the database's clock, read through `pool` (the writer's, or a
/// [`crate::store::Reader`]'s).
pub(super) async fn lease_rows(
    pool: &AnyPool,
    dialect: Dialect,
    stream: &str,
) -> Result<(Vec<LeaseRow>, i64), StoreError> {
    let rows = sqlx::query(
        "SELECT shard_id, owner, token, expires_at FROM leases WHERE stream_name = $1 \
         ORDER BY shard_id",
    )
    .bind(stream)
    .fetch_all(pool)
    .await?;
    let leases = rows.iter().map(lease_row).collect::<Result<_, _>>()?;
    let now: i64 = sqlx::query(sqlx::AssertSqlSafe(LeaseSql(dialect).now()))
        .fetch_one(pool)
        .await?
        .try_get("now_ms")?;
    Ok((leases, now))
}

impl SqlStore {
    fn lease_sql(&self) -> LeaseSql {
        LeaseSql(self.dialect)
    }
}

#[async_trait]
impl Leases for SqlStore {
    async fn ensure_leases(&self, stream: &str, shard_ids: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for shard_id in shard_ids {
            sqlx::query(LeaseSql::ensure())
                .bind(stream)
                .bind(shard_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn renew_leases(
        &self,
        stream: &str,
        worker: &str,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(self.lease_sql().renew()))
            .bind(worker)
            .bind(lease_ms)
            .bind(stream)
            .fetch_all(&self.pool)
            .await?;
        held_leases(&rows)
    }

    async fn acquire_leases(
        &self,
        stream: &str,
        worker: &str,
        candidates: &[String],
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, StoreError> {
        if candidates.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let sql = self.lease_sql().acquire(candidates.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(lease_ms)
            .bind(stream)
            .bind(i64::try_from(max).unwrap_or(i64::MAX));
        for shard_id in candidates {
            q = q.bind(shard_id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        held_leases(&rows)
    }

    async fn steal_lease(
        &self,
        stream: &str,
        worker: &str,
        victim: &str,
        shard_id: &str,
        lease_ms: i64,
    ) -> Result<Option<HeldLease>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(self.lease_sql().steal()))
            .bind(worker)
            .bind(lease_ms)
            .bind(stream)
            .bind(shard_id)
            .bind(victim)
            .fetch_all(&self.pool)
            .await?;
        Ok(held_leases(&rows)?.into_iter().next())
    }

    async fn release_leases(
        &self,
        stream: &str,
        worker: &str,
        shard_ids: &[String],
    ) -> Result<(), StoreError> {
        if shard_ids.is_empty() {
            return Ok(());
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(
            self.lease_sql().release(shard_ids.len()),
        ))
        .bind(worker)
        .bind(stream);
        for shard_id in shard_ids {
            q = q.bind(shard_id);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    async fn leases(&self, stream: &str) -> Result<(Vec<LeaseRow>, i64), StoreError> {
        lease_rows(&self.pool, self.dialect, stream).await
    }
}
