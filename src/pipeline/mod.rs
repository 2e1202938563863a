//! The pipeline: raw records → decoded outcomes → one store commit with the checkpoint.
//!
//! It joins the decoder and the store, whatever the records' source: the consumer engine's
//! batches (through the adapter in [`crate::app`]) or replayed files. Each stage stays
//! ignorant of the others (the engine of Twilio, the decoder of Kinesis and SQL, the store of
//! both).

pub mod metrics;
mod retry;

pub use retry::{Retried, retry_dead_letter};

use tracing::{debug, info, warn};

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

/// Where a run of records is committed, and under which lease.
#[derive(Debug, Clone)]
pub struct Target {
    /// Which way in the records came by.
    pub path: IngestPath,
    /// Stream name (`replay` for files, `webhook` for webhook requests).
    pub stream: String,
    /// Shard id (for a replay, the file's name and the run).
    pub shard_id: String,
    /// The lease the records were read under, checked by every commit.
    pub lease: Option<LeaseToken>,
    /// Phrase-detected revocations change status (`--honor-revocations`); every sub-batch of
    /// an isolation carries it too.
    pub honor_revocations: bool,
    /// Records longer than this are dead letters (`--max-record-bytes`).
    pub max_record_bytes: usize,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            path: IngestPath::default(),
            stream: String::new(),
            shard_id: String::new(),
            lease: None,
            honor_revocations: false,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

impl Target {
    fn batch(&self, checkpoint: Option<CheckpointUpdate>) -> Batch {
        Batch {
            path: self.path,
            stream: self.stream.clone(),
            shard_id: self.shard_id.clone(),
            checkpoint,
            lease: self.lease.clone(),
            honor_revocations: self.honor_revocations,
            ..Batch::default()
        }
    }
}

/// What [`commit_records`] stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Every record, by what it turned out to be (records the database refused count as dead
    /// letters).
    pub counts: DecodeCounts,
    /// What the commits changed.
    pub summary: CommitSummary,
    /// Records dead-lettered because the database refused them, not the decoder.
    pub unstorable: u64,
    /// Transactions it took (1 unless a record had to be isolated).
    pub commits: u64,
}

impl Committed {
    fn add(&mut self, batch: &Batch, counts: DecodeCounts, summary: CommitSummary) {
        report(batch, &counts, &summary);
        self.counts += counts;
        self.summary += summary;
    }
}

