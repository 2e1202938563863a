//! The lease balancing rule, as a pure function so it can be tested exhaustively.
//!
//! Each live worker aims at its fair share, `ceil(readable shards / live workers)`. It first
//! takes free or expired leases; if that is not enough, it steals exactly one lease from the
//! most loaded worker, and only from a worker holding *more* than the fair share. A worker at
//! its share never steals and is never stolen from, so the assignment settles instead of
//! ping-ponging.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::LeaseInfo;

/// What a worker should do this round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Free or expired leases it may take (in this order).
    pub acquire: Vec<String>,
    /// How many more leases it wants.
    pub want: usize,
    /// `(victim, shard)`: one lease to take over, when free ones cannot fill the share.
    pub steal: Option<(String, String)>,
    /// Readable shards that nobody holds (for the idle exit).
    pub unclaimed: usize,
}

/// Decides acquisitions and at most one steal for worker `me`.
pub fn plan(
    me: &str,
    readable: &[String],
    leases: &[LeaseInfo],
    now_ms: i64,
    held: &HashMap<String, i64>,
) -> Plan {
    let live = |l: &LeaseInfo| l.owner.is_some() && l.expires_at_ms > now_ms;
    let by_shard: HashMap<&str, &LeaseInfo> =
        leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let mut workers: BTreeSet<&str> = leases
        .iter()
        .filter(|l| live(l))
        .filter_map(|l| l.owner.as_deref())
        .collect();
    workers.insert(me);
    let fair = readable.len().div_ceil(workers.len());
    let mine = readable.iter().filter(|s| held.contains_key(*s)).count();
    let free: Vec<String> = readable
        .iter()
        .filter(|s| !held.contains_key(*s))
        .filter(|s| by_shard.get(s.as_str()).is_none_or(|l| !live(l)))
        .cloned()
        .collect();
    let want = fair.saturating_sub(mine);
    let mut steal = None;
    if want > free.len() {
        let mut load: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for s in readable {
            if let Some(l) = by_shard.get(s.as_str())
                && live(l)
                && let Some(owner) = l.owner.as_deref()
                && owner != me
            {
                load.entry(owner).or_default().push(s);
            }
        }
        let busiest = load
            .into_iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)));
        if let Some((victim, shards)) = busiest
            && shards.len() > fair
            && let Some(shard) = shards.iter().max()
        {
            steal = Some((victim.to_string(), shard.to_string()));
        }
    }
    Plan {
        unclaimed: free.len(),
        acquire: free,
        want,
        steal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(shard: usize, owner: Option<&str>, expires_at_ms: i64) -> LeaseInfo {
        LeaseInfo {
            shard_id: format!("s{shard}"),
            owner: owner.map(str::to_string),
            token: 1,
            expires_at_ms,
        }
    }

    fn shards(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    /// Plays rounds for every worker until nothing changes; returns each worker's count.
    fn settle(workers: &[&str], n: usize, rounds: usize) -> (BTreeMap<String, usize>, usize) {
        let (owner, moves) = settle_from(BTreeMap::new(), workers, n, rounds);
        (counts(&owner), moves)
    }

    /// Shards per worker.
    fn counts(owner: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for o in owner.values() {
            *counts.entry(o.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// [`settle`] from a given assignment (shard → owner); returns the final one and the steals.
    fn settle_from(
        mut owner: BTreeMap<String, String>,
        workers: &[&str],
        n: usize,
        rounds: usize,
    ) -> (BTreeMap<String, String>, usize) {
        let readable = shards(n);
        let mut moves = 0;
        for _ in 0..rounds {
            let mut changed = false;
            for &w in workers {
                let leases: Vec<LeaseInfo> = readable
                    .iter()
                    .map(|s| LeaseInfo {
                        shard_id: s.clone(),
                        owner: owner.get(s).cloned(),
                        token: 1,
                        expires_at_ms: if owner.contains_key(s) { 100 } else { 0 },
                    })
                    .collect();
                let held: HashMap<String, i64> = owner
                    .iter()
                    .filter(|(_, o)| o.as_str() == w)
                    .map(|(s, _)| (s.clone(), 1))
                    .collect();
                let p = plan(w, &readable, &leases, 50, &held);
                for s in p.acquire.iter().take(p.want) {
                    owner.insert(s.clone(), w.to_string());
                    changed = true;
                }
                if let Some((_, s)) = p.steal {
                    owner.insert(s, w.to_string());
                    moves += 1;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        (owner, moves)
    }

    #[test]
    fn free_leases_are_taken_up_to_the_fair_share() {
        let leases: Vec<_> = (0..8).map(|i| lease(i, None, 0)).collect();
        let mut held = HashMap::new();
        let p = plan("a", &shards(8), &leases, 1000, &held);
        assert_eq!((p.want, p.acquire.len(), p.steal.clone()), (8, 8, None));
        // With two other live workers: a fair share of 3.
        let mut leases = leases;
        leases[0] = lease(0, Some("b"), 2000);
        leases[1] = lease(1, Some("c"), 2000);
        held.insert("s2".to_string(), 1);
        let p = plan("a", &shards(8), &leases, 1000, &held);
        assert_eq!(p.want, 2);
        assert_eq!(p.acquire, ["s3", "s4", "s5", "s6", "s7"]);
        assert_eq!(p.unclaimed, 5);
    }

    #[test]
    fn expired_leases_count_as_free_and_dead_workers_do_not_count() {
        let leases = vec![lease(0, Some("dead"), 500), lease(1, Some("b"), 2000)];
        let p = plan("a", &shards(2), &leases, 1000, &HashMap::new());
        assert_eq!(p.acquire, ["s0"]);
        assert_eq!(p.want, 1, "two live workers (a, b): one shard each");
    }

    #[test]
    fn steals_one_only_from_a_worker_above_its_share() {
        // b holds all 4; a holds none: fair is 2, b is above it.
        let leases: Vec<_> = (0..4).map(|i| lease(i, Some("b"), 2000)).collect();
        let p = plan("a", &shards(4), &leases, 1000, &HashMap::new());
        assert_eq!(p.steal, Some(("b".into(), "s3".into())));
        // b at exactly its share (3 of 5 with 2 workers): no steal.
        let leases: Vec<_> = (0..5)
            .map(|i| lease(i, Some(if i < 3 { "b" } else { "a" }), 2000))
            .collect();
        let held: HashMap<String, i64> = [("s3".to_string(), 1), ("s4".to_string(), 1)].into();
        let p = plan("a", &shards(5), &leases, 1000, &held);
        assert_eq!(p.steal, None);
        assert_eq!(p.want, 1);
    }

    #[test]
    fn assignments_settle_fairly_without_ping_pong() {
        for (workers, n) in [
            (vec!["a", "b", "c"], 8),
            (vec!["a", "b"], 5),
            (vec!["a", "b", "c", "d"], 4),
            (vec!["a", "b", "c"], 2),
        ] {
            let (counts, moves) = settle(&workers, n, 50);
            let total: usize = counts.values().sum();
            assert_eq!(total, n, "every shard owned once: {counts:?}");
            let fair = n.div_ceil(workers.len());
            assert!(counts.values().all(|&c| c <= fair), "{counts:?}");
            assert!(
                moves <= n,
                "too many steals ({moves}) for {workers:?}, {n} shards"
            );
        }
        // A new worker joins a settled pair: it gets a share by at most a few steals, then it stops.
        let (pair, _) = settle_from(BTreeMap::new(), &["a", "b"], 8, 50);
        assert_eq!(counts(&pair).values().copied().collect::<Vec<_>>(), [4, 4]);
        let (three, steals) = settle_from(pair, &["a", "b", "c"], 8, 50);
        let c = counts(&three);
        assert_eq!(c.values().sum::<usize>(), 8, "{c:?}");
        assert!(c["c"] >= 2 && c.values().all(|&n| n <= 3), "{c:?}");
        assert_eq!(steals, c["c"], "only the newcomer's share moved: {c:?}");
    }
}
