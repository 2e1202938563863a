//! Lease storage (docs/operating.md, "Several instances"), run against both backends from one
//! set of tests: who holds which shard, expiry by the database clock, fencing tokens, and
//! fencing at commit. The race tests open one store handle per worker on the same database and
//! acquire concurrently.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{TimeZone, Utc};
use optout::event::{OptEvent, OptOutType, TimeSource};
use optout::store::{
    Batch, CheckpointUpdate, EventFilter, HeldLease, LeaseRow, LeaseToken, Positioned,
    StatusFilter, Store, StoreError,
};

use crate::common::db::{self, Db};

/// Runs one async test body against both backends.
macro_rules! both_backends {
    ($($name:ident;)*) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
              async fn $name() { super::$name(super::db::sqlite().await).await; })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
              async fn $name() { super::$name(super::db::postgres().await).await; })*
        }
    };
}

both_backends! {
    ensure_leases_is_idempotent;
    acquire_takes_free_leases_up_to_max;
    expired_leases_are_taken_and_the_token_grows;
    renew_extends_ours_and_omits_lost_ones;
    steal_works_only_while_the_victim_holds_the_lease;
    release_frees_leases_at_once;
    a_stale_token_cannot_commit;
    concurrent_workers_never_share_a_lease;
}

const STREAM: &str = "s";
/// Long enough never to expire during a test.
const LONG_MS: i64 = 60_000;
/// Short enough to expire quickly.
const SHORT_MS: i64 = 50;
/// How long a poll loop waits for the database clock to pass an expiry.
const POLL_LIMIT: Duration = Duration::from_secs(10);

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn held(pairs: &[(&str, i64)]) -> Vec<HeldLease> {
    pairs
        .iter()
        .map(|&(shard_id, token)| HeldLease {
            shard_id: shard_id.into(),
            token,
        })
        .collect()
}

async fn lease_map(s: &dyn Store) -> (BTreeMap<String, LeaseRow>, i64) {
    let (rows, now) = s.leases(STREAM).await.unwrap();
    let map = rows.into_iter().map(|l| (l.shard_id.clone(), l)).collect();
    (map, now)
}

async fn db_now(s: &dyn Store) -> i64 {
    s.leases(STREAM).await.unwrap().1
}

/// Polls the database clock until every lease among `shards` has expired (bounded).
async fn wait_until_expired(s: &dyn Store, shards: &[String]) {
    let start = Instant::now();
    loop {
        let (map, now) = lease_map(s).await;
        if shards.iter().all(|id| map[id].expires_at_ms < now) {
            return;
        }
        assert!(
            start.elapsed() < POLL_LIMIT,
            "leases {shards:?} never expired: {map:?} at {now}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn ensure_leases_is_idempotent(db: Db) {
    let s = &*db.store;
    let shards = ids(&["a", "b", "c"]);
    s.ensure_leases(STREAM, &shards).await.unwrap();
    s.ensure_leases(STREAM, &shards).await.unwrap();
    let (map, now) = lease_map(s).await;
    assert_eq!(map.keys().cloned().collect::<Vec<_>>(), shards);
    for l in map.values() {
        assert_eq!((l.owner.as_deref(), l.token, l.expires_at_ms), (None, 0, 0));
    }
    // The database clock is in ms since the epoch, like the machine's.
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now - wall).abs() < 5_000, "db now {now}, wall {wall}");

    // Existing rows, held or not, are left alone; new shards are added.
    s.acquire_leases(STREAM, "w1", &ids(&["a"]), 1, LONG_MS)
        .await
        .unwrap();
    s.ensure_leases(STREAM, &ids(&["a", "b", "c", "d"]))
        .await
        .unwrap();
    let (map, _) = lease_map(s).await;
    assert_eq!(map.len(), 4);
    assert_eq!((map["a"].owner.as_deref(), map["a"].token), (Some("w1"), 1));
    assert_eq!((map["d"].owner.as_deref(), map["d"].token), (None, 0));
    assert!(s.leases("other-stream").await.unwrap().0.is_empty());
}

