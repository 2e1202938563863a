//! Logs (tracing, text or JSON) and metrics (Prometheus, served by [`crate::http`]).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Starts logging to stderr (stdout is for query results). `RUST_LOG` overrides the level,
/// which is `info` for optout and `warn` for its dependencies.
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,optout=info,kinesis_engine=info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal()) // no colour codes in files and journals
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Installs the Prometheus recorder for the `metrics` facade; `None` if one is installed
/// already (tests start several consumers in one process).
pub fn init_metrics() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder().ok()?;
    describe();
    Some(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!("optout_records_total", "Records decoded, by outcome.");
    describe_counter!("optout_get_records_calls_total", "GetRecords calls made.");
    describe_counter!(
        "optout_retries_total",
        "AWS or store calls retried after a backoff, by kind."
    );
    describe_counter!(
        "optout_opt_events_stored_total",
        "Opt events stored for the first time."
    );
    describe_counter!(
        "optout_opt_events_duplicate_total",
        "Opt events seen again and ignored."
    );
    describe_counter!(
        "optout_status_changes_total",
        "Opt status rows inserted or changed."
    );
    describe_gauge!(
        "optout_millis_behind_latest",
        "How far each shard's reader is behind the tip."
    );
    describe_gauge!(
        "optout_shards_reading",
        "Shards being read by this process."
    );
    describe_counter!(
        "optout_dead_letters_total",
        "Dead letters stored (undecodable or unstorable records)."
    );
    describe_counter!(
        "optout_shard_restarts_total",
        "Shard readers restarted, by reason (panic, error, stall)."
    );
    describe_counter!(
        "optout_commit_failures_total",
        "Batch commits that failed, by kind (transient, lease_lost, fatal)."
    );
    describe_gauge!(
        "optout_shards_failing",
        "Shards whose reads or commits have failed for longer than --failing-after-secs."
    );
    describe_gauge!(
        "optout_shard_last_commit_timestamp_seconds",
        "Unix time of each shard's last successful commit."
    );
    describe_gauge!(
        "optout_sqlite_wal_bytes",
        "Size of the SQLite write-ahead log, truncated past 16 MiB when readers allow."
    );
    describe_counter!(
        "optout_http_connections_refused_total",
        "HTTP connections closed at once for the listener's cap, by listener (api, health)."
    );
    describe_counter!(
        "optout_http_requests_refused_total",
        "API requests answered 503 busy because 32 were in flight."
    );
}
