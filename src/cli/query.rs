//! The query commands: `status`, `events`, `dead-letters`, `test-events`, and `serve`. Each
//! parses its flags, asks the store's [`Reader`] for a stream of pages and prints rows as they
//! come (constant memory, whatever the size of the result).

use clap::Args;
use futures_util::StreamExt;

use super::listing::{is_broken_pipe, parse_rfc3339, print, print_in};
use super::output::{Format, Printer, TableSpec};
use super::{Cli, CliError, FormatArg, ServeArgs};
use crate::app::vocabulary::{
    AsOfFilter, DeadLetterFilter, Detection, EventFilter, OptOutType, StatusFilter, TestEventFilter,
};
use crate::app::{self, RetryRequest, RetrySettings, ServeSettings};

/// `--limit`: print at most this many rows.
#[derive(Debug, Args)]
pub struct LimitArg {
    /// Print at most this many rows (default: all).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// `optout dead-letters` and `optout test-events` flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub limit: LimitArg,
    #[command(flatten)]
    pub format: FormatArg,
}

/// `optout dead-letters` flags.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// Print this one dead letter whole (its `id` in a list), as JSON with every byte of the
    /// raw record; lists carry the first 1,024.
    #[arg(long, value_name = "ID", conflicts_with_all = ["limit", "format", "retry"])]
    pub id: Option<String>,
    #[command(flatten)]
    pub list: ListArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
}

/// `optout dead-letters --retry` flags.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Decode the stored records again with today's decoder (and these decoding flags) and
    /// say what would happen; with --apply, store those that now decode, each with its dead
    /// letter removed in the same transaction. Prints one row per dead letter tried.
    #[arg(long, conflicts_with = "limit")]
    pub retry: bool,
    /// With --retry: only dead letters whose reason contains this text.
    #[arg(long, value_name = "TEXT", requires = "retry")]
    pub reason: Option<String>,
    /// With --retry: only dead letters recorded at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_rfc3339, requires = "retry")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// With --retry: commit (without it, a dry run that changes nothing).
    #[arg(long, requires = "retry")]
    pub apply: bool,
    /// With --retry: treat default opt keywords in bodies of schema versions below 5 as opt
    /// events (marked inferred), as `run --infer-keywords` does.
    #[arg(long, env = "OPTOUT_INFER_KEYWORDS")]
    pub infer_keywords: bool,
    #[command(flatten)]
    pub revocation: super::revocations::RevocationArgs,
    #[command(flatten)]
    pub revocation_scope: super::RevocationScopeArg,
}

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
    /// The status at this instant instead of now (RFC 3339): the latest STOP or START at or
    /// before it wins, ties to the larger event id, HELP changes nothing.
    #[arg(long, value_parser = parse_rfc3339)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// With --as-of: count every phrase-detected revocation as a STOP, also those stored
    /// without `--honor-revocations` (each event records whether it was honoured).
    #[arg(long, requires = "as_of")]
    pub honor_revocations: bool,
    #[command(flatten)]
    pub revocation_scope: super::RevocationScopeArg,
    #[command(flatten)]
    pub limit: LimitArg,
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
    /// Only events recognised this way: twilio, reassigned, keyword or phrase.
    #[arg(long, value_enum)]
    pub detection: Option<DetectionArg>,
    #[command(flatten)]
    pub limit: LimitArg,
    #[command(flatten)]
    pub format: FormatArg,
}

/// `--detection` of `optout events`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DetectionArg {
    Twilio,
    Reassigned,
    Keyword,
    Phrase,
}

/// Table columns of each row type: what a person reads first; csv and json keep every field.
const STATUS_TABLE: TableSpec = TableSpec {
    columns: &["subscriber", "status", "scope", "changed_at", "account_sid"],
};
const EVENTS_TABLE: TableSpec = TableSpec {
    columns: &[
        "occurred_at",
        "opt_out_type",
        "detection",
        "subscriber",
        "sender",
        "body",
    ],
};
const DEAD_LETTERS_TABLE: TableSpec = TableSpec {
    columns: &["recorded_at", "shard_id", "sequence_number", "reason"],
};
const RETRY_TABLE: TableSpec = TableSpec {
    columns: &["shard_id", "sequence_number", "outcome", "detail"],
};
pub(super) const HISTORY_TABLE: TableSpec = TableSpec {
    columns: &[
        "occurred_at",
        "opt_out_type",
        "detection",
        "scope",
        "status_after",
        "body",
    ],
};

