//! What every shard reader shares, whatever the transport (polling or enhanced fan-out): its
//! position (after the last durable record, else where the coordinator said to start),
//! handing records to the processor until they are durable, and the retry backoff.
//!
//! After a failed commit the reader asks the store where the shard stands before it goes on
//! (see [`crate::Processor`]): a commit whose answer was lost may have landed, and a store may
//! lose its last commits; either way the stored checkpoint, not the reader's memory, decides.

use std::sync::Arc;

use aws_sdk_kinesis::operation::get_shard_iterator::builders::GetShardIteratorFluentBuilder;
use aws_sdk_kinesis::primitives::DateTime as AwsDateTime;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::{Backoff, ErrorClass};
use super::budget::Share;
use super::metrics::{CommitFailure, Metrics, RetryKind, ShardMetrics};
use super::progress::ShardState;
use super::records::Record;
use super::{
    ConsumerConfig, Handles, InitialPosition, KinesisError, ProcessError, Processor, RecordBatch,
    ShardCheckpoint,
};

/// What a transport does after handing a response to [`ShardReader::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Go on from where it is (next iterator, next event).
    Next,
    /// The stored checkpoint is not where the reader was: get a new iterator or subscription
    /// at [`ShardReader::position`], which now starts after the stored checkpoint.
    Reposition,
    /// The task ends.
    Exit(ShardExit),
}

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

/// Where a shard task starts, as the coordinator's slot for the shard decides it.
#[derive(Debug, Clone)]
pub enum StartAt {
    /// After this committed sequence number.
    After(String),
    /// At this position (no checkpoint).
    Initial(InitialPosition),
    /// At the tip (no checkpoint, the shard's first start at `latest`). Once reading has
    /// begun, any new iterator or subscription of this reader starts at `pinned` instead, so
    /// that nothing that arrived in between is skipped (re-reading is harmless).
    Latest {
        /// The instant of the first start, less [`crate::LATEST_SLACK`].
        pinned: chrono::DateTime<chrono::Utc>,
    },
}

/// Everything a shard task needs, shared by all of them.
pub struct ShardContext {
    /// The Kinesis client.
    pub client: aws_sdk_kinesis::Client,
    /// The consumer's settings.
    pub config: ConsumerConfig,
    /// Where readers report health and hold their records' bytes.
    pub handles: Handles,
    /// The engine's metrics, named once for the run.
    pub metrics: Metrics,
    /// Where batches go.
    pub processor: Arc<dyn Processor>,
    /// Shared progress (idle exit, liveness).
    pub progress: Arc<super::progress::Progress>,
}

/// One shard's reading state: position, lease and backoff.
pub struct ShardReader {
    pub(super) ctx: Arc<ShardContext>,
    pub(super) shard_id: String,
    /// Last sequence number the processor made durable.
    pub(super) committed: Option<String>,
    /// Where to start when nothing is committed yet.
    pub(super) initial: InitialPosition,
    /// Reading from the tip: where any later start begins once reading has begun.
    latest_pin: Option<chrono::DateTime<chrono::Utc>>,
    pub(super) backoff: Backoff,
    /// `(owner, fencing token)` presented with every commit, when leases are in use.
    lease: Option<(String, i64)>,
    /// This reader has met the tip of the shard at least once (logged once).
    reached_tip: bool,
    /// Its part of the in-flight budget, for sizing calls and reservations.
    pub(super) share: Share,
    /// Its shard's series, named once.
    metrics: ShardMetrics,
}

impl ShardReader {
    /// A reader for `shard_id` starting at `start`, committing under `lease_token` if given.
    pub fn new(
        ctx: Arc<ShardContext>,
        shard_id: String,
        start: StartAt,
        lease_token: Option<i64>,
    ) -> Self {
        let backoff = ctx.config.reading.backoff.start();
        let lease = lease_token.map(|t| (ctx.config.leasing.worker_id.clone(), t));
        let share = ctx.handles.budget.join();
        let (committed, initial, latest_pin) = match start {
            StartAt::After(seq) => (Some(seq), InitialPosition::TrimHorizon, None),
            StartAt::Initial(p) => (None, p, None),
            StartAt::Latest { pinned } => (None, InitialPosition::Latest, Some(pinned)),
        };
        let metrics = ctx.metrics.shard(&shard_id);
        ShardReader {
            metrics,
            ctx,
            shard_id,
            committed,
            initial,
            latest_pin,
            backoff,
            lease,
            reached_tip: false,
            share,
        }
    }

    /// The shard this reader reads.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// Last durable sequence number, if any.
    pub fn committed(&self) -> Option<&str> {
        self.committed.as_deref()
    }

