//! Every metric the engine owns, in one file: the table that names and describes them
//! ([`METRICS`]), [`describe`] for the application to call once, and one method per occurrence
//! that emits it (as Vector's `internal_events` do), so that no other file names a metric.
//!
//! Names carry a prefix the application gives ([`crate::ConsumerConfig::metrics_prefix`]):
//! `{prefix}_{name}`, e.g. `myapp_get_records_calls_total`. The table and the emitters are
//! keyed by the same [`Metric`] enum, and label values come from the table, so a metric cannot
//! be emitted without being described. Names and keys are built once per run (and the
//! per-shard ones once per reader): emitting formats nothing and allocates nothing.

use std::sync::Arc;

use metrics::{Key, KeyName, Label, Level, Metadata, SharedString};

/// Every metric of the engine; [`METRICS`] holds one entry per variant, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `get_records_calls_total`.
    GetRecordsCalls,
    /// `subscriptions_total`.
    Subscriptions,
    /// `retries_total{kind}`.
    Retries,
    /// `millis_behind_latest{shard_id}`.
    MillisBehindLatest,
    /// `commit_failures_total{kind}`.
    CommitFailures,
    /// `shard_last_commit_timestamp_seconds{shard_id}`.
    ShardLastCommitTimestamp,
    /// `shards_reading`.
    ShardsReading,
    /// `shards_failing`.
    ShardsFailing,
    /// `shard_restarts_total{reason}`.
    ShardRestarts,
    /// `in_flight_bytes`.
    InFlightBytes,
    /// `in_flight_waits_total`.
    InFlightWaits,
    /// `get_records_sdk_reads_total`.
    GetRecordsSdkReads,
}

/// A counter only goes up; a gauge is set to the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic, `_total`.
    Counter,
    /// The current value.
    Gauge,
}

/// The one label a metric carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricLabel {
    /// The label's name.
    pub name: &'static str,
    /// Every value it takes; empty when open-ended (shard ids).
    pub values: &'static [&'static str],
}

/// One metric the engine owns: enough to describe it and to render a table of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// Which metric.
    pub metric: Metric,
    /// Its name after the application's prefix and `_`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Its label, if any.
    pub label: Option<MetricLabel>,
    /// What it means (the Prometheus `HELP` text).
    pub help: &'static str,
}

impl MetricDef {
    /// The full name under `prefix` (no separator when the prefix is empty).
    pub fn full_name(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            self.name.to_string()
        } else {
            format!("{prefix}_{}", self.name)
        }
    }
}

