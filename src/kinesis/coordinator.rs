//! The coordinator: discovers shards, decides which ones this worker reads (all readable ones
//! alone; its fair share of leases when several workers share the stream), starts a reader per
//! shard in lineage order, restarts stalled readers, notices idleness, and shuts down cleanly.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::backoff::Backoff;
use super::balance::{Plan, plan};
use super::progress::{Progress, ShardState};
use super::reader::{ShardContext, ShardExit, StartAt};
use super::shards::{ShardInfo, discover, first_listing, ready_to_read};
use super::{
    ConsumerConfig, InitialPosition, KinesisError, LeaseStore, Processor, RunStats, ShardCheckpoint,
};

/// A shard reader in flight.
struct Running {
    cancel: CancellationToken,
    started: Instant,
}

/// How a task of the coordinator's set ended (when it did not panic).
enum TaskEnd {
    /// A shard reader returned.
    Reader(String, Result<ShardExit, KinesisError>),
    /// The discovery task returned (it only does on shutdown).
    Discovery,
    /// The stream consumer was described again (and registered again if it was gone).
    Consumer(Result<Option<String>, KinesisError>),
}

/// A reader that failed or panicked waits before it is started again.
struct Restart {
    backoff: Backoff,
    not_before: Instant,
}

/// Consumes `config.stream` until `shutdown` is cancelled (or, with `exit_when_idle`, until
/// everything is read), handing every batch to `processor`.
///
/// With `leases`, several workers share the stream: this one reads only the shards whose
/// lease it holds, and every commit is fenced by the lease's token. On shutdown the readers
/// stop fetching, finish and commit the batch in hand, and the leases are released.
pub async fn run(
    client: Client,
    config: ConsumerConfig,
    processor: Arc<dyn Processor>,
    leases: Option<Arc<dyn LeaseStore>>,
    shutdown: CancellationToken,
) -> Result<RunStats, KinesisError> {
    let stop = shutdown.child_token();
    let Some(shards) = first_listing(&client, &config, &stop).await? else {
        return Ok(RunStats::default());
    };
    let consumer_arn = match &config.consumer_name {
        Some(name) => {
            match super::fanout::ensure_consumer(&client, &config.stream, name, &stop).await? {
                Some(arn) => Some(arn),
                None => return Ok(RunStats::default()),
            }
        }
        None => None,
    };
    info!(stream = %config.stream, shards = shards.len(), worker_id = %config.worker_id, leases = leases.is_some(), fan_out = consumer_arn.is_some(), "Consuming stream.");
    let progress = Arc::new(Progress::new());
    let c = Coordinator {
        ctx: Arc::new(ShardContext {
            client: client.clone(),
            config: config.clone(),
            processor: processor.clone(),
            progress: progress.clone(),
            worker_id: config.worker_id.clone(),
        }),
        client,
        config,
        consumer_arn,
        processor,
        leases,
        progress,
        shards,
        shards_changed: true,
        finished: HashSet::new(),
        committed: HashMap::new(),
        held: HashMap::new(),
        unclaimed: 0,
        running: HashMap::new(),
        tasks: JoinSet::new(),
        task_shards: HashMap::new(),
        discovery: None,
        listings: None,
        restarts: HashMap::new(),
        refreshing_consumer: None,
        stats: RunStats::default(),
        fatal: None,
        stop,
        relist_now: None,
        latest_pins: HashMap::new(),
    };
    c.run().await
}

