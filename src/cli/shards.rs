//! `optout shards`: each shard of the stream with its lineage, lease and checkpoint, for
//! operators asking "who reads what, and how far along is it?".

use std::collections::HashMap;

use clap::Args;
use serde::Serialize;

use super::{Cli, CliError, FormatArg, kinesis_client, open_error};
use crate::kinesis::{LeaseStore, list_shards};
use crate::output::write_rows;
use crate::store::Store;

/// `optout shards` flags.
#[derive(Debug, Args)]
pub struct ShardsArgs {
    /// The Kinesis stream.
    #[arg(long, env = "OPTOUT_STREAM")]
    pub stream: String,
    #[command(flatten)]
    pub format: FormatArg,
}

/// One shard as an operator sees it.
#[derive(Debug, Serialize)]
struct ShardRow {
    shard_id: String,
    parent_shard_id: Option<String>,
    adjacent_parent_shard_id: Option<String>,
    /// `open`, or `closed` after a split or merge.
    state: &'static str,
    /// The worker holding the lease, if it is live (several workers on PostgreSQL).
    owner: Option<String>,
    /// When that lease expires (UTC).
    lease_expires_at: Option<String>,
    /// Last sequence number whose effects are stored.
    checkpoint: Option<String>,
    /// Read to its end.
    finished: bool,
}

/// Prints the stream's shards, joined with the store's leases and checkpoints.
pub async fn shards(cli: &Cli, args: &ShardsArgs) -> Result<(), CliError> {
    let store = crate::store::open_sql_with(&cli.store, 2, crate::store::Access::ReadOnly)
        .await
        .map_err(|e| open_error(&cli.store, e))?;
    let client = kinesis_client(cli, false).await?;
    let listed = list_shards(&client, &args.stream).await.map_err(|e| {
        let e = e.into_kinesis_error(&args.stream);
        match e {
            crate::kinesis::KinesisError::StreamNotFound { .. } => CliError::Usage(e.to_string()),
            other => CliError::Runtime(other.into()),
        }
    })?;
    let checkpoints: HashMap<String, _> = store
        .checkpoints(&args.stream)
        .await
        .map_err(|e| CliError::Runtime(e.into()))?
        .into_iter()
        .map(|c| (c.shard_id.clone(), c))
        .collect();
    let (leases, now_ms) = store
        .leases(&args.stream)
        .await
        .map_err(|e| CliError::Runtime(anyhow::anyhow!(e)))?;
    let leases: HashMap<String, _> = leases
        .into_iter()
        .filter(|l| l.owner.is_some() && l.expires_at_ms > now_ms)
        .map(|l| (l.shard_id.clone(), l))
        .collect();
    let rows: Vec<ShardRow> = listed
        .into_iter()
        .map(|s| {
            let cp = checkpoints.get(&s.shard_id);
            let lease = leases.get(&s.shard_id);
            ShardRow {
                state: if s.closed { "closed" } else { "open" },
                owner: lease.and_then(|l| l.owner.clone()),
                lease_expires_at: lease.and_then(|l| {
                    chrono::DateTime::from_timestamp_millis(l.expires_at_ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                }),
                checkpoint: cp.and_then(|c| c.sequence_number.clone()),
                finished: cp.is_some_and(|c| c.finished),
                shard_id: s.shard_id,
                parent_shard_id: s.parent,
                adjacent_parent_shard_id: s.adjacent_parent,
            }
        })
        .collect();
    let stdout = std::io::stdout();
    write_rows(&mut stdout.lock(), &rows, args.format.format).map_err(CliError::Runtime)
}
