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
/// which is `info` for optout and its Kinesis engine and `warn` for other dependencies.
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

/// The prefix of every optout metric, the engine's included (`optout_shards_reading`).
pub const METRICS_PREFIX: &str = "optout";

fn describe() {
    use metrics::describe_counter;
    // The engine describes its own metrics, under the prefix optout gives it.
    kinesis_engine::metrics::describe(METRICS_PREFIX);
    describe_counter!("optout_records_total", "Records decoded, by outcome.");
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
    describe_counter!(
        "optout_dead_letters_total",
        "Dead letters stored (undecodable or unstorable records)."
    );
}
