//! Shard health as an operator sees it: which shards have kept failing (reads, commits, reader
//! crashes) and since when, for the application's readiness probe, the `shards_failing` gauge
//! and the logs.
//!
//! A shard is *failing* from its first failed call or commit until its next success; it is
//! reported once that has lasted longer than [`crate::RestartSettings::failing_after`], so a
//! blip that the backoff absorbs never flips readiness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A cheap, cloneable handle on the engine's view of shard health. Share a clone with the
/// readiness probe; the engine writes, everyone else reads.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<HashMap<String, Failure>>>,
    /// How far behind the stream's tip each shard read last said it was (ms), for a caller
    /// that shows how a catch-up goes (the metric has the same per shard).
    behind: Arc<Mutex<HashMap<String, u64>>>,
}

#[derive(Debug, Clone)]
struct Failure {
    since: Instant,
    reason: String,
}

/// A shard that has kept failing, as reported by [`Health::failing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingShard {
    /// The shard.
    pub shard_id: String,
    /// How long it has been failing without a success in between.
    pub for_secs: u64,
    /// The latest failure.
    pub reason: String,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failure>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a failure on `shard_id` (a failed call or commit, a crashed reader). The start of
    /// the failing spell is kept; the reason is the latest.
    pub(super) fn fail(&self, shard_id: &str, reason: &str) {
        let mut m = self.lock();
        match m.get_mut(shard_id) {
            Some(f) => f.reason = reason.to_string(),
            None => {
                m.insert(
                    shard_id.to_string(),
                    Failure {
                        since: Instant::now(),
                        reason: reason.to_string(),
                    },
                );
            }
        }
    }

    /// Notes a success on `shard_id`: its failing spell, if any, is over.
    pub(super) fn ok(&self, shard_id: &str) {
        let mut m = self.lock();
        if !m.is_empty() {
            m.remove(shard_id);
        }
    }

    /// Forgets a shard this worker no longer reads (finished, or its lease went elsewhere).
    pub(super) fn forget(&self, shard_id: &str) {
        self.ok(shard_id);
        self.behind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(shard_id);
    }

    /// Notes how far behind the tip `shard_id`'s latest read said it was.
    pub(super) fn behind(&self, shard_id: &str, millis: u64) {
        self.behind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard_id.to_string(), millis);
    }

    /// How far behind the stream's tip the furthest shard this worker reads is, in ms, as
    /// its latest read said; `None` before any read said.
    pub fn millis_behind_latest(&self) -> Option<u64> {
        let behind = self.behind.lock().unwrap_or_else(|p| p.into_inner());
        behind.values().copied().max()
    }

    /// Whether `shard_id` is in a failing spell (of any length).
    pub(super) fn is_failing(&self, shard_id: &str) -> bool {
        self.lock().contains_key(shard_id)
    }

    /// Shards failing for longer than `after`, longest first.
    pub fn failing(&self, after: Duration) -> Vec<FailingShard> {
        let mut out: Vec<FailingShard> = self
            .lock()
            .iter()
            .filter(|(_, f)| f.since.elapsed() >= after)
            .map(|(id, f)| FailingShard {
                shard_id: id.clone(),
                for_secs: f.since.elapsed().as_secs(),
                reason: f.reason.clone(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.for_secs
                .cmp(&a.for_secs)
                .then(a.shard_id.cmp(&b.shard_id))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_shard_is_failing_only_after_the_threshold_and_until_a_success() {
        let h = Health::default();
        h.fail("s0", "connection refused");
        assert!(h.failing(Duration::from_secs(60)).is_empty());
        tokio::time::advance(Duration::from_secs(30)).await;
        h.fail("s0", "pool timed out");
        tokio::time::advance(Duration::from_secs(31)).await;
        let failing = h.failing(Duration::from_secs(60));
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].shard_id, "s0");
        assert_eq!(
            failing[0].for_secs, 61,
            "the spell starts at the first failure"
        );
        assert_eq!(
            failing[0].reason, "pool timed out",
            "the latest reason is shown"
        );
        h.ok("s0");
        assert!(h.failing(Duration::ZERO).is_empty());
    }

    #[test]
    fn lag_is_the_furthest_shard_until_it_is_forgotten() {
        let h = Health::default();
        assert_eq!(h.millis_behind_latest(), None);
        h.behind("s0", 1_500);
        h.behind("s1", 90_000);
        assert_eq!(h.millis_behind_latest(), Some(90_000));
        h.behind("s1", 0);
        h.ok("s0"); // a success is no news of lag
        assert_eq!(h.millis_behind_latest(), Some(1_500));
        h.forget("s0");
        assert_eq!(h.millis_behind_latest(), Some(0));
    }
}
