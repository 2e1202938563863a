//! The command line: flags (with env fallbacks), dispatch, and exit codes.
//!
//! Exit codes are a contract for scripts: 0 success, 2 a usage or configuration mistake (one
//! line that says what to fix), 1 a failure at run time.

mod changes;
mod deliver;
mod history;
mod listing;
pub mod output;
mod produce;
mod progress;
mod query;
mod replay;
mod revocations;
mod run;
mod shards;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::vocabulary::{LogFormat, RevocationScope};
use crate::app::{self, AppError, AwsSettings, HttpSettings};
use output::Format;
pub use progress::LogWriter;

/// Twilio Event Streams on Kinesis → an exactly-once record of opt-outs, opt-ins and help
/// requests, with each subscriber's current opt status.
#[derive(Parser)]
#[command(name = "optout", version, about, propagate_version = true)]
pub struct Cli {
    /// Where opt events and status are kept: sqlite://PATH (embedded) or postgres://USER@HOST/DB
    /// (PostgreSQL also takes PGPASSWORD, PGPASSFILE, ?sslmode=verify-full&sslrootcert=PATH).
    #[arg(
        long,
        env = "OPTOUT_STORE",
        hide_env_values = true,
        default_value = "sqlite://optout.db",
        global = true
    )]
    pub store: String,
    /// Read the store URL from this file (trimmed), so that no password is on a command line
    /// or in the environment; e.g. a mounted Kubernetes Secret. Takes precedence over OPTOUT_STORE.
    #[arg(long, env = "OPTOUT_STORE_FILE", value_name = "PATH", global = true)]
    pub store_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, env = "OPTOUT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Kinesis endpoint (default: AWS's, or AWS_ENDPOINT_URL), e.g. an emulator's http://127.0.0.1:4567.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// AWS region (default: the SDK's chain: AWS_REGION, profile, instance metadata).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Draw no progress (`replay`, `run --exit-when-idle` on a terminal); logs are unchanged.
    #[arg(long, env = "OPTOUT_QUIET", global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl std::fmt::Debug for Cli {
    /// By hand, so that the store's password never reaches a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli")
            .field("store", &"***")
            .field("store_file", &self.store_file)
            .field("log_format", &self.log_format)
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("quiet", &self.quiet)
            .field("command", &self.command)
            .finish()
    }
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
    /// Records that could not be decoded, with the reason and their first bytes (base64); one
    /// whole with --id.
    DeadLetters(query::DeadLettersArgs),
    /// Sink test events: the test_id for Twilio's Validate step.
    TestEvents(query::ListArgs),
    /// One number's audit trail: every opt event, oldest first, with the status after each.
    History(history::HistoryArgs),
    /// Load CloudEvents from files, one JSON per line (`-` is stdin), with the same dedup.
    Replay(replay::ReplayArgs),
    /// Write a realistic synthetic Twilio mix to a stream (demos, load tests).
    Produce(produce::ProduceArgs),
    /// Create or upgrade the store's schema, then exit.
    Migrate,
    /// Serve the HTTP query API, health and metrics without consuming (and, with an auth token
    /// file, take Twilio's webhooks).
    Serve(ServeArgs),
    /// Each shard with its parents, lease owner and expiry, checkpoint, and whether it is finished.
    Shards(shards::ShardsArgs),
    /// Numbers whose latest signal is a phrase-detected revocation Twilio did not block.
    Revocations(revocations::RevocationsArgs),
    /// Every change of a subscriber's answer (status, send_allowed), in commit order, as JSON
    /// lines; --follow keeps printing them as they commit.
    Changes(changes::ChangesArgs),
    /// Outbox items to deliver: pending, delivered and failed, per target (read-only); with
    /// --resync, brings the feed and the outbox in line with the current --revocation-scope.
    Deliveries(changes::DeliveriesArgs),
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
    #[command(flatten)]
    pub auth: HttpAuthArgs,
    #[command(flatten)]
    pub webhooks: webhooks::WebhookArgs,
    /// For webhooks: treat a body that is exactly a default opt keyword as an opt event
    /// (marked inferred) when Twilio did not flag it (no OptOutType: Advanced Opt-Out off).
    #[arg(long, env = "OPTOUT_INFER_KEYWORDS")]
    pub infer_keywords: bool,
    #[command(flatten)]
    pub revocation: revocations::RevocationArgs,
    #[command(flatten)]
    pub revocation_scope: RevocationScopeArg,
    #[command(flatten)]
    pub delivery: deliver::DeliveryArgs,
}

/// Who may call the HTTP API (`optout run --http-addr` and `optout serve`), and where the
/// probes listen.
#[derive(Args)]
pub struct HttpAuthArgs {
    /// Serve /healthz, /readyz and /metrics on this address instead of the API's, with a
    /// connection budget of their own (point the kubelet's probes here).
    #[arg(long, env = "OPTOUT_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,
    /// Bearer token that /v1/* requires (prefer the environment or --http-token-file to the
    /// flag, which `ps` shows).
    #[arg(
        long,
        env = "OPTOUT_HTTP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub http_token: Option<String>,
    /// File of bearer tokens, one per line (several allow rotation: add the new one, move the
    /// clients, remove the old one); read at start.
    #[arg(long, env = "OPTOUT_HTTP_TOKEN_FILE", value_name = "PATH")]
    pub http_token_file: Option<PathBuf>,
    /// Require the token on /metrics too (default: /metrics, /healthz and /readyz are open).
    #[arg(long, env = "OPTOUT_METRICS_REQUIRE_TOKEN")]
    pub metrics_require_token: bool,
    /// File holding the key (32 bytes or more, e.g. `openssl rand -hex 32`) that signs the web
    /// console's session cookies; give every instance behind one address the same file so
    /// they share sessions. Default: a random key per process (a restart signs everyone out).
    #[arg(long, env = "OPTOUT_SESSION_KEY_FILE", value_name = "PATH")]
    pub session_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for HttpAuthArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthArgs")
            .field("health_addr", &self.health_addr)
            .field("http_token", &self.http_token.as_ref().map(|_| "***"))
            .field("http_token_file", &self.http_token_file)
            .field("metrics_require_token", &self.metrics_require_token)
            .field("session_key_file", &self.session_key_file)
            .finish()
    }
}