/// Prints opt status, now or at an instant.
pub async fn status(cli: &Cli, args: &StatusArgs) -> Result<(), CliError> {
    let (limit, format) = (args.limit.limit, args.format.format);
    let scope = args.revocation_scope.get();
    match args.as_of {
        Some(at) => {
            let listing = AsOfFilter {
                at,
                subscriber: args.subscriber.clone(),
                scope: args.scope.clone(),
                accounts: args.account.clone(),
                honor_revocations: args.honor_revocations,
            };
            print_in(cli, scope, listing, limit, format, STATUS_TABLE).await
        }
        None => {
            let listing = StatusFilter {
                subscriber: args.subscriber.clone(),
                scope: args.scope.clone(),
                accounts: args.account.clone(),
            };
            print_in(cli, scope, listing, limit, format, STATUS_TABLE).await
        }
    }
}

/// Prints opt events.
pub async fn events(cli: &Cli, args: &EventsArgs) -> Result<(), CliError> {
    let listing = EventFilter {
        since: args.since,
        opt_out_type: args.opt_type.map(|t| match t {
            TypeArg::Stop => OptOutType::Stop,
            TypeArg::Start => OptOutType::Start,
            TypeArg::Help => OptOutType::Help,
        }),
        subscriber: args.subscriber.clone(),
        detection: args.detection.map(|d| match d {
            DetectionArg::Twilio => Detection::Twilio,
            DetectionArg::Reassigned => Detection::Reassigned,
            DetectionArg::Keyword => Detection::Keyword,
            DetectionArg::Phrase => Detection::Phrase,
        }),
    };
    let (limit, format) = (args.limit.limit, args.format.format);
    print(cli, listing, limit, format, EVENTS_TABLE).await
}

/// Prints dead letters, or one whole.
pub async fn dead_letters(cli: &Cli, args: &DeadLettersArgs) -> Result<(), CliError> {
    if let Some(id) = &args.id {
        return dead_letter(cli, id).await;
    }
    if args.retry.retry {
        return retry(cli, &args.retry, args.list.format.format).await;
    }
    let (limit, format) = (args.list.limit.limit, args.list.format.format);
    print(cli, DeadLetterFilter, limit, format, DEAD_LETTERS_TABLE).await
}

/// Retries dead letters, printing each one's outcome as it is known and a summary on stderr.
async fn retry(cli: &Cli, args: &RetryArgs, format: Format) -> Result<(), CliError> {
    let settings = RetrySettings {
        store_url: cli.store.clone(),
        request: RetryRequest {
            reason: args.reason.clone(),
            since: args.since,
            apply: args.apply,
        },
        decode: args.revocation.settings(args.infer_keywords),
        revocation_scope: args.revocation_scope.get(),
    };
    let out = std::io::BufWriter::new(std::io::stdout());
    let mut printer = Printer::new(out, format, RETRY_TABLE);
    let done = app::retry_dead_letters(settings, super::shutdown_on_signals(), |row| {
        printer.row(&row)
    })
    .await;
    let finished = printer.finish();
    let summary = done?;
    match finished {
        Err(e) if is_broken_pipe(&e) => {}
        other => other.map_err(CliError::Runtime)?,
    }
    let (verb, tail) = match args.apply {
        true => ("stored", ""),
        false => (
            "would be stored",
            "; dry run, nothing changed (--apply commits)",
        ),
    };
    eprintln!(
        "{} dead letters matched: {} {verb}, {} left as they were{}{tail}",
        summary.matched,
        summary.stored,
        summary.left,
        match summary.already_retried {
            0 => String::new(),
            n => format!(", {n} already retried by another run"),
        },
    );
    if summary.interrupted {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "interrupted: what was stored stays stored; run it again for the rest"
        )));
    }
    Ok(())
}

/// Writes one dead letter's JSON to stdout as it is read.
async fn dead_letter(cli: &Cli, id: &str) -> Result<(), CliError> {
    use std::io::Write;
    let Some(chunks) = app::dead_letter(&cli.store, id).await? else {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "no dead letter with id {id}"
        )));
    };
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut chunks = Box::pin(chunks);
    let written: anyhow::Result<()> = async {
        while let Some(chunk) = chunks.next().await {
            out.write_all(&chunk?)?;
        }
        out.flush()?;
        Ok(())
    }
    .await;
    match written {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other.map_err(CliError::Runtime),
    }
}

/// Prints sink test events.
pub async fn test_events(cli: &Cli, args: &ListArgs) -> Result<(), CliError> {
    let (limit, format) = (args.limit.limit, args.format.format);
    print(cli, TestEventFilter, limit, format, TableSpec::default()).await
}

/// Serves the HTTP API until SIGINT/SIGTERM.
pub async fn serve(cli: &Cli, args: &ServeArgs) -> Result<(), CliError> {
    let settings = ServeSettings {
        store_url: cli.store.clone(),
        http: args.auth.settings(args.http_addr, &args.revocation_scope),
        webhooks: args.webhooks.settings(),
        decode: args.revocation.settings(args.infer_keywords),
        delivery: args.delivery.settings(),
    };
    Ok(app::serve(settings, super::shutdown_on_signals()).await?)
}
