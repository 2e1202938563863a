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
    /// …or once the schedule's nominal delays (no jitter) add up to more than this.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// The nominal wait after `failed` tries (≥ 1), before jitter.
    pub fn nominal(&self, failed: u32) -> Duration {
        let exp = failed.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << exp).min(self.max_delay)
    }

    /// The wait before the next try after `failed` tries, or `None` when the item is given
    /// up. `hint` (a `Retry-After`) replaces the computed wait when it is longer. `jitter` is in
    /// `[0, 1)` (a random draw in production, fixed in tests).
    pub fn next(&self, failed: u32, hint: Option<Duration>, jitter: f64) -> Option<Duration> {
        if failed >= self.max_attempts {
            return None;
        }
        let elapsed: Duration = (1..=failed).map(|n| self.nominal(n)).sum();
        if elapsed > self.give_up_after {
            return None;
        }
        let nominal = self.nominal(failed);
        let wait = nominal.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0));
        Some(match hint {
            Some(h) if h > wait => h,
            _ => wait,
        })
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
        let waits: Vec<_> = (1..=5).map(|n| p.next(n, None, 0.0)).collect();
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
        assert_eq!(capped.next(20, None, 0.0), Some(Duration::from_secs(60)));
    }

    #[test]
    fn jitter_only_shortens_and_retry_after_only_lengthens() {
        let p = policy();
        let jittered = p.next(3, None, 0.99).unwrap();
        assert!(jittered <= Duration::from_secs(4) && jittered >= Duration::from_secs(3));
        assert_eq!(
            p.next(1, Some(Duration::from_secs(30)), 0.0),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.next(3, Some(Duration::from_millis(1)), 0.0),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn the_schedule_s_horizon_gives_up_without_a_try_limit() {
        let p = RetryPolicy {
            first: Duration::from_secs(10),
            max_delay: Duration::from_secs(100),
            max_attempts: u32::MAX,
            give_up_after: Duration::from_secs(500),
        };
        // 10 + 20 + 40 + 80 + 100 + 100 + 100 + 100 = 550 > 500 after eight failures.
        assert!(p.next(7, None, 0.0).is_some());
        assert_eq!(p.next(8, None, 0.0), None);
    }
}
