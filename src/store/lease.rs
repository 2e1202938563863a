//! Lease storage: [`LeaseStore`] on the SQL store, the same statements on both backends.
//!
//! Every method is one short transaction (most are a single statement), and every time is the
//! database's clock ([`Dialect::now_ms`]), so workers with skewed clocks agree on expiry.
//! Ownership changes are conditional `UPDATE … RETURNING` statements: the condition is checked
//! on the row as it is when written, which makes them race-free. `acquire` picks its rows in a
//! materialised CTE that locks them (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent
//! takers split the free rows instead of waiting for each other; SQLite has one writer at a
//! time). The fencing check at commit is [`Dialect::check_lease`].

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::StoreError;
use super::schema::Dialect;
use super::sql::SqlStore;
use crate::kinesis::{HeldLease, LeaseInfo, LeaseStore, ProcessError};

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

fn lease_info(r: &AnyRow) -> Result<LeaseInfo, StoreError> {
    Ok(LeaseInfo {
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

    /// Binds: worker, stream, then the `shards` shard ids.
    fn release(shards: usize) -> String {
        format!(
            "UPDATE leases SET owner = NULL, expires_at = 0 \
             WHERE stream_name = $2 AND owner = $1 AND shard_id IN ({})",
            placeholders(3, shards)
        )
    }

    fn now(&self) -> String {
        format!("SELECT {} AS now_ms", self.0.now_ms())
    }
}

impl SqlStore {
    fn lease_sql(&self) -> LeaseSql {
        LeaseSql(self.dialect)
    }

    async fn ensure_leases_tx(&self, stream: &str, shard_ids: &[String]) -> Result<(), StoreError> {
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

    async fn renew_rows(
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

    async fn acquire_rows(
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

    async fn steal_row(
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

    async fn release_rows(
        &self,
        stream: &str,
        worker: &str,
        shard_ids: &[String],
    ) -> Result<(), StoreError> {
        if shard_ids.is_empty() {
            return Ok(());
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(LeaseSql::release(shard_ids.len())))
            .bind(worker)
            .bind(stream);
        for shard_id in shard_ids {
            q = q.bind(shard_id);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    async fn lease_rows(&self, stream: &str) -> Result<(Vec<LeaseInfo>, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT shard_id, owner, token, expires_at FROM leases WHERE stream_name = $1 \
             ORDER BY shard_id",
        )
        .bind(stream)
        .fetch_all(&self.pool)
        .await?;
        let leases = rows.iter().map(lease_info).collect::<Result<_, _>>()?;
        let now: i64 = sqlx::query(sqlx::AssertSqlSafe(self.lease_sql().now()))
            .fetch_one(&self.pool)
            .await?
            .try_get("now_ms")?;
        Ok((leases, now))
    }
}

#[async_trait]
impl LeaseStore for SqlStore {
    async fn ensure_leases(&self, stream: &str, shard_ids: &[String]) -> Result<(), ProcessError> {
        Ok(self.ensure_leases_tx(stream, shard_ids).await?)
    }

    async fn renew(
        &self,
        stream: &str,
        worker: &str,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, ProcessError> {
        Ok(self.renew_rows(stream, worker, lease_ms).await?)
    }

    async fn acquire(
        &self,
        stream: &str,
        worker: &str,
        candidates: &[String],
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, ProcessError> {
        Ok(self
            .acquire_rows(stream, worker, candidates, max, lease_ms)
            .await?)
    }

    async fn steal(
        &self,
        stream: &str,
        worker: &str,
        victim: &str,
        shard_id: &str,
        lease_ms: i64,
    ) -> Result<Option<HeldLease>, ProcessError> {
        Ok(self
            .steal_row(stream, worker, victim, shard_id, lease_ms)
            .await?)
    }

    async fn release(
        &self,
        stream: &str,
        worker: &str,
        shard_ids: &[String],
    ) -> Result<(), ProcessError> {
        Ok(self.release_rows(stream, worker, shard_ids).await?)
    }

    async fn leases(&self, stream: &str) -> Result<(Vec<LeaseInfo>, i64), ProcessError> {
        Ok(self.lease_rows(stream).await?)
    }
}
