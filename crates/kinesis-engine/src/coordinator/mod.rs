//! The coordinator: discovers shards, decides which ones this worker reads (all readable ones
//! alone; its fair share of leases when several workers share the stream), starts a reader per
//! shard in lineage order, restarts stalled readers, notices idleness, and shuts down cleanly.
//!
//! Each shard's life is one [`slots::ShardSlot`] with an explicit state (waiting, running,
//! backing off, finished); the coordinator moves slots between states as readers start and
//! end, checkpoints are loaded and leases change hands.

mod checkpoints;
mod failures;
mod slots;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use self::failures::panic_message;
use self::slots::{Running, Slots};
use super::leases::WorkerLeases;
use super::metrics::{Metrics, RestartReason};
use super::progress::{Progress, ShardState};
use super::reader::{ShardContext, ShardExit};
use super::shards::{ShardInfo, discover, first_listing, ready_to_read};
use super::{ConsumerConfig, Handles, KinesisError, LeaseStore, Processor, RunStats};

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
    let Some((shards, consumer_arn)) = connect(&client, &config, &stop).await? else {
        return Ok(RunStats::default());
    };
    info!(stream = %config.reading.stream, shards = shards.len(), worker_id = %config.leasing.worker_id, leases = leases.is_some(), fan_out = consumer_arn.is_some(), "Consuming stream.");
    let leasing = leases.map(|store| {
        let (reading, leasing) = (&config.reading, &config.leasing);
        WorkerLeases::new(
            store,
            &reading.stream,
            &leasing.worker_id,
            leasing.lease_duration,
        )
    });
    let metrics = Metrics::new(&config.metrics_prefix);
    handles.budget.report_to(&metrics);
    let (listings, _) = watch::channel(shards.clone());
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
        slots: Slots::default(),
        tasks: JoinSet::new(),
        discovery: Discovery {
            task: None,
            listings: Arc::new(listings),
            relist_now: Arc::new(Notify::new()),
        },
        refreshing_consumer: None,
        stats: RunStats::default(),
        fatal: None,
        stop,
    };
    c.run().await
}

/// The first shard listing and, with enhanced fan-out, the stream consumer's ARN; `None` if
/// `stop` is cancelled first.
async fn connect(
    client: &Client,
    config: &ConsumerConfig,
    stop: &CancellationToken,
) -> Result<Option<(Vec<ShardInfo>, Option<String>)>, KinesisError> {
    let reading = &config.reading;
    let Some(shards) = first_listing(client, reading, stop).await? else {
        return Ok(None);
    };
    let Some(name) = &reading.consumer_name else {
        return Ok(Some((shards, None)));
    };
    let arn = super::stream_consumer::ensure_consumer(client, &reading.stream, name, stop).await?;
    Ok(arn.map(|arn| (shards, Some(arn))))
}

/// The shard discovery task and how to reach it.
struct Discovery {
    /// The task, to start it again if it panics.
    task: Option<Id>,
    /// Where it publishes listings (kept here so a restarted task reuses it).
    listings: Arc<watch::Sender<Vec<ShardInfo>>>,
    /// Wakes it for an immediate listing.
    relist_now: Arc<Notify>,
}

struct Coordinator {
    /// The client, settings, processor and progress every reader shares.
    ctx: Arc<ShardContext>,
    /// The registered stream consumer when reading with enhanced fan-out.
    consumer_arn: Option<String>,
    /// This worker's leases when it shares the stream with others; `None` alone.
    leasing: Option<WorkerLeases>,
    /// The latest listing; readers start in its order.
    shards: Vec<ShardInfo>,
    /// Each shard's life: state, checkpoint, restart backoff, `latest` pin.
    slots: Slots,
    /// Every task this coordinator owns: the readers, discovery and the consumer lookup. A
    /// task that panics is seen here (its `JoinError`), so no shard is left unread by a crash.
    tasks: JoinSet<TaskEnd>,
    discovery: Discovery,
    /// Enhanced fan-out: the task looking the consumer up (and registering it again if it was
    /// deregistered); reader starts wait for its answer.
    refreshing_consumer: Option<Id>,
    stats: RunStats,
    fatal: Option<KinesisError>,
    stop: CancellationToken,
}

