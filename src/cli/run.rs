//! `optout run`: consume a stream until stopped (or idle, with `--exit-when-idle`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use tracing::info;

use super::{Cli, CliError, kinesis_client, open_store, shutdown_on_signals};
use crate::event::DecodeOptions;
use crate::kinesis::{self, ConsumerConfig, InitialPosition, KinesisError};
use crate::pipeline::Pipeline;

/// `optout run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kinesis stream that Twilio's Event Streams sink writes to.
    #[arg(long, env = "OPTOUT_STREAM")]
    pub stream: String,
    /// Where shards without a checkpoint start: trim-horizon, latest or at-timestamp=RFC3339.
    #[arg(long, env = "OPTOUT_INITIAL_POSITION", default_value = "trim-horizon", value_parser = parse_initial_position)]
    pub initial_position: InitialPosition,
    /// Treat default opt keywords in bodies of schema versions below 5 as opt events (marked inferred).
    #[arg(long, env = "OPTOUT_INFER_KEYWORDS")]
    pub infer_keywords: bool,
    /// Wait between polls of a caught-up shard, in milliseconds.
    #[arg(long, env = "OPTOUT_POLL_INTERVAL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub poll_interval_ms: u64,
    /// Exit 0 once every shard is read to its end or caught up with no new records for SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub exit_when_idle: Option<Duration>,
    /// How often to look for new shards (after a split or merge), in seconds.
    #[arg(long, env = "OPTOUT_SHARD_DISCOVERY_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shard_discovery_secs: u64,
    /// Serve /healthz, /readyz, /metrics and the query API on this address (off by default).
    #[arg(long, env = "OPTOUT_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}

/// Parses `trim-horizon`, `latest` or `at-timestamp=2026-03-01T00:00:00Z`.
pub fn parse_initial_position(s: &str) -> Result<InitialPosition, String> {
    match s {
        "trim-horizon" => Ok(InitialPosition::TrimHorizon),
        "latest" => Ok(InitialPosition::Latest),
        _ => match s.strip_prefix("at-timestamp=") {
            Some(ts) => chrono::DateTime::parse_from_rfc3339(ts)
                .map(|t| InitialPosition::AtTimestamp(t.to_utc()))
                .map_err(|e| format!("`{ts}` is not an RFC 3339 time ({e}); e.g. at-timestamp=2026-03-01T00:00:00Z")),
            None => Err("use trim-horizon, latest or at-timestamp=RFC3339".into()),
        },
    }
}

/// Parses a non-negative number of seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{s}` is not a non-negative number of seconds"))
}

/// Runs the consumer.
pub async fn run(cli: &Cli, args: &RunArgs) -> Result<(), CliError> {
    if args.stream.trim().is_empty() {
        return Err(CliError::Usage(
            "--stream is empty: name the Kinesis stream to read".into(),
        ));
    }
    let store = open_store(&cli.store, 32).await?;
    store.claim_single_runner().await?;
    let client = kinesis_client(cli, true).await?;
    let shutdown = shutdown_on_signals();
    let ready = Arc::new(AtomicBool::new(false));
    let http = match args.http_addr {
        Some(addr) => {
            let state = crate::http::AppState {
                store: store.clone(),
                metrics: crate::telemetry::init_metrics(),
                ready: ready.clone(),
            };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                CliError::Usage(format!("cannot listen on --http-addr {addr}: {e}"))
            })?;
            Some(tokio::spawn(crate::http::serve_on(
                listener,
                state,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let config = ConsumerConfig {
        initial_position: args.initial_position,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        discovery_interval: Duration::from_secs(args.shard_discovery_secs),
        exit_when_idle: args.exit_when_idle,
        ..ConsumerConfig::new(args.stream.clone())
    };
    let pipeline = Arc::new(Pipeline::new(
        store.clone(),
        DecodeOptions {
            infer_keywords: args.infer_keywords,
        },
    ));
    info!(stream = %args.stream, store = store.backend(), infer_keywords = args.infer_keywords, "Starting consumer.");
    ready.store(true, Ordering::Relaxed);
    let result = kinesis::run(client, config, pipeline, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(h) = http {
        let _ = h.await;
    }
    match result {
        Ok(stats) => {
            info!(
                records = stats.records,
                shards_finished = stats.shards_finished,
                "Consumer stopped cleanly."
            );
            Ok(())
        }
        Err(e @ KinesisError::StreamNotFound { .. }) => Err(CliError::Usage(e.to_string())),
        Err(e) => Err(CliError::Runtime(e.into())),
    }
}