impl HttpAuthArgs {
    /// The HTTP server's settings on `addr`; the application checks them (a reachable address
    /// needs a token).
    pub fn settings(&self, addr: SocketAddr, scope: &RevocationScopeArg) -> HttpSettings {
        HttpSettings {
            revocation_scope: scope.get(),
            addr,
            health_addr: self.health_addr,
            token: self.http_token.clone(),
            token_file: self.http_token_file.clone(),
            metrics_require_token: self.metrics_require_token,
            session_key_file: self.session_key_file.clone(),
        }
    }
}

/// `--revocation-scope`, one flag for every command that answers status or writes the change
/// feed (`status`, `history`, `serve`, `run`, `replay`, `dead-letters --retry --apply`,
/// `deliveries --resync`).
#[derive(Debug, Args)]
pub struct RevocationScopeArg {
    /// How far an opt-out reaches: `scope` (the Messaging Service or
    /// sender it was sent to), `account` (every scope of its account) or `all` (every account
    /// in this store). A Twilio STOP, a reassigned number's opt-out, an inferred keyword STOP
    /// or an honoured phrase revocation reaches; a START re-opts only its own scope. Writers
    /// (`run`, `serve`, `replay`, `dead-letters --retry --apply`) apply it to the change feed, the webhooks and the Consent
    /// push from their next commit on; `optout deliveries --resync` catches up the rest.
    /// Switching needs no reprocessing. Which to use is your counsel's decision.
    #[arg(long, env = "OPTOUT_REVOCATION_SCOPE", value_enum, default_value_t = ScopeArg::Scope)]
    pub revocation_scope: ScopeArg,
}

/// The values of `--revocation-scope`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScopeArg {
    Scope,
    Account,
    All,
}

impl RevocationScopeArg {
    /// The mode as the application takes it.
    pub fn get(&self) -> RevocationScope {
        match self.revocation_scope {
            ScopeArg::Scope => RevocationScope::Scope,
            ScopeArg::Account => RevocationScope::Account,
            ScopeArg::All => RevocationScope::All,
        }
    }
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

impl From<AppError> for CliError {
    fn from(e: AppError) -> Self {
        if e.is_usage() {
            CliError::Usage(e.to_string())
        } else {
            CliError::Runtime(e.into())
        }
    }
}

/// Parses the command line; on a mistake prints one line that says what to fix and exits 2.
pub fn parse_args() -> Cli {
    let parsed = Cli::command().try_get_matches().and_then(|matches| {
        // The file wins over OPTOUT_STORE (a container image may set that for its SQLite
        // default), but naming the store twice on the command line is a mistake.
        if matches.get_one::<PathBuf>("store_file").is_some() && store_on_command_line(&matches) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "--store and --store-file (or OPTOUT_STORE_FILE) both name the store: keep one\n",
            ));
        }
        Cli::from_arg_matches(&matches)
    });
    match parsed {
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

/// Whether `--store` was given as a flag (not from OPTOUT_STORE or the default), at any level.
fn store_on_command_line(matches: &clap::ArgMatches) -> bool {
    let mut level = Some(matches);
    while let Some(m) = level {
        if m.value_source("store") == Some(clap::parser::ValueSource::CommandLine) {
            return true;
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    false
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
pub async fn execute(mut cli: Cli) -> Result<(), CliError> {
    if let Some(path) = &cli.store_file {
        cli.store = read_store_file(path)?;
    }
    match &cli.command {
        Command::Run(args) => run::run(&cli, args).await,
        Command::Status(args) => query::status(&cli, args).await,
        Command::Events(args) => query::events(&cli, args).await,
        Command::DeadLetters(args) => query::dead_letters(&cli, args).await,
        Command::TestEvents(args) => query::test_events(&cli, args).await,
        Command::History(args) => history::history(&cli, args).await,
        Command::Replay(args) => replay::replay(&cli, args).await,
        Command::Produce(args) => produce::produce(&cli, args).await,
        Command::Migrate => {
            let store = app::migrate(&cli.store).await?;
            println!("schema up to date: {store}");
            Ok(())
        }
        Command::Serve(args) => query::serve(&cli, args).await,
        Command::Shards(args) => shards::shards(&cli, args).await,
        Command::Revocations(args) => revocations::revocations(&cli, args).await,
        Command::Changes(args) => changes::changes(&cli, args).await,
        Command::Deliveries(args) => changes::deliveries(&cli, args).await,
    }
}

/// The store URL kept in `path` (a mounted Secret, say), trimmed.
fn read_store_file(path: &std::path::Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!("cannot read --store-file {}: {e}", path.display()))
    })?;
    let url = text.trim();
    if url.is_empty() {
        return Err(CliError::Usage(format!(
            "--store-file {} is empty: write the store URL in it",
            path.display()
        )));
    }
    Ok(url.to_string())
}

impl Cli {
    /// Where Kinesis is (`--region`, `--endpoint-url`).
    pub fn aws(&self) -> AwsSettings {
        AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
        }
    }
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
