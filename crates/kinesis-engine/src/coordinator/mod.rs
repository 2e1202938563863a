//! The coordinator: discovers shards, decides which ones this worker reads (all readable ones
//! alone; its fair share of leases when several workers share the stream), starts a reader per
//! shard in lineage order, restarts stalled readers, notices idleness, and shuts down cleanly.

mod checkpoints;
mod failures;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::leases::WorkerLeases;
use super::metrics::{Metrics, RestartReason};
use super::progress::{Progress, ShardState};
use super::reader::{ShardContext, ShardExit, start_for};
use super::restarts::{Restarts, panic_message};
use super::shards::{ShardInfo, discover, first_listing, ready_to_read};
use super::{ConsumerConfig, Handles, KinesisError, LeaseStore, Processor, RunStats};

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

/// Consumes `config.reading.stream` until `shutdown` is cancelled (or, with `exit_when_idle`,
/// until everything is read), handing every batch to `processor`. The engine reports shard
/// health and holds records within the budget of `handles`.
///
/// With `leases`, several workers share the stream: this one reads only the shards whose
/// lease it holds, and every commit is fenced by the lease's token. On shutdown the readers
/// stop fetching, finish and commit the batch in hand, and the leases are released.
pub async fn run(
    client: Client,
    config: ConsumerConfig,
    handles: Handles,
    processor: Arc<dyn Processor>,
    leases: Option<Arc<dyn LeaseStore>>,
    shutdown: CancellationToken,
) -> Result<RunStats, KinesisError> {
    let stop = shutdown.child_token();
    let Some(shards) = first_listing(&client, &config.reading, &stop).await? else {
        return Ok(RunStats::default());
    };
    let reading = &config.reading;
    let consumer_arn = match &reading.consumer_name {
        Some(name) => {
            match super::stream_consumer::ensure_consumer(&client, &reading.stream, name, &stop)
                .await?
            {
                Some(arn) => Some(arn),
                None => return Ok(RunStats::default()),
            }
        }
        None => None,
    };
    info!(stream = %reading.stream, shards = shards.len(), worker_id = %config.leasing.worker_id, leases = leases.is_some(), fan_out = consumer_arn.is_some(), "Consuming stream.");
    let leasing = leases.map(|store| {
        WorkerLeases::new(
            store,
            &config.reading.stream,
            &config.leasing.worker_id,
            config.leasing.lease_duration,
        )
    });
    let restarts = Restarts::new(config.restarts.backoff);
    let metrics = Metrics::new(&config.metrics_prefix);
    handles.budget.report_to(&metrics);
    let c = Coordinator {
        ctx: Arc::new(ShardContext {
            client,
            config,
            handles,
            metrics,
            processor,
            progress: Arc::new(Progress::new()),
        }),
        consumer_arn,
        leasing,
        shards,
        finished: HashSet::new(),
        committed: HashMap::new(),
        running: HashMap::new(),
        tasks: JoinSet::new(),
        task_shards: HashMap::new(),
        discovery: None,
        listings: None,
        restarts,
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
    /// The client, settings, processor and progress every reader shares.
    ctx: Arc<ShardContext>,
    /// The registered stream consumer when reading with enhanced fan-out.
    consumer_arn: Option<String>,
    /// This worker's leases when it shares the stream with others; `None` alone.
    leasing: Option<WorkerLeases>,
    shards: Vec<ShardInfo>,
    /// Shards read to their end (by anyone), from the checkpoints.
    finished: HashSet<String>,
    /// Last committed sequence number per shard, from the checkpoints.
    committed: HashMap<String, String>,
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
    restarts: Restarts,
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
                        if let Some(l) = &mut self.leasing {
                            l.shards_changed();
                        }
                    }
                }
                _ = housekeeping.tick() => {
                    self.restart_stalled();
                    self.report_health();
                    if !self.refresh().await { break; }
                }
                _ = idle_check.tick(), if self.ctx.config.reading.exit_when_idle.is_some() => {
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
        let (client, reading, stop) = (
            self.ctx.client.clone(),
            self.ctx.config.reading.clone(),
            self.stop.clone(),
        );
        let handle = self.tasks.spawn(async move {
            sleep(delay).await;
            discover(client, reading, listings, relist_now, stop).await;
            TaskEnd::Discovery
        });
        self.discovery = Some(handle.id());
    }

    fn housekeeping_period(&self) -> Duration {
        self.leasing
            .as_ref()
            .map_or(Duration::from_secs(1), WorkerLeases::period)
    }

    /// Whether this worker should read `shard`: always alone, else when it holds the lease.
    fn is_mine(&self, shard: &str) -> bool {
        self.leasing.as_ref().is_none_or(|l| l.holds(shard))
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
            .filter(|s| self.is_mine(&s.shard_id))
            .filter(|s| self.restarts.may_start(&s.shard_id, now))
            .cloned()
            .collect();
        for shard in ready {
            let start = start_for(
                &shard,
                &self.committed,
                &self.shards,
                self.ctx.config.reading.initial_position,
                &mut self.latest_pins,
            );
            let token = self.leasing.as_ref().and_then(|l| l.token(&shard.shard_id));
            info!(shard_id = %shard.shard_id, start = ?start, lease_token = ?token, "Reading shard.");
            self.ctx.progress.set(&shard.shard_id, ShardState::Starting);
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
        self.ctx.metrics.shards_reading(self.running.len());
    }

    async fn on_done(&mut self, id: String, result: Result<ShardExit, KinesisError>) {
        self.running.remove(&id);
        match result {
            Ok(ShardExit::Finished) => {
                self.ctx.handles.health.forget(&id);
                self.restarts.forget(&id);
                self.finished.insert(id.clone());
                self.stats.shards_finished += 1;
                if let Some(leasing) = &mut self.leasing {
                    leasing.release_finished(&id).await;
                }
                // Its children may not be in our listing yet: look now, not in 30 s.
                self.relist();
            }
            Ok(ShardExit::LostOwnership) => {
                self.ctx.handles.health.forget(&id);
                if let Some(leasing) = &mut self.leasing {
                    leasing.lost(&id);
                }
            }
            Ok(ShardExit::Stopped) => {
                // Restarted for a stall, or its lease went: reload where it stands.
                if !self.is_mine(&id) {
                    forget_shard(&self.ctx, &mut self.restarts, &id);
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
                self.reader_failed(id, RestartReason::Error, e.to_string())
                    .await
            }
        }
    }

    fn is_idle(&self) -> bool {
        let Some(idle) = self.ctx.config.reading.exit_when_idle else {
            return false;
        };
        let unclaimed = self.leasing.as_ref().map_or(0, WorkerLeases::unclaimed);
        if self.ctx.progress.quiet_for() < idle || unclaimed > 0 {
            return false;
        }
        self.shards
            .iter()
            .filter(|s| self.is_mine(&s.shard_id))
            .all(|s| {
                self.finished.contains(&s.shard_id)
                    || (self.running.contains_key(&s.shard_id)
                        && self.ctx.progress.state(&s.shard_id) == Some(ShardState::CaughtUp))
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
        if let Some(leasing) = &mut self.leasing {
            leasing.release_all().await;
        }
        self.stats.records = self.ctx.progress.records();
        match self.fatal {
            Some(e) => Err(e),
            None => Ok(self.stats),
        }
    }
}

/// Drops what this worker reports of a shard it no longer reads (its lease went elsewhere):
/// its failing spell, its restart backoff, and its lag, set to 0 so that this worker's stale
/// series cannot raise a "behind and not committing" alert for a shard another one reads.
fn forget_shard(ctx: &ShardContext, restarts: &mut Restarts, shard: &str) {
    ctx.handles.health.forget(shard);
    restarts.forget(shard);
    ctx.metrics.shard(shard).millis_behind_latest(0);
}
