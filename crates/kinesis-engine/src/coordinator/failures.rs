//! What the coordinator does when something goes wrong: a task of its set ended (a reader
//! that failed or panicked, discovery, the fan-out consumer lookup), a reader stalled, or
//! shards are failing. Failed readers restart from their checkpoint after a backoff.

use std::time::Duration;

use tokio::task::{Id, JoinError};
use tokio::time::Instant;
use tracing::{error, warn};

use super::{Coordinator, TaskEnd};
use crate::KinesisError;
use crate::metrics::RestartReason;

/// Restarts of a failing reader after which a batch run (`exit_when_idle`) gives up.
const GIVE_UP_ATTEMPTS: u32 = 5;

/// Longest wait for the stream consumer to be looked up again after a failed subscription.
const CONSUMER_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

impl Coordinator {
    /// A task of the set ended: a reader (normally, with an error, or by panicking) or the
    /// discovery task (which is started again unless shutting down).
    pub(super) async fn on_joined(&mut self, joined: Result<(Id, TaskEnd), JoinError>) {
        match joined {
            Ok((_, TaskEnd::Reader(shard, result))) => self.on_done(shard, result).await,
            Ok((_, TaskEnd::Consumer(result))) => {
                self.refreshing_consumer = None;
                match result {
                    Ok(Some(arn)) => self.consumer_arn = Some(arn),
                    Ok(None) => {}
                    Err(e) => {
                        error!(error = %e, "Could not describe or register the stream consumer; will try again after the next reader failure.")
                    }
                }
            }
            Ok((_, TaskEnd::Discovery)) => {
                if !self.stop.is_cancelled() {
                    warn!("Shard discovery ended unexpectedly; starting it again.");
                    self.spawn_discovery_after(Duration::ZERO);
                }
            }
            Err(e) if Some(e.id()) == self.discovery.task => {
                error!(error = %panic_message(e), "Shard discovery panicked; starting it again in 1 s.");
                self.spawn_discovery_after(Duration::from_secs(1));
            }
            Err(e) if Some(e.id()) == self.refreshing_consumer => {
                self.refreshing_consumer = None;
                error!(error = %panic_message(e), "Looking up the stream consumer panicked; readers start with the known consumer.");
            }
            Err(e) => {
                let Some(shard) = self.slots.shard_of_task(e.id()) else {
                    return;
                };
                let message = panic_message(e);
                self.reader_failed(shard, RestartReason::Panic, message)
                    .await;
            }
        }
    }

    /// A reader returned an error or panicked: log, count, mark the shard failing, and start
    /// it again from its checkpoint after a backoff (each shard backs off on its own, 1 s
    /// doubling to 30 s by default). With `exit_when_idle` (a batch run), a shard that keeps
    /// failing ends the run instead of retrying forever.
    pub(super) async fn reader_failed(
        &mut self,
        shard: String,
        reason: RestartReason,
        message: String,
    ) {
        self.ctx.metrics.shard_restarted(reason);
        self.ctx.handles.health.fail(&shard, &message);
        let backoff = self.ctx.config.restarts.backoff;
        let (delay, attempts) = self
            .slots
            .slot(&shard)
            .reader_failed(backoff, Instant::now());
        error!(shard_id = %shard, reason = reason.as_str(), attempts, restart_in_ms = delay.as_millis() as u64, error = %message, "Shard reader failed; restarting it from its checkpoint.");
        if self.ctx.config.reading.exit_when_idle.is_some() && attempts >= GIVE_UP_ATTEMPTS {
            self.fail(KinesisError::ShardFailing {
                shard_id: shard,
                attempts,
                reason: message,
            });
            return;
        }
        self.reload_checkpoints().await;
    }

    /// Enhanced fan-out: describes the stream consumer again in a task of its own (registering
    /// it if it is gone) and holds reader starts until it answers.
    pub(super) fn refresh_consumer(&mut self) {
        let Some(name) = self.ctx.config.reading.consumer_name.clone() else {
            return;
        };
        if self.refreshing_consumer.is_some() {
            return;
        }
        let (client, stream, stop) = (
            self.ctx.client.clone(),
            self.ctx.config.reading.stream.clone(),
            self.stop.clone(),
        );
        let handle = self.tasks.spawn(async move {
            let lookup = crate::stream_consumer::ensure_consumer(&client, &stream, &name, &stop);
            // Bounded, so that a consumer stuck CREATING or an AWS outage holds reader starts
            // back for at most this long.
            match tokio::time::timeout(CONSUMER_REFRESH_TIMEOUT, lookup).await {
                Ok(result) => TaskEnd::Consumer(result),
                Err(_) => TaskEnd::Consumer(Ok(None)),
            }
        });
        self.refreshing_consumer = Some(handle.id());
    }

    /// Publishes how many shards are failing, and forgets the restart backoff of readers that
    /// have committed since.
    pub(super) fn report_health(&mut self) {
        let failing = self
            .ctx
            .handles
            .health
            .failing(self.ctx.config.restarts.failing_after);
        self.ctx.metrics.shards_failing(failing.len());
        let health = &self.ctx.handles.health;
        self.slots
            .forget_recovered(|shard| !health.is_failing(shard));
    }

    /// Cancels readers that made no successful call for `stall_timeout`; they restart.
    pub(super) fn restart_stalled(&mut self) {
        let (ctx, limit) = (&self.ctx, self.ctx.config.restarts.stall_timeout);
        for (id, r) in self.slots.readers() {
            let alive = ctx.progress.last_alive(id);
            let last = alive.map_or(r.started, |a| a.max(r.started));
            if last.elapsed() > limit && !r.cancel.is_cancelled() {
                warn!(shard_id = %id, stalled_secs = last.elapsed().as_secs(), "Shard reader made no progress; restarting it.");
                ctx.metrics.shard_restarted(RestartReason::Stall);
                let why = "no successful call within the stall timeout";
                ctx.handles.health.fail(id, why);
                r.cancel.cancel();
            }
        }
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
