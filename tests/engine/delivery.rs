//! The consumer engine on its own: `kinesis::run` against the in-process emulator, with a
//! processor and a lease store that record into memory and know nothing of Twilio or SQL.
//! Everything is asserted on what they recorded and on the returned stats, never on log text:
//! each record delivered once and in order, resume after a stop, children after their
//! parents, shards handed over between two engines that share one lease store, and the stall
//! watchdog restarting a reader whose calls hang.

use crate::common::emulator as support;
use crate::common::proxy;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kinesis_engine::{
    self as kinesis, ConsumerConfig, Handles, HeldLease, LeaseInfo, LeaseStore, ProcessError,
    Processor, RecordBatch, RunStats, ShardCheckpoint,
};
use tokio_util::sync::CancellationToken;

/// One accepted batch, in the order batches were accepted across every shard.
#[derive(Debug, Clone)]
struct Delivered {
    worker: Option<String>,
    shard: String,
    sequence_numbers: Vec<String>,
    finished: bool,
}

/// The leases: shard → (owner, token, expiry in ms since the epoch).
type LeaseTable = BTreeMap<String, (Option<String>, i64, i64)>;

/// Commits into memory, fenced by the shared lease table like the SQL store: a batch whose
/// lease token is stale is refused and changes nothing.
#[derive(Default)]
struct Memory {
    batches: Mutex<Vec<Delivered>>,
    checkpoints: Mutex<HashMap<String, (Option<String>, bool)>>,
    leases: Mutex<LeaseTable>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Kinesis sequence numbers are decimal strings of growing length: compare them as numbers.
fn seq_key(s: &str) -> (usize, &str) {
    (s.len(), s)
}

impl Memory {
    fn delivered(&self) -> Vec<Delivered> {
        self.batches.lock().unwrap().clone()
    }

    /// Every delivered record as (shard, sequence number), in delivery order.
    fn records(&self) -> Vec<(String, String)> {
        self.delivered()
            .into_iter()
            .flat_map(|b| {
                let shard = b.shard.clone();
                b.sequence_numbers
                    .into_iter()
                    .map(move |s| (shard.clone(), s))
            })
            .collect()
    }
}

#[async_trait]
impl Processor for Memory {
    async fn checkpoints(&self, _stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
        let cps = self.checkpoints.lock().unwrap();
        Ok(cps
            .iter()
            .map(|(shard, (seq, finished))| ShardCheckpoint {
                shard_id: shard.clone(),
                sequence_number: seq.clone(),
                finished: *finished,
            })
            .collect())
    }

    async fn process(&self, batch: RecordBatch<'_>) -> Result<(), ProcessError> {
        if let Some(claim) = batch.lease {
            let leases = self.leases.lock().unwrap();
            let held = leases.get(batch.shard_id);
            if held.is_none_or(|(owner, token, _)| {
                owner.as_deref() != Some(claim.owner) || *token != claim.token
            }) {
                return Err(ProcessError::LostOwnership(format!(
                    "lease of {} is no longer held by {}",
                    batch.shard_id, claim.owner
                )));
            }
        }
        self.batches.lock().unwrap().push(Delivered {
            worker: batch.lease.map(|l| l.owner.to_string()),
            shard: batch.shard_id.to_string(),
            sequence_numbers: batch
                .records
                .iter()
                .map(|r| r.sequence_number().to_string())
                .collect(),
            finished: batch.shard_finished,
        });
        self.checkpoints.lock().unwrap().insert(
            batch.shard_id.to_string(),
            (
                batch.sequence_number.map(str::to_string),
                batch.shard_finished,
            ),
        );
        Ok(())
    }
}

fn held(leases: &LeaseTable, worker: &str, shards: &[String]) -> Vec<HeldLease> {
    shards
        .iter()
        .filter_map(|s| match leases.get(s) {
            Some((Some(owner), token, _)) if owner == worker => Some(HeldLease {
                shard_id: s.clone(),
                token: *token,
            }),
            _ => None,
        })
        .collect()
}

#[async_trait]
impl LeaseStore for Memory {
    async fn ensure_leases(&self, _: &str, shard_ids: &[String]) -> Result<(), ProcessError> {
        let mut leases = self.leases.lock().unwrap();
        for s in shard_ids {
            leases.entry(s.clone()).or_insert((None, 0, 0));
        }
        Ok(())
    }

