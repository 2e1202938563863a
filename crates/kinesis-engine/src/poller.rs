//! The polling transport: shard iterators and `GetRecords`, paced to AWS's per-shard limits
//! (calls per second, and bytes per second).
//!
//! The loop never gets ahead of what is durable: the iterator it re-creates after an error
//! starts after the last sequence number the processor committed, and after a failed commit
//! that left the stored checkpoint elsewhere, after that one.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::KinesisError;
use super::backoff::{ErrorClass, classify};
use super::get_records::{ReadRaw, Slot};
use super::reader::{Delivery, ShardContext, ShardExit, ShardReader, StartAt};
use super::records::{data_bytes, records_cost};
use super::shards::aws_message;

/// Reads one shard with `GetRecords` until it ends, the token is cancelled, or a fatal error.
pub async fn read_shard(
    ctx: Arc<ShardContext>,
    shard_id: String,
    start: StartAt,
    lease_token: Option<i64>,
    cancel: CancellationToken,
) -> Result<ShardExit, KinesisError> {
    let mut reader = ShardReader::new(ctx, shard_id, start, lease_token);
    run(&mut reader, cancel).await
}

async fn run(r: &mut ShardReader, cancel: CancellationToken) -> Result<ShardExit, KinesisError> {
    let Some(mut iterator) = new_iterator(r, &cancel).await? else {
        return Ok(ShardExit::Stopped);
    };
    let mut next_call = Instant::now();
    // When the previous call started: calls are at least `min_call_interval` apart, measured
    // on this clock and logged with each call (at debug), so the pacing can be checked
    // exactly rather than from arrival times, which a busy network or machine bunches up.
    let mut last_call: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(ShardExit::Stopped),
            _ = sleep_until(next_call) => {}
        }
        // Reserve before the call, sized to this reader's share of the in-flight budget; the
        // reservation is held until the batch is durable (end of this iteration).
        let (limit, bytes) = r.share.plan_call(r.ctx.config.reading.max_records_per_call);
        let budget = r.share.budget().clone();
        let mut reservation = tokio::select! {
            _ = cancel.cancelled() => return Ok(ShardExit::Stopped),
            granted = budget.reserve(bytes) => granted,
        };
        let now = Instant::now();
        next_call = now + r.ctx.config.reading.min_call_interval;
        let since_previous_ms = last_call.map(|t| (now - t).as_millis() as u64);
        last_call = Some(now);
        debug!(shard_id = %r.shard_id, shard_event = "get_records", since_previous_ms, "Calling GetRecords.");
        // The engine reads a successful answer itself (see `get_records`): into `slot`.
        let slot = Slot::default();
        let response = tokio::select! {
            _ = cancel.cancelled() => return Ok(ShardExit::Stopped),
            res = r.ctx.client.get_records()
                .shard_iterator(&iterator)
                .limit(limit)
                .customize()
                .interceptor(ReadRaw::new(slot.clone()))
                .send() => res,
        };
        r.ctx.metrics.get_records_call();
        let out = match response {
            Ok(out) => out,
            Err(e) => {
                let class = classify(&e);
                if class == ErrorClass::ExpiredIterator {
                    info!(shard_id = %r.shard_id, shard_event = "iterator_expired", "Shard iterator expired; renewing from the last checkpoint.");
                    match new_iterator(r, &cancel).await? {
                        Some(it) => iterator = it,
                        None => return Ok(ShardExit::Stopped),
                    }
                    continue;
                }
                if !class.is_retryable() {
                    return Err(KinesisError::Aws {
                        operation: "GetRecords",
                        message: format!("shard {}: {}", r.shard_id, aws_message(&e)),
                    });
                }
                if !r.wait_after_error(class, &aws_message(&e), &cancel).await {
                    return Ok(ShardExit::Stopped);
                }
                continue;
            }
        };
        r.backoff.reset();
        let (batch, read_by_sdk) = slot.take(&out);
        drop(out);
        if read_by_sdk {
            r.ctx.metrics.get_records_sdk_read();
        }
        let records = batch.records();
        let mut paced = false;
        if let Some(rate) = r.ctx.config.reading.max_read_bytes_per_sec {
            // AWS counts a shard's read bytes from the call on; so does the wait.
            let until = now + read_time(data_bytes(&records), rate);
            paced = until > next_call;
            next_call = next_call.max(until);
        }
        // The body is gone once decoded: keep only what the records hold until they commit.
        let held = records_cost(&records);
        r.share.observe(records.len(), held);
        reservation.settle(held);
        let finished = batch.next_shard_iterator.is_none();
        match r
            .deliver(&records, finished, batch.millis_behind_latest, &cancel)
            .await?
        {
            // A reader waiting out its byte budget has more to read as far as it knows (an
            // emulator reports 0 ms behind mid-backlog): it is not idle, whatever the answer
            // said, until an empty answer at the tip.
            Delivery::Next if paced => r.mark_behind(),
            Delivery::Next => {}
            Delivery::Exit(exit) => return Ok(exit),
            Delivery::Reposition => {
                // The stored checkpoint is elsewhere: read on from it, not from this iterator.
                drop(reservation);
                match new_iterator(r, &cancel).await? {
                    Some(it) => iterator = it,
                    None => return Ok(ShardExit::Stopped),
                }
                continue;
            }
        }
        let caught_up = records.is_empty() && batch.millis_behind_latest.unwrap_or(0) == 0;
        drop(records);
        let Some(next) = batch.next_shard_iterator else {
            return Ok(ShardExit::Finished); // `deliver` has checkpointed the end
        };
        iterator = next;
        if caught_up {
            next_call = next_call.max(Instant::now() + r.ctx.config.reading.poll_interval);
        }
    }
}

/// How long reading `bytes` takes at `rate` bytes a second (no limit at a rate of 0).
fn read_time(bytes: u64, rate: u64) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos((u128::from(bytes) * 1_000_000_000 / u128::from(rate)) as u64)
}

/// A shard iterator from where the reader stands ([`ShardReader::position`]), retrying
/// transient errors. `None` when cancelled while waiting.
async fn new_iterator(
    r: &mut ShardReader,
    cancel: &CancellationToken,
) -> Result<Option<String>, KinesisError> {
    loop {
        let req = r.iterator_request();
        let result = tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            res = req.send() => res,
        };
        match result {
            Ok(out) => {
                if let Some(it) = out.shard_iterator() {
                    debug!(shard_id = %r.shard_id, after = ?r.committed, "Got a shard iterator.");
                    r.began_reading();
                    return Ok(Some(it.to_string()));
                }
                return Err(KinesisError::Aws {
                    operation: "GetShardIterator",
                    message: format!("no iterator returned for shard {}", r.shard_id),
                });
            }
            Err(e) => {
                let class = classify(&e);
                if !class.is_retryable() {
                    return Err(KinesisError::Aws {
                        operation: "GetShardIterator",
                        message: format!("shard {}: {}", r.shard_id, aws_message(&e)),
                    });
                }
                if !r.wait_after_error(class, &aws_message(&e), cancel).await {
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_answer_waits_as_long_as_aws_would_throttle() {
        let rate = crate::AWS_READ_BYTES_PER_SEC;
        // 10 MiB at once: five seconds before the shard may be read again.
        assert_eq!(read_time(10 << 20, rate), Duration::from_secs(5));
        // 10,000 records of 765 bytes: about 3.6 s, under AWS's 5 calls a second.
        assert_eq!(read_time(7_650_000, rate).as_millis(), 3_647);
        assert_eq!(read_time(0, rate), Duration::ZERO);
        assert_eq!(read_time(u64::MAX, 0), Duration::ZERO);
    }
}
