//! The engine's [`Processor`], backed by the pipeline and a [`Store`]: each Kinesis batch is
//! decoded and committed with its checkpoint in one transaction (or, when the database refuses
//! a record, in the isolating commits of [`commit_records`]).

use std::sync::Arc;

use async_trait::async_trait;
use tracing::debug;

use super::engine_error;
use crate::event::DecodeOptions;
use crate::kinesis::{ProcessError, Processor, RecordBatch, ShardCheckpoint};
use crate::pipeline::{RawRecord, Target, commit_records};
use crate::store::{CheckpointUpdate, LeaseToken, Store};

/// The [`Processor`] that feeds Kinesis batches through the decoder into a [`Store`].
pub struct Pipeline {
    store: Arc<dyn Store>,
    options: DecodeOptions,
    honor_revocations: bool,
}

impl Pipeline {
    /// A pipeline writing to `store`.
    pub fn new(store: Arc<dyn Store>, options: DecodeOptions) -> Self {
        Pipeline {
            store,
            options,
            honor_revocations: false,
        }
    }

    /// Lets phrase-detected revocations set `opted_out` (`--honor-revocations`).
    pub fn honor_revocations(self, honor: bool) -> Self {
        Pipeline {
            honor_revocations: honor,
            ..self
        }
    }
}

#[async_trait]
impl Processor for Pipeline {
    async fn checkpoints(&self, stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
        let stored = self.store.checkpoints(stream).await.map_err(engine_error)?;
        Ok(stored
            .into_iter()
            .map(|c| ShardCheckpoint {
                shard_id: c.shard_id,
                sequence_number: c.sequence_number,
                finished: c.finished,
            })
            .collect())
    }

    async fn process(&self, input: RecordBatch<'_>) -> Result<(), ProcessError> {
        let target = Target {
            stream: input.stream.to_string(),
            shard_id: input.shard_id.to_string(),
            lease: input.lease.map(|l| LeaseToken {
                owner: l.owner.to_string(),
                token: l.token,
            }),
            honor_revocations: self.honor_revocations,
        };
        let records: Vec<RawRecord<'_>> = input
            .records
            .iter()
            .map(|r| RawRecord {
                sequence_number: r.sequence_number(),
                partition_key: r.partition_key(),
                data: r.data().as_ref(),
            })
            .collect();
        let checkpoint = CheckpointUpdate {
            sequence_number: input.sequence_number.map(str::to_string),
            finished: input.shard_finished,
        };
        let done = commit_records(
            &*self.store,
            &target,
            &records,
            Some(checkpoint),
            self.options,
        )
        .await
        .map_err(engine_error)?;
        debug!(
            shard_id = input.shard_id,
            records = input.records.len(),
            opt_events = done.counts.opt_events,
            new = done.summary.opt_events_new,
            duplicates = done.summary.opt_events_duplicate,
            dead_letters = done.counts.dead_letters,
            unstorable = done.unstorable,
            commits = done.commits,
            checkpoint = ?input.sequence_number,
            "Batch committed."
        );
        Ok(())
    }
}
