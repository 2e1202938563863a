//! The coordinator: discovers shards, starts a poller per readable shard in lineage order,
//! notices when everything is idle, and shuts the pollers down cleanly.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::backoff::{Backoff, ErrorClass};
use super::poller::{ShardContext, ShardExit, StartAt, read_shard};
use super::shards::{ShardInfo, list_shards, ready_to_read};
use super::{ConsumerConfig, InitialPosition, KinesisError, Processor, RunStats};

/// What a shard task last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Started, no answer yet.
    Starting,
    /// More records are waiting.
    Behind,
    /// At the tip of an open shard.
    CaughtUp,
    /// Read to its end.
    Finished,
}

/// Shared progress of all shard tasks, for the idle exit and the final summary.
#[derive(Debug)]
pub struct Progress {
    inner: Mutex<ProgressInner>,
}

#[derive(Debug)]
struct ProgressInner {
    states: HashMap<String, ShardState>,
    last_records_at: Instant,
    records: u64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            inner: Mutex::new(ProgressInner {
                states: HashMap::new(),
                last_records_at: Instant::now(),
                records: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a shard's new state.
    pub fn set(&self, shard_id: &str, state: ShardState) {
        self.lock().states.insert(shard_id.to_string(), state);
    }

    /// Counts records made durable.
    pub fn record(&self, _shard_id: &str, n: u64) {
        if n > 0 {
            let mut p = self.lock();
            p.records += n;
            p.last_records_at = Instant::now();
        }
    }

    /// True when every listed shard is finished or caught up and no records came for `idle`.
    fn is_idle(&self, shards: &[ShardInfo], finished: &HashSet<String>, idle: Duration) -> bool {
        let p = self.lock();
        p.last_records_at.elapsed() >= idle
            && shards.iter().all(|s| {
                finished.contains(&s.shard_id)
                    || p.states.get(&s.shard_id) == Some(&ShardState::CaughtUp)
            })
    }

    fn records(&self) -> u64 {
        self.lock().records
    }
}

/// Consumes `config.stream` until `shutdown` is cancelled (or, with `exit_when_idle`, until
/// everything is read), handing every batch to `processor`.
///
/// On shutdown the pollers stop fetching, finish and commit the batch in hand, and exit; this
/// function returns once all of them have.
pub async fn run(
    client: Client,
    config: ConsumerConfig,
    processor: Arc<dyn Processor>,
    shutdown: CancellationToken,
) -> Result<RunStats, KinesisError> {
    let stop = shutdown.child_token();
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_max);
    let Some(checkpoints) = load_checkpoints(&*processor, &config, &mut backoff, &stop).await?
    else {
        return Ok(RunStats::default());
    };
    let mut finished: HashSet<String> = checkpoints
        .iter()
        .filter(|c| c.finished)
        .map(|c| c.shard_id.clone())
        .collect();
    let committed: HashMap<String, String> = checkpoints
        .into_iter()
        .filter_map(|c| c.sequence_number.map(|s| (c.shard_id, s)))
        .collect();
    let Some(mut shards) = first_listing(&client, &config, &stop).await? else {
        return Ok(RunStats::default());
    };
    info!(stream = %config.stream, shards = shards.len(), finished = finished.len(), "Consuming stream.");

    let progress = Arc::new(Progress::new());
    let ctx = Arc::new(ShardContext {
        client: client.clone(),
        config: config.clone(),
        processor,
        progress: progress.clone(),
    });
    let tracker = TaskTracker::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut running: HashSet<String> = HashSet::new();
    let mut stats = RunStats::default();
    let mut fatal: Option<KinesisError> = None;
    let mut discovery = interval(config.discovery_interval);
    discovery.set_missed_tick_behavior(MissedTickBehavior::Delay);
    discovery.tick().await; // the first tick is immediate; we just listed
    let mut idle_check = interval(Duration::from_millis(100));

    loop {
        for shard in ready_to_read(&shards, &finished, &running) {
            let start = start_for(shard, &committed, &shards, &config);
            info!(shard_id = %shard.shard_id, start = ?start, "Reading shard.");
            running.insert(shard.shard_id.clone());
            progress.set(&shard.shard_id, ShardState::Starting);
            let (ctx, id, done, cancel) = (
                ctx.clone(),
                shard.shard_id.clone(),
                done_tx.clone(),
                stop.clone(),
            );
            tracker.spawn(async move {
                let result = read_shard(ctx, id.clone(), start, cancel).await;
                let _ = done.send((id, result));
            });
        }
        metrics::gauge!("optout_shards_reading").set(running.len() as f64);
        tokio::select! {
            _ = stop.cancelled() => break,
            Some((id, result)) = done_rx.recv() => {
                running.remove(&id);
                match result {
                    Ok(ShardExit::Finished) => {
                        finished.insert(id);
                        stats.shards_finished += 1;
                        // Its children may not be in our listing yet: look now, not in 30 s.
                        if let Some(s) = relist(&client, &config.stream).await { shards = s; }
                    }
                    Ok(ShardExit::Stopped | ShardExit::LostOwnership) => {}
                    Err(e) => {
                        error!(shard_id = %id, error = %e, "Shard reader failed; stopping.");
                        fatal.get_or_insert(e);
                        stop.cancel();
                    }
                }
            }
            _ = discovery.tick() => {
                if let Some(s) = relist(&client, &config.stream).await { shards = s; }
            }
            _ = idle_check.tick(), if config.exit_when_idle.is_some() => {
                let idle = config.exit_when_idle.unwrap_or_default();
                if progress.is_idle(&shards, &finished, idle) {
                    info!(idle_secs = idle.as_secs_f64(), "Every shard is read to its end or caught up; exiting.");
                    stop.cancel();
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    drop(done_tx);
    while let Some((id, result)) = done_rx.recv().await {
        match result {
            Ok(ShardExit::Finished) => stats.shards_finished += 1,
            Err(e) => {
                error!(shard_id = %id, error = %e, "Shard reader failed.");
                fatal.get_or_insert(e);
            }
            Ok(_) => {}
        }
    }
    stats.records = progress.records();
    match fatal {
        Some(e) => Err(e),
        None => Ok(stats),
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

async fn load_checkpoints(
    processor: &dyn Processor,
    config: &ConsumerConfig,
    backoff: &mut Backoff,
    stop: &CancellationToken,
) -> Result<Option<Vec<super::ShardCheckpoint>>, KinesisError> {
    loop {
        match processor.checkpoints(&config.stream).await {
            Ok(c) => return Ok(Some(c)),
            Err(e) if e.retryable => {
                warn!(error = %e, "Could not read checkpoints; retrying.");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(None),
                    _ = sleep(backoff.next_delay()) => {}
                }
            }
            Err(e) => {
                return Err(KinesisError::Process {
                    shard_id: "-".into(),
                    source: e,
                });
            }
        }
    }
}

async fn first_listing(
    client: &Client,
    config: &ConsumerConfig,
    stop: &CancellationToken,
) -> Result<Option<Vec<ShardInfo>>, KinesisError> {
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_max);
    loop {
        match list_shards(client, &config.stream).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.class.is_retryable() => {
                warn!(error = %e.message, attempt = backoff.attempts() + 1, "Could not list shards; retrying.");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(None),
                    _ = sleep(backoff.next_delay()) => {}
                }
            }
            Err(e) => return Err(e.into_kinesis_error(&config.stream)),
        }
    }
}

/// A fresh listing, or `None` (logged) if this attempt failed; the next tick tries again.
async fn relist(client: &Client, stream: &str) -> Option<Vec<ShardInfo>> {
    match list_shards(client, stream).await {
        Ok(s) => Some(s),
        Err(e) => {
            let level_warn = e.class != ErrorClass::Throttled;
            if level_warn {
                warn!(error = %e.message, "Shard discovery failed; keeping the previous list.");
            }
            None
        }
    }
}
