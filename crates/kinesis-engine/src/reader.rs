//! What every shard reader shares, whatever the transport (polling or enhanced fan-out):
//! where a shard starts (the one place that decides it, with the one rule for `latest`),
//! handing records to the processor until they are durable, the committed position, and the
//! retry backoff.

use std::collections::HashMap;

use std::sync::Arc;

use aws_sdk_kinesis::operation::get_shard_iterator::builders::GetShardIteratorFluentBuilder;
use aws_sdk_kinesis::primitives::DateTime as AwsDateTime;
use aws_sdk_kinesis::types::{Record, ShardIteratorType, StartingPosition};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::{Backoff, ErrorClass};
use super::budget::{Share, record_cost};
use super::metrics::{CommitFailure, Metrics, RetryKind, ShardMetrics};
use super::progress::ShardState;
use super::shards::ShardInfo;
use super::{
    ConsumerConfig, Handles, InitialPosition, KinesisError, ProcessError, Processor, RecordBatch,
};

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

/// Where a shard starts: after its checkpoint, else the initial position. With `latest`, a
/// child of a shard we know (listed or checkpointed) starts at its beginning instead, so the
/// records written to it since the reshard are not skipped; and a shard started at `latest`
/// before (its reader restarted before its first commit) resumes from that first start, by
/// [`pin_latest`], instead of jumping to the tip again.
pub(super) fn start_for(
    shard: &ShardInfo,
    committed: &HashMap<String, String>,
    shards: &[ShardInfo],
    initial: InitialPosition,
    pins: &mut HashMap<String, chrono::DateTime<chrono::Utc>>,
) -> StartAt {
    if let Some(seq) = committed.get(&shard.shard_id) {
        return StartAt::After(seq.clone());
    }
    let known_parent = shard
        .parents()
        .any(|p| committed.contains_key(p) || shards.iter().any(|s| s.shard_id == p));
    match initial {
        InitialPosition::Latest if known_parent => StartAt::Initial(InitialPosition::TrimHorizon),
        InitialPosition::Latest => match pins.get(&shard.shard_id) {
            Some(&t) => StartAt::Initial(InitialPosition::AtTimestamp(t)),
            None => {
                let now = chrono::Utc::now();
                if let InitialPosition::AtTimestamp(t) = pin_latest(now) {
                    pins.insert(shard.shard_id.clone(), t);
                }
                StartAt::Initial(InitialPosition::Latest)
            }
        },
        p => StartAt::Initial(p),
    }
}

/// The one rule for `latest`: once reading has begun at the tip at `now`, any later start of
/// the same shard before its first commit (a restarted reader, an expired iterator, a new
/// subscription) begins at `now` less [`super::LATEST_SLACK`] (slack for clock skew with
/// Kinesis), so that nothing that arrived in between is skipped; re-reading those seconds is
/// harmless, as effects are idempotent.
pub(super) fn pin_latest(now: chrono::DateTime<chrono::Utc>) -> InitialPosition {
    InitialPosition::AtTimestamp(now - super::LATEST_SLACK)
}

