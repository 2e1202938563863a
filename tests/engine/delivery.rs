//! The consumer engine on its own: `kinesis::run` against the in-process emulator, with a
//! processor and a lease store that record into memory and know nothing of Twilio or SQL.
//! Everything is asserted on what they recorded and on the returned stats, never on log text:
//! each record delivered once and in order, resume after a stop, children after their
//! parents, a paced or slowly committing reader never taken for idle, shards handed over between two engines that
//! share one lease store, and the stall
//! watchdog restarting a reader whose calls hang.

use crate::common::emulator as support;
use crate::common::memory::{Memory, seq_key, sorted};
use crate::common::proxy;

use std::sync::Arc;
use std::time::Duration;

use kinesis_engine::{self as kinesis, ConsumerConfig, Handles, LeaseStore, RunStats};
use tokio_util::sync::CancellationToken;

fn config(stream: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(stream);
    let reading = &mut config.reading;
    reading.max_records_per_call = 100;
    reading.poll_interval = Duration::from_millis(50);
    reading.min_call_interval = Duration::from_millis(20);
    reading.discovery_interval = Duration::from_millis(300);
    reading.exit_when_idle = Some(Duration::from_millis(800));
    config
}

async fn run_until_idle(
    client: &aws_sdk_kinesis::Client,
    config: ConsumerConfig,
    memory: &Arc<Memory>,
) -> RunStats {
    tokio::time::timeout(
        Duration::from_secs(60),
        kinesis::run(
            client.clone(),
            config,
            Handles::default(),
            memory.clone(),
            None,
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the run ends once idle")
    .expect("the run succeeds")
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

/// A new stream of `shards` with `n` records of `prefix`, drained once: each record reaches
/// the processor exactly once, and the engine read every answer itself (none through the
/// SDK's deserializer, its fallback for shapes it does not know). Returns the stream and what
/// the processor recorded.
async fn drain_new_stream(
    client: &aws_sdk_kinesis::Client,
    prefix: &str,
    shards: i32,
    n: usize,
) -> (String, Arc<Memory>) {
    let stream = support::new_stream(client, &format!("engine-{prefix}"), shards).await;
    let written = support::put_records(client, &stream, &records(prefix, n))
        .await
        .unwrap();
    let memory = Arc::new(Memory::default());
    let stats = run_until_idle(client, config(&stream), &memory).await;
    assert_eq!(stats.records, n as u64);
    memory.assert_exactly_once(&written);
    assert_eq!(kinesis::answers_read_by_sdk(), 0);
    (stream, memory)
}

/// kinesis-local (another server, in Node.js) answers `GetRecords` in a shape the engine's own
/// reader takes too.
#[tokio::test]
async fn kinesis_local_answers_are_read_by_the_engine_not_the_sdk() {
    let emu = support::kinesis_local()
        .await
        .expect("kinesis-local starts");
    drain_new_stream(&emu.client().await, "k", 2, 60).await;
}

/// Every record reaches the processor exactly once, each shard's in sequence order; a second
/// run starts after the stored checkpoints and delivers only what was written since.
#[tokio::test]
async fn records_are_delivered_once_in_order_and_a_new_run_resumes_after_the_checkpoint() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let (stream, memory) = drain_new_stream(&client, "a", 3, 450).await;
    let got = memory.records();
    for shard in got.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>() {
        let seqs: Vec<&str> = got
            .iter()
            .filter(|(s, _)| *s == shard)
            .map(|(_, q)| q.as_str())
            .collect();
        assert!(
            seqs.windows(2).all(|w| seq_key(w[0]) < seq_key(w[1])),
            "{shard} delivered out of order"
        );
    }
    assert!(
        memory.delivered().len() >= 6,
        "batches of at most 100 records"
    );

    let second = support::put_records(&client, &stream, &records("b", 120))
        .await
        .unwrap();
    let before = memory.records().len();
    let stats = run_until_idle(&client, config(&stream), &memory).await;
    assert_eq!(stats.records, 120, "only what was written since the stop");
    let resumed: Vec<(String, String)> = memory.records()[before..].to_vec();
    assert_eq!(sorted(resumed), sorted(second));
}

/// A reader that waits out its byte budget between calls is not idle: the emulator says 0 ms
/// behind after every answer, but the run must not end while the pacing wait (2 s a call
/// here) outlasts the idle time (0.8 s) and records are left.
#[tokio::test]
async fn a_reader_paced_by_bytes_is_not_idle_while_records_are_left() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "engine-paced", 1).await;
    let big: Vec<(String, Vec<u8>)> = (0..250)
        .map(|i| (format!("p-{i}"), vec![b'x'; 1_000]))
        .collect();
    let written = support::put_records(&client, &stream, &big).await.unwrap();
    let mut config = config(&stream);
    // 100 records of 1,000 bytes a call at 50,000 bytes a second: 2 s before the next call.
    config.reading.max_read_bytes_per_sec = Some(50_000);
    let memory = Arc::new(Memory::default());
    let stats = run_until_idle(&client, config, &memory).await;
    assert_eq!(
        stats.records, 250,
        "the run ended while paced, records left"
    );
    memory.assert_exactly_once(&written);
}

