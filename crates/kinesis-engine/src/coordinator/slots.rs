//! One slot per shard: everything the coordinator knows of a shard's life in one place, as
//! KCL keeps one `ShardConsumer` state per shard, instead of a map per fact.
//!
//! A slot's [`SlotState`] says what this worker does with the shard, and moves thus:
//!
//! - `Waiting → Running`: a reader starts (parents read to their end, the lease is ours);
//! - `Running → Finished`: the reader read the shard to its end and checkpointed it;
//! - `Running → Waiting`: the reader stopped (a stall, its lease gone, shutdown);
//! - `Running → BackingOff`: the reader failed or panicked;
//! - `BackingOff → Running`: the wait is over; a reader starts again from the checkpoint;
//! - `BackingOff → Waiting`: the shard went to another worker, its backoff forgotten;
//! - `Waiting | BackingOff → Finished`: the checkpoints say it was read to its end.
//!
//! Beside its state a slot holds what outlives any one reader: the committed checkpoint (from
//! the store), the restart backoff of a reader that keeps failing, and, reading from `latest`,
//! the instant the shard was first started, so that no later start jumps to the tip again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::task::Id;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::reader::StartAt;
use crate::shards::ShardInfo;
use crate::{BackoffSettings, InitialPosition, LATEST_SLACK, ShardCheckpoint};

/// What this worker does with a shard.
#[derive(Debug)]
pub(super) enum SlotState {
    /// Not read here now: a parent is not read to its end yet, another worker holds its lease,
    /// or its reader stopped and it waits for the next start.
    Waiting,
    /// A reader task reads it.
    Running(Running),
    /// Its reader failed or panicked: it starts again, from its checkpoint, once `until` is
    /// past. (How many times in a row is the slot's restart backoff, which outlives this
    /// state: it is kept while the restarted reader runs, until it recovers.)
    BackingOff { until: Instant },
    /// Read to its end (by any worker) and checkpointed: nothing more to do.
    Finished,
}

/// A reader in flight.
#[derive(Debug)]
pub(super) struct Running {
    /// Stops it (a stall, a lease gone elsewhere); it commits the batch in hand first.
    pub cancel: CancellationToken,
    /// When it started, for the stall watchdog before its first successful call.
    pub started: Instant,
    /// Its task, to name the shard of a task that panicked.
    pub task: Id,
}

/// One shard's life as this worker knows it.
#[derive(Debug)]
pub(super) struct ShardSlot {
    state: SlotState,
    /// The last sequence number the store holds as durable.
    committed: Option<String>,
    /// The store says the shard is read to its end. The state follows, except while its own
    /// reader is still running (it has committed the end and not yet returned): children may
    /// start meanwhile, as they wait only for the checkpoint.
    ended: bool,
    /// Consecutive failures of its reader with no recovery since: the restart backoff.
    failures: Option<Backoff>,
    /// With `latest`: when the shard was first started without a checkpoint, less
    /// [`LATEST_SLACK`]. Every later start, by a new reader or inside one, begins there.
    latest_pin: Option<chrono::DateTime<chrono::Utc>>,
}

impl Default for ShardSlot {
    fn default() -> Self {
        ShardSlot {
            state: SlotState::Waiting,
            committed: None,
            ended: false,
            failures: None,
            latest_pin: None,
        }
    }
}

impl ShardSlot {
    pub fn state(&self) -> &SlotState {
        &self.state
    }

    /// Read to its end, by the checkpoints (even if its reader has not returned yet).
    pub fn is_finished(&self) -> bool {
        self.ended
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, SlotState::Running(_))
    }

    /// Whether a reader may start at `now`: waiting, or backing off and the wait is over.
    pub fn may_start(&self, now: Instant) -> bool {
        match self.state {
            SlotState::Waiting => true,
            SlotState::BackingOff { until } => until <= now,
            SlotState::Running(_) | SlotState::Finished => false,
        }
    }

    /// Takes in what the store says of the shard. A checkpoint never goes back to "not ended",
    /// and a missing sequence number clears nothing.
    pub fn apply(&mut self, checkpoint: ShardCheckpoint) {
        if let Some(seq) = checkpoint.sequence_number {
            self.committed = Some(seq);
        }
        if checkpoint.finished {
            self.ended = true;
            if !self.is_running() {
                self.state = SlotState::Finished;
            }
        }
    }

    /// Where the next reader starts: after the checkpoint, else at `initial`. Reading from
    /// `latest`, a child of a shard we know (`known_parent`: listed or checkpointed) starts at
    /// its beginning instead, so the records written to it since the reshard are not skipped;
    /// and the first start at the tip pins `now` (less [`LATEST_SLACK`], slack for clock skew
    /// with Kinesis), from which every later start begins.
    pub fn start_position(
        &mut self,
        initial: InitialPosition,
        known_parent: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StartAt {
        if let Some(seq) = &self.committed {
            return StartAt::After(seq.clone());
        }
        match (initial, self.latest_pin) {
            (InitialPosition::Latest, _) if known_parent => {
                StartAt::Initial(InitialPosition::TrimHorizon)
            }
            (InitialPosition::Latest, Some(pin)) => {
                StartAt::Initial(InitialPosition::AtTimestamp(pin))
            }
            (InitialPosition::Latest, None) => {
                let pin = now - LATEST_SLACK;
                self.latest_pin = Some(pin);
                StartAt::Latest { pinned: pin }
            }
            (p, _) => StartAt::Initial(p),
        }
    }

    /// Its reader was spawned.
    pub fn started(&mut self, running: Running) {
        self.state = SlotState::Running(running);
    }

    /// Its reader read the shard to its end and checkpointed it.
    pub fn reader_finished(&mut self) {
        self.ended = true;
        self.failures = None;
        self.state = SlotState::Finished;
    }

    /// Its reader stopped without failing (a stall, shutdown, its lease gone); the restart
    /// backoff, if any, is kept for its next start.
    pub fn reader_stopped(&mut self) {
        self.state = if self.ended {
            SlotState::Finished
        } else {
            SlotState::Waiting
        };
    }

    /// Its reader failed or panicked: it backs off before starting again. Returns the wait
    /// and the failures in a row.
    pub fn reader_failed(&mut self, settings: BackoffSettings, now: Instant) -> (Duration, u32) {
        let backoff = self.failures.get_or_insert_with(|| settings.start());
        let delay = backoff.next_delay();
        self.state = SlotState::BackingOff { until: now + delay };
        (delay, backoff.attempts())
    }

    /// Forgets its reader's failures (it recovered, or the shard is another worker's now):
    /// the next failure waits the shortest time again.
    pub fn forget_failures(&mut self) {
        self.failures = None;
        if let SlotState::BackingOff { .. } = self.state {
            self.state = SlotState::Waiting;
        }
    }

    /// Whether its reader has failed and not recovered since.
    pub fn has_failures(&self) -> bool {
        self.failures.is_some()
    }
}