/// Decodes `records` and commits their effects with `checkpoint`, isolating any record the
/// database refuses.
///
/// The common case is one decode and one transaction. When the database refuses the batch
/// for its data ([`FailureKind::Data`]: an encoding it cannot hold, a value over a size
/// limit), retrying would fail forever and stall the shard, so the batch is bisected, as AWS
/// Lambda's bisect-on-error does: each half is committed with a checkpoint at its own last
/// record, in sequence order, until the refused records stand alone, and each of those is
/// stored as a dead letter with the database's reason. One poison record costs about two
/// commits per halving and holds nothing else back. A transient error or a lost lease ends
/// the call: the caller retries or stops, and since every sub-commit is idempotent (event
/// ids, dead-letter keys), retrying after a partial isolation stores nothing twice. Each
/// commit's checkpoint write is a compare-and-set on the one before (the caller's
/// [`CheckpointUpdate::previous`], then each landed range's), so a retry of the whole batch
/// after a partial isolation is refused ([`FailureKind::CheckpointMoved`]) and the caller
/// reads on from the stored checkpoint instead.
pub async fn commit_records(
    store: &dyn Store,
    target: &Target,
    records: &[RawRecord<'_>],
    checkpoint: Option<CheckpointUpdate>,
    options: DecodeOptions,
) -> Result<Committed, StoreError> {
    let mut done = Committed::default();
    // Ranges still to commit, the next one on top, so that they land in sequence order.
    let mut todo = vec![(0, records.len())];
    // The stored checkpoint each commit expects: the caller's, then each landed range's.
    let mut stored = checkpoint.as_ref().and_then(|cp| cp.previous.clone());
    while let Some((lo, hi)) = todo.pop() {
        let cp = match &checkpoint {
            Some(cp) if hi == records.len() => Some(CheckpointUpdate {
                previous: stored.clone(),
                ..cp.clone()
            }),
            Some(_) => Some(CheckpointUpdate {
                sequence_number: Some(records[hi - 1].sequence_number.to_string()),
                finished: false,
                previous: stored.clone(),
            }),
            None => None,
        };
        let landed = cp.as_ref().and_then(|cp| cp.sequence_number.clone());
        let mut batch = target.batch(cp.clone());
        let counts = decode_limited(
            &mut batch,
            records[lo..hi].iter().copied(),
            options,
            target.max_record_bytes,
        );
        done.commits += 1;
        match store.commit(&batch).await {
            Ok(summary) => {
                done.add(&batch, counts, summary);
                stored = landed.or(stored);
            }
            Err(e) if e.kind() == FailureKind::Data && hi - lo > 1 => {
                debug!(shard_id = %target.shard_id, records = hi - lo, error = %e, "Batch refused for its data; bisecting.");
                let mid = lo + (hi - lo) / 2;
                todo.push((mid, hi));
                todo.push((lo, mid));
            }
            Err(e) if e.kind() == FailureKind::Data && hi - lo == 1 => {
                // An opt event refused for its free text keeps the opt-out: try it once more
                // without body and message SID before giving up on the record.
                if let Some(summary) = commit_without_text(store, &mut batch, &e).await? {
                    done.commits += 1;
                    done.add(&batch, counts, summary);
                    stored = landed.or(stored);
                    continue;
                }
                let (batch, summary) =
                    dead_letter_refused(store, target, records[lo], cp, &e).await?;
                let counts = DecodeCounts {
                    dead_letters: 1,
                    ..DecodeCounts::default()
                };
                done.commits += 1;
                done.unstorable += 1;
                done.add(&batch, counts, summary);
                stored = landed.or(stored);
            }
            Err(e) => return Err(e),
        }
    }
    if done.unstorable > 0 {
        warn!(shard_id = %target.shard_id, refused = done.unstorable, records = records.len(), commits = done.commits, "Records refused by the database were dead-lettered (reason `unstorable: …`).");
    }
    Ok(done)
}

/// Commits a refused one-record batch again with its opt event's body and message SID
/// removed (a message SID that is a Twilio SID is kept: it is the event's identity, and no
/// database refuses 34 letters and digits); `None` when there is no opt event or the
/// database still refuses it.
async fn commit_without_text(
    store: &dyn Store,
    batch: &mut Batch,
    error: &StoreError,
) -> Result<Option<CommitSummary>, StoreError> {
    let Some(ev) = batch.opt_events.first_mut() else {
        return Ok(None);
    };
    let sid_is_identity = ev.value.message_sid.as_deref().is_some_and(event::is_sid);
    if ev.value.body.is_none() && (ev.value.message_sid.is_none() || sid_is_identity) {
        return Ok(None);
    }
    ev.value.body = None;
    if !sid_is_identity {
        ev.value.message_sid = None;
    }
    let sequence_number = ev.sequence_number.clone();
    match store.commit(batch).await {
        Ok(summary) => {
            warn!(shard_id = %batch.shard_id, sequence_number, error = %error, "Opt event refused for its text; stored without body and message SID.");
            Ok(Some(summary))
        }
        Err(e) if e.kind() == FailureKind::Data => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores one record the database refused as a dead letter with the database's reason (and,
/// if even that is refused for its partition key, without the partition key).
async fn dead_letter_refused(
    store: &dyn Store,
    target: &Target,
    record: RawRecord<'_>,
    checkpoint: Option<CheckpointUpdate>,
    error: &StoreError,
) -> Result<(Batch, CommitSummary), StoreError> {
    debug!(shard_id = %target.shard_id, sequence_number = record.sequence_number, error = %error, "Record refused by the database; dead-lettering it.");
    let mut letter = DeadLetter {
        sequence_number: record.sequence_number.to_string(),
        partition_key: record.partition_key.map(event::sanitize),
        reason: event::sanitize(&format!("unstorable: {error}")),
        data: record.data[..record.data.len().min(target.max_record_bytes)].to_vec(),
    };
    let mut batch = target.batch(checkpoint);
    batch.dead_letters.push(letter.clone());
    match store.commit(&batch).await {
        Err(e) if e.kind() == FailureKind::Data => {
            letter.partition_key = None;
            batch.dead_letters = vec![letter];
            let summary = store.commit(&batch).await?;
            Ok((batch, summary))
        }
        other => Ok((batch, other?)),
    }
}
