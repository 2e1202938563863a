//! Ways out that push: what optout learned, delivered to systems that act on it (Twilio's
//! Consent API, the customer's signed webhooks).
//!
//! The store writes each change of a subscriber's answer (status or `send_allowed`) and, per
//! configured target, one outbox item in the same transaction as the opt event that causes
//! it: exactly once from the stream to the outbox. Dispatchers then deliver items at least
//! once, each with a stable idempotency key, so a receiver can drop the copies a retry makes.
//!
//! A [`Target`] knows one remote system: how many items fit one request, how to send them and
//! how to read the answer per item. It knows nothing of the store, the engine or HTTP serving;
//! the dispatcher (claiming, ordering per subscriber and scope, backoff, giving up) is shared.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use crate::store::{Change, Item};

/// What became of one item in one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again, not before `after` when the target said so (`Retry-After`).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Never again: the target refused this item for good.
    Failed {
        reason: String,
    },
}

/// One remote system that changes are delivered to.
#[async_trait]
pub trait Target: Send + Sync + 'static {
    /// Names the target in the outbox, metrics and `optout deliveries`.
    fn name(&self) -> &str;
    /// Most items one request carries.
    fn max_batch(&self) -> usize;
    /// Whether this change is delivered here at all (e.g. the Consent API takes no `whatsapp:`
    /// numbers and, in `revocations` mode, only phrase revocations).
    fn wants(&self, change: &Change) -> bool;
    /// Delivers `items` (at most [`Target::max_batch`]); one outcome per item, in order.
    async fn deliver(&self, items: &[Item], now: SystemTime) -> Vec<Outcome>;
}

/// Time, injectable so that tests check backoff and rate limits without waiting.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
    async fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}
