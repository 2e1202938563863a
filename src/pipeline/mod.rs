//! The pipeline: raw records → decoded outcomes → one store commit with the checkpoint.
//!
//! It joins the decoder and the store, whatever the records' source: the consumer engine's
//! batches (through the adapter in [`crate::app`]) or replayed files. Each stage stays
//! ignorant of the others (the engine of Twilio, the decoder of Kinesis and SQL, the store of
//! both).

mod commit;
pub mod metrics;
mod retry;

pub use retry::{Retried, retry_dead_letter};

use commit::commit_without_text;
pub use commit::{Committed, Target, commit_records};

use tracing::{info, warn};

use chrono::{DateTime, Utc};

use crate::event::{self, DecodeOptions, Detection, Outcome, Skip};
use crate::store::{
    Batch, CheckpointUpdate, CommitSummary, DeadLetter, FailureKind, IngestPath, LeaseToken,
    Positioned, Store, StoreError,
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

/// One record as the pipeline sees it, whatever its source (a Kinesis record, a replayed line,
/// a webhook request or one event of it).
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Kinesis sequence number (the line's number in a replayed file; for a webhook, the
    /// SHA-256 of the record's bytes, so a retry is the same record).
    pub sequence_number: &'a str,
    /// Kinesis partition key, when there is one.
    pub partition_key: Option<&'a str>,
    /// The record's bytes (only its first ones when `size` is larger).
    pub data: &'a [u8],
    /// The record's whole length: `data.len()`, or more for a replayed line so long that
    /// only its first bytes were kept.
    pub size: usize,
    /// What the bytes are.
    pub format: RecordFormat,
}

/// What a record's bytes are, and so which decoder reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordFormat {
    /// One CloudEvent as JSON (Kinesis, replay, the Event Streams webhook).
    #[default]
    CloudEvent,
    /// A Messaging webhook form, received at this time (it carries no event time; kept with
    /// the record so that decoding it again, after a refused commit, gives the same event).
    MessagingForm { received_at: DateTime<Utc> },
}

impl RawRecord<'_> {
    /// The record's outcome.
    pub fn classify(&self, options: DecodeOptions) -> Outcome {
        match self.format {
            RecordFormat::CloudEvent => event::classify(self.data, options),
            RecordFormat::MessagingForm { received_at } => {
                event::classify_messaging_form(self.data, received_at, options)
            }
        }
    }
}

impl<'a> RawRecord<'a> {
    /// A CloudEvent record held whole.
    pub fn new(sequence_number: &'a str, partition_key: Option<&'a str>, data: &'a [u8]) -> Self {
        RawRecord {
            sequence_number,
            partition_key,
            data,
            size: data.len(),
            format: RecordFormat::CloudEvent,
        }
    }

    /// The same record, of another format.
    pub fn with_format(self, format: RecordFormat) -> Self {
        RawRecord { format, ..self }
    }
}

/// The largest record decoded by default: Kinesis' default maximum record size (1 MiB; a
/// stream may allow up to 10 MiB since `UpdateMaxRecordSize`, and `--max-record-bytes`
/// follows it).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
/// Bytes of an oversized record its dead letter keeps: enough to find the event it was.
pub const OVERSIZED_HEAD_BYTES: usize = 64 << 10;

/// Decodes records into `batch` (records over [`DEFAULT_MAX_RECORD_BYTES`] are dead letters).
/// Counts are not emitted yet: see [`report`], once committed.
pub fn decode_into<'a>(
    batch: &mut Batch,
    records: impl IntoIterator<Item = RawRecord<'a>>,
    options: DecodeOptions,
) -> DecodeCounts {
    decode_limited(batch, records, options, DEFAULT_MAX_RECORD_BYTES)
}

/// [`decode_into`] with records over `max_record_bytes` made dead letters that keep their
/// first [`OVERSIZED_HEAD_BYTES`] and say why: the same on every way in, so a record too large
/// for one is too large for all.
pub fn decode_limited<'a>(
    batch: &mut Batch,
    records: impl IntoIterator<Item = RawRecord<'a>>,
    options: DecodeOptions,
    max_record_bytes: usize,
) -> DecodeCounts {
    let mut counts = DecodeCounts::default();
    for record in records {
        let RawRecord {
            sequence_number: seq,
            partition_key,
            data,
            size,
            ..
        } = record;
        if size > max_record_bytes || data.len() > max_record_bytes {
            let size = size.max(data.len());
            let kept = data.len().min(OVERSIZED_HEAD_BYTES);
            counts.dead_letters += 1;
            batch.dead_letters.push(DeadLetter {
                sequence_number: seq.to_string(),
                partition_key: partition_key.map(event::sanitize),
                reason: format!(
                    "oversized record: {size} bytes, over the {max_record_bytes}-byte limit \
                     (--max-record-bytes); its first {kept} bytes are kept"
                ),
                data: data[..kept].to_vec(),
            });
            continue;
        }
        match record.classify(options) {
            Outcome::Skip(Skip::OtherType) => counts.skipped_other_type += 1,
            Outcome::Skip(Skip::NotOptKeyword) => counts.skipped_not_opt_keyword += 1,
            Outcome::Opt(ev) => {
                counts.opt_events += 1;
                if ev.detection == Detection::Phrase {
                    counts.revocations += 1;
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
                    partition_key: partition_key.map(event::sanitize),
                    reason,
                    data: data.to_vec(),
                });
            }
        }
    }
    counts
}

/// Counts and logs what a commit stored: its records by outcome and its changes
/// ([`metrics`]), and what an operator should see: one line per batch for its dead letters
/// (how many, of which kinds, the first one's position), never one per record, so a flood of
/// bad records cannot flood the log. Called once per batch, after its commit landed, so a
/// retried or bisected batch is neither counted nor logged twice.
pub fn report(batch: &Batch, counts: &DecodeCounts, summary: &CommitSummary) {
    metrics::decoded(counts);
    metrics::committed(summary);
    for t in &batch.test_events {
        // The operator pastes this into Twilio's Validate step to activate the sink.
        info!(test_id = %t.value.test_id, shard_id = %batch.shard_id, "Sink test event received: use this test_id to validate the Twilio sink.");
    }
    if let Some(first) = batch.dead_letters.first() {
        info!(
            shard_id = %batch.shard_id,
            dead_letters = batch.dead_letters.len(),
            first_sequence_number = %first.sequence_number,
            reasons = %reason_counts(&batch.dead_letters),
            "Records dead-lettered."
        );
    }
    // Logged once the commit landed, so a retried or bisected batch does not say it twice.
    // Scope and rule only: the number and the body are personal data.
    for e in batch
        .opt_events
        .iter()
        .filter(|e| e.value.detection == Detection::Phrase)
    {
        warn!(shard_id = %batch.shard_id, sequence_number = %e.sequence_number, scope = e.value.scope(), rule = e.value.rule.as_deref().unwrap_or_default(), honored = batch.honor_revocations, "Revocation phrase in a message Twilio did not flag: recorded as a STOP.");
    }
}

/// `not JSON ×3, bad timestamp ×1`: the dead letters' reason categories (the text before the
/// first `:`, which never holds record data), most frequent first.
fn reason_counts(letters: &[DeadLetter]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for d in letters {
        let kind = d.reason.split(':').next().unwrap_or_default();
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
        .iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
