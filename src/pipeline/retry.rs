//! One dead letter's record through today's decoder and, when it now decodes, into the store
//! with its dead letter removed in the same transaction (`optout dead-letters --retry`).
//!
//! A decoder fix or a schema change can make yesterday's dead letter an opt event today; this
//! is how it gets stored. Exactly once holds as everywhere else: the effects and the dead
//! letter's removal commit together, the opt event merges by identity with any copy already
//! stored, and a record that still does not decode is left as it was, so a second retry
//! changes nothing.

use tracing::debug;

use super::{RawRecord, Target, commit_without_text, decode_limited, report};
use crate::event::DecodeOptions;
use crate::store::{Batch, FailureKind, Store, StoreError};

/// What became of one retried dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// It decodes now and was stored (its dead letter removed in the same transaction): what
    /// it is, in words ([`describe`]).
    Stored(String),
    /// It decodes now, to this ([`describe`]); a dry run stores nothing.
    WouldStore(String),
    /// The decoder still refuses it, with today's reason; left as it was.
    StillDead(String),
    /// It decodes, but the database refused its effects (the reason); left as it was.
    Refused(String),
    /// It decodes, and another retry removed its dead letter first (its effects are merged
    /// by identity, so nothing is stored twice).
    AlreadyRetried,
}

/// Decodes `record` again and, if it now decodes and a `store` is given (`None`: a dry run),
/// commits its effects under
/// `target` (no checkpoint: a retry never moves a shard's position) with its dead letter
/// removed. An opt event the database refuses for its free text is stored without it, as on
/// every way in. Transient store errors are returned for the caller to stop on.
pub async fn retry_dead_letter(
    store: Option<&dyn Store>,
    target: &Target,
    record: RawRecord<'_>,
    options: DecodeOptions,
) -> Result<Retried, StoreError> {
    let mut batch = target.batch(None);
    let counts = decode_limited(&mut batch, [record], options, target.max_record_bytes);
    if let Some(dead) = batch.dead_letters.pop() {
        return Ok(Retried::StillDead(dead.reason));
    }
    let Some(store) = store else {
        return Ok(Retried::WouldStore(describe(&batch)));
    };
    batch.retried = vec![record.sequence_number.to_string()];
    let summary = match store.commit(&batch).await {
        Ok(summary) => summary,
        Err(e) if e.kind() == FailureKind::Data => {
            match commit_without_text(store, &mut batch, &e).await? {
                Some(summary) => summary,
                None => {
                    debug!(shard_id = %target.shard_id, sequence_number = record.sequence_number, error = %e, "Retried record refused by the database; its dead letter stays.");
                    return Ok(Retried::Refused(crate::event::sanitize(&format!(
                        "unstorable: {e}"
                    ))));
                }
            }
        }
        Err(e) => return Err(e),
    };
    if summary.dead_letters_retried == 0 {
        return Ok(Retried::AlreadyRetried);
    }
    report(&batch, &counts, &summary);
    Ok(Retried::Stored(describe(&batch)))
}

/// What a decoded one-record batch holds, for the operator who asked for the retry (the
/// command's output, never a log): `STOP (twilio) from +15551230001 in MG…`, `test event T…`,
/// or `skipped (not an opt event)`.
pub fn describe(batch: &Batch) -> String {
    if let Some(e) = batch.opt_events.first() {
        let e = &e.value;
        format!(
            "{} ({}) from {} in {}",
            e.opt_out_type.as_str(),
            e.detection.as_str(),
            e.subscriber,
            e.scope()
        )
    } else if let Some(t) = batch.test_events.first() {
        format!("test event {}", t.value.test_id)
    } else {
        "skipped (not an opt event)".into()
    }
}
