//! The in-flight budget's accounting, driven in process (`kinesis::run` against the in-process
//! emulator) with a processor that checks the budget at every commit: every batch it is handed
//! is counted in the budget while it is held, the budget is never exceeded, readers had to
//! share it (they waited), and everything is given back at the end. Memory is measured by
//! `scripts/bench-e2e.sh`; this test asserts the bookkeeping that bounds it, not time.

use crate::common::emulator as support;
use crate::common::memory::Memory;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kinesis_engine::{
    self as kinesis, Budget, ConsumerConfig, Handles, ProcessError, Processor, RecordBatch,
    ShardCheckpoint, record_cost,
};
use tokio_util::sync::CancellationToken;

/// What the processor saw at one commit.
struct Seen {
    /// The batch's own cost.
    cost: u64,
    /// The budget in use while the batch was being committed.
    used: u64,
}

/// Records every batch's sequence numbers and what the budget said at that moment.
struct Checker {
    budget: Budget,
    commits: Mutex<Vec<Seen>>,
    state: Memory,
}

#[async_trait]
impl Processor for Checker {
    async fn checkpoints(&self, stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
        self.state.checkpoints(stream).await
    }

    async fn process(&self, batch: RecordBatch<'_>) -> Result<(), ProcessError> {
        let cost: u64 = batch
            .records
            .iter()
            .map(|r| {
                record_cost(r.data.len(), r.sequence_number.len(), r.partition_key.len()) as u64
            })
            .sum();
        let used = self.budget.stats().used;
        // Hold the batch a little, as a real commit does, so readers overlap.
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.commits.lock().unwrap().push(Seen { cost, used });
        self.state.process(batch).await
    }
}

/// Drains `per_shard` records of `size` bytes on each of `shards` shards under a budget of
/// `budget_bytes`, and checks the accounting. `consumer` reads with enhanced fan-out.
async fn drain(
    shards: i32,
    per_shard: usize,
    size: usize,
    budget_bytes: u64,
    consumer: Option<&str>,
) {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "budget", shards).await;
    let total = shards as usize * per_shard;
    // Equal sizes (keys of equal length) so that a batch's cost is exactly predictable.
    let records: Vec<(String, Vec<u8>)> = (0..total)
        .map(|i| (format!("key-{i:08}"), vec![b'a' + (i % 26) as u8; size]))
        .collect();
    let put = support::put_records(&client, &stream, &records)
        .await
        .unwrap();
    let budget = Budget::new(budget_bytes);
    let checker = Arc::new(Checker {
        budget: budget.clone(),
        commits: Mutex::new(Vec::new()),
        state: Memory::default(),
    });
    let mut config = ConsumerConfig::new(stream.clone());
    config.reading.poll_interval = Duration::from_millis(50);
    config.reading.min_call_interval = Duration::from_millis(1);
    config.reading.exit_when_idle = Some(Duration::from_secs(1));
    config.reading.consumer_name = consumer.map(str::to_string);
    let handles = Handles {
        budget: budget.clone(),
        ..Handles::default()
    };
    let stats = tokio::time::timeout(
        Duration::from_secs(120),
        kinesis::run(
            client,
            config,
            handles,
            checker.clone(),
            None,
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the run ends once idle")
    .expect("the run succeeds");
    assert_eq!(stats.records, total as u64);

    // Every record committed exactly once, counted over every commit.
    checker.state.assert_exactly_once(&put);

    let commits = checker.commits.lock().unwrap();
    let s = budget.stats();
    let with_records: Vec<&Seen> = commits.iter().filter(|c| c.cost > 0).collect();
    assert!(!with_records.is_empty());
    for c in &with_records {
        // The batch in hand is part of what the budget counts while it commits.
        assert!(
            c.used >= c.cost,
            "batch of {} bytes committed with only {} in use",
            c.cost,
            c.used
        );
    }
    // Nothing was held beyond the budget but what records larger than estimated forced in.
    assert!(s.peak <= s.capacity + s.overdraft, "{s:?}");
    // All given back, every reader gone.
    assert_eq!((s.used, s.readers), (0, 0), "{s:?}");
    let biggest = with_records.iter().map(|c| c.cost).max().unwrap();
    let fair = budget_bytes / shards as u64;
    // An overdraft is at most the one response or event each reader has in hand.
    assert!(s.peak <= s.capacity + shards as u64 * biggest, "{s:?}");
    if consumer.is_none() {
        // Polling readers size each call from their estimate: with records of one size, it
        // never falls below the real size, so the budget is never overdrawn.
        assert_eq!(s.overdraft, 0, "{s:?}");
        assert!(s.peak <= s.capacity, "{s:?}");
        // Readers that start before the others have joined see a larger share for their
        // first call; no batch ever outgrows the budget, and once all have joined (most
        // batches) none outgrows its share.
        assert!(
            biggest <= budget_bytes,
            "batch of {biggest} bytes over the budget"
        );
        let mut costs: Vec<u64> = with_records.iter().map(|c| c.cost).collect();
        costs.sort_unstable();
        let median = costs[costs.len() / 2];
        let one = record_cost(size, 56, 12) as u64;
        assert!(
            median <= fair.max(one),
            "median batch of {median} bytes over the share of {fair}"
        );
        // The budget was tight enough that readers had to take turns.
        assert!(s.waits > 0, "{s:?}");
    }
    eprintln!(
        "{shards} shards: {} commits, biggest batch {biggest} bytes, {s:?}",
        with_records.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_share_a_small_budget_and_every_batch_is_counted() {
    drain(4, 300, 700, 256 << 10, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_shards_share_a_small_budget_and_every_batch_is_counted() {
    drain(64, 40, 700, 256 << 10, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_events_are_counted_and_given_back() {
    drain(4, 200, 700, 256 << 10, Some("optout-budget-test")).await;
}
