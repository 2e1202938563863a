//! Failover mid-commit, in the engine on its own: a commit that lands but whose answer is lost,
//! and a store that loses its last commits under a running reader (an asynchronous replica
//! promoted without them). The reader must read its checkpoint from the store again after a
//! failed commit, and a compare-and-set on the checkpoint must refuse the commit that would
//! build on a checkpoint the store no longer holds. Asserted on every commit the in-memory
//! store accepted, duplicates kept: each record applied exactly once, none skipped.

use crate::common::emulator as support;
use crate::common::memory::Memory;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kinesis_engine::{self as kinesis, ConsumerConfig, Handles};
use tokio_util::sync::CancellationToken;

fn config(stream: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(stream);
    let reading = &mut config.reading;
    reading.max_records_per_call = 50;
    reading.poll_interval = Duration::from_millis(50);
    reading.min_call_interval = Duration::from_millis(20);
    reading.backoff.base = Duration::from_millis(20);
    reading.exit_when_idle = Some(Duration::from_millis(800));
    config
}

fn records(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}-{i}"),
                format!("{prefix} {i}").into_bytes(),
            )
        })
        .collect()
}

/// Commits land but their answers are lost, three times: the reader asks the store where the
/// shard stands, finds the batch there, and goes on after it instead of applying it again.
/// Run against a store that trusts the engine (no compare-and-set: the reload alone must
/// prevent the duplicate) and against one that checks it.
#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_not_applied_again() {
    for memory in [Memory::without_compare_and_set(), Memory::default()] {
        let emu = support::ferrokinesis().await;
        let client = emu.client().await;
        let stream = support::new_stream(&client, "engine-lost-ack", 2).await;
        let put = support::put_records(&client, &stream, &records("a", 400))
            .await
            .unwrap();
        let memory = Arc::new(memory);
        memory.lose_next_acks(3);
        let stats = tokio::time::timeout(
            Duration::from_secs(60),
            kinesis::run(
                client.clone(),
                config(&stream),
                Handles::default(),
                memory.clone(),
                None,
                CancellationToken::new(),
            ),
        )
        .await
        .expect("the run ends once idle")
        .expect("the run succeeds");
        assert_eq!(memory.acks_still_to_lose(), 0, "three answers were lost");
        memory.assert_exactly_once(&put);
        assert_eq!(stats.records, 400, "the landed batches count once");
        // One read before the start, one after each lost answer at least.
        assert!(memory.checkpoint_reads.load(Ordering::SeqCst) >= 4);
    }
}

/// The store loses the last two commits of a shard while its reader waits at the tip (no
/// error tells it). The reader's next commit is refused by the compare-and-set, it reloads
/// the checkpoint, reads again from there, and every record ends up applied exactly once:
/// the lost ones again, the new ones once. On both transports.
#[tokio::test]
async fn commits_lost_underneath_a_running_reader_are_read_again() {
    for consumer in [None, Some("engine-rollback")] {
        let emu = support::ferrokinesis().await;
        let client = emu.client().await;
        let stream = support::new_stream(&client, "engine-rollback", 1).await;
        let shard = support::list_shards(&client, &stream).await[0]
            .shard_id()
            .to_string();
        let memory = Arc::new(Memory::default());
        let mut config = config(&stream);
        config.reading.exit_when_idle = None;
        config.reading.consumer_name = consumer.map(str::to_string);
        let stop = CancellationToken::new();
        let engine = tokio::spawn(kinesis::run(
            client.clone(),
            config,
            Handles::default(),
            memory.clone(),
            None,
            stop.clone(),
        ));
        // Three puts, so that the shard is committed in several batches.
        let mut all = Vec::new();
        for part in ["a", "b", "c"] {
            all.extend(
                support::put_records(&client, &stream, &records(part, 40))
                    .await
                    .unwrap(),
            );
            let n = all.len();
            support::wait_for("the records so far", Duration::from_secs(30), || async {
                memory.records().len() >= n
            })
            .await
            .unwrap();
        }
        let commits = memory.delivered().len();
        let lost = memory.roll_back(&shard, 2);
        assert!(
            !lost.is_empty() && commits >= 3,
            "{commits} commits, lost {lost:?}"
        );
        // Only new records make the reader commit again.
        all.extend(
            support::put_records(&client, &stream, &records("d", 40))
                .await
                .unwrap(),
        );
        let n = all.len();
        let waited = support::wait_for("everything again", Duration::from_secs(30), || async {
            memory.records().len() >= n
        })
        .await;
        stop.cancel();
        engine.await.unwrap().expect("the engine stops cleanly");
        waited.unwrap_or_else(|e| panic!("{consumer:?}: {e}: {:?}", memory.delivered()));
        memory.assert_exactly_once(&all);
        let last = all.last().map(|(_, s)| s.clone());
        assert_eq!(memory.checkpoint(&shard), last, "{consumer:?}");
        eprintln!(
            "{consumer:?}: {} records lost underneath and read again",
            lost.len()
        );
    }
}