    /// Where reading (re)starts: after the last durable record, else the initial position. One
    /// answer for both transports (a `GetShardIterator` request and a subscription).
    pub fn position(&self) -> StartingPosition {
        let builder = StartingPosition::builder();
        let builder = match (&self.committed, self.initial) {
            (Some(seq), _) => builder
                .r#type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            (None, InitialPosition::TrimHorizon) => builder.r#type(ShardIteratorType::TrimHorizon),
            (None, InitialPosition::Latest) => builder.r#type(ShardIteratorType::Latest),
            (None, InitialPosition::AtTimestamp(ts)) => builder
                .r#type(ShardIteratorType::AtTimestamp)
                .timestamp(AwsDateTime::from_millis(ts.timestamp_millis())),
        };
        // Infallible: the type, the one required field, is always set above.
        builder
            .build()
            .expect("a starting position always has a type")
    }

    /// A `GetShardIterator` request for [`Self::position`] (polling, and fan-out's check for
    /// a shard's end).
    pub fn iterator_request(&self) -> GetShardIteratorFluentBuilder {
        let position = self.position();
        self.ctx
            .client
            .get_shard_iterator()
            .stream_name(&self.ctx.config.reading.stream)
            .shard_id(&self.shard_id)
            .shard_iterator_type(position.r#type().clone())
            .set_starting_sequence_number(position.sequence_number().map(str::to_string))
            .set_timestamp(position.timestamp().cloned())
    }

    /// The shared context (client, config).
    pub fn context(&self) -> &ShardContext {
        &self.ctx
    }

    /// Called once an iterator or subscription is granted: reading has begun, so a later one
    /// (expired iterator, new subscription) must not jump to the tip again and skip what
    /// arrived in between; it starts at the pin of [`StartAt::Latest`].
    pub fn began_reading(&mut self) {
        if let Some(pinned) = self.latest_pin.take() {
            self.initial = InitialPosition::AtTimestamp(pinned);
        }
    }

    /// Marks a successful call (for backoff and liveness) that delivered nothing.
    pub fn note_success(&mut self) {
        self.backoff.reset();
        self.ctx.progress.alive(&self.shard_id);
    }

    /// Gives one response's records to the processor, retrying until durable. `finished` says
    /// the response ended the (closed) shard. Says what the transport does next: go on, read
    /// again from [`Self::position`] (the stored checkpoint is not where this reader was), or
    /// end the task.
    pub async fn deliver(
        &mut self,
        records: &[Record<'_>],
        finished: bool,
        millis_behind_latest: Option<i64>,
        cancel: &CancellationToken,
    ) -> Result<Delivery, KinesisError> {
        let progress = self.ctx.progress.clone();
        progress.alive(&self.shard_id);
        if let Some(ms) = millis_behind_latest {
            self.metrics.millis_behind_latest(ms);
            self.ctx
                .handles
                .health
                .behind(&self.shard_id, u64::try_from(ms).unwrap_or(0));
        }
        if records.is_empty() && !finished {
            let caught_up = millis_behind_latest.unwrap_or(0) == 0;
            if caught_up {
                // At the tip with nothing pending: any failing spell is over. (An empty answer
                // while behind proves no progress, so it clears nothing.)
                self.ctx.handles.health.ok(&self.shard_id);
            }
            if caught_up && !self.reached_tip {
                // Once per reader: the backlog is done (or, at `latest`, reading has begun).
                info!(shard_id = %self.shard_id, shard_event = "caught_up", "Shard caught up with the tip.");
                self.reached_tip = true;
            }
            self.set_state(caught_up);
            return Ok(Delivery::Next);
        }
        let last = records
            .last()
            .map(|r| r.sequence_number.to_string())
            .or_else(|| self.committed.clone());
        // Records in hand are not idleness, however long their commit takes (a slow or
        // retried commit outlasting the idle time ended runs with records left).
        self.set_state(false);
        loop {
            let batch = RecordBatch {
                stream: &self.ctx.config.reading.stream,
                shard_id: &self.shard_id,
                records,
                sequence_number: last.as_deref(),
                previous: self.committed.as_deref(),
                shard_finished: finished,
                lease: self.lease.as_ref().map(|(owner, token)| super::LeaseClaim {
                    owner,
                    token: *token,
                }),
            };
            let moved = match self.ctx.processor.process(batch).await {
                Ok(()) => break,
                Err(ProcessError::LostOwnership(message)) => {
                    self.ctx.metrics.commit_failed(CommitFailure::LeaseLost);
                    warn!(shard_id = %self.shard_id, error = %message, "Shard taken over by another worker; stopping it here.");
                    return Ok(Delivery::Exit(ShardExit::LostOwnership));
                }
                Err(ProcessError::Retry(message)) => {
                    self.ctx.metrics.commit_failed(CommitFailure::Transient);
                    if !self
                        .wait_after_error(ErrorClass::Transient, &message, cancel)
                        .await
                    {
                        return Ok(Delivery::Exit(ShardExit::Stopped));
                    }
                    false
                }
                Err(ProcessError::CheckpointMoved(message)) => {
                    self.ctx
                        .metrics
                        .commit_failed(CommitFailure::CheckpointMoved);
                    warn!(shard_id = %self.shard_id, error = %message, "Commit refused: the stored checkpoint moved.");
                    true
                }
                Err(e @ ProcessError::Fatal(_)) => {
                    self.ctx.metrics.commit_failed(CommitFailure::Fatal);
                    return Err(KinesisError::Process {
                        shard_id: self.shard_id.clone(),
                        source: e,
                    });
                }
            };
            // The commit failed, but it may have landed (its answer lost), or the store may
            // hold another checkpoint than the one this reader remembers (its last commits
            // lost): the store, not memory, says where the shard stands.
            let Some(stored) = self.stored_checkpoint(cancel).await? else {
                return Ok(Delivery::Exit(ShardExit::Stopped));
            };
            if stored.sequence_number == last && (stored.finished || !finished) {
                warn!(shard_id = %self.shard_id, shard_event = "commit_landed", checkpoint = ?last, "The failed commit had landed; going on after it.");
                break;
            }
            if stored.sequence_number == self.committed && !stored.finished {
                // Where this reader thought: nothing of the batch landed, so try it again
                // (after a wait if the processor said it moved and it has not: no hot loop).
                if moved
                    && !self
                        .wait_after_error(ErrorClass::Transient, "checkpoint moved", cancel)
                        .await
                {
                    return Ok(Delivery::Exit(ShardExit::Stopped));
                }
                continue;
            }
            warn!(shard_id = %self.shard_id, shard_event = "checkpoint_reloaded", reader_at = ?self.committed, stored = ?stored.sequence_number, stored_finished = stored.finished, "The stored checkpoint is not where this reader was; reading again from the stored one.");
            self.committed = stored.sequence_number;
            if stored.finished {
                progress.set(&self.shard_id, ShardState::Finished);
                return Ok(Delivery::Exit(ShardExit::Finished));
            }
            return Ok(Delivery::Reposition);
        }
        self.backoff.reset();
        self.ctx.handles.health.ok(&self.shard_id);
        self.metrics.committed_now();
        self.committed = last;
        progress.record(records.len() as u64);
        if finished {
            info!(shard_id = %self.shard_id, "Shard read to its end and checkpointed.");
            progress.set(&self.shard_id, ShardState::Finished);
            return Ok(Delivery::Exit(ShardExit::Finished));
        }
        self.set_state(millis_behind_latest.unwrap_or(0) == 0);
        Ok(Delivery::Next)
    }

    /// This shard's checkpoint as the store holds it now (none: no sequence number, not
    /// finished), retrying while the store cannot answer; `None` if cancelled meanwhile.
    async fn stored_checkpoint(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<ShardCheckpoint>, KinesisError> {
        loop {
            let stream = &self.ctx.config.reading.stream;
            match self.ctx.processor.checkpoints(stream).await {
                Ok(all) => {
                    let mine = all.into_iter().find(|c| c.shard_id == self.shard_id);
                    return Ok(Some(mine.unwrap_or(ShardCheckpoint {
                        shard_id: self.shard_id.clone(),
                        sequence_number: None,
                        finished: false,
                    })));
                }
                Err(e) if e.is_retryable() => {
                    let message = e.to_string();
                    if !self
                        .wait_after_error(ErrorClass::Transient, &message, cancel)
                        .await
                    {
                        return Ok(None);
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
    }

    /// Marks the shard as behind whatever the last answer said of the tip: a transport that
    /// waits before its next call (byte pacing) must not look idle meanwhile.
    pub(crate) fn mark_behind(&self) {
        self.set_state(false);
    }

    fn set_state(&self, caught_up: bool) {
        let state = if caught_up {
            ShardState::CaughtUp
        } else {
            ShardState::Behind
        };
        self.ctx.progress.set(&self.shard_id, state);
    }

    /// Logs and waits out a retryable failure; `false` if cancelled meanwhile.
    pub async fn wait_after_error(
        &mut self,
        class: ErrorClass,
        message: &str,
        cancel: &CancellationToken,
    ) -> bool {
        let delay = self.backoff.next_delay();
        let attempt = self.backoff.attempts();
        let kind = if class == ErrorClass::Throttled {
            RetryKind::Throttled
        } else {
            RetryKind::Transient
        };
        self.ctx.metrics.retry(kind);
        let kind = kind.as_str();
        self.ctx.handles.health.fail(&self.shard_id, message);
        // The first failure and every tenth are worth an operator's eye; throttling is routine.
        if class != ErrorClass::Throttled && (attempt == 1 || attempt.is_multiple_of(10)) {
            warn!(shard_id = %self.shard_id, kind, attempt, delay_ms = delay.as_millis() as u64, error = message, "Call failed; backing off.");
        } else {
            debug!(shard_id = %self.shard_id, kind, attempt, delay_ms = delay.as_millis() as u64, error = message, "Call failed; backing off.");
        }
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = sleep(delay) => true,
        }
    }
}