async fn acquire_takes_free_leases_up_to_max(db: Db) {
    let s = &*db.store;
    let shards = ids(&["a", "b", "c"]);
    s.ensure_leases(STREAM, &shards).await.unwrap();
    let before = db_now(s).await;
    let got = s
        .acquire_leases(STREAM, "w1", &shards, 2, LONG_MS)
        .await
        .unwrap();
    let after = db_now(s).await;
    assert_eq!(got, held(&[("a", 1), ("b", 1)]));
    let (map, _) = lease_map(s).await;
    for id in ["a", "b"] {
        assert_eq!(map[id].owner.as_deref(), Some("w1"));
        let expiry = map[id].expires_at_ms;
        assert!(
            (before + LONG_MS..=after + LONG_MS).contains(&expiry),
            "{expiry} not within [{before}, {after}] + {LONG_MS}"
        );
    }
    assert_eq!(map["c"].owner, None);

    // Only the free one is left; what w1 holds is not taken again.
    let more = s
        .acquire_leases(STREAM, "w1", &shards, 5, LONG_MS)
        .await
        .unwrap();
    assert_eq!(more, held(&[("c", 1)]));
    // A second worker gets none while they are live.
    let none = s
        .acquire_leases(STREAM, "w2", &shards, 3, LONG_MS)
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    // Nothing asked, nothing taken; unknown shards are not leases.
    assert!(
        s.acquire_leases(STREAM, "w2", &[], 3, LONG_MS)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.acquire_leases(STREAM, "w2", &ids(&["zz"]), 3, LONG_MS)
            .await
            .unwrap()
            .is_empty()
    );
    let (map, _) = lease_map(s).await;
    assert!(map.values().all(|l| l.owner.as_deref() == Some("w1")));
}

