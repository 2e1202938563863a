//! When a failed or panicked shard reader may start again: each shard backs off on its own
//! (1 s doubling to 30 s by default), and a batch run gives up after a few attempts instead
//! of retrying forever.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinError;
use tokio::time::Instant;

use super::BackoffSettings;
use super::backoff::Backoff;

/// Restarts of a failing reader after which a batch run (`exit_when_idle`) gives up.
pub(super) const GIVE_UP_ATTEMPTS: u32 = 5;

/// A reader that failed waits before it is started again.
struct Restart {
    backoff: Backoff,
    not_before: Instant,
}

/// The restart backoff of every shard whose reader failed and has not committed since.
pub(super) struct Restarts {
    backoff: BackoffSettings,
    waiting: HashMap<String, Restart>,
}

impl Restarts {
    pub fn new(backoff: BackoffSettings) -> Self {
        Restarts {
            backoff,
            waiting: HashMap::new(),
        }
    }

    /// Records a failure of `shard`'s reader: how long to wait before starting it again, and
    /// how many times in a row it has failed.
    pub fn failed(&mut self, shard: &str) -> (Duration, u32) {
        let settings = self.backoff;
        let restart = self
            .waiting
            .entry(shard.to_string())
            .or_insert_with(|| Restart {
                backoff: settings.start(),
                not_before: Instant::now(),
            });
        let delay = restart.backoff.next_delay();
        restart.not_before = Instant::now() + delay;
        (delay, restart.backoff.attempts())
    }

    /// Whether `shard`'s reader may start at `now` (its backoff, if any, is over).
    pub fn may_start(&self, shard: &str, now: Instant) -> bool {
        self.waiting.get(shard).is_none_or(|r| r.not_before <= now)
    }

    /// Forgets `shard`'s failures (it finished, went to another worker, or recovered).
    pub fn forget(&mut self, shard: &str) {
        self.waiting.remove(shard);
    }

    /// Keeps only the shards for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.waiting.retain(|shard, _| keep(shard));
    }
}

/// What a task's panic said, for the log.
pub(super) fn panic_message(e: JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_string());
    format!("panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_is_per_shard_and_forgotten_on_recovery() {
        let mut r = Restarts::new(BackoffSettings {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        });
        let now = Instant::now();
        assert!(
            r.may_start("a", now),
            "a shard that never failed starts at once"
        );
        let (first, attempts) = r.failed("a");
        assert_eq!(attempts, 1);
        let (second, attempts) = r.failed("a");
        assert_eq!(attempts, 2);
        assert!(second >= first, "the wait grows: {first:?} then {second:?}");
        assert!(!r.may_start("a", Instant::now()));
        assert!(
            r.may_start("b", Instant::now()),
            "another shard is not held back"
        );
        tokio::time::advance(second).await;
        assert!(r.may_start("a", Instant::now()));
        r.forget("a");
        assert_eq!(
            r.failed("a").1,
            1,
            "a recovered shard starts counting again"
        );
    }
}
