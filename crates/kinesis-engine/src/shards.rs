//! Shard discovery and lineage: which shards exist, and which may be read now.
//!
//! After a split or merge, the parent shards close and children open. Records for a key are
//! in the parent before they are in the child, so a child is read only once every parent that
//! is still in the stream has been read to its end and that end is checkpointed. A parent that
//! has aged out of the stream (past retention) holds nothing left to read and does not block.

use std::collections::{HashMap, HashSet};

use aws_sdk_kinesis::Client;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{KinesisError, ReadingSettings, backoff::ErrorClass, classify};

/// A shard as listed by `ListShards`, with its parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// `shardId-000000000000`.
    pub shard_id: String,
    /// The parent (after a split or merge).
    pub parent: Option<String>,
    /// The second parent (after a merge).
    pub adjacent_parent: Option<String>,
    /// The shard has an ending sequence number: no new records will arrive.
    pub closed: bool,
}

impl ShardInfo {
    /// The parents named in the listing (zero, one or two).
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent
            .as_deref()
            .into_iter()
            .chain(self.adjacent_parent.as_deref())
    }
}

/// Lists every shard of `stream`, following pagination.
///
/// A failure comes back as a `ListError`: callers retry the retryable ones with backoff and
/// turn the rest into a [`KinesisError`] with `ListError::into_kinesis_error`.
pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<ShardInfo>, ListError> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // With a NextToken, AWS forbids StreamName in the same request.
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let out = request.send().await.map_err(|e| ListError {
            class: classify(&e),
            message: aws_message(&e),
        })?;
        shards.extend(out.shards().iter().map(|s| {
            ShardInfo {
                shard_id: s.shard_id().to_string(),
                parent: s.parent_shard_id().map(str::to_string),
                adjacent_parent: s.adjacent_parent_shard_id().map(str::to_string),
                closed: s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some(),
            }
        }));
        match out.next_token() {
            Some(t) if !t.is_empty() => next_token = Some(t.to_string()),
            _ => return Ok(shards),
        }
    }
}

/// A failed shard listing, classified for the retry policy.
#[derive(Debug, Clone)]
pub struct ListError {
    /// What to do about it.
    pub class: ErrorClass,
    /// The AWS message.
    pub message: String,
}

impl ListError {
    /// The error a caller reports when it gives up on this listing.
    pub fn into_kinesis_error(self, stream: &str) -> KinesisError {
        match self.class {
            ErrorClass::NotFound => KinesisError::StreamNotFound {
                stream: stream.to_string(),
            },
            _ => KinesisError::Aws {
                operation: "ListShards",
                message: self.message,
            },
        }
    }
}

/// The shards that may be read now: not finished, not already being read, and every parent
/// still in the listing finished.
pub fn ready_to_read<'a>(
    shards: &'a [ShardInfo],
    finished: &HashSet<String>,
    running: &HashSet<String>,
) -> Vec<&'a ShardInfo> {
    let listed: HashMap<&str, &ShardInfo> =
        shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    shards
        .iter()
        .filter(|s| !finished.contains(&s.shard_id) && !running.contains(&s.shard_id))
        .filter(|s| {
            s.parents()
                .all(|p| !listed.contains_key(p) || finished.contains(p))
        })
        .collect()
}

/// The message of an SDK error, with its source chain (the SDK's Display alone is terse).
pub fn aws_message<E: std::error::Error + 'static>(err: &E) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Lists the shards every `discovery_interval` (or when woken) and publishes changes; a
/// failed or hung listing (bounded by a timeout) keeps the previous list.
pub(super) async fn discover(
    client: Client,
    config: ReadingSettings,
    out: Arc<watch::Sender<Vec<ShardInfo>>>,
    now: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(config.discovery_interval) => {}
            _ = now.notified() => {}
        }
        match tokio::time::timeout(LIST_TIMEOUT, list_shards(&client, &config.stream)).await {
            Ok(Ok(shards)) => {
                out.send_if_modified(|old| {
                    let changed = *old != shards;
                    if changed {
                        *old = shards;
                    }
                    changed
                });
            }
            Ok(Err(e)) => {
                warn!(error = %e.message, "Shard discovery failed; keeping the previous list.")
            }
            Err(_) => warn!("Shard discovery timed out; keeping the previous list."),
        }
    }
}

/// Longest wait for one shard listing.
const LIST_TIMEOUT: Duration = Duration::from_secs(20);

/// The first listing: retried with backoff until it works, fails for good (stream not found),
/// or `stop` is cancelled (`None`).
pub(super) async fn first_listing(
    client: &Client,
    config: &ReadingSettings,
    stop: &CancellationToken,
) -> Result<Option<Vec<ShardInfo>>, KinesisError> {
    let mut backoff = config.backoff.start();
    loop {
        match list_shards(client, &config.stream).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.class.is_retryable() => {
                warn!(error = %e.message, attempt = backoff.attempts() + 1, "Could not list shards; retrying.");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(None),
                    _ = sleep(backoff.next_delay()) => {}
                }
            }
            Err(e) => return Err(e.into_kinesis_error(&config.stream)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>, closed: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent: parent.map(Into::into),
            adjacent_parent: adjacent.map(Into::into),
            closed,
        }
    }

    fn ids(v: Vec<&ShardInfo>) -> Vec<&str> {
        v.into_iter().map(|s| s.shard_id.as_str()).collect()
    }

    fn set(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn children_wait_for_every_listed_parent() {
        // 0 split into 3 and 4; 1 and 2 merged into 5.
        let shards = vec![
            shard("0", None, None, true),
            shard("1", None, None, true),
            shard("2", None, None, true),
            shard("3", Some("0"), None, false),
            shard("4", Some("0"), None, false),
            shard("5", Some("1"), Some("2"), false),
        ];
        let none = set(&[]);
        assert_eq!(ids(ready_to_read(&shards, &none, &none)), ["0", "1", "2"]);
        // 1 done but 2 not: the merge child still waits.
        let fin = set(&["0", "1"]);
        assert_eq!(ids(ready_to_read(&shards, &fin, &set(&["2"]))), ["3", "4"]);
        let fin = set(&["0", "1", "2"]);
        assert_eq!(ids(ready_to_read(&shards, &fin, &set(&["3"]))), ["4", "5"]);
    }

    #[test]
    fn parents_gone_from_the_stream_do_not_block() {
        let shards = vec![shard("7", Some("old-1"), Some("old-2"), false)];
        assert_eq!(ids(ready_to_read(&shards, &set(&[]), &set(&[]))), ["7"]);
    }

    #[test]
    fn finished_and_running_shards_are_not_started_again() {
        let shards = vec![shard("0", None, None, true), shard("1", None, None, false)];
        assert!(ready_to_read(&shards, &set(&["0"]), &set(&["1"])).is_empty());
    }
}
