//! The enhanced fan-out transport: `SubscribeToShard` as a registered stream consumer.
//!
//! [`crate::stream_consumer::ensure_consumer`] registers the consumer (or reuses it) and waits
//! until it is ACTIVE. [`read_shard_fanout`] then reads one shard through a chain of subscriptions: each one pushes
//! events for up to 5 minutes, and the next starts after the last sequence number the processor
//! committed (or, after a failed commit that left the stored checkpoint elsewhere, after that
//! one), so the reader never gets ahead of what is durable.
//!
//! The end of a closed shard is recognised three ways, because servers differ:
//! - AWS: the last event has no `ContinuationSequenceNumber` (the SDK gives an empty string)
//!   and lists the `ChildShards`;
//! - ferrokinesis 0.7: every event of a closed shard lists `ChildShards`; the end is the first
//!   such event without records (then the subscription ends);
//! - kinesis-local 0.6.2: events never mark the end, so when a subscription is caught up the
//!   reader asks `GetRecords` (at most once per discovery interval) whether the shard ends at the
//!   checkpoint: no records and no `NextShardIterator`.
//!
//! ferrokinesis 0.7 also ignores `StartingPosition.SequenceNumber` and `Timestamp` (every
//! subscription starts at the shard's beginning), so records at or before the checkpoint are
//! dropped before delivery; with AWS that never removes anything.
//!
//! A subscription that fails (throttling, `ResourceInUseException` while a previous one is still
//! active, a dropped connection) is retried with the reader's backoff; errors no wait can fix
//! (`ResourceNotFoundException`, access denied) stop the task. kinesis-local reports its errors
//! inside the event stream without an error code, so they are classified by their type.

use std::cmp::Ordering;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::event_stream::EventReceiver;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{SubscribeToShardEvent, SubscribeToShardEventStream};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::KinesisError;
use super::backoff::{ErrorClass, classify, classify_code};
use super::reader::{Delivery, ShardContext, ShardExit, ShardReader, StartAt};
use super::records::{Record, records_cost};
use super::shards::aws_message;

/// AWS refuses a new subscription to a shard (`ResourceInUseException`) within 5 seconds of the
/// consumer's last successful one, so subscriptions of a shard are at least this far apart.
const SUBSCRIBE_INTERVAL: Duration = Duration::from_secs(5);
/// Records per subscription event assumed before any is seen (AWS sends a shard's records at
/// most every 200 ms, so a catching-up event is large); the estimate then follows the events.
const INITIAL_RECORDS_PER_EVENT: f64 = 1000.0;

type Events = EventReceiver<SubscribeToShardEventStream, SubscribeToShardEventStreamError>;

/// Reads one shard with `SubscribeToShard` as `consumer_arn` until it ends, the token is
/// cancelled, or a fatal error; same checkpoints and exits as the polling reader.
pub async fn read_shard_fanout(
    ctx: Arc<ShardContext>,
    shard_id: String,
    start: StartAt,
    lease_token: Option<i64>,
    consumer_arn: String,
    cancel: CancellationToken,
) -> Result<ShardExit, KinesisError> {
    let mut reader = ShardReader::new(ctx, shard_id, start, lease_token);
    run(&mut reader, &consumer_arn, &cancel).await
}

/// How one subscription ended.
enum Session {
    /// The task is done (shard finished, stopped, or ownership lost).
    Exit(ShardExit),
    /// The server closed the event stream (after about 5 minutes on AWS): subscribe again.
    Ended,
    /// The event stream failed with this class of error and message.
    Failed(ErrorClass, String),
}