const fn label(name: &'static str, values: &'static [&'static str]) -> Option<MetricLabel> {
    Some(MetricLabel { name, values })
}

/// Every metric the engine emits, indexed by [`Metric`].
pub const METRICS: [MetricDef; 12] = [
    MetricDef {
        metric: Metric::GetRecordsCalls,
        name: "get_records_calls_total",
        kind: MetricKind::Counter,
        label: None,
        help: "GetRecords calls made (polling).",
    },
    MetricDef {
        metric: Metric::Subscriptions,
        name: "subscriptions_total",
        kind: MetricKind::Counter,
        label: None,
        help: "SubscribeToShard calls made (enhanced fan-out).",
    },
    MetricDef {
        metric: Metric::Retries,
        name: "retries_total",
        kind: MetricKind::Counter,
        label: label("kind", &["throttled", "transient"]),
        help: "AWS calls or commits retried after a backoff, by kind (throttled, transient).",
    },
    MetricDef {
        metric: Metric::MillisBehindLatest,
        name: "millis_behind_latest",
        kind: MetricKind::Gauge,
        label: label("shard_id", &[]),
        help: "How far each shard's reader is behind the tip, in milliseconds.",
    },
    MetricDef {
        metric: Metric::CommitFailures,
        name: "commit_failures_total",
        kind: MetricKind::Counter,
        label: label(
            "kind",
            &["transient", "lease_lost", "fatal", "checkpoint_moved"],
        ),
        help: "Batch commits that failed, by kind (transient, lease_lost, fatal, \
               checkpoint_moved: the stored checkpoint was not the one the batch was read after).",
    },
    MetricDef {
        metric: Metric::ShardLastCommitTimestamp,
        name: "shard_last_commit_timestamp_seconds",
        kind: MetricKind::Gauge,
        label: label("shard_id", &[]),
        help: "Unix time of each shard's last successful commit.",
    },
    MetricDef {
        metric: Metric::ShardsReading,
        name: "shards_reading",
        kind: MetricKind::Gauge,
        label: None,
        help: "Shards being read by this process.",
    },
    MetricDef {
        metric: Metric::ShardsFailing,
        name: "shards_failing",
        kind: MetricKind::Gauge,
        label: None,
        help: "Shards whose reads or commits have failed for longer than the failing-after \
               threshold.",
    },
    MetricDef {
        metric: Metric::ShardRestarts,
        name: "shard_restarts_total",
        kind: MetricKind::Counter,
        label: label("reason", &["panic", "error", "stall"]),
        help: "Shard readers restarted, by reason (panic, error, stall).",
    },
    MetricDef {
        metric: Metric::InFlightBytes,
        name: "in_flight_bytes",
        kind: MetricKind::Gauge,
        label: None,
        help: "Bytes of records held between fetch and commit, across all shards.",
    },
    MetricDef {
        metric: Metric::InFlightWaits,
        name: "in_flight_waits_total",
        kind: MetricKind::Counter,
        label: None,
        help: "Reservations that waited for others to give bytes back to the in-flight budget.",
    },
    MetricDef {
        metric: Metric::GetRecordsSdkReads,
        name: "get_records_sdk_reads_total",
        kind: MetricKind::Counter,
        label: None,
        help: "GetRecords answers whose shape the engine's reader declined, read by the AWS \
               SDK's slower deserializer instead (expected to stay 0).",
    },
];

/// Describes every metric of the engine under `prefix` to the installed recorder. Call it
/// once, after installing the recorder, with the prefix given to the engine's settings.
pub fn describe(prefix: &str) {
    for def in &METRICS {
        let name = def.full_name(prefix);
        match def.kind {
            MetricKind::Counter => metrics::describe_counter!(name, def.help),
            MetricKind::Gauge => metrics::describe_gauge!(name, def.help),
        }
    }
}

/// The `index`th value of `metric`'s label, as the table lists it.
const fn label_value(metric: Metric, index: usize) -> &'static str {
    match METRICS[metric as usize].label {
        Some(label) => label.values[index],
        None => panic!("this metric has no label"),
    }
}

/// Why a shard reader was restarted: the values of `shard_restarts_total{reason}`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartReason {
    Panic,
    Error,
    Stall,
}

impl RestartReason {
    /// The label value, for logs as well.
    pub fn as_str(self) -> &'static str {
        label_value(Metric::ShardRestarts, self as usize)
    }
}

/// How a commit failed: the values of `commit_failures_total{kind}`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitFailure {
    Transient,
    LeaseLost,
    Fatal,
    CheckpointMoved,
}

/// Why a call is retried: the values of `retries_total{kind}`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryKind {
    Throttled,
    Transient,
}

impl RetryKind {
    /// The label value, for logs as well.
    pub fn as_str(self) -> &'static str {
        label_value(Metric::Retries, self as usize)
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The engine's metrics under one prefix, with their keys built once. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    inner: Arc<Keys>,
}

#[derive(Debug)]
struct Keys {
    /// Full names, by [`Metric`].
    names: Vec<KeyName>,
    /// By [`Metric`]: one key per label value (one key without labels; none for shard ids).
    keys: Vec<Vec<Key>>,
}