struct Coordinator {
    client: Client,
    config: ConsumerConfig,
    ctx: Arc<ShardContext>,
    /// The registered stream consumer when reading with enhanced fan-out.
    consumer_arn: Option<String>,
    processor: Arc<dyn Processor>,
    leases: Option<Arc<dyn LeaseStore>>,
    progress: Arc<Progress>,
    shards: Vec<ShardInfo>,
    shards_changed: bool,
    /// Shards read to their end (by anyone), from the checkpoints.
    finished: HashSet<String>,
    /// Last committed sequence number per shard, from the checkpoints.
    committed: HashMap<String, String>,
    /// Leases this worker holds: shard → fencing token.
    held: HashMap<String, i64>,
    /// Readable shards nobody holds (leased mode), for the idle exit.
    unclaimed: usize,
    running: HashMap<String, Running>,
    /// Every task this coordinator owns: the readers and the discovery task. A task that
    /// panics is seen here (its `JoinError`), so no shard is left unread by a crash.
    tasks: JoinSet<TaskEnd>,
    /// Which shard each reader task reads, to name the shard of a task that panicked.
    task_shards: HashMap<Id, String>,
    /// The discovery task.
    discovery: Option<Id>,
    /// Where discovery publishes listings (kept here so a restarted discovery reuses it).
    listings: Option<Arc<watch::Sender<Vec<ShardInfo>>>>,
    /// Readers waiting to be restarted after a failure or panic.
    restarts: HashMap<String, Restart>,
    /// Enhanced fan-out: the task looking the consumer up (and registering it again if it was
    /// deregistered); reader starts wait for its answer.
    refreshing_consumer: Option<Id>,
    stats: RunStats,
    fatal: Option<KinesisError>,
    stop: CancellationToken,
    /// Wakes the discovery task for an immediate listing.
    relist_now: Option<Arc<Notify>>,
    /// With `latest`: when each shard was first started without a checkpoint, so a restarted
    /// reader resumes from there instead of jumping to the tip again.
    latest_pins: HashMap<String, chrono::DateTime<chrono::Utc>>,
}

impl Coordinator {
    async fn run(mut self) -> Result<RunStats, KinesisError> {
        // Discovery runs in its own task: a hung ListShards must not hold up lease renewal,
        // the stall watchdog or shutdown.
        let (listings, mut listing) = watch::channel(self.shards.clone());
        self.listings = Some(Arc::new(listings));
        self.relist_now = Some(Arc::new(Notify::new()));
        self.spawn_discovery();
        let mut housekeeping = interval(self.housekeeping_period());
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut idle_check = interval(Duration::from_millis(100));
        if !self.initial_checkpoints().await {
            return self.finish().await;
        }
        loop {
            self.start_readers();
            tokio::select! {
                _ = self.stop.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id() => self.on_joined(joined).await,
                Ok(()) = listing.changed() => {
                    let shards = listing.borrow_and_update().clone();
                    if shards != self.shards {
                        self.shards = shards;
                        self.shards_changed = true;
                    }
                }
                _ = housekeeping.tick() => {
                    self.restart_stalled();
                    self.report_health();
                    if !self.refresh().await { break; }
                }
                _ = idle_check.tick(), if self.config.exit_when_idle.is_some() => {
                    if self.is_idle() {
                        info!("Every shard is read to its end or caught up; exiting.");
                        self.stop.cancel();
                    }
                }
            }
        }
        self.finish().await
    }

    fn spawn_discovery(&mut self) {
        self.spawn_discovery_after(Duration::ZERO);
    }

    /// Starts the discovery task after `delay` (a pause, so a task that keeps panicking is
    /// not restarted in a hot loop).
    fn spawn_discovery_after(&mut self, delay: Duration) {
        let (Some(listings), Some(relist_now)) = (self.listings.clone(), self.relist_now.clone())
        else {
            return;
        };
        let (client, config, stop) = (self.client.clone(), self.config.clone(), self.stop.clone());
        let handle = self.tasks.spawn(async move {
            sleep(delay).await;
            discover(client, config, listings, relist_now, stop).await;
            TaskEnd::Discovery
        });
        self.discovery = Some(handle.id());
    }

