//! A general Kinesis consumer engine. It knows nothing of what the records hold, nor of the
//! application around it: it never decodes a payload and never decides what "durable" means.
//!
//! [`run`] lists the stream's shards with their lineage, starts one reader task per readable
//! shard (polling with `GetRecords`, or enhanced fan-out with `SubscribeToShard` when a
//! consumer name is configured; children only once their parents are read to the end and
//! checkpointed), and hands each batch of records to a [`Processor`], which must make the
//! batch's effects and the shard's checkpoint durable together before it returns. Nothing is
//! checkpointed that the processor did not commit, so a crash at any moment re-reads at most
//! the batch in hand. Several workers share a stream through a [`LeaseStore`], every commit
//! fenced by its lease's token.
//!
//! Settings come grouped in a [`ConsumerConfig`] (reading, leasing, restarts) with defaults
//! that respect AWS's per-shard limits. The live handles an application keeps clones of, shard
//! [`Health`] for its readiness probe and the in-flight [`Budget`], are passed to [`run`] in
//! [`Handles`].
//!
//! Its metrics are listed, with their type, labels and meaning, in [`metrics::METRICS`], under
//! a name prefix the application gives ([`ConsumerConfig::metrics_prefix`]); the application
//! describes them once with [`metrics::describe`].

mod backoff;
mod budget;
mod config;
mod coordinator;
mod fanout;
mod get_records;
mod health;
mod leases;
pub mod metrics;
mod poller;
mod progress;
mod reader;
mod records;
mod shards;
mod stream_consumer;

use async_trait::async_trait;

pub use backoff::{Backoff, ErrorClass, classify};
pub use budget::{Budget, BudgetStats, record_cost};
pub use config::{
    AWS_READ_BYTES_PER_SEC, BackoffSettings, ConsumerConfig, DEFAULT_METRICS_PREFIX, Handles,
    InitialPosition, LeasingSettings, ReadingSettings, RestartSettings, default_worker_id,
};
pub use coordinator::run;
pub use get_records::answers_read_by_sdk;
pub use health::{FailingShard, Health};
pub use leases::{HeldLease, LeaseInfo, LeaseStore};
pub use records::Record;
pub use shards::{ShardInfo, aws_message, list_shards};

/// How far before the first read at `latest` a restarted reader resumes: slack for clock skew
/// with Kinesis, so nothing that arrived after the first read is skipped (re-reading those
/// seconds is harmless: effects are idempotent).
pub const LATEST_SLACK: chrono::Duration = chrono::Duration::seconds(2);

/// A shard's stored progress, as the processor's store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCheckpoint {
    /// Shard id.
    pub shard_id: String,
    /// Last sequence number whose effect is durable.
    pub sequence_number: Option<String>,
    /// The shard was read to its end.
    pub finished: bool,
}

/// One batch from one shard, in sequence order.
#[derive(Debug)]
pub struct RecordBatch<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Shard id.
    pub shard_id: &'a str,
    /// The records, possibly none (a shard's end is reported with an empty batch).
    pub records: &'a [Record<'a>],
    /// The checkpoint to store with the batch: the last record's sequence number, or the
    /// previous checkpoint when the batch is empty.
    pub sequence_number: Option<&'a str>,
    /// The checkpoint the reader believes is stored for the shard: the one the batch was read
    /// after (`None`: none yet). The store's checkpoint must be exactly this for the batch to
    /// land; see [`Processor::process`].
    pub previous: Option<&'a str>,
    /// This batch ends the (closed) shard.
    pub shard_finished: bool,
    /// The lease under which the batch was read; the commit must fail if it is no longer held.
    pub lease: Option<LeaseClaim<'a>>,
}

/// Proof of ownership presented with a commit (fencing).
#[derive(Debug, Clone, Copy)]
pub struct LeaseClaim<'a> {
    /// The worker holding the lease.
    pub owner: &'a str,
    /// The lease's fencing token when it was taken.
    pub token: i64,
}

/// Why a batch (or a lease call) could not be made durable: one of three things the engine
/// does about it.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Nothing was committed and trying the same batch again later may succeed (a database
    /// blip, a restart, a lock timeout): back off and retry.
    #[error("{0}")]
    Retry(String),
    /// The shard is no longer ours (lease lost): stop reading it, without retrying.
    #[error("{0}")]
    LostOwnership(String),
    /// The stored checkpoint is not the batch's [`RecordBatch::previous`], so nothing was
    /// committed: an earlier commit whose answer was lost had landed, or the database lost
    /// its last commits (a restore, an asynchronous replica promoted). The reader reads its
    /// checkpoint from the store again and goes on from there.
    #[error("{0}")]
    CheckpointMoved(String),
    /// Retrying the same batch cannot help (schema mismatch, read-only database): the reader
    /// fails and is restarted from its checkpoint with backoff, and the shard shows as failing.
    #[error("{0}")]
    Fatal(String),
}

impl ProcessError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProcessError::Retry(_))
    }
}

/// The engine's one customer: turns batches into durable effects plus checkpoints.
///
/// The engine trusts the store, not its memory, for where a shard stands: after any failed
/// commit the reader reads [`Processor::checkpoints`] again before it goes on. A commit that
/// failed may still have landed (the connection dropped after the database committed), and
/// a store may lose its last commits under a running reader (a restore, a failover to an
/// asynchronous replica); going on from memory would then skip records or apply them twice.
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Every checkpoint stored for `stream`, as durable now (read from the store, not from a
    /// cache): the reader relies on it after a failed commit.
    async fn checkpoints(&self, stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError>;

    /// Makes the batch's effects and its checkpoint durable, atomically, before returning.
    ///
    /// The checkpoint write is a compare-and-set: the batch lands only if the shard's stored
    /// checkpoint is [`RecordBatch::previous`] (no checkpoint at all when that is `None`),
    /// checked in the same transaction as the effects. Otherwise nothing of the batch may be
    /// applied, and the answer is [`ProcessError::CheckpointMoved`]; the reader then reloads
    /// the checkpoint and reads again from there. This is what catches a rollback underneath
    /// that no error announced: the next commit is refused instead of building on a
    /// checkpoint the store no longer holds. (A lease, when given, is checked as well.)
    async fn process(&self, batch: RecordBatch<'_>) -> Result<(), ProcessError>;
}

/// Why the consumer stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    /// The stream does not exist in this account and region.
    #[error("stream `{stream}` not found: check the stream name, region, endpoint and AWS account")]
    StreamNotFound { stream: String },
    /// An AWS call failed in a way no retry can fix.
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    /// The processor could not make a batch durable and said retrying will not help.
    #[error("processing shard {shard_id} failed: {source}")]
    Process {
        shard_id: String,
        source: ProcessError,
    },
    /// The processor or the lease store failed outside any one shard (loading checkpoints,
    /// lease housekeeping) in a way no retry can fix.
    #[error("{operation} failed: {source}")]
    Store {
        operation: &'static str,
        source: ProcessError,
    },
    /// A shard kept failing (error or panic) and the run was asked to end when idle, so it
    /// gives up instead of retrying forever.
    #[error("shard {shard_id} kept failing ({attempts} attempts): {reason}")]
    ShardFailing {
        shard_id: String,
        attempts: u32,
        reason: String,
    },
}

/// What a run did, for the final log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Records handed to the processor.
    pub records: u64,
    /// Shards read to their end during this run.
    pub shards_finished: u64,
}
