//! `optout changes` (the change feed, NDJSON) and `optout deliveries` (the outbox's items).

use std::io::Write;

use clap::Args;
use futures_util::StreamExt;

use super::output::TableSpec;
use super::query::LimitArg;
use super::{Cli, CliError, FormatArg};
use crate::app::vocabulary::{DeliveryFilter, feed_json};
use crate::app::{self, ChangesSettings};

/// `optout changes` flags.
#[derive(Debug, Args)]
pub struct ChangesArgs {
    /// Keep printing changes as they commit, until interrupted (SIGINT/SIGTERM).
    #[arg(long)]
    pub follow: bool,
    /// Start after this cursor (the `cursor` of the last change an earlier run printed).
    #[arg(long, value_name = "CURSOR")]
    pub since_cursor: Option<String>,
}

/// Prints every change after the cursor as one JSON object per line, each with the `cursor`
/// to resume after it; with `--follow`, goes on until interrupted.
pub async fn changes(cli: &Cli, args: &ChangesArgs) -> Result<(), CliError> {
    let settings = ChangesSettings {
        store_url: cli.store.clone(),
        since_cursor: args.since_cursor.clone(),
        follow: args.follow,
    };
    let pages = app::changes(settings, super::shutdown_on_signals()).await?;
    let mut pages = Box::pin(pages);
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let written: anyhow::Result<()> = async {
        while let Some(page) = pages.next().await {
            let (items, _next) = page?;
            for change in &items {
                serde_json::to_writer(&mut out, &feed_json(change))?;
                out.write_all(b"\n")?;
            }
            // Following, a line is worth nothing until someone reads it.
            out.flush()?;
        }
        out.flush()?;
        Ok(())
    }
    .await;
    match written {
        Err(e) if super::listing::is_broken_pipe(&e) => Ok(()),
        other => other.map_err(CliError::Runtime),
    }
}

/// `--state` of `optout deliveries`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    Pending,
    Delivered,
    Failed,
}

/// `optout deliveries` flags.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Only items of this target (`twilio-consent`, `notify:<n>`). With --resync: a new
    /// target, to enqueue the current answer of every subscriber and scope for.
    #[arg(long)]
    pub target: Option<String>,
    /// Only items in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Writes instead of listing: answers every subscriber and scope the store has seen again
    /// under --revocation-scope, and records a change (with its deliveries) wherever the answer
    /// differs from the last one recorded; with --target, also enqueues every current answer
    /// for that target. Give the writer's delivery flags and mode (the same environment).
    /// Running it twice enqueues nothing twice. Prints the counts.
    #[arg(long, conflicts_with = "state")]
    pub resync: bool,
    #[command(flatten)]
    pub revocation_scope: super::RevocationScopeArg,
    #[command(flatten)]
    pub delivery: super::deliver::DeliveryArgs,
    #[command(flatten)]
    pub limit: LimitArg,
    #[command(flatten)]
    pub format: FormatArg,
}

const DELIVERIES_TABLE: TableSpec = TableSpec {
    columns: &[
        "id",
        "target",
        "state",
        "attempts",
        "subscriber",
        "reason",
        "created_at",
        "last_error",
    ],
};

/// Prints the outbox's items, oldest first (read-only); with `--resync`, resyncs the feed and
/// the outbox and prints the counts.
pub async fn deliveries(cli: &Cli, args: &DeliveriesArgs) -> Result<(), CliError> {
    if args.resync {
        let settings = app::ResyncSettings {
            store_url: cli.store.clone(),
            delivery: args.delivery.settings(),
            revocation_scope: args.revocation_scope.get(),
            new_target: args.target.clone(),
        };
        let s = app::resync(settings).await?;
        println!(
            "keys={} changes={} outbox_items={} target_items={}",
            s.keys, s.changes, s.outbox_items, s.target_items
        );
        return Ok(());
    }
    let listing = DeliveryFilter {
        target: args.target.clone(),
        state: args.state.map(|s| {
            match s {
                StateArg::Pending => "pending",
                StateArg::Delivered => "delivered",
                StateArg::Failed => "failed",
            }
            .to_string()
        }),
    };
    let (limit, format) = (args.limit.limit, args.format.format);
    super::listing::print(cli, listing, limit, format, DELIVERIES_TABLE).await
}