/// Records in hand are not idleness either: with every commit taking longer (1.5 s) than the
/// idle time (0.8 s), the run still reads everything.
#[tokio::test]
async fn a_reader_with_a_slow_commit_is_not_idle() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "engine-slow", 1).await;
    let written = support::put_records(&client, &stream, &records("s", 300))
        .await
        .unwrap();
    let mut config = config(&stream);
    config.reading.max_read_bytes_per_sec = None;
    let memory = Arc::new(Memory::default());
    memory
        .commit_delay_ms
        .store(1_500, std::sync::atomic::Ordering::Relaxed);
    let stats = run_until_idle(&client, config, &memory).await;
    assert_eq!(
        stats.records, 300,
        "the run ended during a commit, records left"
    );
    memory.assert_exactly_once(&written);
}

/// After a split, each child's first batch comes after its parent's end was committed, and
/// the parent's records all come before the children's.
#[tokio::test]
async fn children_are_read_only_after_their_parent_has_ended() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "engine-lineage", 1).await;
    let parent = support::list_shards(&client, &stream).await[0]
        .shard_id()
        .to_string();
    let before = support::put_records(&client, &stream, &records("p", 250))
        .await
        .unwrap();
    let children = support::split_shard(&client, &stream, &parent)
        .await
        .unwrap();
    let after = support::put_records(&client, &stream, &records("c", 250))
        .await
        .unwrap();
    let memory = Arc::new(Memory::default());
    let stats = run_until_idle(&client, config(&stream), &memory).await;
    assert_eq!(stats.records, 500);
    assert_eq!(stats.shards_finished, 1, "the parent is read to its end");
    let mut all = before.clone();
    all.extend(after);
    memory.assert_exactly_once(&all);
    let delivered = memory.delivered();
    let parent_end = delivered
        .iter()
        .position(|b| b.shard == parent && b.finished)
        .expect("the parent's end is committed");
    for child in &children {
        let first = delivered
            .iter()
            .position(|b| &b.shard == child)
            .unwrap_or_else(|| panic!("{child} was read"));
        assert!(
            first > parent_end,
            "{child}'s first batch (#{first}) before its parent's end (#{parent_end})"
        );
    }
}

