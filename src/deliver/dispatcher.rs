//! The loop that delivers one target's outbox: claim the due items (at most the target's
//! batch, at most one per ordering key: the claim keeps a subscriber's changes in order),
//! deliver them, and settle each (delivered, due again after a backoff, or given up), until
//! the shutdown token is cancelled. A claim is held for `hold`; a dispatcher that dies holding
//! one loses it to another instance, which delivers those items again under the same keys.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Clock, Item, Outcome, Target, metrics};
use crate::store::{Outbox, Settle, Settlement, StoreError};

/// How a dispatcher claims and waits.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// This process's name on its claims (host, pid and a random suffix by default).
    pub owner: String,
    /// How long a claim is held before another dispatcher may take the items over.
    pub hold: Duration,
    /// How long to wait before claiming again once nothing is due: the bulk of the latency
    /// from a commit to its delivery.
    pub poll: Duration,
    /// How often the backlog gauges are refreshed.
    pub backlog_every: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            owner: default_owner(),
            hold: Duration::from_secs(60),
            poll: Duration::from_millis(250),
            backlog_every: Duration::from_secs(10),
        }
    }
}

/// `host-pid-xxxx`: unique per process, readable in `optout deliveries`.
pub fn default_owner() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// One target's dispatcher.
pub struct Dispatcher {
    target: Arc<dyn Target>,
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    settings: DispatchSettings,
    rng: Mutex<fastrand::Rng>,
}

impl Dispatcher {
    pub fn new(
        target: Arc<dyn Target>,
        outbox: Arc<dyn Outbox>,
        clock: Arc<dyn Clock>,
        settings: DispatchSettings,
    ) -> Self {
        Dispatcher {
            target,
            outbox,
            clock,
            settings,
            rng: Mutex::new(fastrand::Rng::new()),
        }
    }

    /// Seeds the backoff's jitter (tests).
    pub fn with_seed(self, seed: u64) -> Self {
        Dispatcher {
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            ..self
        }
    }

    /// One round: claims what is due, delivers it and settles it; the number of items.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let name = self.target.name();
        let now = self.clock.now();
        let limit = self.target.max_batch().max(1);
        let items = self
            .outbox
            .claim(name, &self.settings.owner, limit, now, self.settings.hold)
            .await?;
        if items.is_empty() {
            return Ok(0);
        }
        let mut outcomes = self.target.deliver(&items, now).await;
        outcomes.resize(
            items.len(),
            Outcome::Retry {
                after: None,
                reason: "the target gave no outcome for this item".into(),
            },
        );
        let settled_at = self.clock.now();
        let settlements: Vec<Settlement> = items
            .iter()
            .zip(outcomes)
            .map(|(item, outcome)| self.settlement(item, outcome, settled_at))
            .collect();
        let count = |f: fn(&Settle) -> bool| settlements.iter().filter(|s| f(&s.settle)).count();
        let delivered = count(|s| matches!(s, Settle::Delivered));
        let retry = count(|s| matches!(s, Settle::RetryAt { .. }));
        let failed = count(|s| matches!(s, Settle::Failed { .. }));
        self.outbox
            .settle(&self.settings.owner, &settlements)
            .await?;
        metrics::settled(name, delivered as u64, retry as u64, failed as u64);
        if failed > 0 {
            warn!(
                target_name = name,
                failed, "Deliveries given up (see `optout deliveries`)."
            );
        }
        debug!(
            target_name = name,
            delivered, retry, failed, "Delivered a batch."
        );
        Ok(items.len())
    }

    /// What becomes of `item` after `outcome`, settled at `now`.
    fn settlement(&self, item: &Item, outcome: Outcome, now: SystemTime) -> Settlement {
        let attempts = item.attempts.saturating_add(1);
        let settle = match outcome {
            Outcome::Delivered => Settle::Delivered,
            Outcome::Failed { reason } => Settle::Failed { reason },
            Outcome::Retry { after, reason } => {
                let jitter = self.rng.lock().unwrap_or_else(|e| e.into_inner()).f64();
                let age = now.duration_since(item.created).unwrap_or_default();
                match self
                    .target
                    .retry_policy()
                    .next(attempts, age, after, jitter)
                {
                    Some(wait) => Settle::RetryAt {
                        at: now + wait,
                        reason,
                    },
                    None => Settle::Failed {
                        reason: format!("gave up after {attempts} tries: {reason}"),
                    },
                }
            }
        };
        Settlement {
            id: item.id,
            attempts,
            settle,
        }
    }

    /// Runs rounds until `shutdown`: straight on while full batches come, else after
    /// `poll`; a store error waits longer each time (up to 30 s). The batch in hand is
    /// delivered and settled before stopping.
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.target.name().to_string();
        info!(target_name = %name, owner = %self.settings.owner, "Dispatcher started.");
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let wait = match self.tick().await {
                Ok(n) if n >= self.target.max_batch() => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    self.settings.poll
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    warn!(target_name = %name, error = %e, "Outbox unavailable; retrying.");
                    Duration::from_millis(500)
                        .saturating_mul(1 << failures.min(6))
                        .min(Duration::from_secs(30))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.clock.sleep(wait) => {}
            }
        }
        info!(target_name = %name, "Dispatcher stopped.");
    }
}

/// Refreshes the backlog gauges of every target every `every` until `shutdown`.
pub async fn report_backlog(
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    every: Duration,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match outbox.backlog(clock.now()).await {
            Ok(backlog) => backlog.iter().for_each(metrics::backlog),
            Err(e) => debug!(error = %e, "Cannot read the outbox's backlog."),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = clock.sleep(every) => {}
        }
    }
}

/// Starts a dispatcher per target and the backlog reporter; they stop on `shutdown`, and the
/// set is done once each has finished its batch in hand.
pub fn spawn(
    targets: Vec<Arc<dyn Target>>,
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    settings: DispatchSettings,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(report_backlog(
        outbox.clone(),
        clock.clone(),
        settings.backlog_every,
        shutdown.clone(),
    ));
    for target in targets {
        let d = Dispatcher::new(target, outbox.clone(), clock.clone(), settings.clone());
        set.spawn(d.run(shutdown.clone()));
    }
    set
}
