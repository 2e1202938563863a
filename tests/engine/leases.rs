//! Engines sharing one lease store learn from the store what the others did. With leases, a
//! worker reloads every checkpoint at each housekeeping round (`refresh`), so a parent shard
//! that another worker read to its end is finished for it too; without that reload it would
//! think the parent still readable and unclaimed forever (the leases it gains trigger a
//! reload of their own, so the scenario below gives it none).

use crate::common::emulator as support;
use crate::common::memory::Memory;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kinesis_engine::{
    self as kinesis, ConsumerConfig, Handles, LeaseStore, ProcessError, Processor, RecordBatch,
    ShardCheckpoint,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Worker a's processor: its commits wait at a gate the test opens, so that a cannot finish
/// its own shard (and exit as idle) before the test has set the scene.
struct Gated {
    memory: Arc<Memory>,
    gate: Arc<Semaphore>,
    /// Commits that reached the gate.
    waiting: AtomicUsize,
}

#[async_trait]
impl Processor for Gated {
    async fn checkpoints(&self, stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
        self.memory.checkpoints(stream).await
    }

    async fn process(&self, batch: RecordBatch<'_>) -> Result<(), ProcessError> {
        if !batch.records.is_empty() {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            drop(self.gate.acquire().await.expect("the gate stays open"));
        }
        self.memory.process(batch).await
    }
}

fn config(stream: &str, worker: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(stream);
    config.reading.poll_interval = Duration::from_millis(50);
    config.reading.min_call_interval = Duration::from_millis(20);
    config.reading.discovery_interval = Duration::from_millis(300);
    config.leasing.worker_id = worker.to_string();
    config.leasing.lease_duration = Duration::from_millis(900);
    config
}

/// Worker a holds shards S0, S1 and S2, worker b holds Q and the parent P of two children. b
/// reads P to its end and takes both children. a's view of P comes only from the checkpoints
/// it reloads each round: once it knows P is finished, nothing readable is unclaimed and a
/// exits as idle; if it did not reload, P would stay readable and free in its eyes (it never
/// wants it: it holds its fair share) and a would never be idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_finished_by_another_worker_is_finished_for_this_one() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "engine-refresh", 5).await;
    let shards = support::list_shards(&client, &stream).await;
    let [s0, s1, s2, p, q] = [0, 1, 2, 3, 4].map(|i| shards[i].shard_id().to_string());
    let mut all = Vec::new();
    for (shard, prefix) in [(&s0, "s0"), (&s1, "s1"), (&s2, "s2"), (&p, "p")] {
        let records: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| {
                (
                    format!("{prefix}-{i}"),
                    format!("{prefix} {i}").into_bytes(),
                )
            })
            .collect();
        all.extend(
            support::put_to_shard(&client, &stream, shard, &records)
                .await
                .unwrap(),
        );
    }
    let children = support::split_shard(&client, &stream, &p).await.unwrap();
    let memory = Arc::new(Memory::default());
    {
        // a holds S0, S1 and S2, b holds P and Q, all live for a minute. a is at its fair
        // share of the five readable shards (3), and stays at it once P's two children replace
        // P (six: 3), so it gains no lease, which would make it reload the checkpoints on its
        // own; b stays live through Q while P changes hands, so a never counts itself alone.
        let until = chrono::Utc::now().timestamp_millis() + 60_000;
        let mut leases = memory.leases.lock().unwrap();
        for (shard, worker) in [(&s0, "a"), (&s1, "a"), (&s2, "a"), (&p, "b"), (&q, "b")] {
            leases.insert(shard.clone(), (Some(worker.into()), 1, until));
        }
    }
    let leases: Arc<dyn LeaseStore> = memory.clone();
    let gate = Arc::new(Semaphore::new(0));
    let a_processor = Arc::new(Gated {
        memory: memory.clone(),
        gate: gate.clone(),
        waiting: AtomicUsize::new(0),
    });
    let mut a_config = config(&stream, "a");
    a_config.reading.exit_when_idle = Some(Duration::from_millis(800));
    let a = tokio::spawn(kinesis::run(
        client.clone(),
        a_config,
        Handles::default(),
        a_processor.clone(),
        Some(leases.clone()),
        CancellationToken::new(),
    ));
    // a has loaded the checkpoints (none finished) and waits at the gate with S0's records.
    support::wait_for(
        "a's first commit at the gate",
        Duration::from_secs(30),
        || async { a_processor.waiting.load(Ordering::SeqCst) > 0 },
    )
    .await
    .unwrap();
    let stop_b = CancellationToken::new();
    let b = tokio::spawn(kinesis::run(
        client.clone(),
        config(&stream, "b"),
        Handles::default(),
        memory.clone(),
        Some(leases),
        stop_b.clone(),
    ));
    support::wait_for(
        "b to finish P and hold both children",
        Duration::from_secs(30),
        || async {
            let owners = memory.owners();
            children
                .iter()
                .all(|c| owners.get(c).map(String::as_str) == Some("b"))
        },
    )
    .await
    .unwrap_or_else(|e| {
        let cps = memory.delivered();
        panic!(
            "{e}: leases {:?}, commits {cps:?}",
            memory.leases.lock().unwrap()
        )
    });
    assert!(!a.is_finished(), "a cannot be idle before its gate opens");
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    let a_stats = tokio::time::timeout(Duration::from_secs(30), a)
        .await
        .expect("a exits as idle: it knows P is finished, so nothing is unclaimed")
        .unwrap()
        .expect("a stops cleanly");
    stop_b.cancel();
    let b_stats = b.await.unwrap().expect("b stops cleanly");
    assert_eq!(a_stats.records, 60, "a read S0, S1 and S2");
    assert_eq!(b_stats.records, 20, "b read P");
    memory.assert_exactly_once(&all);
}
