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
//!
//! The files: `dispatcher` (the claim–deliver–settle loop), `retry` (backoff and giving up),
//! `consent` with `credentials` and `rate` (Twilio's Consent API, its accounts and its
//! 100 requests a minute), `notify` (Standard Webhooks), `http` (the bounded client they
//! share) and `metrics`.

mod consent;
mod credentials;
mod dispatcher;
mod http;
pub mod metrics;
mod notify;
mod rate;
mod retry;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::store::OutboxTarget;
pub use crate::store::{Change, Item};
pub use consent::{ConsentConfig, ConsentMode, ConsentTarget, consent_item, correlation_id};
pub use credentials::{Credential, Credentials, TwilioEnv};
pub use dispatcher::{DispatchSettings, Dispatcher, default_owner, report_backlog, spawn};
pub use http::HttpClient;
pub use notify::{NotifyConfig, NotifyTarget, Secret, payload};
pub use rate::TokenBuckets;
pub use retry::RetryPolicy;

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
    /// When a failed try is tried again, and when the item is given up.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_attempts: 10,
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
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

/// What the store's commit needs of the targets: their names and which changes each takes.
pub fn outbox_targets(targets: &[Arc<dyn Target>]) -> Vec<OutboxTarget> {
    targets
        .iter()
        .map(|t| {
            let target = t.clone();
            OutboxTarget {
                name: t.name().to_string(),
                wants: Arc::new(move |c: &Change| target.wants(c)),
            }
        })
        .collect()
}
