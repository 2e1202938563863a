//! The Kinesis way in: the engine's two traits over the store. [`StoreProcessor`] is the
//! engine's [`Processor`]: each batch is decoded and committed with its checkpoint in one
//! transaction (or, when the database refuses a record, in the isolating commits of
//! [`commit_records`]). [`StoreLeases`] is its [`LeaseStore`], over the store's lease table.
//! The store speaks its own row types and errors; this is the one place they are turned into
//! the engine's.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::debug;

use kinesis_engine::{
    HeldLease, LeaseInfo, LeaseStore, ProcessError, Processor, RecordBatch, ShardCheckpoint,
};

use crate::event::DecodeOptions;
use crate::pipeline::{RawRecord, Target, commit_records};
use crate::store::{
    self, CheckpointUpdate, FailureKind, IngestPath, LeaseToken, Store, StoreError,
};

/// What the engine sees of a store failure: retry, stop the shard, read the checkpoint again
/// (the compare-and-set on it failed), or give up on it. (Data errors are resolved by the
/// pipeline's isolation before they get here; one that still does is fatal for the batch.)
fn engine_error(e: StoreError) -> ProcessError {
    let message = e.to_string();
    match e.kind() {
        FailureKind::Transient => ProcessError::Retry(message),
        FailureKind::LeaseLost => ProcessError::LostOwnership(message),
        FailureKind::CheckpointMoved => ProcessError::CheckpointMoved(message),
        FailureKind::Data | FailureKind::Fatal => ProcessError::Fatal(message),
    }
}

/// The [`Processor`] that feeds Kinesis batches through the decoder into a [`Store`].
pub struct StoreProcessor {
    store: Arc<dyn Store>,
    options: DecodeOptions,
    honor_revocations: bool,
    max_record_bytes: usize,
}

impl StoreProcessor {
    /// A pipeline writing to `store`.
    pub fn new(store: Arc<dyn Store>, options: DecodeOptions) -> Self {
        StoreProcessor {
            store,
            options,
            honor_revocations: false,
            max_record_bytes: crate::pipeline::DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Records longer than `bytes` become dead letters (`--max-record-bytes`).
    pub fn max_record_bytes(self, bytes: usize) -> Self {
        StoreProcessor {
            max_record_bytes: bytes,
            ..self
        }
    }

    /// Lets phrase-detected revocations set `opted_out` (`--honor-revocations`).
    pub fn honor_revocations(self, honor: bool) -> Self {
        StoreProcessor {
            honor_revocations: honor,
            ..self
        }
    }
}

#[async_trait]
impl Processor for StoreProcessor {
    async fn checkpoints(&self, stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
        let stored = self.store.checkpoints(stream).await.map_err(engine_error)?;
        Ok(stored
            .into_iter()
            .map(|c| ShardCheckpoint {
                shard_id: c.shard_id,
                sequence_number: c.sequence_number,
                finished: c.finished,
            })
            .collect())
    }

    async fn process(&self, input: RecordBatch<'_>) -> Result<(), ProcessError> {
        let target = Target {
            path: IngestPath::Kinesis,
            stream: input.stream.to_string(),
            shard_id: input.shard_id.to_string(),
            lease: input.lease.map(|l| LeaseToken {
                owner: l.owner.to_string(),
                token: l.token,
            }),
            honor_revocations: self.honor_revocations,
            max_record_bytes: self.max_record_bytes,
        };
        let records: Vec<RawRecord<'_>> = input
            .records
            .iter()
            .map(|r| RawRecord::new(r.sequence_number, Some(r.partition_key), r.data))
            .collect();
        let checkpoint = CheckpointUpdate {
            sequence_number: input.sequence_number.map(str::to_string),
            finished: input.shard_finished,
            previous: input.previous.map(str::to_string),
        };
        let done = commit_records(
            &*self.store,
            &target,
            &records,
            Some(checkpoint),
            self.options,
        )
        .await
        .map_err(engine_error)?;
        debug!(
            shard_id = input.shard_id,
            records = input.records.len(),
            opt_events = done.counts.opt_events,
            new = done.summary.opt_events_new,
            duplicates = done.summary.opt_events_duplicate,
            dead_letters = done.counts.dead_letters,
            unstorable = done.unstorable,
            commits = done.commits,
            checkpoint = ?input.sequence_number,
            "Batch committed."
        );
        Ok(())
    }
}

/// Leases kept in the store's `leases` table (PostgreSQL when several workers share a
/// stream; SQLite in tests).
#[derive(Clone)]
pub struct StoreLeases(pub Arc<dyn Store>);

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
