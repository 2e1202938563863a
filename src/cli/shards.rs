//! `optout shards`: each shard of the stream with its lineage, lease and checkpoint, for
//! operators asking "who reads what, and how far along is it?".

use clap::Args;

use super::{Cli, CliError, FormatArg, kinesis_client};
use crate::app;
use crate::output::write_rows;

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
    let client = kinesis_client(cli, false).await?;
    let rows = app::shard_table(&cli.store, &client, &args.stream).await?;
    let stdout = std::io::stdout();
    write_rows(&mut stdout.lock(), &rows, args.format.format).map_err(CliError::Runtime)
}
