//! The command line: flags (with env fallbacks), dispatch, and exit codes.
//!
//! Exit codes are a contract for scripts: 0 success, 2 a usage or configuration mistake (one
//! line that says what to fix), 1 a failure at run time.

mod produce;
mod query;
mod replay;
mod revocations;
mod run;
mod shards;

use std::net::SocketAddr;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use clap::{Args, Parser, Subcommand};

use crate::output::Format;
use crate::store::{self, Store, StoreError};
use crate::telemetry::LogFormat;

/// Twilio Event Streams on Kinesis → an exactly-once record of opt-outs, opt-ins and help
/// requests, with each subscriber's current opt status.
#[derive(Debug, Parser)]
#[command(name = "optout", version, about, propagate_version = true)]
pub struct Cli {
    /// Where opt events and status are kept: sqlite://PATH (embedded) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "OPTOUT_STORE",
        default_value = "sqlite://optout.db",
        global = true
    )]
    pub store: String,
    /// Log format on stderr.
    #[arg(long, env = "OPTOUT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Kinesis endpoint (default: AWS's, or AWS_ENDPOINT_URL), e.g. an emulator's http://127.0.0.1:4567.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// AWS region (default: the SDK's chain: AWS_REGION, profile, instance metadata).
    #[arg(long, global = true)]
    pub region: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume a stream: store opt events, status, dead letters and test events until stopped.
    Run(run::RunArgs),
    /// Current opt status per subscriber and scope.
    Status(query::StatusArgs),
    /// Stored opt events (STOP, START, HELP), oldest first.
    Events(query::EventsArgs),
    /// Records that could not be decoded, with their raw bytes (base64) and the reason.
    DeadLetters(FormatArg),
    /// Sink test events: the test_id for Twilio's Validate step.
    TestEvents(FormatArg),
    /// Load CloudEvents from files, one JSON per line (`-` is stdin), with the same dedup.
    Replay(replay::ReplayArgs),
    /// Write a realistic synthetic Twilio mix to a stream (demos, load tests).
    Produce(produce::ProduceArgs),
    /// Create or upgrade the store's schema, then exit.
    Migrate,
    /// Serve the HTTP query API, health and metrics without consuming.
    Serve(ServeArgs),
    /// Each shard with its parents, lease owner and expiry, checkpoint, and whether it is finished.
    Shards(shards::ShardsArgs),
    /// Numbers whose latest signal is a phrase-detected revocation Twilio did not block.
    Revocations(revocations::RevocationsArgs),
}

/// `--format` for query commands.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format: an aligned table, JSON lines or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `optout serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for the HTTP API.
    #[arg(long, env = "OPTOUT_HTTP_ADDR", default_value = "127.0.0.1:9464")]
    pub http_addr: SocketAddr,
}

/// A failure, sorted by who must act: the user (usage) or the operator (runtime).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A wrong flag or setting; exit code 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed while running; exit code 1.
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidUrl { .. }
            | StoreError::Locked { .. }
            | StoreError::NotFound { .. }
            | StoreError::Schema(_) => CliError::Usage(e.to_string()),
            StoreError::Database(sqlx::Error::Configuration(_)) => {
                CliError::Usage(format!("invalid --store: {e}"))
            }
            other => CliError::Runtime(anyhow::Error::new(other).context("store")),
        }
    }
}

/// Parses the command line; on a mistake prints one line that says what to fix and exits 2.
pub fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!(
                "{} (see `optout --help`)",
                one_line(&e.render().to_string())
            );
            std::process::exit(2);
        }
    }
}

/// Clap's message up to its first blank line, joined into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the parsed command line.
pub async fn execute(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Run(args) => run::run(&cli, args).await,
        Command::Status(args) => query::status(&cli, args).await,
        Command::Events(args) => query::events(&cli, args).await,
        Command::DeadLetters(f) => query::dead_letters(&cli, f.format).await,
        Command::TestEvents(f) => query::test_events(&cli, f.format).await,
        Command::Replay(args) => replay::replay(&cli, args).await,
        Command::Produce(args) => produce::produce(&cli, args).await,
        Command::Migrate => {
            open_store(&cli.store, 2).await?.close().await;
            println!("schema up to date: {}", store::redact(&cli.store));
            Ok(())
        }
        Command::Serve(args) => query::serve(&cli, args).await,
        Command::Shards(args) => shards::shards(&cli, args).await,
        Command::Revocations(args) => revocations::revocations(&cli, args).await,
    }
}

/// Opens the store for writing (`run`, `replay`, `migrate`), with connection errors reported
/// against the (redacted) URL.
pub async fn open_store(
    url: &str,
    max_connections: u32,
) -> Result<std::sync::Arc<dyn Store>, CliError> {
    store::open(url, max_connections)
        .await
        .map_err(|e| open_error(url, e))
}

/// Opens the store for queries: never creates, migrates or writes.
pub async fn open_store_read_only(
    url: &str,
    max_connections: u32,
) -> Result<std::sync::Arc<dyn Store>, CliError> {
    store::open_read_only(url, max_connections)
        .await
        .map_err(|e| open_error(url, e))
}

/// A store that could not be opened, reported against the (redacted) URL, in one line that
/// names the cause.
pub fn open_error(url: &str, e: StoreError) -> CliError {
    match e {
        StoreError::Database(db) | StoreError::Connect(db)
            if !matches!(db, sqlx::Error::Configuration(_)) =>
        {
            CliError::Runtime(anyhow::anyhow!(
                "cannot open store {}: {}",
                store::redact(url),
                store::redact(&db.to_string())
            ))
        }
        StoreError::Migration { version, source } => CliError::Runtime(anyhow::anyhow!(
            "cannot migrate store {} (migration {version}): {}",
            store::redact(url),
            store::redact(&source.to_string())
        )),
        other => other.into(),
    }
}

/// A Kinesis client from the default AWS chain plus `--region`/`--endpoint-url`.
///
/// `consumer` clients have the SDK's retries off (the engine's backoff is the one policy) and
/// bounded timeouts, so a hung connection cannot stall a shard.
pub async fn kinesis_client(
    cli: &Cli,
    consumer: bool,
) -> Result<aws_sdk_kinesis::Client, CliError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &cli.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &cli.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(CliError::Usage(
            "no AWS region: set AWS_REGION or pass --region (e.g. --region us-east-1)".into(),
        ));
    }
    let mut builder = aws_sdk_kinesis::config::Builder::from(&shared);
    if consumer {
        builder = builder
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(3))
                    .operation_attempt_timeout(std::time::Duration::from_secs(30))
                    .build(),
            );
    }
    Ok(aws_sdk_kinesis::Client::from_conf(builder.build()))
}

/// A token cancelled on SIGINT or SIGTERM; a second signal exits at once.
pub fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutting down: finishing the batch in hand (signal again to force).");
        t.cancel();
        wait_for_signal().await;
        tracing::warn!("Second signal: exiting now; unfinished batches will be read again.");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
