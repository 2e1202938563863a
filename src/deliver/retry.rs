//! When a failed try is tried again, and when an item is given up: exponential backoff with
//! jitter, bounded by a number of tries or by how long the schedule has run.

use std::time::Duration;

/// A target's retry schedule: the `n`-th retry (after `n` failed tries) waits about
/// `first × 2^(n-1)`, at most `max_delay`, jittered down by up to a quarter so that items that
/// failed together do not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max_delay: Duration,
    /// Give up after this many tries…
    pub max_attempts: u32,
    /// …or once the item is this old (since its commit wrote it): the next try would come
    /// later than this.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// The nominal wait after `failed` tries (≥ 1), before jitter.
    pub fn nominal(&self, failed: u32) -> Duration {
        let exp = failed.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << exp).min(self.max_delay)
    }

    /// The wait before the next try after `failed` tries of an item `age` old, or `None` when
    /// the item is given up: too many tries, or the next one would come after
    /// `give_up_after` (by the item's age, not by the sum of its own waits, since items ahead
    /// of it on its key may have held it back). `hint` (a `Retry-After`) replaces the
    /// computed wait when it is longer. `jitter` is in `[0, 1)` (a random draw in production,
    /// fixed in tests).
    pub fn next(
        &self,
        failed: u32,
        age: Duration,
        hint: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if failed >= self.max_attempts {
            return None;
        }
        let nominal = self.nominal(failed);
        let wait = nominal.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0));
        let wait = match hint {
            Some(h) if h > wait => h,
            _ => wait,
        };
        (age.saturating_add(wait) <= self.give_up_after).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 5,
            give_up_after: Duration::from_secs(3600),
        }
    }

    #[test]
    fn waits_double_up_to_the_cap_and_stop_after_the_last_try() {
        let p = policy();
        let waits: Vec<_> = (1..=5)
            .map(|n| p.next(n, Duration::ZERO, None, 0.0))
            .collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8]
                .map(|s| Some(Duration::from_secs(s)))
                .into_iter()
                .chain([None])
                .collect::<Vec<_>>()
        );
        let capped = RetryPolicy {
            max_attempts: 100,
            ..p
        };
        assert_eq!(
            capped.next(20, Duration::ZERO, None, 0.0),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn jitter_only_shortens_and_retry_after_only_lengthens() {
        let p = policy();
        let jittered = p.next(3, Duration::ZERO, None, 0.99).unwrap();
        assert!(jittered <= Duration::from_secs(4) && jittered >= Duration::from_secs(3));
        assert_eq!(
            p.next(1, Duration::ZERO, Some(Duration::from_secs(30)), 0.0),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.next(3, Duration::ZERO, Some(Duration::from_millis(1)), 0.0),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn the_items_age_gives_up_without_a_try_limit() {
        let p = RetryPolicy {
            first: Duration::from_secs(10),
            max_delay: Duration::from_secs(100),
            max_attempts: u32::MAX,
            give_up_after: Duration::from_secs(500),
        };
        let secs = Duration::from_secs;
        // After eight failures the wait is 100 s: tried again at 400 s old, not at 450 s.
        assert_eq!(p.next(8, secs(400), None, 0.0), Some(secs(100)));
        assert_eq!(p.next(8, secs(450), None, 0.0), None);
        // An item held back by the items before it on its key: its first failure comes at
        // 495 s old, and a try 10 s later would be past the horizon.
        assert_eq!(p.next(1, secs(495), None, 0.0), None);
        // A Retry-After that reaches past the horizon gives up too.
        assert_eq!(p.next(1, secs(100), Some(secs(450)), 0.0), None);
    }
}
