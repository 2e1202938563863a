//! Every metric the store owns, in one file: the table that names and describes them, and
//! their emitters.

use crate::telemetry::{MetricDef, MetricKind};

/// Every metric of the store.
pub const METRICS: &[MetricDef] = &[MetricDef {
    name: "sqlite_wal_bytes",
    kind: MetricKind::Gauge,
    labels: &[],
    help: "Size of the SQLite write-ahead log, truncated past 16 MiB when readers allow.",
}];

/// The SQLite write-ahead log's size now.
pub(super) fn sqlite_wal_bytes(bytes: u64) {
    metrics::gauge!("optout_sqlite_wal_bytes").set(bytes as f64);
}
