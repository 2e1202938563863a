//! This worker's leases, when it shares its stream with others: which shards it holds,
//! renewal, its fair share, and giving leases back. The coordinator keeps an
//! `Option<WorkerLeases>`: `None` when this worker reads the whole stream alone. The leases
//! themselves live behind [`LeaseStore`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::LeaseStore;
use super::balance::{Plan, plan};
use crate::ProcessError;
use crate::shards::{ShardInfo, ready_to_read};

/// This worker's leases and the store that keeps them.
pub(crate) struct WorkerLeases {
    store: Arc<dyn LeaseStore>,
    stream: String,
    worker_id: String,
    lease_ms: i64,
    /// Leases this worker holds: shard → fencing token.
    held: HashMap<String, i64>,
    /// Readable shards nobody holds, for the idle exit.
    unclaimed: usize,
    /// The shard list changed since lease rows were last made sure of.
    shards_changed: bool,
    /// Housekeeping rounds started, numbering the rounds in the logs (so that how many it took
    /// to pick a lease up is counted, not timed).
    rounds: u64,
}

/// What one round of housekeeping changed.
#[derive(Debug, Default)]
pub(crate) struct Round {
    /// Shards whose lease went to another worker: stop reading them.
    pub lost: Vec<String>,
    /// Shards whose lease this worker took in this round (free, expired or stolen).
    pub gained: Vec<String>,
}

impl WorkerLeases {
    pub fn new(
        store: Arc<dyn LeaseStore>,
        stream: &str,
        worker_id: &str,
        lease_duration: Duration,
    ) -> Self {
        WorkerLeases {
            store,
            stream: stream.to_string(),
            worker_id: worker_id.to_string(),
            lease_ms: lease_duration.as_millis() as i64,
            held: HashMap::new(),
            unclaimed: 0,
            shards_changed: true,
            rounds: 0,
        }
    }

    /// How often to renew: three chances per lease period.
    pub fn period(&self) -> Duration {
        (Duration::from_millis(self.lease_ms as u64) / 3).max(Duration::from_millis(50))
    }

    /// The fencing token to present when committing `shard`, if this worker holds it.
    pub fn token(&self, shard: &str) -> Option<i64> {
        self.held.get(shard).copied()
    }

    /// Whether this worker holds `shard`'s lease.
    pub fn holds(&self, shard: &str) -> bool {
        self.held.contains_key(shard)
    }

    /// Readable shards nobody holds (so the stream is not done yet, whatever this worker reads).
    pub fn unclaimed(&self) -> usize {
        self.unclaimed
    }

    /// Lease rows are made sure of for new shards at the next round.
    pub fn shards_changed(&mut self) {
        self.shards_changed = true;
    }

    /// Renews our leases, reports those lost, takes our fair share of the readable shards
    /// (`finished` are read to their end; `running` have a reader here), and gives back the
    /// leases of finished shards no longer read.
    pub async fn round(
        &mut self,
        shards: &[ShardInfo],
        finished: &HashSet<String>,
        running: &HashSet<String>,
    ) -> Result<Round, ProcessError> {
        self.rounds += 1;
        let (stream, me, lease_ms) = (&self.stream, &self.worker_id, self.lease_ms);
        if self.shards_changed {
            let ids: Vec<String> = shards
                .iter()
                .filter(|s| !finished.contains(&s.shard_id))
                .map(|s| s.shard_id.clone())
                .collect();
            self.store.ensure_leases(stream, &ids).await?;
            self.shards_changed = false;
        }
        let renewed = self.store.renew(stream, me, lease_ms).await?;
        let renewed: HashMap<String, i64> =
            renewed.into_iter().map(|l| (l.shard_id, l.token)).collect();
        let mut round = Round::default();
        for (shard, token) in &self.held {
            if renewed.get(shard) != Some(token) {
                warn!(shard_id = %shard, "Lease lost to another worker; stopping that shard.");
                round.lost.push(shard.clone());
            }
        }
        self.held = renewed;
        let (all, now_ms) = self.store.leases(stream).await?;
        // Who held each lease and until when, as this round saw it, for the lines that record
        // a take: released (no owner) or expired, and since when.
        let seen: HashMap<&str, (&str, i64)> = all
            .iter()
            .map(|l| {
                let owner = l.owner.as_deref().unwrap_or("");
                (l.shard_id.as_str(), (owner, l.expires_at_ms))
            })
            .collect();
        let readable: Vec<String> = ready_to_read(shards, finished, &HashSet::new())
            .into_iter()
            .map(|s| s.shard_id.clone())
            .collect();
        let Plan {
            acquire,
            want,
            steal,
            unclaimed,
        } = plan(me, &readable, &all, now_ms, &self.held);
        self.unclaimed = unclaimed;
        if want > 0 && !acquire.is_empty() {
            let taken = self.store.acquire(stream, me, &acquire, want, lease_ms);
            for l in taken.await? {
                let (previous_owner, expired_at_ms) =
                    seen.get(l.shard_id.as_str()).copied().unwrap_or_default();
                info!(shard_id = %l.shard_id, token = l.token, lease_round = self.rounds, previous_owner, expired_at_ms, "Lease taken.");
                round.gained.push(l.shard_id.clone());
                self.held.insert(l.shard_id, l.token);
            }
        }
        if let Some((victim, shard)) = steal
            && let Some(l) = self
                .store
                .steal(stream, me, &victim, &shard, lease_ms)
                .await?
        {
            info!(shard_id = %l.shard_id, from = %victim, token = l.token, lease_round = self.rounds, "Lease taken over to balance the load.");
            round.gained.push(l.shard_id.clone());
            self.held.insert(l.shard_id, l.token);
        }
        let done: Vec<String> = self
            .held
            .keys()
            .filter(|s| finished.contains(*s) && !running.contains(*s))
            .cloned()
            .collect();
        if !done.is_empty() {
            self.store.release(stream, me, &done).await?;
            for s in &done {
                self.held.remove(s);
            }
        }
        debug!(
            lease_round = self.rounds,
            now_ms,
            held = self.held.len(),
            gained = round.gained.len(),
            lost = round.lost.len(),
            unclaimed = self.unclaimed,
            "Lease housekeeping round."
        );
        Ok(round)
    }

    /// Forgets a lease the store says is no longer ours (a refused commit).
    pub fn lost(&mut self, shard: &str) {
        self.held.remove(shard);
    }

    /// Gives back the lease of a shard read to its end, so that nobody waits for its expiry.
    pub async fn release_finished(&mut self, shard: &str) {
        if self.held.remove(shard).is_none() {
            return;
        }
        let ids = [shard.to_string()];
        if let Err(e) = self
            .store
            .release(&self.stream, &self.worker_id, &ids)
            .await
        {
            warn!(error = %e, "Could not release the lease of a finished shard.");
        }
    }

    /// Gives back every lease (shutdown), so other workers take over at once.
    pub async fn release_all(&mut self) {
        let held: Vec<String> = self.held.drain().map(|(s, _)| s).collect();
        match self
            .store
            .release(&self.stream, &self.worker_id, &held)
            .await
        {
            Ok(()) => info!(released = held.len(), "Leases released."),
            Err(e) => warn!(error = %e, "Could not release leases; they will expire."),
        }
    }
}