/// Every shard's slot, by shard id: those listed and those known only by a checkpoint.
#[derive(Debug, Default)]
pub(super) struct Slots {
    slots: HashMap<String, ShardSlot>,
}

impl Slots {
    /// The slot of `shard`, created waiting if new.
    pub fn slot(&mut self, shard: &str) -> &mut ShardSlot {
        if !self.slots.contains_key(shard) {
            self.slots.insert(shard.to_string(), ShardSlot::default());
        }
        self.slots.get_mut(shard).expect("inserted above")
    }

    pub fn get(&self, shard: &str) -> Option<&ShardSlot> {
        self.slots.get(shard)
    }

    pub fn is_finished(&self, shard: &str) -> bool {
        self.get(shard).is_some_and(ShardSlot::is_finished)
    }

    pub fn is_running(&self, shard: &str) -> bool {
        self.get(shard).is_some_and(ShardSlot::is_running)
    }

    pub fn may_start(&self, shard: &str, now: Instant) -> bool {
        self.get(shard).is_none_or(|s| s.may_start(now))
    }

    /// Shards read to their end (for lineage and lease housekeeping).
    pub fn finished(&self) -> HashSet<String> {
        self.ids(ShardSlot::is_finished)
    }

    /// Shards with a reader in flight.
    pub fn running(&self) -> HashSet<String> {
        self.ids(ShardSlot::is_running)
    }

    fn ids(&self, keep: impl Fn(&ShardSlot) -> bool) -> HashSet<String> {
        let kept = self.slots.iter().filter(|(_, s)| keep(s));
        kept.map(|(id, _)| id.clone()).collect()
    }

    /// The readers in flight, by shard.
    pub fn readers(&self) -> impl Iterator<Item = (&str, &Running)> {
        self.slots.iter().filter_map(|(id, s)| match &s.state {
            SlotState::Running(r) => Some((id.as_str(), r)),
            _ => None,
        })
    }

    /// Stops `shard`'s reader, if one runs (it commits the batch in hand first).
    pub fn stop_reader(&self, shard: &str) {
        if let Some(SlotState::Running(r)) = self.get(shard).map(ShardSlot::state) {
            r.cancel.cancel();
        }
    }

    /// The shard whose reader runs as `task`.
    pub fn shard_of_task(&self, task: Id) -> Option<String> {
        let mut readers = self.readers();
        readers
            .find(|(_, r)| r.task == task)
            .map(|(id, _)| id.to_string())
    }

    /// Takes in the store's checkpoints.
    pub fn apply(&mut self, checkpoints: Vec<ShardCheckpoint>) {
        for c in checkpoints {
            self.slots.entry(c.shard_id.clone()).or_default().apply(c);
        }
    }

    /// Where `shard`'s next reader starts (see [`ShardSlot::start_position`]): a parent is
    /// known if it is in `listing` or has a checkpoint.
    pub fn start_position(
        &mut self,
        shard: &ShardInfo,
        listing: &[ShardInfo],
        initial: InitialPosition,
    ) -> StartAt {
        let known_parent = shard.parents().any(|p| {
            self.get(p).is_some_and(|s| s.committed.is_some())
                || listing.iter().any(|s| s.shard_id == p)
        });
        self.slot(&shard.shard_id)
            .start_position(initial, known_parent, chrono::Utc::now())
    }

    /// Forgets the restart backoff of running readers that `recovered` says are healthy.
    pub fn forget_recovered(&mut self, recovered: impl Fn(&str) -> bool) {
        for (id, slot) in &mut self.slots {
            if slot.is_running() && slot.has_failures() && recovered(id) {
                slot.forget_failures();
            }
        }
    }
}

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
