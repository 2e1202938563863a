//! `optout shards`: each shard of the stream with its lineage, lease and checkpoint, for
//! operators asking "who reads what, and how far along is it?".

use std::collections::HashMap;

use serde::Serialize;

use kinesis_engine::list_shards;

use super::settings::AwsSettings;
use super::{AppError, aws, store};

/// One shard as an operator sees it.
#[derive(Debug, Serialize)]
pub struct ShardRow {
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

/// The stream's shards, joined with the store's leases and checkpoints (`optout shards`).
pub async fn shard_table(
    store_url: &str,
    aws: &AwsSettings,
    stream: &str,
) -> Result<Vec<ShardRow>, AppError> {
    let reader = store::open_reader(store_url, 1, Default::default()).await?;
    let client = aws::kinesis_client(aws, false).await?;
    let listed = list_shards(&client, stream)
        .await
        .map_err(|e| e.into_kinesis_error(stream))?;
    let (checkpoints, leases, now_ms) = reader.shard_states(stream).await?;
    reader.close().await;
    let checkpoints: HashMap<String, _> = checkpoints
        .into_iter()
        .map(|c| (c.shard_id.clone(), c))
        .collect();
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
    Ok(rows)
}
