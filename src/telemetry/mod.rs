//! Logs (tracing, text or JSON) and metrics (Prometheus, served by [`crate::http`]): the
//! recorder, and what a metric is ([`MetricDef`]). Every layer that owns metrics declares and
//! emits them in one file of its own; the composition root describes them all.

mod metric;

pub use metric::{MetricDef, MetricKind, PREFIX as METRICS_PREFIX, describe};

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
    init_logs_to(format, std::io::stderr);
}

/// [`init_logs`] through `writer`, which must end on stderr: the CLI's writes each line
/// around its progress bar.
pub fn init_logs_to<W>(format: LogFormat, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,optout=info,kinesis_engine=info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal()) // no colour codes in files and journals
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Installs the Prometheus recorder for the `metrics` facade; `None` if one is installed
/// already (tests start several consumers in one process). The caller describes the metrics.
pub fn init_metrics() -> Option<PrometheusHandle> {
    PrometheusBuilder::new().install_recorder().ok()
}
