//! `optout history`: one number's audit trail, every event with the status after it.

use clap::Args;

use super::listing::print_in;
use super::query::{HISTORY_TABLE, LimitArg};
use super::{Cli, CliError, FormatArg};
use crate::app::vocabulary::HistoryFilter;

/// `optout history` flags.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The number, exactly as Twilio wrote it (e.g. +15551230001).
    #[arg(long)]
    pub subscriber: String,
    /// Only this scope (a Messaging Service SID MG…, or a sender number).
    #[arg(long)]
    pub scope: Option<String>,
    /// Count every phrase-detected revocation as a STOP in `status_after`, also those stored
    /// without `--honor-revocations` (each event records whether it was honoured).
    #[arg(long)]
    pub honor_revocations: bool,
    #[command(flatten)]
    pub revocation_scope: super::RevocationScopeArg,
    #[command(flatten)]
    pub limit: LimitArg,
    #[command(flatten)]
    pub format: FormatArg,
}

/// Prints the number's events, oldest first, each with the status it left in its scope.
pub async fn history(cli: &Cli, args: &HistoryArgs) -> Result<(), CliError> {
    let listing = HistoryFilter {
        subscriber: args.subscriber.clone(),
        scope: args.scope.clone(),
        honor_revocations: args.honor_revocations,
    };
    let (limit, format) = (args.limit.limit, args.format.format);
    let scope = args.revocation_scope.get();
    print_in(cli, scope, listing, limit, format, HISTORY_TABLE).await
}
