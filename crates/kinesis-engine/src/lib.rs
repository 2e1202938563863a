//! A general Kinesis consumer engine. It knows nothing of Twilio.
//!
//! [`run`] lists the stream's shards with their lineage, starts one reader task per readable
//! shard (polling with `GetRecords`, or enhanced fan-out with `SubscribeToShard` when a consumer
//! name is configured; children only once their parents are read to the end and checkpointed), and hands
//! each batch of records to a [`Processor`], which must make the batch's effects and the
//! shard's checkpoint durable together before it returns. Nothing is checkpointed that the
//! processor did not commit, so a crash at any moment re-reads at most the batch in hand.

mod backoff;
mod budget;
mod coordinator;
mod fanout;
mod health;
mod leases;
mod poller;
mod progress;
mod reader;
mod restarts;
mod shards;
mod stream_consumer;

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::types::Record;

pub use backoff::{Backoff, ErrorClass, classify};
pub use budget::{Budget, BudgetStats, record_cost};
pub use coordinator::run;
pub use health::{FailingShard, Health};
pub use leases::{HeldLease, LeaseInfo, LeaseStore};
pub use shards::{ShardInfo, aws_message, list_shards};

/// Where to start reading a shard that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    /// The oldest record still in the stream (the default: missing an opt-out is worse than
    /// reading one twice, and re-reading is harmless).
    TrimHorizon,
    /// Only records written from now on. Children of shards read by this run still start at
    /// their beginning, so a reshard loses nothing.
    Latest,
    /// Records written at or after this instant.
    AtTimestamp(chrono::DateTime<chrono::Utc>),
}

/// How far before the first read at `latest` a restarted reader resumes: slack for clock skew
/// with Kinesis, so nothing that arrived after the first read is skipped (re-reading those
/// seconds is harmless: effects are idempotent).
pub const LATEST_SLACK: chrono::Duration = chrono::Duration::seconds(2);

/// How the consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The stream to read.
    pub stream: String,
    /// Where shards without a checkpoint start.
    pub initial_position: InitialPosition,
    /// Wait before polling a caught-up shard again.
    pub poll_interval: Duration,
    /// Minimum time between two `GetRecords` calls on one shard (AWS allows 5 per second).
    pub min_call_interval: Duration,
    /// How often the shard list is refreshed to find new shards after a reshard.
    pub discovery_interval: Duration,
    /// Records asked for per `GetRecords` call (AWS maximum: 10,000).
    pub max_records: i32,
    /// Exit once every shard is finished or caught up and nothing new came for this long.
    pub exit_when_idle: Option<Duration>,
    /// First wait after a throttled or failed call; doubles up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// This worker's name, the owner of its leases (host name and pid by default).
    pub worker_id: String,
    /// How long a lease lasts without renewal (several workers only); renewed every third.
    pub lease_duration: Duration,
    /// A reader with no successful call for this long is restarted (and logged).
    pub stall_timeout: Duration,
    /// Read with enhanced fan-out (`SubscribeToShard`) as this registered stream consumer
    /// instead of polling with `GetRecords`.
    pub consumer_name: Option<String>,
    /// A shard whose calls or commits have failed, with no success since, for this long is
    /// reported as failing ([`Health::failing`], the `shards_failing` gauge).
    pub failing_after: Duration,
    /// First wait before restarting a reader that failed or panicked; doubles up to
    /// `restart_backoff_max`.
    pub restart_backoff_base: Duration,
    /// Longest wait before restarting a failed reader.
    pub restart_backoff_max: Duration,
    /// Where the engine reports shard health; keep a clone for the readiness probe.
    pub health: Health,
    /// Bytes of records held between fetch and commit, across all shards; keep a clone to
    /// read its accounting.
    pub budget: Budget,
}

impl ConsumerConfig {
    /// Defaults that respect AWS's per-shard limits.
    pub fn new(stream: impl Into<String>) -> Self {
        ConsumerConfig {
            stream: stream.into(),
            initial_position: InitialPosition::TrimHorizon,
            poll_interval: Duration::from_millis(500),
            min_call_interval: Duration::from_millis(200),
            discovery_interval: Duration::from_secs(30),
            max_records: 10_000,
            exit_when_idle: None,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            worker_id: default_worker_id(),
            lease_duration: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(120),
            consumer_name: None,
            failing_after: Duration::from_secs(60),
            restart_backoff_base: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(30),
            health: Health::default(),
            budget: Budget::default(),
        }
    }
}

/// `hostname:pid`, unique per process on a fleet.
pub fn default_worker_id() -> String {
    format!(
        "{}:{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}

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
    pub records: &'a [Record],
    /// The checkpoint to store with the batch: the last record's sequence number, or the
    /// previous checkpoint when the batch is empty.
    pub sequence_number: Option<&'a str>,
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
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Every checkpoint stored for `stream`.
    async fn checkpoints(&self, stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError>;

    /// Makes the batch's effects and its checkpoint durable, atomically, before returning.
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
