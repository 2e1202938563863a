//! `optout run`: consume a stream until stopped (or idle, with `--exit-when-idle`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use tracing::info;

use super::{Cli, CliError, shutdown_on_signals};
use crate::app::vocabulary::InitialPosition;
use crate::app::{self, ConsumerSettings, RunSettings};

/// `optout run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kinesis stream that Twilio's Event Streams sink writes to.
    #[arg(long, env = "OPTOUT_STREAM")]
    pub stream: String,
    /// Where shards without a checkpoint start: trim-horizon, latest or at-timestamp=RFC3339.
    #[arg(long, env = "OPTOUT_INITIAL_POSITION", default_value = "trim-horizon", value_parser = parse_initial_position)]
    pub initial_position: InitialPosition,
    /// Treat default opt keywords in bodies of schema versions below 5 (and of webhook messages
    /// Twilio did not flag) as opt events (marked inferred).
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
    /// Serve /healthz, /readyz, /metrics and the query API on this address (off by default;
    /// with --health-addr, the probes and /metrics move there).
    #[arg(long, env = "OPTOUT_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Threads of the HTTP server's own, beside the consumer's: the server's work takes at
    /// most this many cores, so a catch-up keeps its share under any lookup load, and a long
    /// decode never holds a lookup back (0: share the consumer's threads).
    #[arg(long, env = "OPTOUT_HTTP_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub http_threads: u16,
    #[command(flatten)]
    pub auth: super::HttpAuthArgs,
    #[command(flatten)]
    pub webhooks: super::webhooks::WebhookArgs,
    /// This worker's name in the lease table (PostgreSQL); default: host name and pid.
    #[arg(long, env = "OPTOUT_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Lease duration in milliseconds (PostgreSQL, several workers): a dead worker's shards are
    /// taken over after at most this long; renewals happen every third of it.
    #[arg(long, env = "OPTOUT_LEASE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(300..=600_000))]
    pub lease_ms: u64,
    /// Records asked for per GetRecords call (AWS allows up to 10,000); smaller means smaller
    /// transactions and less re-read after a crash.
    #[arg(long, env = "OPTOUT_MAX_RECORDS_PER_CALL", default_value_t = 10_000, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub max_records_per_call: i32,
    /// Record data, in MiB a second, that AWS lets all the polling consumers of one shard
    /// read (2 on Kinesis); each reader paces its GetRecords calls to its share of it. 0: no
    /// byte limit (for emulators, which enforce none).
    #[arg(long, env = "OPTOUT_SHARD_READ_MIB", default_value_t = 2.0, value_parser = parse_read_mib)]
    pub shard_read_mib: f64,
    /// This consumer's share of each shard's read limits (its MiB a second and AWS's 5
    /// GetRecords calls a second), from 0.01 to 1: with N consumers polling the same stream,
    /// 1/N each. Enhanced fan-out (--consumer-name) has limits of its own and ignores it.
    #[arg(long, env = "OPTOUT_SHARD_READ_SHARE", default_value_t = 1.0, value_parser = parse_read_share)]
    pub shard_read_share: f64,
    /// Memory budget, in MiB, for records held between fetch and commit across all shards:
    /// readers size their calls to share it. See docs/performance.md for sizing.
    #[arg(long, env = "OPTOUT_MAX_IN_FLIGHT_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_in_flight_mb: u64,
    /// Restart a shard reader that made no successful call for this many seconds.
    #[arg(long, env = "OPTOUT_STALL_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stall_timeout_secs: u64,
    #[command(flatten)]
    pub revocation: super::revocations::RevocationArgs,
    #[command(flatten)]
    pub revocation_scope: super::RevocationScopeArg,
    #[command(flatten)]
    pub delivery: super::deliver::DeliveryArgs,
    /// Read with enhanced fan-out (SubscribeToShard) as this registered stream consumer; needs
    /// kinesis:RegisterStreamConsumer, DescribeStreamConsumer, SubscribeToShard.
    #[arg(long, env = "OPTOUT_CONSUMER_NAME", value_parser = parse_consumer_name)]
    pub consumer_name: Option<String>,
    /// A shard whose reads or commits have failed for this many seconds, with no success in
    /// between, makes /readyz answer 503 and counts in optout_shards_failing.
    #[arg(long, env = "OPTOUT_FAILING_AFTER_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub failing_after_secs: u64,
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

/// Checks a stream consumer name as AWS does: 1 to 128 of `a-z A-Z 0-9 _ . -`.
pub fn parse_consumer_name(s: &str) -> Result<String, String> {
    let valid = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if s.is_empty() || s.len() > 128 || !valid {
        return Err(format!(
            "`{s}` is not a stream consumer name: use 1 to 128 letters, digits, `_`, `.` or `-`"
        ));
    }
    Ok(s.to_string())
}

/// Parses `--shard-read-mib`: a number of MiB from 0 (no limit) to 1,024.
pub fn parse_read_mib(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1024.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}` is not a number of MiB from 0 to 1024 (0: no limit)"
        )),
    }
}

/// Parses `--shard-read-share`: a fraction from 0.01 to 1.
pub fn parse_read_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.01..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}` is not a share from 0.01 to 1 (with N consumers polling the stream: 1/N)"
        )),
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
    if args.http_addr.is_none() && args.auth.health_addr.is_some() {
        return Err(CliError::Usage(
            "--health-addr moves the probes off --http-addr: set --http-addr too".into(),
        ));
    }
    let settings = RunSettings {
        store_url: cli.store.clone(),
        aws: cli.aws(),
        consumer: ConsumerSettings {
            initial_position: args.initial_position,
            poll_interval: Duration::from_millis(args.poll_interval_ms),
            discovery_interval: Duration::from_secs(args.shard_discovery_secs),
            exit_when_idle: args.exit_when_idle,
            worker_id: args.worker_id.clone(),
            lease_duration: Duration::from_millis(args.lease_ms),
            max_records_per_call: args.max_records_per_call,
            max_in_flight_mb: args.max_in_flight_mb,
            shard_read_mib: args.shard_read_mib,
            shard_read_share: args.shard_read_share,
            stall_timeout: Duration::from_secs(args.stall_timeout_secs),
            consumer_name: args.consumer_name.clone(),
            failing_after: Duration::from_secs(args.failing_after_secs),
            ..ConsumerSettings::new(args.stream.clone())
        },
        decode: args.revocation.settings(args.infer_keywords),
        http: args
            .http_addr
            .map(|addr| args.auth.settings(addr, &args.revocation_scope)),
        http_threads: args.http_threads.into(),
        webhooks: args.webhooks.settings(),
        delivery: args.delivery.settings(),
        revocation_scope: args.revocation_scope.get(),
    };
    let progress = super::progress::for_run(cli.quiet, args.exit_when_idle.is_some());
    let stats = app::run(settings, shutdown_on_signals(), progress).await?;
    info!(
        records = stats.records,
        shards_finished = stats.shards_finished,
        "Consumer stopped cleanly."
    );
    Ok(())
}