    async fn renew(
        &self,
        _: &str,
        worker: &str,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, ProcessError> {
        let mut leases = self.leases.lock().unwrap();
        let now = now_ms();
        let mut renewed = Vec::new();
        for (shard, (owner, token, expires)) in leases.iter_mut() {
            if owner.as_deref() == Some(worker) {
                *expires = now + lease_ms;
                renewed.push(HeldLease {
                    shard_id: shard.clone(),
                    token: *token,
                });
            }
        }
        Ok(renewed)
    }

    async fn acquire(
        &self,
        _: &str,
        worker: &str,
        candidates: &[String],
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, ProcessError> {
        let mut leases = self.leases.lock().unwrap();
        let now = now_ms();
        let mut taken = Vec::new();
        for s in candidates {
            if taken.len() == max {
                break;
            }
            if let Some((owner, token, expires)) = leases.get_mut(s)
                && (owner.is_none() || *expires < now)
            {
                *owner = Some(worker.to_string());
                *token += 1;
                *expires = now + lease_ms;
                taken.push(s.clone());
            }
        }
        Ok(held(&leases, worker, &taken))
    }

    async fn steal(
        &self,
        _: &str,
        worker: &str,
        victim: &str,
        shard_id: &str,
        lease_ms: i64,
    ) -> Result<Option<HeldLease>, ProcessError> {
        let mut leases = self.leases.lock().unwrap();
        let Some((owner, token, expires)) = leases.get_mut(shard_id) else {
            return Ok(None);
        };
        if owner.as_deref() != Some(victim) {
            return Ok(None);
        }
        *owner = Some(worker.to_string());
        *token += 1;
        *expires = now_ms() + lease_ms;
        Ok(held(&leases, worker, &[shard_id.to_string()]).pop())
    }

    async fn release(
        &self,
        _: &str,
        worker: &str,
        shard_ids: &[String],
    ) -> Result<(), ProcessError> {
        let mut leases = self.leases.lock().unwrap();
        for s in shard_ids {
            if let Some((owner, _, expires)) = leases.get_mut(s)
                && owner.as_deref() == Some(worker)
            {
                *owner = None;
                *expires = 0;
            }
        }
        Ok(())
    }

    async fn leases(&self, _: &str) -> Result<(Vec<LeaseInfo>, i64), ProcessError> {
        let leases = self.leases.lock().unwrap();
        let all = leases
            .iter()
            .map(|(shard, (owner, token, expires))| LeaseInfo {
                shard_id: shard.clone(),
                owner: owner.clone(),
                token: *token,
                expires_at_ms: *expires,
            })
            .collect();
        Ok((all, now_ms()))
    }
}

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

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort_by(|a, b| (&a.0, seq_key(&a.1)).cmp(&(&b.0, seq_key(&b.1))));
    v
}

/// Every record reaches the processor exactly once, each shard's in sequence order; a second
/// run starts after the stored checkpoints and delivers only what was written since.
#[tokio::test]
async fn records_are_delivered_once_in_order_and_a_new_run_resumes_after_the_checkpoint() {
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::new_stream(&client, "engine-once", 3).await;
    let first = support::put_records(&client, &stream, &records("a", 450))
        .await
        .unwrap();
    let memory = Arc::new(Memory::default());
    let stats = run_until_idle(&client, config(&stream), &memory).await;
    assert_eq!(stats.records, 450);
    let got = memory.records();
    assert_eq!(
        sorted(got.clone()),
        sorted(first.clone()),
        "each record once"
    );
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
    assert_eq!(sorted(memory.records()), sorted(all));
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
    let owners = |m: &Memory| -> BTreeMap<String, String> {
        m.leases
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(s, (o, _, _))| o.clone().map(|o| (s.clone(), o)))
            .collect()
    };
    support::wait_for("a balanced split", Duration::from_secs(30), || async {
        let owners = owners(&memory);
        let of_a = owners.values().filter(|o| *o == "worker-a").count();
        owners.len() == 4 && of_a == 2
    })
    .await
    .unwrap();

    stop_a.cancel();
    let stats_a = a.await.unwrap().expect("worker a stops cleanly");
    let released = owners(&memory);
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
    assert_eq!(
        sorted(memory.records()),
        sorted(all),
        "every record once across both workers"
    );
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
    assert_eq!(sorted(memory.records()), sorted(all), "each record once");
}
