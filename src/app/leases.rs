//! The engine's [`LeaseStore`], backed by the SQL store's lease table. The store speaks its own
//! row types and errors; this adapter is the one place they are turned into the engine's.

use std::sync::Arc;

use async_trait::async_trait;

use super::engine_error;
use crate::kinesis::{HeldLease, LeaseInfo, LeaseStore, ProcessError};
use crate::store::{self, SqlStore};

/// Leases kept in the store's `leases` table (PostgreSQL when several workers share a
/// stream; SQLite in tests).
#[derive(Clone)]
pub struct StoreLeases(pub Arc<SqlStore>);

fn held(rows: Vec<store::HeldLease>) -> Vec<HeldLease> {
    rows.into_iter()
        .map(|l| HeldLease {
            shard_id: l.shard_id,
            token: l.token,
        })
        .collect()
}

#[async_trait]
impl LeaseStore for StoreLeases {
    async fn ensure_leases(&self, stream: &str, shard_ids: &[String]) -> Result<(), ProcessError> {
        self.0
            .ensure_leases(stream, shard_ids)
            .await
            .map_err(engine_error)
    }

    async fn renew(
        &self,
        stream: &str,
        worker: &str,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, ProcessError> {
        let rows = self.0.renew_leases(stream, worker, lease_ms).await;
        rows.map(held).map_err(engine_error)
    }

    async fn acquire(
        &self,
        stream: &str,
        worker: &str,
        candidates: &[String],
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, ProcessError> {
        let rows = self
            .0
            .acquire_leases(stream, worker, candidates, max, lease_ms);
        rows.await.map(held).map_err(engine_error)
    }

    async fn steal(
        &self,
        stream: &str,
        worker: &str,
        victim: &str,
        shard_id: &str,
        lease_ms: i64,
    ) -> Result<Option<HeldLease>, ProcessError> {
        let row = self
            .0
            .steal_lease(stream, worker, victim, shard_id, lease_ms);
        let row = row.await.map_err(engine_error)?;
        Ok(row.map(|l| HeldLease {
            shard_id: l.shard_id,
            token: l.token,
        }))
    }

    async fn release(
        &self,
        stream: &str,
        worker: &str,
        shard_ids: &[String],
    ) -> Result<(), ProcessError> {
        let done = self.0.release_leases(stream, worker, shard_ids);
        done.await.map_err(engine_error)
    }

    async fn leases(&self, stream: &str) -> Result<(Vec<LeaseInfo>, i64), ProcessError> {
        let (rows, now_ms) = self.0.leases(stream).await.map_err(engine_error)?;
        let leases = rows
            .into_iter()
            .map(|l| LeaseInfo {
                shard_id: l.shard_id,
                owner: l.owner,
                token: l.token,
                expires_at_ms: l.expires_at_ms,
            })
            .collect();
        Ok((leases, now_ms))
    }
}
