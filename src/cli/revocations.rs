//! Revocation phrases on the command line: the detection flags shared by `run` and `replay`,
//! and `optout revocations`, the numbers to act on.

use std::path::PathBuf;

use clap::Args;

use super::output::TableSpec;
use super::{Cli, CliError, FormatArg};
use crate::app::DecodeSettings;
use crate::app::vocabulary::RevocationFilter;

/// The decoding flags `optout run` and `optout replay` share: revocation phrases and the
/// largest record.
#[derive(Debug, Clone, Args)]
pub struct RevocationArgs {
    /// Revocation rules (JSON) that add to or replace the built-in phrase rules.
    #[arg(long, env = "OPTOUT_REVOCATION_RULES", value_name = "FILE")]
    pub revocation_rules: Option<PathBuf>,
    /// Let phrase-detected revocations set opted_out (by default they are only recorded).
    #[arg(long, env = "OPTOUT_HONOR_REVOCATIONS")]
    pub honor_revocations: bool,
    /// Records (replayed lines) longer than this many bytes become dead letters holding their
    /// first 64 KiB: Kinesis' default maximum (1 MiB); raise it for a stream that allows more
    /// (up to 10 MiB).
    #[arg(long, env = "OPTOUT_MAX_RECORD_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1_024..=10 << 20))]
    pub max_record_bytes: u64,
}

impl RevocationArgs {
    /// The decoding settings of `run` and `replay`, with `--infer-keywords`.
    pub fn settings(&self, infer_keywords: bool) -> DecodeSettings {
        DecodeSettings {
            infer_keywords,
            revocation_rules: self.revocation_rules.clone(),
            honor_revocations: self.honor_revocations,
            max_record_bytes: self.max_record_bytes as usize,
        }
    }
}

/// `optout revocations` flags.
#[derive(Debug, Args)]
pub struct RevocationsArgs {
    /// Only revocations that occurred at or after this time (RFC 3339).
    #[arg(long, value_parser = super::listing::parse_rfc3339)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub format: FormatArg,
}

/// Prints the subscribers whose latest signal is a phrase revocation Twilio did not block.
pub async fn revocations(cli: &Cli, args: &RevocationsArgs) -> Result<(), CliError> {
    let listing = RevocationFilter { since: args.since };
    super::listing::print(cli, listing, None, args.format.format, TableSpec::default()).await
}