impl Metrics {
    /// Names every metric under `prefix`.
    pub fn new(prefix: &str) -> Self {
        let names: Vec<KeyName> = METRICS
            .iter()
            .map(|def| {
                let shared: Arc<str> = def.full_name(prefix).into();
                KeyName::from(SharedString::from(shared))
            })
            .collect();
        let keys = METRICS
            .iter()
            .zip(&names)
            .map(|(def, name)| match def.label {
                None => vec![Key::from_name(name.clone())],
                Some(l) => (l.values.iter())
                    .map(|v| Key::from_parts(name.clone(), vec![Label::new(l.name, *v)]))
                    .collect(),
            })
            .collect();
        Metrics {
            inner: Arc::new(Keys { names, keys }),
        }
    }

    fn key(&self, metric: Metric, value: usize) -> &Key {
        &self.inner.keys[metric as usize][value]
    }

    fn increment(&self, metric: Metric, value: usize) {
        let key = self.key(metric, value);
        metrics::with_recorder(|r| r.register_counter(key, &METADATA)).increment(1);
    }

    fn set(&self, metric: Metric, value: usize, to: f64) {
        let key = self.key(metric, value);
        metrics::with_recorder(|r| r.register_gauge(key, &METADATA)).set(to);
    }

    /// A `GetRecords` call was made.
    pub fn get_records_call(&self) {
        self.increment(Metric::GetRecordsCalls, 0);
    }

    /// The engine's reader declined a `GetRecords` answer; the SDK read it.
    pub fn get_records_sdk_read(&self) {
        self.increment(Metric::GetRecordsSdkReads, 0);
    }

    /// A `SubscribeToShard` call was made.
    pub fn subscription(&self) {
        self.increment(Metric::Subscriptions, 0);
    }

    /// A call or commit is retried after a backoff.
    pub fn retry(&self, kind: RetryKind) {
        self.increment(Metric::Retries, kind as usize);
    }

    /// A batch commit failed.
    pub fn commit_failed(&self, kind: CommitFailure) {
        self.increment(Metric::CommitFailures, kind as usize);
    }

    /// A shard reader is restarted.
    pub fn shard_restarted(&self, reason: RestartReason) {
        self.increment(Metric::ShardRestarts, reason as usize);
    }

    /// Shards this process reads now.
    pub fn shards_reading(&self, shards: usize) {
        self.set(Metric::ShardsReading, 0, shards as f64);
    }

    /// Shards failing for longer than the threshold now.
    pub fn shards_failing(&self, shards: usize) {
        self.set(Metric::ShardsFailing, 0, shards as f64);
    }

    /// Bytes held from the in-flight budget now.
    pub fn in_flight_bytes(&self, bytes: u64) {
        self.set(Metric::InFlightBytes, 0, bytes as f64);
    }

    /// A reservation had to wait for the in-flight budget.
    pub fn in_flight_wait(&self) {
        self.increment(Metric::InFlightWaits, 0);
    }

    /// The series of one shard, built once per reader.
    pub fn shard(&self, shard_id: &str) -> ShardMetrics {
        let key = |metric: Metric| {
            let name = self.inner.names[metric as usize].clone();
            let label = METRICS[metric as usize]
                .label
                .map_or("shard_id", |l| l.name);
            Key::from_parts(name, vec![Label::new(label, shard_id.to_string())])
        };
        ShardMetrics {
            millis_behind_latest: key(Metric::MillisBehindLatest),
            last_commit: key(Metric::ShardLastCommitTimestamp),
        }
    }
}

/// One shard's series (label `shard_id`).
#[derive(Debug)]
pub(crate) struct ShardMetrics {
    millis_behind_latest: Key,
    last_commit: Key,
}

impl ShardMetrics {
    /// How far the reader is behind the tip. Also set to 0 by a worker that stops reading the
    /// shard, so that its stale series cannot look like lag.
    pub fn millis_behind_latest(&self, millis: i64) {
        let key = &self.millis_behind_latest;
        metrics::with_recorder(|r| r.register_gauge(key, &METADATA)).set(millis as f64);
    }

    /// A batch of the shard was committed just now.
    pub fn committed_now(&self) {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let key = &self.last_commit;
        metrics::with_recorder(|r| r.register_gauge(key, &METADATA)).set(now);
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
