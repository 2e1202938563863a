//! `optout dead-letters --retry`: stored dead letters decoded again by today's decoder, and
//! those that now decode stored, each with its dead letter removed in the same transaction.
//!
//! After a decoder fix, a new schema or a database trigger lifted, the raw records kept as
//! dead letters are the only copy of what Twilio sent; this is how they are fixed. A dry run
//! (the default) decodes and says what would happen without writing; `--apply` commits. A
//! record is committed under the stream and shard it was read from, at its own sequence number,
//! as the way in that brought it, and never moves a checkpoint. What cannot be retried says so:
//! an oversized record kept only its first bytes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::settings::DecodeSettings;
use super::{AppError, store};
use crate::event::DecodeOptions;
use crate::ingest::webhook::Route;
use crate::pipeline::{RawRecord, RecordFormat, Retried, Target, retry_dead_letter};
use crate::store::query::{Cursor, DeadLetterFilter, PageRequest, StoredDeadLetter};
use crate::store::{IngestPath, Reader, Store, parse_time};

/// Which dead letters a retry takes, and whether it writes.
#[derive(Debug, Clone, Default)]
pub struct RetryRequest {
    /// Only dead letters whose stored reason contains this text (`--reason`).
    pub reason: Option<String>,
    /// Only dead letters recorded at or after this instant (`--since`).
    pub since: Option<DateTime<Utc>>,
    /// Commit (`--apply`); otherwise a dry run that writes nothing.
    pub apply: bool,
}

/// Everything `optout dead-letters --retry` needs.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// `--store` URL.
    pub store_url: String,
    pub request: RetryRequest,
    /// How records are decoded: the flags `run` decodes with.
    pub decode: DecodeSettings,
    /// `--revocation-scope`: how far an opt-out reaches in the changes `--apply` writes (the
    /// writers' mode).
    pub revocation_scope: crate::store::RevocationScope,
}

/// One dead letter's retry, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetriedRow {
    /// The dead letter's opaque id (as `optout dead-letters` lists it).
    pub id: String,
    pub shard_id: String,
    pub sequence_number: String,
    /// `stored`, `would_store`, `still_dead`, `refused`, `already_retried` or `not_retried`.
    pub outcome: &'static str,
    /// What it decodes to (`STOP (twilio) from +15551230001 in MG…`, `test event …`,
    /// `skipped (not an opt event)`), or why it stays.
    pub detail: String,
    /// The reason it was dead-lettered.
    pub reason: String,
}

/// How many dead letters had each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetrySummary {
    /// Dead letters that matched the request.
    pub matched: u64,
    /// Stored now (with `apply`) or storable (a dry run).
    pub stored: u64,
    /// Left as they were: the decoder or the database still refuses them, or they cannot be
    /// retried.
    pub left: u64,
    /// Removed by a concurrent retry first.
    pub already_retried: u64,
    /// Stopped by a signal before every match was tried.
    pub interrupted: bool,
}

/// Keys read per page while looking for matches.
const PAGE_ROWS: u32 = 500;

/// Retries the dead letters of the store at `settings.store_url` that match the request,
/// calling `each` with every one's outcome as it is known, in key order. Stops between two
/// records once `stop` is cancelled (what was committed stays committed).
pub async fn retry_dead_letters(
    settings: RetrySettings,
    stop: CancellationToken,
    each: impl FnMut(RetriedRow) -> anyhow::Result<()> + Send,
) -> Result<RetrySummary, AppError> {
    let options = settings.decode.options()?;
    let reader = store::open_reader(&settings.store_url, 1, Default::default()).await?;
    let store = match settings.request.apply {
        true => {
            let store = store::open(&settings.store_url, 1).await?;
            store.set_revocation_scope(settings.revocation_scope);
            Some(store)
        }
        false => None,
    };
    let done = retry_in(
        store.as_deref(),
        &reader,
        &settings.request,
        &settings.decode,
        options,
        stop,
        each,
    )
    .await;
    if let Some(store) = store {
        store.close().await;
    }
    reader.close().await;
    done
}

/// [`retry_dead_letters`] on a store already open (`store` is needed only with `apply`): for
/// callers that hold one, as the HTTP server does.
pub(crate) async fn retry_in(
    store: Option<&dyn Store>,
    reader: &Arc<Reader>,
    request: &RetryRequest,
    decode: &DecodeSettings,
    options: DecodeOptions,
    stop: CancellationToken,
    mut each: impl FnMut(RetriedRow) -> anyhow::Result<()> + Send,
) -> Result<RetrySummary, AppError> {
    let mut summary = RetrySummary::default();
    let mut req = PageRequest {
        limit: PAGE_ROWS,
        cursor: None,
    };
    loop {
        let page = reader.page(&DeadLetterFilter, &req).await?;
        for row in page.items {
            if stop.is_cancelled() {
                summary.interrupted = true;
                return Ok(summary);
            }
            if !matches(request, &row.reason, &row.recorded_at) {
                continue;
            }
            // Gone meanwhile (a concurrent retry): nothing to do.
            let Some(letter) = reader.dead_letter_record(&row.id).await? else {
                continue;
            };
            summary.matched += 1;
            let outcome = retry_one(store, &letter, request.apply, decode, options).await?;
            match outcome.outcome {
                "stored" | "would_store" => summary.stored += 1,
                "already_retried" => summary.already_retried += 1,
                _ => summary.left += 1,
            }
            each(outcome).map_err(|e| AppError::Replay(e.to_string()))?;
        }
        match page.next_cursor {
            Some(next) => req.cursor = Some(Cursor::decode(&next)?),
            None => return Ok(summary),
        }
    }
}

