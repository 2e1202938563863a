//! Revocation phrases on the command line: the detection flags shared by `run` and `replay`,
//! and `optout revocations`, the numbers to act on.

use std::path::PathBuf;

use clap::Args;

use super::output::TableSpec;
use super::{Cli, CliError, FormatArg};
use crate::app::DecodeSettings;
use crate::app::vocabulary::RevocationFilter;

/// Revocation-phrase flags of `optout run` and `optout replay`.
#[derive(Debug, Clone, Args)]
pub struct RevocationArgs {
    /// Revocation rules (JSON) that add to or replace the built-in phrase rules.
    #[arg(long, env = "OPTOUT_REVOCATION_RULES", value_name = "FILE")]
    pub revocation_rules: Option<PathBuf>,
    /// Let phrase-detected revocations set opted_out (by default they are only recorded).
    #[arg(long, env = "OPTOUT_HONOR_REVOCATIONS")]
    pub honor_revocations: bool,
}

impl RevocationArgs {
    /// The decoding settings of `run` and `replay`, with `--infer-keywords`.
    pub fn settings(&self, infer_keywords: bool) -> DecodeSettings {
        DecodeSettings {
            infer_keywords,
            revocation_rules: self.revocation_rules.clone(),
            honor_revocations: self.honor_revocations,
        }
    }
}

/// `optout revocations` flags.
#[derive(Debug, Args)]
pub struct RevocationsArgs {
    /// Only revocations that occurred at or after this time (RFC 3339).
    #[arg(long, value_parser = super::query::parse_rfc3339)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub format: FormatArg,
}

/// Prints the subscribers whose latest signal is a phrase revocation Twilio did not block.
pub async fn revocations(cli: &Cli, args: &RevocationsArgs) -> Result<(), CliError> {
    let listing = RevocationFilter { since: args.since };
    super::query::print(cli, listing, None, args.format.format, TableSpec::default()).await
}
