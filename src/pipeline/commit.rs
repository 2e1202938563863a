//! One commit of a run of records: decode, then one store transaction with the checkpoint,
//! isolating records the database refuses (bisection) so that one bad record never blocks a
//! shard.

use tracing::{debug, warn};

use super::*;

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
    pub(super) fn batch(&self, checkpoint: Option<CheckpointUpdate>) -> Batch {
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
pub(super) async fn commit_without_text(
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
