//! One shard's read loop: iterator, `GetRecords`, hand-off to the processor, pacing, retries.
//!
//! The loop never gets ahead of what is durable: the iterator it re-creates after an error
//! starts after the last sequence number the processor committed.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::primitives::DateTime as AwsDateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use std::sync::Arc;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::{Backoff, ErrorClass, classify};
use super::coordinator::{Progress, ShardState};
use super::shards::aws_message;
use super::{ConsumerConfig, InitialPosition, KinesisError, Processor, RecordBatch};

/// How a shard task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardExit {
    /// Closed shard read to its end; its end is checkpointed.
    Finished,
    /// Stopped by shutdown (or idle exit); the last batch in hand was committed.
    Stopped,
    /// The processor says this shard is no longer ours.
    LostOwnership,
}

/// Where a shard task starts.
#[derive(Debug, Clone)]
pub enum StartAt {
    /// After this committed sequence number.
    After(String),
    /// At the configured position (no checkpoint).
    Initial(InitialPosition),
}

/// Everything a shard task needs, shared by all of them.
pub struct ShardContext {
    pub client: Client,
    pub config: ConsumerConfig,
    pub processor: Arc<dyn Processor>,
    pub progress: Arc<Progress>,
}

/// Reads one shard until it ends, the token is cancelled, or a fatal error.
pub async fn read_shard(
    ctx: Arc<ShardContext>,
    shard_id: String,
    start: StartAt,
    cancel: CancellationToken,
) -> Result<ShardExit, KinesisError> {
    let backoff = Backoff::new(ctx.config.backoff_base, ctx.config.backoff_max);
    let mut reader = ShardReader {
        ctx,
        shard_id,
        committed: match &start {
            StartAt::After(seq) => Some(seq.clone()),
            StartAt::Initial(_) => None,
        },
        initial: match start {
            StartAt::After(_) => InitialPosition::TrimHorizon,
            StartAt::Initial(p) => p,
        },
        backoff,
    };
    reader.run(cancel).await
}

struct ShardReader {
    ctx: Arc<ShardContext>,
    shard_id: String,
    /// Last sequence number the processor made durable.
    committed: Option<String>,
    initial: InitialPosition,
    backoff: Backoff,
}