/// Whether a dead letter with this stored reason and time is one the request takes.
fn matches(request: &RetryRequest, reason: &str, recorded_at: &str) -> bool {
    let reason_ok = request.reason.as_deref().is_none_or(|r| reason.contains(r));
    let since_ok = request
        .since
        .is_none_or(|since| parse_time(recorded_at).is_some_and(|t| t >= since));
    reason_ok && since_ok
}

/// Retries one dead letter: decoded as the way in that brought it would decode it.
async fn retry_one(
    store: Option<&dyn Store>,
    letter: &StoredDeadLetter,
    apply: bool,
    decode: &DecodeSettings,
    options: DecodeOptions,
) -> Result<RetriedRow, AppError> {
    let row = |outcome, detail: String| RetriedRow {
        id: letter.id.clone(),
        shard_id: letter.shard_id.clone(),
        sequence_number: letter.sequence_number.clone(),
        outcome,
        detail,
        reason: letter.reason.clone(),
    };
    if letter.reason.starts_with("oversized record") {
        return Ok(row(
            "not_retried",
            "only the record's first bytes were kept".into(),
        ));
    }
    let (path, format) = way_in(letter);
    let target = Target {
        path,
        stream: letter.stream.clone(),
        shard_id: letter.shard_id.clone(),
        lease: None,
        honor_revocations: decode.honor_revocations,
        max_record_bytes: decode.max_record_bytes,
    };
    let record = RawRecord::new(
        &letter.sequence_number,
        letter.partition_key.as_deref(),
        &letter.data,
    )
    .with_format(format);
    let store = store.filter(|_| apply);
    let retried = retry_dead_letter(store, &target, record, options).await?;
    Ok(match retried {
        Retried::Stored(what) => row("stored", what),
        Retried::WouldStore(what) => row("would_store", what),
        Retried::StillDead(reason) => row("still_dead", reason),
        Retried::Refused(reason) => row("refused", reason),
        Retried::AlreadyRetried => row("already_retried", String::new()),
    })
}

/// The way in a dead letter came by, from where it is stored: the webhook routes keep their
/// path as the shard id (a Messaging webhook's form has no event time: the time it was
/// received, which its dead letter's recorded time stands for), replays are stream `replay`,
/// anything else a Kinesis stream.
fn way_in(letter: &StoredDeadLetter) -> (IngestPath, RecordFormat) {
    match (letter.stream.as_str(), letter.shard_id.as_str()) {
        ("webhook", shard) if shard == Route::Messaging.path() => (
            IngestPath::MessagingWebhook,
            RecordFormat::MessagingForm {
                received_at: parse_time(&letter.recorded_at).unwrap_or_else(Utc::now),
            },
        ),
        ("webhook", shard) if shard == Route::Events.path() => {
            (IngestPath::EventsWebhook, RecordFormat::CloudEvent)
        }
        ("replay", _) => (IngestPath::Replay, RecordFormat::CloudEvent),
        _ => (IngestPath::Kinesis, RecordFormat::CloudEvent),
    }
}

/// The console's dead-letter retry for a process that writes `store` (`optout run
/// --http-addr`): every dead letter, applied, decoded as this process decodes (`decode`, with
/// its honouring of revocations), paged with the reader the console already holds. Stops
/// between two records once `stop` is cancelled.
pub(crate) fn console_retry(
    store: Arc<dyn Store>,
    decode: DecodeSettings,
    stop: CancellationToken,
) -> crate::console::RetryDeadLetters {
    Arc::new(move |reader: Arc<Reader>| {
        let (store, decode, stop) = (store.clone(), decode.clone(), stop.clone());
        Box::pin(async move {
            let options = decode.options().map_err(|e| e.to_string())?;
            let request = RetryRequest {
                apply: true,
                ..RetryRequest::default()
            };
            let s = retry_in(
                Some(store.as_ref()),
                &reader,
                &request,
                &decode,
                options,
                stop,
                |_| Ok(()),
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(crate::console::RetryCounts {
                matched: s.matched,
                stored: s.stored + s.already_retried,
                left: s.left,
            })
        })
    })
}
