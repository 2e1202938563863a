//! Shutdown with a batch in hand: the engine is cancelled while its processor is committing
//! a batch (held at a gate), records keep arriving after the cancel, then the commit is let
//! through. The batch in hand is committed with its checkpoint, and nothing read after the
//! cancel is: the run ends after that one batch.

use crate::common::emulator as support;
use crate::common::memory::Memory;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kinesis_engine::{
    self as kinesis, ConsumerConfig, Handles, ProcessError, Processor, RecordBatch, ShardCheckpoint,
};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// [`Memory`] behind a gate: a batch with records waits for a permit before it commits, and
/// says when it is waiting.
struct Gated {
    memory: Arc<Memory>,
    gate: Semaphore,
    waiting: Notify,
}

#[async_trait]
impl Processor for Gated {
    async fn checkpoints(&self, stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
        self.memory.checkpoints(stream).await
    }

    async fn process(&self, batch: RecordBatch<'_>) -> Result<(), ProcessError> {
        if !batch.records.is_empty() {
            self.waiting.notify_one();
            self.gate.acquire().await.unwrap().forget();
        }
        self.memory.process(batch).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_batch_in_hand_is_committed_and_nothing_after_it() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "engine-shutdown", 1).await;
    let first: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("k{i}"), format!("first {i}").into_bytes()))
        .collect();
    let put = support::put_records(&client, &stream, &first)
        .await
        .unwrap();
    let gated = Arc::new(Gated {
        memory: Arc::new(Memory::default()),
        gate: Semaphore::new(0),
        waiting: Notify::new(),
    });
    let mut config = ConsumerConfig::new(&stream);
    config.reading.max_records_per_call = 100;
    config.reading.poll_interval = Duration::from_millis(50);
    config.reading.min_call_interval = Duration::from_millis(20);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(kinesis::run(
        client.clone(),
        config,
        Handles::default(),
        gated.clone(),
        None,
        shutdown.clone(),
    ));
    // The first batch is in hand: its commit waits at the gate.
    tokio::time::timeout(Duration::from_secs(30), gated.waiting.notified())
        .await
        .expect("a batch reached the processor");
    shutdown.cancel();
    let more: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("m{i}"), format!("after {i}").into_bytes()))
        .collect();
    support::put_records(&client, &stream, &more).await.unwrap();
    // Let every commit through from now on.
    gated.gate.add_permits(1_000);
    let stats = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run ends after the batch in hand")
        .unwrap()
        .unwrap();
    let delivered = gated.memory.delivered();
    let with_records: Vec<_> = delivered
        .iter()
        .filter(|d| !d.sequence_numbers.is_empty())
        .collect();
    assert_eq!(
        with_records.len(),
        1,
        "exactly the batch in hand: {delivered:?}"
    );
    assert_eq!(
        gated.memory.records(),
        put,
        "the batch in hand is the 50 records written before the cancel"
    );
    let (shard, last) = put.last().unwrap();
    assert_eq!(
        gated.memory.checkpoint(shard).as_deref(),
        Some(last.as_str())
    );
    assert_eq!(stats.records, 50);
}