impl Coordinator {
    async fn run(mut self) -> Result<RunStats, KinesisError> {
        // Discovery runs in its own task: a hung ListShards must not hold up lease renewal,
        // the stall watchdog or shutdown.
        let mut listing = self.discovery.listings.subscribe();
        self.spawn_discovery_after(Duration::ZERO);
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
                    self.listed(shards);
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

    /// Starts the discovery task after `delay` (a pause, so a task that keeps panicking is
    /// not restarted in a hot loop).
    fn spawn_discovery_after(&mut self, delay: Duration) {
        let d = &self.discovery;
        let (listings, relist_now) = (d.listings.clone(), d.relist_now.clone());
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
        self.discovery.task = Some(handle.id());
    }

    /// Asks the discovery task for a fresh listing now.
    fn relist(&self) {
        self.discovery.relist_now.notify_one();
    }

    /// Discovery published a new listing.
    fn listed(&mut self, shards: Vec<ShardInfo>) {
        if shards != self.shards {
            self.shards = shards;
            if let Some(l) = &mut self.leasing {
                l.shards_changed();
            }
        }
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

    /// Starts a reader for every readable shard this worker should read and is not reading
    /// (nor backing off).
    fn start_readers(&mut self) {
        if self.refreshing_consumer.is_some() {
            return;
        }
        let now = Instant::now();
        let (finished, running) = (self.slots.finished(), self.slots.running());
        let ready: Vec<ShardInfo> = ready_to_read(&self.shards, &finished, &running)
            .into_iter()
            .filter(|s| self.is_mine(&s.shard_id) && self.slots.may_start(&s.shard_id, now))
            .cloned()
            .collect();
        for shard in ready {
            self.start_reader(&shard);
        }
        self.ctx
            .metrics
            .shards_reading(self.slots.readers().count());
    }

    /// Spawns `shard`'s reader, from where its slot says, under its lease if any.
    fn start_reader(&mut self, shard: &ShardInfo) {
        let initial = self.ctx.config.reading.initial_position;
        let start = self.slots.start_position(shard, &self.shards, initial);
        let id = shard.shard_id.clone();
        let token = self.leasing.as_ref().and_then(|l| l.token(&id));
        info!(shard_id = %id, start = ?start, lease_token = ?token, "Reading shard.");
        self.ctx.progress.set(&id, ShardState::Starting);
        let cancel = self.stop.child_token();
        let (ctx, arn, stop) = (self.ctx.clone(), self.consumer_arn.clone(), cancel.clone());
        let handle = self.tasks.spawn(async move {
            let result = match arn {
                Some(arn) => {
                    super::fanout::read_shard_fanout(ctx, id.clone(), start, token, arn, stop).await
                }
                None => super::poller::read_shard(ctx, id.clone(), start, token, stop).await,
            };
            TaskEnd::Reader(id, result)
        });
        self.slots.slot(&shard.shard_id).started(Running {
            cancel,
            started: Instant::now(),
            task: handle.id(),
        });
    }

    /// A reader returned: its slot moves on (finished, waiting, or backing off after an error).
    async fn on_done(&mut self, id: String, result: Result<ShardExit, KinesisError>) {
        match result {
            Ok(ShardExit::Finished) => {
                self.ctx.handles.health.forget(&id);
                self.slots.slot(&id).reader_finished();
                self.stats.shards_finished += 1;
                if let Some(leasing) = &mut self.leasing {
                    leasing.release_finished(&id).await;
                }
                // Its children may not be in our listing yet: look now, not in 30 s.
                self.relist();
            }
            Ok(ShardExit::LostOwnership) => {
                self.ctx.handles.health.forget(&id);
                self.slots.slot(&id).reader_stopped();
                if let Some(leasing) = &mut self.leasing {
                    leasing.lost(&id);
                }
            }
            Ok(ShardExit::Stopped) => {
                // Restarted for a stall, or its lease went: reload where it stands.
                self.slots.slot(&id).reader_stopped();
                if !self.is_mine(&id) {
                    self.forget_shard(&id);
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

    /// Drops what this worker reports of a shard it no longer reads (its lease went
    /// elsewhere): its failing spell, its restart backoff, and its lag, set to 0 so that this
    /// worker's stale series cannot raise a "behind and not committing" alert for a shard
    /// another one reads.
    fn forget_shard(&mut self, shard: &str) {
        self.ctx.handles.health.forget(shard);
        self.slots.slot(shard).forget_failures();
        self.ctx.metrics.shard(shard).millis_behind_latest(0);
    }

    /// With `exit_when_idle`: nothing new for that long, no shard unclaimed, and every shard
    /// of this worker read to its end or caught up.
    fn is_idle(&self) -> bool {
        let Some(idle) = self.ctx.config.reading.exit_when_idle else {
            return false;
        };
        let unclaimed = self.leasing.as_ref().map_or(0, WorkerLeases::unclaimed);
        if self.ctx.progress.quiet_for() < idle || unclaimed > 0 {
            return false;
        }
        let caught_up = |id: &str| self.ctx.progress.state(id) == Some(ShardState::CaughtUp);
        self.shards
            .iter()
            .map(|s| s.shard_id.as_str())
            .filter(|id| self.is_mine(id))
            .all(|id| self.slots.is_finished(id) || (self.slots.is_running(id) && caught_up(id)))
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
                    let shard = self.slots.shard_of_task(e.id()).unwrap_or_default();
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
