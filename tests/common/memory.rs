//! The in-process engine tests' store: a [`Processor`] and a [`LeaseStore`] in memory, with no
//! Twilio and no SQL, that keep what the SQL store promises. A commit is fenced by the shared
//! lease table and is a compare-and-set on the batch's `previous` checkpoint; a refused one
//! changes nothing.
//!
//! It keeps a log of every commit it accepted, duplicates included, so that a record applied
//! twice shows as twice ([`Memory::assert_exactly_once`]) instead of vanishing in a set. And it
//! can fail the way a database fails under a running reader: a commit that lands but whose
//! answer is lost ([`Memory::lose_next_acks`]), and the loss of its last commits
//! ([`Memory::roll_back`], as when an asynchronous replica is promoted without them).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use kinesis_engine::{
    HeldLease, LeaseInfo, LeaseStore, ProcessError, Processor, RecordBatch, ShardCheckpoint,
};

/// One accepted commit, in the order commits were accepted across every shard.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The lease owner that committed it, when leases are in use.
    pub worker: Option<String>,
    pub shard: String,
    pub sequence_numbers: Vec<String>,
    pub finished: bool,
    /// The shard's checkpoint before this commit (what a roll-back restores).
    pub previous: Option<String>,
}

/// The leases: shard → (owner, token, expiry in ms since the epoch).
pub type LeaseTable = BTreeMap<String, (Option<String>, i64, i64)>;

/// Commits into memory; see the module notes.
pub struct Memory {
    batches: Mutex<Vec<Delivered>>,
    checkpoints: Mutex<HashMap<String, (Option<String>, bool)>>,
    pub leases: Mutex<LeaseTable>,
    /// Refuse a batch whose `previous` is not the stored checkpoint (the processor contract).
    compare_and_set: bool,
    /// Commits (with records) still to land without their answer.
    lose_acks: Mutex<usize>,
    /// Calls to `checkpoints`, to see that a reader asked the store again.
    pub checkpoint_reads: std::sync::atomic::AtomicUsize,
    /// Milliseconds each commit with records takes (a slow database).
    pub commit_delay_ms: std::sync::atomic::AtomicU64,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            batches: Mutex::default(),
            checkpoints: Mutex::default(),
            leases: Mutex::default(),
            compare_and_set: true,
            lose_acks: Mutex::new(0),
            checkpoint_reads: Default::default(),
            commit_delay_ms: Default::default(),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Kinesis sequence numbers are decimal strings of growing length: compare them as numbers.
pub fn seq_key(s: &str) -> (usize, &str) {
    (s.len(), s)
}

/// (shard, sequence number) pairs sorted by shard, then sequence number as a number.
pub fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort_by(|a, b| (&a.0, seq_key(&a.1)).cmp(&(&b.0, seq_key(&b.1))));
    v
}

impl Memory {
    /// A store that does not check `previous`: a processor that trusts the engine to know
    /// where each shard stands (to show what the engine does on its own).
    pub fn without_compare_and_set() -> Self {
        Memory {
            compare_and_set: false,
            ..Memory::default()
        }
    }

    /// Every accepted commit, in order, duplicates included.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.batches.lock().unwrap().clone()
    }

    /// Every committed record as (shard, sequence number), in commit order, duplicates kept.
    pub fn records(&self) -> Vec<(String, String)> {
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

    /// Asserts that the commits hold each of `want` exactly once and nothing else, naming the
    /// records applied more than once and those never applied.
    pub fn assert_exactly_once(&self, want: &[(String, String)]) {
        let mut times: BTreeMap<(String, String), usize> = BTreeMap::new();
        for r in self.records() {
            *times.entry(r).or_default() += 1;
        }
        let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
        let missing: Vec<_> = want.iter().filter(|r| !times.contains_key(*r)).collect();
        let extra: Vec<_> = times.keys().filter(|r| !want.contains(r)).collect();
        assert!(
            twice.is_empty() && missing.is_empty() && extra.is_empty(),
            "not exactly once: {} applied more than once {twice:?}; {} never applied {missing:?}; \
             {} not written {extra:?}",
            twice.len(),
            missing.len(),
            extra.len()
        );
    }

    /// The stored checkpoint of `shard`.
    pub fn checkpoint(&self, shard: &str) -> Option<String> {
        let cps = self.checkpoints.lock().unwrap();
        cps.get(shard).and_then(|(seq, _)| seq.clone())
    }

    /// The next `n` commits that carry records land, but answer as if the connection dropped
    /// after the database committed (the answer is lost).
    pub fn lose_next_acks(&self, n: usize) {
        *self.lose_acks.lock().unwrap() = n;
    }

    /// Commits still to lose their answer.
    pub fn acks_still_to_lose(&self) -> usize {
        *self.lose_acks.lock().unwrap()
    }

    /// Loses the last `n` commits of `shard` with no error seen by anyone, as a database
    /// restored or failed over to a replica without them: their records leave the log and the
    /// checkpoint goes back to the one before them. Returns the records rolled back.
    pub fn roll_back(&self, shard: &str, n: usize) -> Vec<String> {
        let mut batches = self.batches.lock().unwrap();
        let mut cps = self.checkpoints.lock().unwrap();
        let mut lost = Vec::new();
        for _ in 0..n {
            let Some(i) = batches.iter().rposition(|b| b.shard == shard) else {
                break;
            };
            let b = batches.remove(i);
            cps.insert(shard.to_string(), (b.previous.clone(), false));
            lost.splice(0..0, b.sequence_numbers);
        }
        lost
    }

    /// The worker holding each shard's lease.
    pub fn owners(&self) -> BTreeMap<String, String> {
        let leases = self.leases.lock().unwrap();
        leases
            .iter()
            .filter_map(|(s, (o, _, _))| o.clone().map(|o| (s.clone(), o)))
            .collect()
    }
}

#[async_trait]
impl Processor for Memory {
    async fn checkpoints(&self, _stream: &str) -> Result<Vec<ShardCheckpoint>, ProcessError> {
        use std::sync::atomic::Ordering;
        self.checkpoint_reads.fetch_add(1, Ordering::SeqCst);
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
        let delay = self
            .commit_delay_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if delay > 0 && !batch.records.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
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
        let mut batches = self.batches.lock().unwrap();
        let mut cps = self.checkpoints.lock().unwrap();
        let stored = cps.get(batch.shard_id).and_then(|(seq, _)| seq.clone());
        if self.compare_and_set && stored.as_deref() != batch.previous {
            return Err(ProcessError::CheckpointMoved(format!(
                "checkpoint of {} is {stored:?}, not {:?}",
                batch.shard_id, batch.previous
            )));
        }
        batches.push(Delivered {
            worker: batch.lease.map(|l| l.owner.to_string()),
            shard: batch.shard_id.to_string(),
            sequence_numbers: batch
                .records
                .iter()
                .map(|r| r.sequence_number.to_string())
                .collect(),
            finished: batch.shard_finished,
            previous: stored.clone(),
        });
        let seq = batch.sequence_number.map(str::to_string).or(stored);
        cps.insert(batch.shard_id.to_string(), (seq, batch.shard_finished));
        let mut lose = self.lose_acks.lock().unwrap();
        if *lose > 0 && !batch.records.is_empty() {
            *lose -= 1;
            return Err(ProcessError::Retry(
                "connection lost after COMMIT was sent".into(),
            ));
        }
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