/// Subscribes again and again from the last committed position until the task is done.
async fn run(
    r: &mut ShardReader,
    consumer_arn: &str,
    cancel: &CancellationToken,
) -> Result<ShardExit, KinesisError> {
    let mut next_subscribe = Instant::now();
    let mut next_probe = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(ShardExit::Stopped),
            _ = sleep_until(next_subscribe) => {}
        }
        let request = r
            .context()
            .client
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(r.shard_id())
            .starting_position(r.position());
        let response = tokio::select! {
            _ = cancel.cancelled() => return Ok(ShardExit::Stopped),
            res = request.send() => res,
        };
        r.context().metrics.subscription();
        let session = match response {
            Ok(mut out) => {
                next_subscribe = Instant::now() + SUBSCRIBE_INTERVAL;
                r.began_reading();
                debug!(shard_id = %r.shard_id(), after = ?r.committed(), "Subscribed to shard.");
                consume(r, &mut out.event_stream, &mut next_probe, cancel).await?
            }
            Err(e) => Session::Failed(classify(&e), aws_message(&e)),
        };
        match session {
            Session::Exit(exit) => return Ok(exit),
            Session::Ended => {
                debug!(shard_id = %r.shard_id(), "Subscription ended; subscribing again from the checkpoint.")
            }
            Session::Failed(class, message) if class.is_retryable() => {
                if !r.wait_after_error(class, &message, cancel).await {
                    return Ok(ShardExit::Stopped);
                }
            }
            Session::Failed(_, message) => {
                return Err(KinesisError::Aws {
                    operation: "SubscribeToShard",
                    message: format!("shard {}: {message}", r.shard_id()),
                });
            }
        }
    }
}

/// Hands every event of one subscription to the reader until the subscription ends or the
/// task is done. Cancellation is noticed between events, never during a delivery.
async fn consume(
    r: &mut ShardReader,
    events: &mut Events,
    next_probe: &mut Instant,
    cancel: &CancellationToken,
) -> Result<Session, KinesisError> {
    // Records per event seen so far (an estimate for the next reservation).
    let mut records_per_event = INITIAL_RECORDS_PER_EVENT;
    loop {
        // Backpressure: the next event is only pulled once its bytes are reserved from the
        // in-flight budget, and the reservation is held until its batch commits. Until then
        // the event stream is not read, so HTTP/2 flow control holds the server back and
        // nothing buffers beyond the connection's window.
        let want = r
            .share
            .plan_event(records_per_event)
            .min(r.share.fair_bytes());
        let budget = r.share.budget().clone();
        let mut reservation = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(Session::Exit(ShardExit::Stopped)),
            granted = budget.reserve(want) => granted,
        };
        let received = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(Session::Exit(ShardExit::Stopped)),
            received = events.recv() => received,
        };
        let event = match received {
            Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => event,
            Ok(Some(other)) => {
                debug!(shard_id = %r.shard_id(), event = ?other, "Ignoring an unknown event type.");
                continue;
            }
            Ok(None) => return Ok(Session::Ended),
            Err(e) => return Ok(Session::Failed(stream_error_class(&e), aws_message(&e))),
        };
        r.note_success();
        let all: Vec<Record<'_>> = event.records().iter().map(Record::from_sdk).collect();
        let held = records_cost(&all);
        if !all.is_empty() {
            r.share.observe(all.len(), held);
            records_per_event = (3.0 * records_per_event + all.len() as f64) / 4.0;
        }
        reservation.settle(held);
        let finished = ends_shard(&event);
        let records = after_checkpoint(&all, r.committed());
        if records.len() < all.len() {
            let skipped = all.len() - records.len();
            debug!(shard_id = %r.shard_id(), skipped, "Skipped records at or before the checkpoint (sent again by the server).");
        }
        let behind = event.millis_behind_latest();
        match r.deliver(records, finished, Some(behind), cancel).await? {
            Delivery::Next => {}
            Delivery::Exit(exit) => return Ok(Session::Exit(exit)),
            // The stored checkpoint is elsewhere: subscribe again from it.
            Delivery::Reposition => return Ok(Session::Ended),
        }
        if records.is_empty() && behind == 0 && Instant::now() >= *next_probe {
            *next_probe = Instant::now() + r.context().config.reading.discovery_interval;
            match finish_if_drained(r, cancel).await? {
                Delivery::Next => {}
                Delivery::Exit(exit) => return Ok(Session::Exit(exit)),
                Delivery::Reposition => return Ok(Session::Ended),
            }
        }
    }
}

