//! The pipeline: Kinesis batches → decoded outcomes → one store commit with the checkpoint.
//!
//! This is the only place that knows all three stages; each of them stays ignorant of the
//! others (the engine of Twilio, the decoder of Kinesis and SQL, the store of both).

use std::sync::Arc;

use async_trait::async_trait;
use tracing::{debug, info, warn};

use crate::event::{self, DecodeOptions, Detection, Outcome, Skip};
use crate::kinesis::{ProcessError, Processor, RecordBatch, ShardCheckpoint};
use crate::store::{
    Batch, CheckpointUpdate, CommitSummary, DeadLetter, LeaseToken, Positioned, Store,
};

/// How many records of each kind a batch held (for logs and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeCounts {
    pub opt_events: u64,
    pub test_events: u64,
    /// Other event types (delivery receipts…).
    pub skipped_other_type: u64,
    /// Inbound messages that are no opt keyword.
    pub skipped_not_opt_keyword: u64,
    pub dead_letters: u64,
    /// Opt events that are phrase-detected revocations (also counted in `opt_events`).
    pub revocations: u64,
}

impl DecodeCounts {
    /// Records skipped, of either kind.
    pub fn skipped(&self) -> u64 {
        self.skipped_other_type + self.skipped_not_opt_keyword
    }

    /// All records counted.
    pub fn total(&self) -> u64 {
        self.opt_events + self.test_events + self.skipped() + self.dead_letters
    }

    /// Adds the batch to `optout_records_total{outcome}`: once per batch, not per record, to
    /// keep the registry lookups off the hot path.
    fn emit(&self) {
        for (outcome, n) in [
            ("opt_event", self.opt_events),
            ("test_event", self.test_events),
            ("other_type", self.skipped_other_type),
            ("not_opt_keyword", self.skipped_not_opt_keyword),
            ("dead_letter", self.dead_letters),
        ] {
            if n > 0 {
                metrics::counter!("optout_records_total", "outcome" => outcome).increment(n);
            }
        }
        if self.revocations > 0 {
            metrics::counter!("optout_revocations_detected_total").increment(self.revocations);
        }
    }
}

impl std::ops::AddAssign for DecodeCounts {
    fn add_assign(&mut self, o: Self) {
        self.opt_events += o.opt_events;
        self.test_events += o.test_events;
        self.skipped_other_type += o.skipped_other_type;
        self.skipped_not_opt_keyword += o.skipped_not_opt_keyword;
        self.dead_letters += o.dead_letters;
        self.revocations += o.revocations;
    }
}

/// Decodes records into `batch`; each record is `(sequence number, partition key, bytes)`.
pub fn decode_into<'a>(
    batch: &mut Batch,
    records: impl IntoIterator<Item = (&'a str, Option<&'a str>, &'a [u8])>,
    options: DecodeOptions,
) -> DecodeCounts {
    let mut counts = DecodeCounts::default();
    for (seq, partition_key, data) in records {
        match event::classify(data, options) {
            Outcome::Skip(Skip::OtherType) => counts.skipped_other_type += 1,
            Outcome::Skip(Skip::NotOptKeyword) => counts.skipped_not_opt_keyword += 1,
            Outcome::Opt(ev) => {
                counts.opt_events += 1;
                if ev.detection == Detection::Phrase {
                    counts.revocations += 1;
                    // Scope and rule only: the number and the body are personal data.
                    warn!(shard_id = %batch.shard_id, sequence_number = seq, scope = ev.scope(), rule = ev.rule.as_deref().unwrap_or_default(), honored = batch.honor_revocations, "Revocation phrase in a message Twilio did not flag: recorded as a STOP.");
                }
                batch.opt_events.push(Positioned {
                    sequence_number: seq.to_string(),
                    value: ev,
                });
            }
            Outcome::Test(t) => {
                counts.test_events += 1;
                batch.test_events.push(Positioned {
                    sequence_number: seq.to_string(),
                    value: t,
                });
            }
            Outcome::Dead(reason) => {
                counts.dead_letters += 1;
                batch.dead_letters.push(DeadLetter {
                    sequence_number: seq.to_string(),
                    partition_key: partition_key.map(str::to_string),
                    reason,
                    data: data.to_vec(),
                });
            }
        }
    }
    counts.emit();
    counts
}

/// Logs what a commit stored that an operator should see.
pub fn report(batch: &Batch, summary: &CommitSummary) {
    for t in &batch.test_events {
        // The operator pastes this into Twilio's Validate step to activate the sink.
        info!(test_id = %t.value.test_id, shard_id = %batch.shard_id, "Sink test event received: use this test_id to validate the Twilio sink.");
    }
    for d in &batch.dead_letters {
        info!(shard_id = %batch.shard_id, sequence_number = %d.sequence_number, reason = %d.reason, "Record dead-lettered.");
    }
    metrics::counter!("optout_opt_events_stored_total").increment(summary.opt_events_new);
    metrics::counter!("optout_opt_events_duplicate_total").increment(summary.opt_events_duplicate);
    metrics::counter!("optout_status_changes_total").increment(summary.status_changes);
}

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
        let stored = self.store.checkpoints(stream).await?;
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
        let mut batch = Batch {
            stream: input.stream.to_string(),
            shard_id: input.shard_id.to_string(),
            checkpoint: Some(CheckpointUpdate {
                sequence_number: input.sequence_number.map(str::to_string),
                finished: input.shard_finished,
            }),
            lease: input.lease.map(|l| LeaseToken {
                owner: l.owner.to_string(),
                token: l.token,
            }),
            honor_revocations: self.honor_revocations,
            ..Batch::default()
        };
        let records = input
            .records
            .iter()
            .map(|r| (r.sequence_number(), r.partition_key(), r.data().as_ref()));
        let counts = decode_into(&mut batch, records, self.options);
        let summary = self.store.commit(&batch).await?;
        report(&batch, &summary);
        debug!(
            shard_id = input.shard_id,
            records = input.records.len(),
            opt_events = counts.opt_events,
            new = summary.opt_events_new,
            duplicates = summary.opt_events_duplicate,
            dead_letters = counts.dead_letters,
            checkpoint = ?input.sequence_number,
            "Batch committed."
        );
        Ok(())
    }
}
