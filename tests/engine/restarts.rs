//! The engine owns its reader tasks: a reader whose processor panics or fails is restarted
//! from its checkpoint with backoff, and every record still lands exactly once. Driven in
//! process (`kinesis::run` against the in-process emulator) with a recording processor that
//! knows nothing of Twilio, and asserted on what it recorded, not on log text.

use crate::common::emulator;
use crate::common::memory::{Memory, seq_key};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kinesis_engine::{
    self as kinesis, ConsumerConfig, Handles, ProcessError, Processor, RecordBatch, ShardCheckpoint,
};
use tokio_util::sync::CancellationToken;

/// What goes wrong on the processor's `fail_on`-th call (counted from 1), once.
#[derive(Clone, Copy)]
enum Fault {
    Panic,
    Fatal,
}

/// Commits into memory (every commit kept, duplicates included), after failing once.
struct Recorder {
    calls: AtomicUsize,
    failed: std::sync::atomic::AtomicBool,
    fail_on: usize,
    fault: Fault,
    state: Memory,
}

#[async_trait]
impl Processor for Recorder {
    async fn checkpoints(&self, stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
        self.state.checkpoints(stream).await
    }

    async fn process(&self, batch: RecordBatch<'_>) -> Result<(), ProcessError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call >= self.fail_on
            && !batch.records.is_empty()
            && !self.failed.swap(true, Ordering::SeqCst)
        {
            match self.fault {
                Fault::Panic => panic!("processor bug on call {call}"),
                Fault::Fatal => return Err(ProcessError::Fatal("schema mismatch".into())),
            }
        }
        self.state.process(batch).await
    }
}

async fn reader_is_restarted_after(fault: Fault) {
    let emu = emulator::ferrokinesis().await;
    let client = emu.client().await;
    let stream = emulator::new_stream(&client, "restart", 2).await;
    let records: Vec<(String, Vec<u8>)> = (0..600)
        .map(|i| (format!("key-{i}"), format!("record {i}").into_bytes()))
        .collect();
    let put = emulator::put_records(&client, &stream, &records)
        .await
        .unwrap();
    let recorder = Arc::new(Recorder {
        calls: AtomicUsize::new(0),
        failed: Default::default(),
        fail_on: 3,
        fault,
        state: Memory::default(),
    });
    let mut config = ConsumerConfig::new(stream.clone());
    config.reading.max_records_per_call = 50;
    config.reading.poll_interval = Duration::from_millis(50);
    config.reading.exit_when_idle = Some(Duration::from_secs(1));
    config.restarts.backoff.base = Duration::from_millis(100);
    config.restarts.failing_after = Duration::ZERO;
    let handles = Handles::default();
    let health = handles.health.clone();
    let stats = tokio::time::timeout(
        Duration::from_secs(60),
        kinesis::run(
            client.clone(),
            config,
            handles,
            recorder.clone(),
            None,
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the run ends once idle")
    .expect("the run succeeds after the restart");
    // Each record applied exactly once, counted over every commit (a batch committed again
    // after the restart would show twice), and each shard's checkpoint at its last record.
    recorder.state.assert_exactly_once(&put);
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let last = put
            .iter()
            .filter(|(s, _)| s == shard)
            .map(|(_, q)| q.as_str())
            .max_by_key(|q| seq_key(q));
        assert_eq!(recorder.state.checkpoint(shard).as_deref(), last, "{shard}");
    }
    assert_eq!(stats.records, 600);
    assert!(
        health.failing(Duration::ZERO).is_empty(),
        "the restarted shard is healthy again"
    );
    assert!(recorder.calls.load(Ordering::SeqCst) > 12, "batches of 50");
    assert!(
        recorder.failed.load(Ordering::SeqCst),
        "the fault was injected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_reader_is_restarted_from_its_checkpoint() {
    reader_is_restarted_after(Fault::Panic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_reader_is_restarted_from_its_checkpoint() {
    reader_is_restarted_after(Fault::Fatal).await;
}

/// A batch run (`exit_when_idle`) does not retry a shard that fails every time forever: it
/// gives up after a few restarts with an error naming the shard.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_run_gives_up_on_a_shard_that_always_fails() {
    struct AlwaysFails;
    #[async_trait]
    impl Processor for AlwaysFails {
        async fn checkpoints(&self, _: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
            Ok(Vec::new())
        }
        async fn process(&self, b: RecordBatch<'_>) -> Result<(), ProcessError> {
            if b.records.is_empty() {
                return Ok(());
            }
            Err(ProcessError::Fatal("read-only database".into()))
        }
    }
    let emu = emulator::ferrokinesis().await;
    let client = emu.client().await;
    let stream = emulator::new_stream(&client, "giveup", 1).await;
    emulator::put_records(&client, &stream, &[("k".into(), b"x".to_vec())])
        .await
        .unwrap();
    let mut config = ConsumerConfig::new(stream.clone());
    config.reading.exit_when_idle = Some(Duration::from_secs(1));
    config.restarts.backoff.base = Duration::from_millis(10);
    config.restarts.backoff.max = Duration::from_millis(50);
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        kinesis::run(
            client,
            config,
            Handles::default(),
            Arc::new(AlwaysFails),
            None,
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the run gives up")
    .expect_err("a shard that always fails fails the batch run");
    let msg = err.to_string();
    assert!(
        msg.contains("shard shardId-000000000000 kept failing (5 attempts)")
            && msg.contains("read-only database"),
        "{msg}"
    );
}