/// Whether this event ends the (closed) shard; see the module notes for each server.
fn ends_shard(event: &SubscribeToShardEvent) -> bool {
    event.continuation_sequence_number().is_empty()
        || (event.records().is_empty() && !event.child_shards().is_empty())
}

/// The records after the checkpoint (all of them on AWS; a server that ignores the starting
/// sequence number re-sends older ones).
fn after_checkpoint<'r, 'a>(
    records: &'r [Record<'a>],
    committed: Option<&str>,
) -> &'r [Record<'a>] {
    let Some(committed) = committed else {
        return records;
    };
    let start = records
        .partition_point(|r| compare_sequence(r.sequence_number, committed) != Ordering::Greater);
    &records[start..]
}

/// Orders sequence numbers (decimal strings longer than any integer type) numerically.
fn compare_sequence(a: &str, b: &str) -> Ordering {
    (a.len(), a).cmp(&(b.len(), b))
}

/// Checkpoints the end of the shard if it is closed and everything in it is committed.
async fn finish_if_drained(
    r: &mut ShardReader,
    cancel: &CancellationToken,
) -> Result<Delivery, KinesisError> {
    let drained = tokio::select! {
        _ = cancel.cancelled() => return Ok(Delivery::Exit(ShardExit::Stopped)),
        drained = ends_at_checkpoint(r) => drained,
    };
    match drained {
        Ok(true) => {
            debug!(shard_id = %r.shard_id(), "GetRecords says the shard ends at the checkpoint.");
            r.deliver(&[], true, Some(0), cancel).await
        }
        Ok(false) => Ok(Delivery::Next),
        Err(message) => {
            debug!(shard_id = %r.shard_id(), error = %message, "Could not check for the end of the shard; will try again.");
            Ok(Delivery::Next)
        }
    }
}

/// Asks `GetRecords` whether the shard is closed and has nothing after the checkpoint.
async fn ends_at_checkpoint(r: &ShardReader) -> Result<bool, String> {
    let ctx = r.context();
    let request = r.iterator_request();
    let out = request.send().await.map_err(|e| aws_message(&e))?;
    let iterator = out.shard_iterator().ok_or("no shard iterator returned")?;
    let page = ctx
        .client
        .get_records()
        .shard_iterator(iterator)
        .limit(1)
        .send()
        .await
        .map_err(|e| aws_message(&e))?;
    Ok(page.records().is_empty() && page.next_shard_iterator().is_none())
}

/// Classifies an error inside the event stream. Modelled errors are recognised by their
/// variant: kinesis-local sends them without an error code.
fn stream_error_class<R: Debug>(err: &SdkError<SubscribeToShardEventStreamError, R>) -> ErrorClass {
    use SubscribeToShardEventStreamError as E;
    let Some(service) = err.as_service_error() else {
        return classify(err);
    };
    let code = match service {
        E::ResourceNotFoundException(_) => "ResourceNotFoundException",
        E::ResourceInUseException(_) => "ResourceInUseException",
        E::InternalFailureException(_) => "InternalFailureException",
        E::KmsThrottlingException(_) => "KMSThrottlingException",
        E::KmsDisabledException(_) => "KMSDisabledException",
        E::KmsInvalidStateException(_) => "KMSInvalidStateException",
        E::KmsAccessDeniedException(_) => "KMSAccessDeniedException",
        E::KmsNotFoundException(_) => "KMSNotFoundException",
        E::KmsOptInRequired(_) => "KMSOptInRequired",
        _ => return classify_code(service.code()),
    };
    classify_code(Some(code))
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
