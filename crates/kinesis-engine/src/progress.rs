//! Shared progress of the shard readers: each shard's state (for the idle exit), the last
//! successful call (for the stall watchdog) and the records made durable (for the summary).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What a shard task last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Started, no answer yet.
    Starting,
    /// More records are waiting.
    Behind,
    /// At the tip of an open shard.
    CaughtUp,
    /// Read to its end.
    Finished,
}

/// Shared progress of all shard tasks, for the idle exit, liveness and the final summary.
#[derive(Debug)]
pub struct Progress {
    inner: Mutex<ProgressInner>,
}

#[derive(Debug)]
struct ProgressInner {
    states: HashMap<String, ShardState>,
    alive: HashMap<String, Instant>,
    last_records_at: Instant,
    records: u64,
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress {
            inner: Mutex::new(ProgressInner {
                states: HashMap::new(),
                alive: HashMap::new(),
                last_records_at: Instant::now(),
                records: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a shard's new state.
    pub fn set(&self, shard_id: &str, state: ShardState) {
        self.lock().states.insert(shard_id.to_string(), state);
    }

    /// Notes a successful call on a shard (liveness).
    pub fn alive(&self, shard_id: &str) {
        self.lock()
            .alive
            .insert(shard_id.to_string(), Instant::now());
    }

    /// Counts records made durable.
    pub fn record(&self, n: u64) {
        if n > 0 {
            let mut p = self.lock();
            p.records += n;
            p.last_records_at = Instant::now();
        }
    }

    pub(super) fn state(&self, shard_id: &str) -> Option<ShardState> {
        self.lock().states.get(shard_id).copied()
    }

    pub(super) fn last_alive(&self, shard_id: &str) -> Option<Instant> {
        self.lock().alive.get(shard_id).copied()
    }

    pub(super) fn quiet_for(&self) -> Duration {
        self.lock().last_records_at.elapsed()
    }

    pub(super) fn records(&self) -> u64 {
        self.lock().records
    }
}