    /// A task of the set ended: a reader (normally, with an error, or by panicking) or the
    /// discovery task (which is started again unless shutting down).
    async fn on_joined(&mut self, joined: Result<(Id, TaskEnd), JoinError>) {
        match joined {
            Ok((id, TaskEnd::Reader(shard, result))) => {
                self.task_shards.remove(&id);
                self.on_done(shard, result).await;
            }
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
                    self.spawn_discovery();
                }
            }
            Err(e) if Some(e.id()) == self.discovery => {
                error!(error = %panic_message(e), "Shard discovery panicked; starting it again in 1 s.");
                self.spawn_discovery_after(Duration::from_secs(1));
            }
            Err(e) if Some(e.id()) == self.refreshing_consumer => {
                self.refreshing_consumer = None;
                error!(error = %panic_message(e), "Looking up the stream consumer panicked; readers start with the known consumer.");
            }
            Err(e) => {
                let Some(shard) = self.task_shards.remove(&e.id()) else {
                    return;
                };
                let message = panic_message(e);
                self.reader_failed(shard, "panic", message).await;
            }
        }
    }

    /// A reader returned an error or panicked: log, count, mark the shard failing, and start
    /// it again from its checkpoint after a backoff. With `exit_when_idle` (a batch run), a
    /// shard that keeps failing ends the run instead of retrying forever.
    async fn reader_failed(&mut self, shard: String, reason: &'static str, message: String) {
        self.running.remove(&shard);
        metrics::counter!("optout_shard_restarts_total", "reason" => reason).increment(1);
        self.config.health.fail(&shard, &message);
        let (base, max) = (
            self.config.restart_backoff_base,
            self.config.restart_backoff_max,
        );
        let restart = self
            .restarts
            .entry(shard.clone())
            .or_insert_with(|| Restart {
                backoff: Backoff::new(base, max),
                not_before: Instant::now(),
            });
        let delay = restart.backoff.next_delay();
        let attempts = restart.backoff.attempts();
        restart.not_before = Instant::now() + delay;
        error!(shard_id = %shard, reason, attempts, restart_in_ms = delay.as_millis() as u64, error = %message, "Shard reader failed; restarting it from its checkpoint.");
        if self.config.exit_when_idle.is_some() && attempts >= GIVE_UP_ATTEMPTS {
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
    fn refresh_consumer(&mut self) {
        let Some(name) = self.config.consumer_name.clone() else {
            return;
        };
        if self.refreshing_consumer.is_some() {
            return;
        }
        let (client, stream, stop) = (
            self.client.clone(),
            self.config.stream.clone(),
            self.stop.clone(),
        );
        let handle = self.tasks.spawn(async move {
            let lookup = super::fanout::ensure_consumer(&client, &stream, &name, &stop);
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
    fn report_health(&mut self) {
        let failing = self.config.health.failing(self.config.failing_after);
        metrics::gauge!("optout_shards_failing").set(failing.len() as f64);
        let health = &self.config.health;
        self.restarts
            .retain(|shard, _| !self.running.contains_key(shard) || health.is_failing(shard));
    }

    /// Reloads where every shard stands (after a reader stopped early), so that its restart
    /// begins at the stored checkpoint.
    async fn reload_checkpoints(&mut self) {
        if !self.stop.is_cancelled()
            && let Ok(cps) = self.processor.checkpoints(&self.config.stream).await
        {
            self.apply_checkpoints(cps);
        }
    }

    fn housekeeping_period(&self) -> Duration {
        match self.leases {
            // Renew well before expiry: three chances per lease period.
            Some(_) => (self.config.lease_duration / 3).max(Duration::from_millis(50)),
            None => Duration::from_secs(1),
        }
    }

    /// Loads the checkpoints before any reader starts (retrying while the store is down), so
    /// that no finished shard is read again and no child starts before its parents.
    async fn initial_checkpoints(&mut self) -> bool {
        let mut backoff = Backoff::new(self.config.backoff_base, self.config.backoff_max);
        loop {
            match self.processor.checkpoints(&self.config.stream).await {
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
    async fn refresh(&mut self) -> bool {
        if self.leases.is_none() {
            // Alone, this worker's own readers report every finish; nothing to reload.
            return true;
        }
        match self.processor.checkpoints(&self.config.stream).await {
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

    /// With leases: renew, drop lost shards, take the fair share. `false` on a fatal error.
    async fn rebalance(&mut self) -> bool {
        if let Some(leases) = self.leases.clone()
            && let Err(e) = self.balance(&*leases).await
        {
            if !e.is_retryable() {
                self.fail(KinesisError::Store {
                    operation: "lease housekeeping",
                    source: e,
                });
                return false;
            }
            warn!(error = %e, "Lease housekeeping failed; will retry.");
        }
        true
    }

    fn apply_checkpoints(&mut self, cps: Vec<ShardCheckpoint>) {
        for c in cps {
            if c.finished {
                self.finished.insert(c.shard_id.clone());
            }
            if let Some(seq) = c.sequence_number {
                self.committed.insert(c.shard_id, seq);
            }
        }
    }

    /// Renews our leases, drops readers whose lease is gone, and takes our fair share.
    async fn balance(&mut self, leases: &dyn LeaseStore) -> Result<(), super::ProcessError> {
        let stream = self.config.stream.clone();
        let me = self.config.worker_id.clone();
        let lease_ms = self.config.lease_duration.as_millis() as i64;
        if self.shards_changed {
            let ids: Vec<String> = self
                .shards
                .iter()
                .filter(|s| !self.finished.contains(&s.shard_id))
                .map(|s| s.shard_id.clone())
                .collect();
            leases.ensure_leases(&stream, &ids).await?;
            self.shards_changed = false;
        }
        let renewed = leases.renew(&stream, &me, lease_ms).await?;
        let renewed: HashMap<String, i64> =
            renewed.into_iter().map(|l| (l.shard_id, l.token)).collect();
        for (shard, token) in &self.held {
            if renewed.get(shard) != Some(token) {
                warn!(shard_id = %shard, "Lease lost to another worker; stopping that shard.");
                if let Some(r) = self.running.get(shard) {
                    r.cancel.cancel();
                }
                // Its health is the new owner's to report now, and it is no longer ours to
                // restart.
                forget_shard(&self.config, &mut self.restarts, shard);
            }
        }
        self.held = renewed;
        let (all, now_ms) = leases.leases(&stream).await?;
        let readable: Vec<String> = ready_to_read(&self.shards, &self.finished, &HashSet::new())
            .into_iter()
            .map(|s| s.shard_id.clone())
            .collect();
        let Plan {
            acquire,
            want,
            steal,
            unclaimed,
        } = plan(&me, &readable, &all, now_ms, &self.held);
        self.unclaimed = unclaimed;
        if want > 0 && !acquire.is_empty() {
            for l in leases
                .acquire(&stream, &me, &acquire, want, lease_ms)
                .await?
            {
                info!(shard_id = %l.shard_id, token = l.token, "Lease taken.");
                self.held.insert(l.shard_id, l.token);
            }
        }
        if let Some((victim, shard)) = steal
            && let Some(l) = leases
                .steal(&stream, &me, &victim, &shard, lease_ms)
                .await?
        {
            info!(shard_id = %l.shard_id, from = %victim, token = l.token, "Lease taken over to balance the load.");
            self.held.insert(l.shard_id, l.token);
        }
        let done: Vec<String> = self
            .held
            .keys()
            .filter(|s| self.finished.contains(*s) && !self.running.contains_key(*s))
            .cloned()
            .collect();
        if !done.is_empty() {
            leases.release(&stream, &me, &done).await?;
            for s in &done {
                self.held.remove(s);
            }
        }
        Ok(())
    }

    /// Starts a reader for every readable shard this worker should read and is not reading.
    fn start_readers(&mut self) {
        if self.refreshing_consumer.is_some() {
            return;
        }
        let running: HashSet<String> = self.running.keys().cloned().collect();
        let now = Instant::now();
        let ready: Vec<ShardInfo> = ready_to_read(&self.shards, &self.finished, &running)
            .into_iter()
            .filter(|s| self.leases.is_none() || self.held.contains_key(&s.shard_id))
            .filter(|s| {
                self.restarts
                    .get(&s.shard_id)
                    .is_none_or(|r| r.not_before <= now)
            })
            .cloned()
            .collect();
        for shard in ready {
            let start = pin_latest(
                &mut self.latest_pins,
                &shard.shard_id,
                start_for(&shard, &self.committed, &self.shards, &self.config),
                chrono::Utc::now(),
            );
            let token = self.held.get(&shard.shard_id).copied();
            info!(shard_id = %shard.shard_id, start = ?start, lease_token = ?token, "Reading shard.");
            self.progress.set(&shard.shard_id, ShardState::Starting);
            let cancel = self.stop.child_token();
            self.running.insert(
                shard.shard_id.clone(),
                Running {
                    cancel: cancel.clone(),
                    started: Instant::now(),
                },
            );
            let (ctx, id, arn) = (
                self.ctx.clone(),
                shard.shard_id.clone(),
                self.consumer_arn.clone(),
            );
            let handle = self.tasks.spawn(async move {
                let result = match arn {
                    Some(arn) => {
                        super::fanout::read_shard_fanout(ctx, id.clone(), start, token, arn, cancel)
                            .await
                    }
                    None => super::poller::read_shard(ctx, id.clone(), start, token, cancel).await,
                };
                TaskEnd::Reader(id, result)
            });
            self.task_shards.insert(handle.id(), shard.shard_id.clone());
        }
        metrics::gauge!("optout_shards_reading").set(self.running.len() as f64);
    }

    async fn on_done(&mut self, id: String, result: Result<ShardExit, KinesisError>) {
        self.running.remove(&id);
        match result {
            Ok(ShardExit::Finished) => {
                self.config.health.forget(&id);
                self.restarts.remove(&id);
                self.finished.insert(id.clone());
                self.stats.shards_finished += 1;
                if let Some(leases) = &self.leases
                    && self.held.remove(&id).is_some()
                    && let Err(e) = leases
                        .release(&self.config.stream, &self.config.worker_id, &[id])
                        .await
                {
                    warn!(error = %e, "Could not release the lease of a finished shard.");
                }
                // Its children may not be in our listing yet: look now, not in 30 s.
                self.relist();
            }
            Ok(ShardExit::LostOwnership) => {
                self.config.health.forget(&id);
                self.held.remove(&id);
            }
            Ok(ShardExit::Stopped) => {
                // Restarted for a stall, or its lease went: reload where it stands.
                if self.leases.is_some() && !self.held.contains_key(&id) {
                    forget_shard(&self.config, &mut self.restarts, &id);
                }
                self.reload_checkpoints().await;
            }
            Err(e) => {
                // With enhanced fan-out, a failed subscription may mean the consumer was
                // deregistered: look it up again (registering it if gone) before restarting.
                if matches!(
                    e,
                    KinesisError::Aws {
                        operation: "SubscribeToShard",
                        ..
                    }
                ) {
                    self.refresh_consumer();
                }
                self.reader_failed(id, "error", e.to_string()).await
            }
        }
    }

    /// Cancels readers that made no successful call for `stall_timeout`; they restart.
    fn restart_stalled(&mut self) {
        let limit = self.config.stall_timeout;
        for (id, r) in &self.running {
            let last = self
                .progress
                .last_alive(id)
                .map_or(r.started, |a| a.max(r.started));
            if last.elapsed() > limit && !r.cancel.is_cancelled() {
                warn!(shard_id = %id, stalled_secs = last.elapsed().as_secs(), "Shard reader made no progress; restarting it.");
                metrics::counter!("optout_shard_restarts_total", "reason" => "stall").increment(1);
                self.config
                    .health
                    .fail(id, "no successful call within the stall timeout");
                r.cancel.cancel();
            }
        }
    }

    fn is_idle(&self) -> bool {
        let Some(idle) = self.config.exit_when_idle else {
            return false;
        };
        if self.progress.quiet_for() < idle || self.unclaimed > 0 {
            return false;
        }
        let mine = |s: &&ShardInfo| self.leases.is_none() || self.held.contains_key(&s.shard_id);
        self.shards.iter().filter(mine).all(|s| {
            self.finished.contains(&s.shard_id)
                || (self.running.contains_key(&s.shard_id)
                    && self.progress.state(&s.shard_id) == Some(ShardState::CaughtUp))
        })
    }

    /// Asks the discovery task for a fresh listing now.
    fn relist(&self) {
        if let Some(n) = &self.relist_now {
            n.notify_one();
        }
    }

    fn fail(&mut self, e: KinesisError) {
        self.fatal.get_or_insert(e);
        self.stop.cancel();
    }

    /// Waits for every reader, releases leases, and reports.
    async fn finish(mut self) -> Result<RunStats, KinesisError> {
        self.stop.cancel();
        while let Some(joined) = self.tasks.join_next_with_id().await {
            match joined {
                Ok((_, TaskEnd::Reader(_, Ok(ShardExit::Finished)))) => {
                    self.stats.shards_finished += 1
                }
                Ok((_, TaskEnd::Reader(id, Err(e)))) => {
                    error!(shard_id = %id, error = %e, "Shard reader failed.");
                    self.fatal.get_or_insert(e);
                }
                Ok(_) => {}
                Err(e) => {
                    let shard = self.task_shards.get(&e.id()).cloned().unwrap_or_default();
                    error!(shard_id = %shard, error = %panic_message(e), "Shard reader panicked while stopping; its batch in hand was not committed.");
                }
            }
        }
        if let Some(leases) = &self.leases {
            let held: Vec<String> = self.held.keys().cloned().collect();
            match leases
                .release(&self.config.stream, &self.config.worker_id, &held)
                .await
            {
                Ok(()) => info!(released = held.len(), "Leases released."),
                Err(e) => warn!(error = %e, "Could not release leases; they will expire."),
            }
        }
        self.stats.records = self.progress.records();
        match self.fatal {
            Some(e) => Err(e),
            None => Ok(self.stats),
        }
    }
}

/// Drops what this worker reports of a shard it no longer reads (its lease went elsewhere):
/// its failing spell, its restart backoff, and its lag, set to 0 so that this worker's stale
/// series cannot raise a "behind and not committing" alert for a shard another one reads.
fn forget_shard(config: &ConsumerConfig, restarts: &mut HashMap<String, Restart>, shard: &str) {
    config.health.forget(shard);
    restarts.remove(shard);
    metrics::gauge!("optout_millis_behind_latest", "shard_id" => shard.to_string()).set(0.0);
}

/// Restarts of a failing reader after which a batch run (`exit_when_idle`) gives up.
const GIVE_UP_ATTEMPTS: u32 = 5;
/// Longest wait for the stream consumer to be looked up again after a failed subscription.
const CONSUMER_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a task's panic said, for the log.
fn panic_message(e: JoinError) -> String {
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

/// A reader restarted (stall, lost and regained lease) before its first commit must not skip
/// what arrived since its first start: for a shard started at `latest` before, the start
/// becomes that first moment, less [`super::LATEST_SLACK`].
fn pin_latest(
    pins: &mut HashMap<String, chrono::DateTime<chrono::Utc>>,
    shard_id: &str,
    start: StartAt,
    now: chrono::DateTime<chrono::Utc>,
) -> StartAt {
    match start {
        StartAt::Initial(InitialPosition::Latest) => match pins.get(shard_id) {
            Some(&t) => StartAt::Initial(InitialPosition::AtTimestamp(t)),
            None => {
                pins.insert(shard_id.to_string(), now - super::LATEST_SLACK);
                start
            }
        },
        other => other,
    }
}

/// Where a shard starts: after its checkpoint, else the initial position. With `latest`, a
/// child of a shard we know (listed or checkpointed) starts at its beginning instead, so the
/// records written to it since the reshard are not skipped.
fn start_for(
    shard: &ShardInfo,
    committed: &HashMap<String, String>,
    shards: &[ShardInfo],
    config: &ConsumerConfig,
) -> StartAt {
    if let Some(seq) = committed.get(&shard.shard_id) {
        return StartAt::After(seq.clone());
    }
    let known_parent = shard
        .parents()
        .any(|p| committed.contains_key(p) || shards.iter().any(|s| s.shard_id == p));
    match config.initial_position {
        InitialPosition::Latest if known_parent => StartAt::Initial(InitialPosition::TrimHorizon),
        p => StartAt::Initial(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_pinned_to_the_first_start_for_restarts() {
        let mut pins = HashMap::new();
        let t0 = chrono::Utc::now();
        let first = pin_latest(
            &mut pins,
            "s0",
            StartAt::Initial(InitialPosition::Latest),
            t0,
        );
        assert!(matches!(first, StartAt::Initial(InitialPosition::Latest)));
        let later = t0 + chrono::Duration::seconds(60);
        let again = pin_latest(
            &mut pins,
            "s0",
            StartAt::Initial(InitialPosition::Latest),
            later,
        );
        match again {
            StartAt::Initial(InitialPosition::AtTimestamp(t)) => {
                assert_eq!(t, t0 - super::super::LATEST_SLACK)
            }
            other => panic!("restart not pinned: {other:?}"),
        }
        // A checkpoint always wins, and other positions are left alone.
        let after = pin_latest(&mut pins, "s0", StartAt::After("42".into()), later);
        assert!(matches!(after, StartAt::After(ref s) if s == "42"));
        let trim = pin_latest(
            &mut pins,
            "s1",
            StartAt::Initial(InitialPosition::TrimHorizon),
            later,
        );
        assert!(matches!(
            trim,
            StartAt::Initial(InitialPosition::TrimHorizon)
        ));
        assert!(!pins.contains_key("s1"));
    }
}
