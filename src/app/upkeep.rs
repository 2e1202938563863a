//! The store's upkeep while a command writes (`run`, `replay`): [`Store::upkeep`] once a
//! second. A failure the store cannot get over (its SQLite file deleted or replaced) marks
//! the process unready and stops the command, which then exits 1 with the store's words,
//! instead of committing into a file that is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{FailureKind, Store, StoreError};

/// How often the store is looked after.
const EVERY: Duration = Duration::from_secs(1);

/// Looks after `store` until `stop` is cancelled; on a fatal failure clears `ready`, cancels
/// `stop` and returns the failure.
pub(super) fn spawn(
    store: Arc<dyn Store>,
    stop: CancellationToken,
    ready: Option<Arc<AtomicBool>>,
) -> JoinHandle<Option<StoreError>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tick.tick() => {}
            }
            match store.upkeep().await {
                Ok(()) => {}
                Err(e) if e.kind() == FailureKind::Fatal => {
                    if let Some(ready) = &ready {
                        ready.store(false, Ordering::Relaxed);
                    }
                    tracing::error!(error = %e, "The store cannot be used any more; stopping.");
                    stop.cancel();
                    return Some(e);
                }
                Err(e) => tracing::debug!(error = %e, "Store upkeep failed; will try again."),
            }
        }
    })
}