async fn expired_leases_are_taken_and_the_token_grows(db: Db) {
    let s = &*db.store;
    let shards = ids(&["a", "b"]);
    s.ensure_leases(STREAM, &shards).await.unwrap();
    let got = s
        .acquire_leases(STREAM, "w1", &shards, 2, SHORT_MS)
        .await
        .unwrap();
    assert_eq!(got, held(&[("a", 1), ("b", 1)]));
    wait_until_expired(s, &shards).await;

    let taken = s
        .acquire_leases(STREAM, "w2", &shards, 2, LONG_MS)
        .await
        .unwrap();
    assert_eq!(taken, held(&[("a", 2), ("b", 2)]));
    let (map, _) = lease_map(s).await;
    assert!(map.values().all(|l| l.owner.as_deref() == Some("w2")));
    // The former owner renews nothing: the leases are gone.
    assert!(
        s.renew_leases(STREAM, "w1", LONG_MS)
            .await
            .unwrap()
            .is_empty()
    );
    // And cannot take them back while w2's are live.
    assert!(
        s.acquire_leases(STREAM, "w1", &shards, 2, LONG_MS)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn renew_extends_ours_and_omits_lost_ones(db: Db) {
    let s = &*db.store;
    let shards = ids(&["a", "b", "c", "d"]);
    s.ensure_leases(STREAM, &shards).await.unwrap();
    s.acquire_leases(STREAM, "w1", &ids(&["a", "b", "c"]), 3, LONG_MS)
        .await
        .unwrap();
    // `d` is ours too but expires; nobody takes it, so it is still ours to renew.
    s.acquire_leases(STREAM, "w1", &ids(&["d"]), 1, SHORT_MS)
        .await
        .unwrap();
    wait_until_expired(s, &ids(&["d"])).await;
    let stolen = s
        .steal_lease(STREAM, "w2", "w1", "b", LONG_MS)
        .await
        .unwrap();
    assert_eq!(stolen, Some(held(&[("b", 2)]).remove(0)));

    let before = db_now(s).await;
    let renewed = s.renew_leases(STREAM, "w1", 2 * LONG_MS).await.unwrap();
    assert_eq!(renewed, held(&[("a", 1), ("c", 1), ("d", 1)]));
    let (map, _) = lease_map(s).await;
    for id in ["a", "c", "d"] {
        assert_eq!(map[id].owner.as_deref(), Some("w1"));
        assert!(
            map[id].expires_at_ms >= before + 2 * LONG_MS,
            "{:?}",
            map[id]
        );
    }
    // The stolen one keeps its new owner and expiry.
    assert_eq!((map["b"].owner.as_deref(), map["b"].token), (Some("w2"), 2));
    assert!(map["b"].expires_at_ms < before + 2 * LONG_MS);
    // A worker holding nothing renews nothing.
    assert!(
        s.renew_leases(STREAM, "w3", LONG_MS)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn steal_works_only_while_the_victim_holds_the_lease(db: Db) {
    let s = &*db.store;
    s.ensure_leases(STREAM, &ids(&["a", "b"])).await.unwrap();
    s.acquire_leases(STREAM, "w1", &ids(&["a"]), 1, LONG_MS)
        .await
        .unwrap();
    // Wrong victim, free lease, unknown shard: nothing happens.
    assert_eq!(
        s.steal_lease(STREAM, "w3", "w2", "a", LONG_MS)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.steal_lease(STREAM, "w3", "w1", "b", LONG_MS)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.steal_lease(STREAM, "w3", "w1", "zz", LONG_MS)
            .await
            .unwrap(),
        None
    );
    let (map, _) = lease_map(s).await;
    assert_eq!((map["a"].owner.as_deref(), map["a"].token), (Some("w1"), 1));
    assert_eq!((map["b"].owner.as_deref(), map["b"].token), (None, 0));

    let stolen = s
        .steal_lease(STREAM, "w2", "w1", "a", LONG_MS)
        .await
        .unwrap();
    assert_eq!(stolen, Some(held(&[("a", 2)]).remove(0)));
    // w1 no longer holds it: a second steal from w1 fails.
    assert_eq!(
        s.steal_lease(STREAM, "w3", "w1", "a", LONG_MS)
            .await
            .unwrap(),
        None
    );
    let (map, _) = lease_map(s).await;
    assert_eq!((map["a"].owner.as_deref(), map["a"].token), (Some("w2"), 2));
}

async fn release_frees_leases_at_once(db: Db) {
    let s = &*db.store;
    let shards = ids(&["a", "b", "c"]);
    s.ensure_leases(STREAM, &shards).await.unwrap();
    s.acquire_leases(STREAM, "w1", &shards, 3, LONG_MS)
        .await
        .unwrap();
    let (_, before) = lease_map(s).await;
    s.release_leases(STREAM, "w1", &ids(&["a", "b"]))
        .await
        .unwrap();
    // Releasing what one does not hold changes nothing; an empty list is fine.
    s.release_leases(STREAM, "w2", &ids(&["c"])).await.unwrap();
    s.release_leases(STREAM, "w1", &[]).await.unwrap();
    let (map, after) = lease_map(s).await;
    for id in ["a", "b"] {
        // No owner, the same token, and an expiry that says when it was given back (the
        // database's clock): free at once.
        let l = &map[id];
        assert_eq!((l.owner.as_deref(), l.token), (None, 1));
        assert!(
            (before..=after).contains(&l.expires_at_ms),
            "{id} released at {} (between {before} and {after})",
            l.expires_at_ms
        );
    }
    assert_eq!(map["c"].owner.as_deref(), Some("w1"));

    // Another worker takes them without waiting for any expiry; their token grows.
    let got = s
        .acquire_leases(STREAM, "w2", &shards, 3, LONG_MS)
        .await
        .unwrap();
    assert_eq!(got, held(&[("a", 2), ("b", 2)]));
    assert_eq!(
        s.renew_leases(STREAM, "w1", LONG_MS).await.unwrap(),
        held(&[("c", 1)])
    );
}

fn stop_event(id: &str) -> OptEvent {
    OptEvent {
        event_id: id.into(),
        opt_out_type: OptOutType::Stop,
        inferred: false,
        detection: optout::event::Detection::Twilio,
        rule: None,
        account_sid: "AC1".into(),
        messaging_service_sid: Some("MG1".into()),
        sender: "+15559870002".into(),
        subscriber: "+15551230001".into(),
        body: Some("stop".into()),
        message_sid: Some(format!("SM{id}")),
        occurred_at: Utc.timestamp_opt(1_772_366_400, 0).unwrap(),
        time_source: TimeSource::Twilio,
        schema_version: Some(5),
    }
}

fn fenced_batch(lease: LeaseToken) -> Batch {
    Batch {
        stream: STREAM.into(),
        shard_id: "shard-1".into(),
        opt_events: vec![Positioned {
            sequence_number: "00001".into(),
            value: stop_event("EZ1"),
        }],
        checkpoint: Some(CheckpointUpdate {
            sequence_number: Some("00001".into()),
            finished: false,
            previous: None,
        }),
        lease: Some(lease),
        ..Batch::default()
    }
}

async fn a_stale_token_cannot_commit(db: Db) {
    let s = &*db.store;
    let shard = ids(&["shard-1"]);
    s.ensure_leases(STREAM, &shard).await.unwrap();
    let mine = s
        .acquire_leases(STREAM, "w1", &shard, 1, LONG_MS)
        .await
        .unwrap();
    let old = LeaseToken {
        owner: "w1".into(),
        token: mine[0].token,
    };
    let stolen = s
        .steal_lease(STREAM, "w2", "w1", "shard-1", LONG_MS)
        .await
        .unwrap()
        .unwrap();

    let store: &dyn Store = &*db.store;
    let refused = store.commit(&fenced_batch(old)).await;
    assert!(
        matches!(&refused, Err(StoreError::LeaseLost { shard_id }) if shard_id == "shard-1"),
        "{refused:?}"
    );
    // No trace: no event, no status, no checkpoint.
    assert!(
        db.reader
            .all(&EventFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.reader
            .all(&StatusFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.checkpoints(STREAM).await.unwrap().is_empty());
    // The right owner with a stale token is refused too.
    let stale = LeaseToken {
        owner: "w2".into(),
        token: stolen.token - 1,
    };
    assert!(matches!(
        store.commit(&fenced_batch(stale)).await,
        Err(StoreError::LeaseLost { .. })
    ));

    let current = LeaseToken {
        owner: "w2".into(),
        token: stolen.token,
    };
    let summary = store.commit(&fenced_batch(current)).await.unwrap();
    assert_eq!(summary.opt_events_new, 1);
    assert_eq!(
        db.reader.all(&EventFilter::default()).await.unwrap().len(),
        1
    );
    let cps = store.checkpoints(STREAM).await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].sequence_number.as_deref(), Some("00001"));
}

/// One round of the race: every worker asks for up to `max` of `shards` at the same moment.
async fn race_round(
    workers: &[Arc<dyn Store>],
    shards: &[String],
    max: usize,
    rng: &mut fastrand::Rng,
) -> Vec<(String, Vec<HeldLease>)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(workers.len()));
    let tasks: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let mut candidates = shards.to_vec();
            rng.shuffle(&mut candidates);
            tokio::spawn(async move {
                let worker = format!("w{i}");
                barrier.wait().await;
                let got = store
                    .acquire_leases(STREAM, &worker, &candidates, max, LONG_MS)
                    .await
                    .unwrap();
                (worker, got)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

async fn concurrent_workers_never_share_a_lease(db: Db) {
    const WORKERS: usize = 4;
    const SHARDS: usize = 16;
    let shards: Vec<String> = (0..SHARDS).map(|i| format!("shardId-{i:012}")).collect();
    db.store.ensure_leases(STREAM, &shards).await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(db::open_store(&db.url).await);
    }
    // Each worker asks for the shards in an order of its own, from a seed printed to replay.
    let seed = crate::common::seed::seed("concurrent_workers_never_share_a_lease");
    let mut rng = fastrand::Rng::with_seed(seed);
    // Rounds 1-3: everyone asks for everything; rounds 4-6: everyone asks for a fair share.
    for round in 1..=6_i64 {
        let max = if round <= 3 { SHARDS } else { SHARDS / WORKERS };
        let results = race_round(&workers, &shards, max, &mut rng).await;
        let mut owner_of = BTreeMap::new();
        for (worker, got) in &results {
            if max < SHARDS {
                assert_eq!(got.len(), max, "round {round}: {worker} got {got:?}");
            }
            for l in got {
                assert_eq!(l.token, round, "round {round}: {l:?}");
                let previous = owner_of.insert(l.shard_id.clone(), worker.clone());
                assert!(previous.is_none(), "round {round}: {l:?} given twice");
            }
        }
        let union: BTreeSet<_> = owner_of.keys().cloned().collect();
        assert_eq!(union, shards.iter().cloned().collect(), "round {round}");
        // The table agrees with what each worker was told.
        let (map, _) = lease_map(&*db.store).await;
        for (shard_id, worker) in &owner_of {
            assert_eq!(map[shard_id].owner.as_deref(), Some(worker.as_str()));
            assert_eq!(map[shard_id].token, round);
        }
        for (store, (worker, got)) in workers.iter().zip(&results) {
            let mine: Vec<String> = got.iter().map(|l| l.shard_id.clone()).collect();
            store.release_leases(STREAM, worker, &mine).await.unwrap();
        }
    }
}
