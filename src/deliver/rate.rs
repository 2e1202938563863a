//! A token bucket per key (a Twilio account): at most `per_minute` requests in any minute on
//! average, with a burst of at most `burst`. Time comes from the caller, so that tests check
//! the limit on a clock of their own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Buckets by key.
#[derive(Debug)]
pub struct TokenBuckets {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

impl TokenBuckets {
    /// `per_minute` requests a minute per key, `burst` at once (both at least 1).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        TokenBuckets {
            per_minute: per_minute.max(1),
            burst: burst.clamp(1, per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key` at `now`: `Ok` when one was there, else `Err(wait)`, how long
    /// until one will be (nothing taken).
    pub fn take(&self, key: &str, now: SystemTime) -> Result<(), Duration> {
        let rate = f64::from(self.per_minute) / 60.0; // tokens per second
        let burst = f64::from(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).unwrap_or_default();
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * rate).min(burst);
        bucket.at = bucket.at.max(now);
        // A hair below one token counts as one: refilling in floating point can land there,
        // and a wait that rounds to nothing would never add the missing sliver.
        if bucket.tokens >= 1.0 - 1e-6 {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
            Err(wait.max(Duration::from_millis(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_window_of_a_minute_holds_more_than_the_limit() {
        // 90 a minute with a burst of 10: never more than 100 in sixty seconds.
        let buckets = TokenBuckets::new(90, 10);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut now = start;
        let mut sent = Vec::new();
        while now < start + Duration::from_secs(600) {
            match buckets.take("AC1", now) {
                Ok(()) => sent.push(now),
                Err(wait) => now += wait,
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_minute = sent[i..]
                .iter()
                .take_while(|u| u.duration_since(*t).unwrap() < Duration::from_secs(60))
                .count();
            assert!(in_minute <= 100, "{in_minute} requests in a minute");
        }
        // And the limit is used: 10 at once, then 90 a minute, over ten minutes.
        assert!(sent.len() >= 905, "{}", sent.len());
        // Another account has a bucket of its own.
        assert!(buckets.take("AC2", now).is_ok());
    }
}
