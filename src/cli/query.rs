//! The query commands: `status`, `events`, `dead-letters`, `test-events`, and `serve`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Args;

use super::{Cli, CliError, FormatArg, ServeArgs, open_store_read_only};
use crate::event::{Detection, OptOutType};
use crate::output::{Format, write_rows};
use crate::store::{EventFilter, StatusFilter};

/// `optout status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this subscriber (the texter's number as Twilio wrote it, e.g. +15551230001).
    #[arg(long)]
    pub subscriber: Option<String>,
    /// Only this scope (a Messaging Service SID MG…, or a sender number).
    #[arg(long)]
    pub scope: Option<String>,
    /// Only these accounts (AC…); repeat or separate with commas.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub account: Vec<String>,
    #[command(flatten)]
    pub format: FormatArg,
}

/// `--type` of `optout events`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TypeArg {
    Stop,
    Start,
    Help,
}

/// `optout events` flags.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events that occurred at or after this time (RFC 3339, e.g. 2026-03-01T00:00:00Z).
    #[arg(long, value_parser = parse_rfc3339)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this kind of opt event.
    #[arg(long = "type", value_enum)]
    pub opt_type: Option<TypeArg>,
    /// Only this subscriber.
    #[arg(long)]
    pub subscriber: Option<String>,
    /// Only events recognised this way: twilio, keyword or phrase.
    #[arg(long, value_enum)]
    pub detection: Option<DetectionArg>,
    #[command(flatten)]
    pub format: FormatArg,
}

/// `--detection` of `optout events`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DetectionArg {
    Twilio,
    Keyword,
    Phrase,
}

pub(super) fn parse_rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e}); e.g. 2026-03-01T00:00:00Z"))
}

fn print<T: serde::Serialize>(rows: &[T], format: Format) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    write_rows(&mut stdout.lock(), rows, format).map_err(CliError::Runtime)
}

fn runtime(e: crate::store::StoreError) -> CliError {
    CliError::Runtime(e.into())
}

/// Prints current opt status.
pub async fn status(cli: &Cli, args: &StatusArgs) -> Result<(), CliError> {
    let store = open_store_read_only(&cli.store, 2).await?;
    let filter = StatusFilter {
        subscriber: args.subscriber.clone(),
        scope: args.scope.clone(),
        accounts: args.account.clone(),
    };
    print(
        &store.status(&filter).await.map_err(runtime)?,
        args.format.format,
    )
}

/// Prints opt events.
pub async fn events(cli: &Cli, args: &EventsArgs) -> Result<(), CliError> {
    let store = open_store_read_only(&cli.store, 2).await?;
    let filter = EventFilter {
        since: args.since,
        opt_out_type: args.opt_type.map(|t| match t {
            TypeArg::Stop => OptOutType::Stop,
            TypeArg::Start => OptOutType::Start,
            TypeArg::Help => OptOutType::Help,
        }),
        subscriber: args.subscriber.clone(),
        detection: args.detection.map(|d| match d {
            DetectionArg::Twilio => Detection::Twilio,
            DetectionArg::Keyword => Detection::Keyword,
            DetectionArg::Phrase => Detection::Phrase,
        }),
    };
    print(
        &store.events(&filter).await.map_err(runtime)?,
        args.format.format,
    )
}

/// Prints dead letters.
pub async fn dead_letters(cli: &Cli, format: Format) -> Result<(), CliError> {
    let store = open_store_read_only(&cli.store, 2).await?;
    print(&store.dead_letters().await.map_err(runtime)?, format)
}

/// Prints sink test events.
pub async fn test_events(cli: &Cli, format: Format) -> Result<(), CliError> {
    let store = open_store_read_only(&cli.store, 2).await?;
    print(&store.test_events().await.map_err(runtime)?, format)
}

/// Serves the HTTP API until SIGINT/SIGTERM.
pub async fn serve(cli: &Cli, args: &ServeArgs) -> Result<(), CliError> {
    let auth = Arc::new(args.auth.api_auth(args.http_addr)?);
    let store = open_store_read_only(&cli.store, 8).await?;
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|e| {
            CliError::Usage(format!(
                "cannot listen on --http-addr {}: {e}",
                args.http_addr
            ))
        })?;
    let state = crate::http::AppState {
        store,
        metrics: crate::telemetry::init_metrics(),
        ready: Arc::new(AtomicBool::new(true)),
        auth,
        health: None,
    };
    crate::http::serve_on(listener, state, super::shutdown_on_signals())
        .await
        .map_err(|e| CliError::Runtime(e.into()))
}
