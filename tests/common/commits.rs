//! What an in-process engine test's processor committed: each shard's records in order, its
//! checkpoint and whether it finished, kept in memory with no Twilio and no SQL.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use kinesis_engine::{RecordBatch, ShardCheckpoint};

/// One shard as committed: its records' sequence numbers in order, checkpoint, finished.
pub type Committed = (Vec<String>, Option<String>, bool);

/// Every shard's commits.
#[derive(Default)]
pub struct Commits(Mutex<HashMap<String, Committed>>);

impl Commits {
    /// The stored checkpoints, as `Processor::checkpoints` returns them.
    pub fn checkpoints(&self) -> Vec<ShardCheckpoint> {
        self.lock()
            .iter()
            .map(|(id, (_, seq, finished))| ShardCheckpoint {
                shard_id: id.clone(),
                sequence_number: seq.clone(),
                finished: *finished,
            })
            .collect()
    }

    /// Makes `batch` durable: its records appended to its shard's, its checkpoint stored.
    pub fn record(&self, batch: &RecordBatch<'_>) {
        let mut state = self.lock();
        let entry = state.entry(batch.shard_id.to_string()).or_default();
        entry.0.extend(
            batch
                .records
                .iter()
                .map(|r| r.sequence_number().to_string()),
        );
        entry.1 = batch.sequence_number.map(str::to_string);
        entry.2 = batch.shard_finished;
    }

    /// The commits, shard by shard.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Committed>> {
        self.0.lock().unwrap()
    }
}