/// Two engines share one lease store: each reads some shards, their commits are fenced by
/// the lease tokens, and when one stops its shards are taken over by the other, which goes on
/// from the stopped one's checkpoints. Every record is delivered once in all.
#[tokio::test]
async fn two_engines_share_the_stream_and_hand_shards_over_on_shutdown() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "engine-leases", 4).await;
    let memory = Arc::new(Memory::default());
    let engine = |worker: &str, stop: &CancellationToken| {
        let mut config = config(&stream);
        config.leasing.worker_id = worker.to_string();
        config.leasing.lease_duration = Duration::from_millis(900);
        config.reading.exit_when_idle = None;
        let leases: Arc<dyn LeaseStore> = memory.clone();
        tokio::spawn(kinesis::run(
            client.clone(),
            config,
            Handles::default(),
            memory.clone(),
            Some(leases),
            stop.clone(),
        ))
    };
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = engine("worker-a", &stop_a);
    let b = engine("worker-b", &stop_b);
    let first = support::put_records(&client, &stream, &records("one", 400))
        .await
        .unwrap();
    support::wait_for("the first records", Duration::from_secs(30), || async {
        memory.records().len() >= first.len()
    })
    .await
    .unwrap();
    support::wait_for("a balanced split", Duration::from_secs(30), || async {
        let owners = memory.owners();
        let of_a = owners.values().filter(|o| *o == "worker-a").count();
        owners.len() == 4 && of_a == 2
    })
    .await
    .unwrap();

    stop_a.cancel();
    let stats_a = a.await.unwrap().expect("worker a stops cleanly");
    let released = memory.owners();
    assert!(
        released.values().all(|o| o == "worker-b"),
        "worker a gave its leases back on shutdown: {released:?}"
    );
    let second = support::put_records(&client, &stream, &records("two", 400))
        .await
        .unwrap();
    support::wait_for("the hand-over", Duration::from_secs(30), || async {
        memory.records().len() >= first.len() + second.len()
    })
    .await
    .unwrap();
    stop_b.cancel();
    let stats_b = b.await.unwrap().expect("worker b stops cleanly");

    let mut all = first;
    all.extend(second.iter().cloned());
    memory.assert_exactly_once(&all);
    assert_eq!(stats_a.records + stats_b.records, 800);
    assert!(stats_a.records > 0 && stats_b.records > 0, "both read");
    let second: std::collections::HashSet<String> = second.into_iter().map(|(_, s)| s).collect();
    for batch in memory.delivered() {
        if batch.sequence_numbers.iter().any(|s| second.contains(s)) {
            assert_eq!(
                batch.worker.as_deref(),
                Some("worker-b"),
                "records written after a stopped are read by b"
            );
        }
    }
}

/// Calls that hang (a black-holed network) leave the reader without a successful call: the
/// watchdog restarts it after the stall timeout and reports the shard as failing; once the
/// network heals, reading resumes from the checkpoint and every record is delivered once.
#[tokio::test]
async fn the_stall_watchdog_restarts_a_hung_reader_from_its_checkpoint() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "engine-stall", 1).await;
    let proxy = proxy::Proxy::start(&emu.endpoint).await;
    let hung_client = support::client_for(&proxy.endpoint);
    let memory = Arc::new(Memory::default());
    let mut config = config(&stream);
    config.restarts.stall_timeout = Duration::from_millis(700);
    config.restarts.failing_after = Duration::ZERO;
    config.restarts.backoff.base = Duration::from_millis(100);
    config.reading.exit_when_idle = None;
    let handles = Handles::default();
    let health = handles.health.clone();
    let stop = CancellationToken::new();
    let engine = tokio::spawn(kinesis::run(
        hung_client,
        config,
        handles,
        memory.clone(),
        None,
        stop.clone(),
    ));
    let first = support::put_records(&client, &stream, &records("before", 50))
        .await
        .unwrap();
    support::wait_for("the first records", Duration::from_secs(30), || async {
        memory.records().len() >= first.len()
    })
    .await
    .unwrap();

    // The network hangs, open connections included: the call in flight gets no answer and no
    // error, so the first thing that can say the shard is failing is the watchdog.
    proxy.blackhole();
    support::wait_for(
        "the stalled shard reported as failing",
        Duration::from_secs(30),
        || async { !health.failing(Duration::ZERO).is_empty() },
    )
    .await
    .unwrap();
    let failing = health.failing(Duration::ZERO);
    assert!(
        failing[0].reason.contains("stall"),
        "the watchdog says why: {failing:?}"
    );
    let second = support::put_records(&client, &stream, &records("during", 50))
        .await
        .unwrap();
    proxy.heal();
    support::wait_for("reading resumed", Duration::from_secs(30), || async {
        memory.records().len() >= first.len() + second.len()
    })
    .await
    .unwrap();
    support::wait_for(
        "the shard healthy again",
        Duration::from_secs(30),
        || async { health.failing(Duration::ZERO).is_empty() },
    )
    .await
    .unwrap();
    stop.cancel();
    engine.await.unwrap().expect("the engine stops cleanly");
    let mut all = first;
    all.extend(second);
    memory.assert_exactly_once(&all);
}
