//! Where every shard stands: checkpoints loaded before any reader starts (retrying while the
//! store is down), reloaded after a reader stops early or other workers move them, and, with
//! leases, one housekeeping round after each reload.

use tokio::time::sleep;
use tracing::warn;

use super::Coordinator;
use crate::{KinesisError, ShardCheckpoint};

impl Coordinator {
    /// Reloads where every shard stands (after a reader stopped early), so that its restart
    /// begins at the stored checkpoint.
    pub(super) async fn reload_checkpoints(&mut self) {
        if !self.stop.is_cancelled()
            && let Ok(cps) = self
                .ctx
                .processor
                .checkpoints(&self.ctx.config.reading.stream)
                .await
        {
            self.apply_checkpoints(cps);
        }
    }

    /// Loads the checkpoints before any reader starts (retrying while the store is down), so
    /// that no finished shard is read again and no child starts before its parents.
    pub(super) async fn initial_checkpoints(&mut self) -> bool {
        let mut backoff = self.ctx.config.reading.backoff.start();
        loop {
            match self
                .ctx
                .processor
                .checkpoints(&self.ctx.config.reading.stream)
                .await
            {
                Ok(cps) => {
                    self.apply_checkpoints(cps);
                    return self.rebalance().await;
                }
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "Could not read checkpoints; retrying.");
                    tokio::select! {
                        _ = self.stop.cancelled() => return false,
                        _ = sleep(backoff.next_delay()) => {}
                    }
                }
                Err(e) => {
                    self.fail(KinesisError::Store {
                        operation: "loading checkpoints",
                        source: e,
                    });
                    return false;
                }
            }
        }
    }

    /// With leases, reloads the checkpoints (other workers move them) and rebalances.
    /// `false` on a fatal error.
    pub(super) async fn refresh(&mut self) -> bool {
        if self.leasing.is_none() {
            // Alone, this worker's own readers report every finish; nothing to reload.
            return true;
        }
        match self
            .ctx
            .processor
            .checkpoints(&self.ctx.config.reading.stream)
            .await
        {
            Ok(cps) => self.apply_checkpoints(cps),
            Err(e) if e.is_retryable() => {
                warn!(error = %e, "Could not read checkpoints; will retry.");
                return true;
            }
            Err(e) => {
                self.fail(KinesisError::Store {
                    operation: "loading checkpoints",
                    source: e,
                });
                return false;
            }
        }
        self.rebalance().await
    }

    /// With leases: renew, drop lost shards, take the fair share, and read the checkpoints of
    /// shards just taken. `false` on a fatal error.
    pub(super) async fn rebalance(&mut self) -> bool {
        let Some(leasing) = &mut self.leasing else {
            return true;
        };
        let (finished, running) = (self.slots.finished(), self.slots.running());
        let round = leasing.round(&self.shards, &finished, &running).await;
        match round {
            Ok(round) => {
                for shard in round.lost {
                    self.slots.stop_reader(&shard);
                    // Its health is the new owner's to report now, and it is no longer ours
                    // to restart.
                    self.forget_shard(&shard);
                }
                if !round.gained.is_empty() {
                    // The checkpoints were read before these leases were ours, and their
                    // previous owner may have committed since. Now that its commits are fenced
                    // off, read again, so that each new reader starts exactly after the last
                    // durable record instead of re-reading a batch (and moving the checkpoint
                    // back for a moment).
                    self.reload_checkpoints().await;
                }
            }
            Err(e) if !e.is_retryable() => {
                self.fail(KinesisError::Store {
                    operation: "lease housekeeping",
                    source: e,
                });
                return false;
            }
            Err(e) => warn!(error = %e, "Lease housekeeping failed; will retry."),
        }
        true
    }

    pub(super) fn apply_checkpoints(&mut self, cps: Vec<ShardCheckpoint>) {
        self.slots.apply(cps);
    }
}
