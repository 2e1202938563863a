//! The engine's settings, grouped by what they govern: reading a shard, sharing the stream
//! with other workers (leasing), and restarting readers that fail. Every group has defaults
//! that respect AWS's per-shard limits, so an application sets only what it exposes.
//!
//! Settings are plain values, cloned freely. The live handles an application keeps to watch
//! the engine (shard health, the in-flight budget) are not settings: they are passed to
//! [`crate::run`] beside them, in [`Handles`].

use std::time::Duration;

use crate::backoff::Backoff;
use crate::{Budget, Health};

/// Where to start reading a shard that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    /// The oldest record still in the stream (the default: missing a record is worse than
    /// reading one twice, and the processor's effects make re-reading harmless).
    TrimHorizon,
    /// Only records written from now on. Children of shards read by this run still start at
    /// their beginning, so a reshard loses nothing.
    Latest,
    /// Records written at or after this instant.
    AtTimestamp(chrono::DateTime<chrono::Utc>),
}

/// The metric name prefix when the application gives none: `kinesis_get_records_calls_total`.
pub const DEFAULT_METRICS_PREFIX: &str = "kinesis";

/// How the consumer behaves: settings only (the live handles go to [`crate::run`] in
/// [`Handles`]).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// What to read and how: stream, start, pacing, transport, retries of calls.
    pub reading: ReadingSettings,
    /// Who this worker is when several share the stream, and how long its leases last.
    pub leasing: LeasingSettings,
    /// When a reader counts as stalled or failing, and how failed readers are restarted.
    pub restarts: RestartSettings,
    /// Every metric the engine emits is named `{metrics_prefix}_{name}`; describe them once
    /// under the same prefix with [`crate::metrics::describe`].
    pub metrics_prefix: String,
}

impl ConsumerConfig {
    /// Reads `stream` with the defaults of every group.
    pub fn new(stream: impl Into<String>) -> Self {
        ConsumerConfig {
            reading: ReadingSettings::new(stream),
            leasing: LeasingSettings::default(),
            restarts: RestartSettings::default(),
            metrics_prefix: DEFAULT_METRICS_PREFIX.to_string(),
        }
    }
}

/// What AWS lets all the polling consumers of one shard read per second: 2 MiB of record data.
pub const AWS_READ_BYTES_PER_SEC: u64 = 2 << 20;

/// What to read and how.
#[derive(Debug, Clone)]
pub struct ReadingSettings {
    /// The stream to read.
    pub stream: String,
    /// Where shards without a checkpoint start.
    pub initial_position: InitialPosition,
    /// Wait before polling a caught-up shard again.
    pub poll_interval: Duration,
    /// Minimum time between two `GetRecords` calls on one shard (AWS allows 5 per second,
    /// shared by every consumer polling the stream).
    pub min_call_interval: Duration,
    /// Most bytes of record data one shard's `GetRecords` answers may bring per second, or
    /// `None` for no limit. AWS allows 2 MiB/s per shard, shared by every consumer polling the
    /// stream, and answers a call over it (even one returning 10 MiB at once) by throttling
    /// the shard's next calls for as long as those bytes take at that rate. So after each
    /// answer the reader waits that long itself: a catch-up then runs at the limit instead of
    /// into a storm of `ProvisionedThroughputExceeded` and backoff.
    pub max_read_bytes_per_sec: Option<u64>,
    /// How often the shard list is refreshed to find new shards after a reshard.
    pub discovery_interval: Duration,
    /// Records asked for per `GetRecords` call (AWS maximum: 10,000); the in-flight budget
    /// may ask for fewer.
    pub max_records_per_call: i32,
    /// Exit once every shard is finished or caught up and nothing new came for this long.
    pub exit_when_idle: Option<Duration>,
    /// Read with enhanced fan-out (`SubscribeToShard`) as this registered stream consumer
    /// instead of polling with `GetRecords`.
    pub consumer_name: Option<String>,
    /// Waits after a throttled or failed call (AWS or the processor), per reader.
    pub backoff: BackoffSettings,
}

impl ReadingSettings {
    /// Polls `stream` from its oldest record, within AWS's per-shard limits: at most 5 calls
    /// and 2 MiB of record data a second, at most 10,000 records a call.
    pub fn new(stream: impl Into<String>) -> Self {
        ReadingSettings {
            stream: stream.into(),
            initial_position: InitialPosition::TrimHorizon,
            poll_interval: Duration::from_millis(500),
            min_call_interval: Duration::from_millis(200),
            max_read_bytes_per_sec: Some(AWS_READ_BYTES_PER_SEC),
            discovery_interval: Duration::from_secs(30),
            max_records_per_call: 10_000,
            exit_when_idle: None,
            consumer_name: None,
            backoff: BackoffSettings {
                base: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
        }
    }
}

/// Exponential backoff with jitter: the first wait, doubling up to the longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSettings {
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl BackoffSettings {
    /// A fresh backoff following these settings.
    pub(crate) fn start(&self) -> Backoff {
        Backoff::new(self.base, self.max)
    }
}

/// Who this worker is when several share the stream (through a [`crate::LeaseStore`]).
#[derive(Debug, Clone)]
pub struct LeasingSettings {
    /// This worker's name, the owner of its leases (host name and pid by default).
    pub worker_id: String,
    /// How long a lease lasts without renewal; renewed every third of it.
    pub lease_duration: Duration,
}

impl Default for LeasingSettings {
    fn default() -> Self {
        LeasingSettings {
            worker_id: default_worker_id(),
            lease_duration: Duration::from_secs(10),
        }
    }
}

/// When a reader counts as stalled or failing, and how failed readers are restarted.
#[derive(Debug, Clone)]
pub struct RestartSettings {
    /// A reader with no successful call for this long is restarted (and logged).
    pub stall_timeout: Duration,
    /// A shard whose calls or commits have failed, with no success since, for this long is
    /// reported as failing ([`Health::failing`], the `shards_failing` gauge).
    pub failing_after: Duration,
    /// Waits before restarting a reader that failed or panicked, per shard.
    pub backoff: BackoffSettings,
}

impl Default for RestartSettings {
    fn default() -> Self {
        RestartSettings {
            stall_timeout: Duration::from_secs(120),
            failing_after: Duration::from_secs(60),
            backoff: BackoffSettings {
                base: Duration::from_secs(1),
                max: Duration::from_secs(30),
            },
        }
    }
}

/// The live handles the engine reports into while it runs. Keep clones: the application reads
/// shard health for its readiness probe and the budget's accounting.
#[derive(Debug, Clone, Default)]
pub struct Handles {
    /// Where the engine reports shard health.
    pub health: Health,
    /// Bytes of records held between fetch and commit, across all shards.
    pub budget: Budget,
}

/// `hostname:pid`, unique per process on a fleet.
pub fn default_worker_id() -> String {
    format!(
        "{}:{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}