impl ShardReader {
    async fn run(&mut self, cancel: CancellationToken) -> Result<ShardExit, KinesisError> {
        let Some(mut iterator) = self.new_iterator(&cancel).await? else {
            return Ok(ShardExit::Stopped);
        };
        let mut next_call = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(ShardExit::Stopped),
                _ = sleep_until(next_call) => {}
            }
            next_call = Instant::now() + self.ctx.config.min_call_interval;
            let response = tokio::select! {
                _ = cancel.cancelled() => return Ok(ShardExit::Stopped),
                r = self.ctx.client.get_records()
                    .shard_iterator(&iterator)
                    .limit(self.ctx.config.max_records)
                    .send() => r,
            };
            metrics::counter!("optout_get_records_calls_total").increment(1);
            let out = match response {
                Ok(out) => out,
                Err(e) => {
                    let class = classify(&e);
                    if class == ErrorClass::ExpiredIterator {
                        info!(shard_id = %self.shard_id, "Shard iterator expired; renewing from the last checkpoint.");
                        match self.new_iterator(&cancel).await? {
                            Some(it) => iterator = it,
                            None => return Ok(ShardExit::Stopped),
                        }
                        continue;
                    }
                    if !class.is_retryable() {
                        return Err(KinesisError::Aws {
                            operation: "GetRecords",
                            message: format!("shard {}: {}", self.shard_id, aws_message(&e)),
                        });
                    }
                    if !self
                        .wait_after_error(class, &aws_message(&e), &cancel)
                        .await
                    {
                        return Ok(ShardExit::Stopped);
                    }
                    continue;
                }
            };
            self.backoff.reset();
            if let Some(exit) = self.hand_off(&out, &cancel).await? {
                return Ok(exit);
            }
            let Some(next) = out.next_shard_iterator() else {
                return Ok(ShardExit::Finished); // hand_off has checkpointed the end
            };
            iterator = next.to_string();
            let caught_up =
                out.records().is_empty() && out.millis_behind_latest().unwrap_or(0) == 0;
            if caught_up {
                next_call = next_call.max(Instant::now() + self.ctx.config.poll_interval);
            }
        }
    }

    /// Gives one response's records to the processor, retrying until durable. Returns the exit
    /// reason when the task must end.
    async fn hand_off(
        &mut self,
        out: &GetRecordsOutput,
        cancel: &CancellationToken,
    ) -> Result<Option<ShardExit>, KinesisError> {
        let records = out.records();
        let finished = out.next_shard_iterator().is_none();
        let progress = self.ctx.progress.clone();
        if let Some(ms) = out.millis_behind_latest() {
            metrics::gauge!("optout_millis_behind_latest", "shard_id" => self.shard_id.clone())
                .set(ms as f64);
        }
        if records.is_empty() && !finished {
            let caught_up = out.millis_behind_latest().unwrap_or(0) == 0;
            progress.set(
                &self.shard_id,
                if caught_up {
                    ShardState::CaughtUp
                } else {
                    ShardState::Behind
                },
            );
            return Ok(None);
        }
        let last = records
            .last()
            .map(|r| r.sequence_number().to_string())
            .or_else(|| self.committed.clone());
        loop {
            let batch = RecordBatch {
                stream: &self.ctx.config.stream,
                shard_id: &self.shard_id,
                records,
                sequence_number: last.as_deref(),
                shard_finished: finished,
            };
            match self.ctx.processor.process(batch).await {
                Ok(()) => break,
                Err(e) if e.lost_ownership => {
                    warn!(shard_id = %self.shard_id, error = %e, "Shard taken over by another worker; stopping it here.");
                    return Ok(Some(ShardExit::LostOwnership));
                }
                Err(e) if e.retryable => {
                    // Nothing was committed; the same records are retried, so nothing is lost.
                    if !self
                        .wait_after_error(ErrorClass::Transient, &e.message, cancel)
                        .await
                    {
                        return Ok(Some(ShardExit::Stopped));
                    }
                }
                Err(e) => {
                    return Err(KinesisError::Process {
                        shard_id: self.shard_id.clone(),
                        source: e,
                    });
                }
            }
        }
        self.backoff.reset();
        self.committed = last;
        progress.record(&self.shard_id, records.len() as u64);
        if finished {
            info!(shard_id = %self.shard_id, "Shard read to its end and checkpointed.");
            progress.set(&self.shard_id, ShardState::Finished);
            return Ok(Some(ShardExit::Finished));
        }
        let caught_up = out.millis_behind_latest().unwrap_or(0) == 0;
        progress.set(
            &self.shard_id,
            if caught_up {
                ShardState::CaughtUp
            } else {
                ShardState::Behind
            },
        );
        Ok(None)
    }

    /// A shard iterator from the last committed position, retrying transient errors.
    /// `None` when cancelled while waiting.
    async fn new_iterator(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, KinesisError> {
        loop {
            let mut req = self
                .ctx
                .client
                .get_shard_iterator()
                .stream_name(&self.ctx.config.stream)
                .shard_id(&self.shard_id);
            req = match (&self.committed, self.initial) {
                (Some(seq), _) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(seq),
                (None, InitialPosition::TrimHorizon) => {
                    req.shard_iterator_type(ShardIteratorType::TrimHorizon)
                }
                (None, InitialPosition::Latest) => {
                    req.shard_iterator_type(ShardIteratorType::Latest)
                }
                (None, InitialPosition::AtTimestamp(ts)) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(AwsDateTime::from_millis(ts.timestamp_millis())),
            };
            let result = tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                r = req.send() => r,
            };
            match result {
                Ok(out) => {
                    if let Some(it) = out.shard_iterator() {
                        debug!(shard_id = %self.shard_id, after = ?self.committed, "Got a shard iterator.");
                        return Ok(Some(it.to_string()));
                    }
                    return Err(KinesisError::Aws {
                        operation: "GetShardIterator",
                        message: format!("no iterator returned for shard {}", self.shard_id),
                    });
                }
                Err(e) => {
                    let class = classify(&e);
                    if !class.is_retryable() {
                        return Err(KinesisError::Aws {
                            operation: "GetShardIterator",
                            message: format!("shard {}: {}", self.shard_id, aws_message(&e)),
                        });
                    }
                    if !self.wait_after_error(class, &aws_message(&e), cancel).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Logs and waits out a retryable failure; `false` if cancelled meanwhile.
    async fn wait_after_error(
        &mut self,
        class: ErrorClass,
        message: &str,
        cancel: &CancellationToken,
    ) -> bool {
        let delay = self.backoff.next_delay();
        let attempt = self.backoff.attempts();
        let kind = if class == ErrorClass::Throttled {
            "throttled"
        } else {
            "transient"
        };
        metrics::counter!("optout_retries_total", "kind" => kind).increment(1);
        if attempt >= 5 {
            warn!(shard_id = %self.shard_id, kind, attempt, delay_ms = delay.as_millis() as u64, error = message, "Call failed again; backing off.");
        } else {
            debug!(shard_id = %self.shard_id, kind, attempt, delay_ms = delay.as_millis() as u64, error = message, "Call failed; backing off.");
        }
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = sleep(delay) => true,
        }
    }
}
