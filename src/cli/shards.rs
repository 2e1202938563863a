//! `optout shards`: each shard of the stream with its lineage, lease and checkpoint, for
//! operators asking "who reads what, and how far along is it?".

use clap::Args;

use super::output::write_rows;
use super::{Cli, CliError, FormatArg};
use crate::app;

/// `optout shards` flags.
#[derive(Debug, Args)]
pub struct ShardsArgs {
    /// The Kinesis stream.
    #[arg(long, env = "OPTOUT_STREAM")]
    pub stream: String,
    #[command(flatten)]
    pub format: FormatArg,
}

/// Prints the stream's shards, joined with the store's leases and checkpoints.
pub async fn shards(cli: &Cli, args: &ShardsArgs) -> Result<(), CliError> {
    let rows = app::shard_table(&cli.store, &cli.aws(), &args.stream).await?;
    let stdout = std::io::stdout();
    write_rows(&mut stdout.lock(), &rows, args.format.format).map_err(CliError::Runtime)
}