/// One shard's reading state: position, lease and backoff.
pub struct ShardReader {
    pub(super) ctx: Arc<ShardContext>,
    pub(super) shard_id: String,
    /// Last sequence number the processor made durable.
    pub(super) committed: Option<String>,
    /// Where to start when nothing is committed yet.
    pub(super) initial: InitialPosition,
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

/// What `records` cost the in-flight budget once decoded.
pub fn records_cost(records: &[Record]) -> u64 {
    records
        .iter()
        .map(|r| {
            record_cost(
                r.data().as_ref().len(),
                r.sequence_number().len(),
                r.partition_key().map_or(0, str::len),
            ) as u64
        })
        .sum()
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
        let (committed, initial) = match start {
            StartAt::After(seq) => (Some(seq), InitialPosition::TrimHorizon),
            StartAt::Initial(p) => (None, p),
        };
        let metrics = ctx.metrics.shard(&shard_id);
        ShardReader {
            metrics,
            ctx,
            shard_id,
            committed,
            initial,
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

    /// Called once reading has started at `latest`: a later restart of this reader (expired
    /// iterator, new subscription) must not jump to the tip again and skip what arrived in
    /// between, so the start is pinned to now less [`super::LATEST_SLACK`].
    pub fn pin_latest(&mut self) {
        if self.committed.is_none() && self.initial == InitialPosition::Latest {
            self.initial = pin_latest(chrono::Utc::now());
        }
    }

    /// Marks a successful call (for backoff and liveness) that delivered nothing.
    pub fn note_success(&mut self) {
        self.backoff.reset();
        self.ctx.progress.alive(&self.shard_id);
    }

    /// Gives one response's records to the processor, retrying until durable. `finished` says
    /// the response ended the (closed) shard. Returns the exit reason when the task must end.
    pub async fn deliver(
        &mut self,
        records: &[Record],
        finished: bool,
        millis_behind_latest: Option<i64>,
        cancel: &CancellationToken,
    ) -> Result<Option<ShardExit>, KinesisError> {
        let progress = self.ctx.progress.clone();
        progress.alive(&self.shard_id);
        if let Some(ms) = millis_behind_latest {
            self.metrics.millis_behind_latest(ms);
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
                info!(shard_id = %self.shard_id, "Shard caught up with the tip.");
                self.reached_tip = true;
            }
            self.set_state(caught_up);
            return Ok(None);
        }
        let last = records
            .last()
            .map(|r| r.sequence_number().to_string())
            .or_else(|| self.committed.clone());
        loop {
            let batch = RecordBatch {
                stream: &self.ctx.config.reading.stream,
                shard_id: &self.shard_id,
                records,
                sequence_number: last.as_deref(),
                shard_finished: finished,
                lease: self.lease.as_ref().map(|(owner, token)| super::LeaseClaim {
                    owner,
                    token: *token,
                }),
            };
            match self.ctx.processor.process(batch).await {
                Ok(()) => break,
                Err(ProcessError::LostOwnership(message)) => {
                    self.ctx.metrics.commit_failed(CommitFailure::LeaseLost);
                    warn!(shard_id = %self.shard_id, error = %message, "Shard taken over by another worker; stopping it here.");
                    return Ok(Some(ShardExit::LostOwnership));
                }
                Err(ProcessError::Retry(message)) => {
                    self.ctx.metrics.commit_failed(CommitFailure::Transient);
                    // The batch did not land (or, after a partial isolation, only a prefix
                    // did): the same records are retried, idempotently, so nothing is lost.
                    if !self
                        .wait_after_error(ErrorClass::Transient, &message, cancel)
                        .await
                    {
                        return Ok(Some(ShardExit::Stopped));
                    }
                }
                Err(e @ ProcessError::Fatal(_)) => {
                    self.ctx.metrics.commit_failed(CommitFailure::Fatal);
                    return Err(KinesisError::Process {
                        shard_id: self.shard_id.clone(),
                        source: e,
                    });
                }
            }
        }
        self.backoff.reset();
        self.ctx.handles.health.ok(&self.shard_id);
        self.metrics.committed_now();
        self.committed = last;
        progress.record(records.len() as u64);
        if finished {
            info!(shard_id = %self.shard_id, "Shard read to its end and checkpointed.");
            progress.set(&self.shard_id, ShardState::Finished);
            return Ok(Some(ShardExit::Finished));
        }
        self.set_state(millis_behind_latest.unwrap_or(0) == 0);
        Ok(None)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent: parent.map(str::to_string),
            adjacent_parent: None,
            closed: false,
        }
    }

    #[test]
    fn latest_is_pinned_to_the_first_start_for_restarts() {
        let mut pins = HashMap::new();
        let none = HashMap::new();
        let s0 = shard("s0", None);
        let before = chrono::Utc::now();
        let first = start_for(&s0, &none, &[], InitialPosition::Latest, &mut pins);
        assert!(matches!(first, StartAt::Initial(InitialPosition::Latest)));
        let again = start_for(&s0, &none, &[], InitialPosition::Latest, &mut pins);
        match again {
            StartAt::Initial(InitialPosition::AtTimestamp(t)) => {
                assert!(t >= before - super::super::LATEST_SLACK);
                assert!(t <= chrono::Utc::now() - super::super::LATEST_SLACK);
            }
            other => panic!("restart not pinned: {other:?}"),
        }
        // A checkpoint always wins.
        let committed = HashMap::from([("s0".to_string(), "42".to_string())]);
        let after = start_for(&s0, &committed, &[], InitialPosition::Latest, &mut pins);
        assert!(matches!(after, StartAt::After(ref s) if s == "42"));
        // Other positions are left alone and pin nothing.
        let s1 = shard("s1", None);
        let trim = start_for(&s1, &none, &[], InitialPosition::TrimHorizon, &mut pins);
        assert!(matches!(
            trim,
            StartAt::Initial(InitialPosition::TrimHorizon)
        ));
        assert!(!pins.contains_key("s1"));
    }

    #[test]
    fn a_child_of_a_known_shard_starts_at_its_beginning_under_latest() {
        let mut pins = HashMap::new();
        let parent = shard("p", None);
        let child = shard("c", Some("p"));
        let listed = [parent.clone(), child.clone()];
        let start = start_for(
            &child,
            &HashMap::new(),
            &listed,
            InitialPosition::Latest,
            &mut pins,
        );
        assert!(matches!(
            start,
            StartAt::Initial(InitialPosition::TrimHorizon)
        ));
        // Known only by its checkpoint (already trimmed from the listing) counts too.
        let committed = HashMap::from([("p".to_string(), "7".to_string())]);
        let start = start_for(&child, &committed, &[], InitialPosition::Latest, &mut pins);
        assert!(matches!(
            start,
            StartAt::Initial(InitialPosition::TrimHorizon)
        ));
        // An unknown parent (trimmed and never read here) does not.
        let start = start_for(
            &child,
            &HashMap::new(),
            &[],
            InitialPosition::Latest,
            &mut pins,
        );
        assert!(matches!(start, StartAt::Initial(InitialPosition::Latest)));
    }
}
