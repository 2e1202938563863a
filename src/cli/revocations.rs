//! Revocation phrases on the command line: the detection flags shared by `run` and `replay`,
//! and `optout revocations`, the numbers to act on.

use std::path::PathBuf;

use clap::Args;
use tracing::info;

use super::{Cli, CliError, FormatArg, open_store_read_only};
use crate::app::{RevocationFilter, Revocations, RuleSet};

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
    /// The rules in force: the file's (loaded once, kept for the life of the process), or the
    /// built-in ones. A bad file is a usage error (exit 2) with one line that says what is wrong.
    pub fn revocations(&self) -> Result<Revocations, CliError> {
        let Some(path) = &self.revocation_rules else {
            info!(
                rules = RuleSet::builtin().version(),
                honor_revocations = self.honor_revocations,
                "Revocation phrase detection on."
            );
            return Ok(Revocations::Builtin);
        };
        let set = RuleSet::load(path)
            .map_err(|e| CliError::Usage(format!("invalid --revocation-rules: {e}")))?;
        let set: &'static RuleSet = Box::leak(Box::new(set));
        info!(
            rules = set.version(),
            honor_revocations = self.honor_revocations,
            "Revocation phrase detection on."
        );
        Ok(Revocations::Custom(set))
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
    let store = open_store_read_only(&cli.store, 2).await?;
    let rows = store
        .revocations(&RevocationFilter { since: args.since })
        .await
        .map_err(|e| CliError::Runtime(e.into()))?;
    let stdout = std::io::stdout();
    crate::output::write_rows(&mut stdout.lock(), &rows, args.format.format)
        .map_err(CliError::Runtime)
}
