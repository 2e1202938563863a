//! Several workers on one PostgreSQL store: leases, takeover after `kill -9`, crash loops and
//! resharding under steady writes. Each test checks that every opt event is stored exactly
//! once and every status is right, and prints what it measured.

#[path = "common/optout.rs"]
mod common;
#[path = "common/db.rs"]
mod db;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use optout::store::SqlStore;

/// These tests each start several processes; run one at a time so they measure the consumer,
/// not a 2-core machine running three scenarios at once.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn worker(o: &Optout, stream: &str, id: &str, lease_ms: &str) -> Worker {
    o.spawn_run(stream, &["--worker-id", id, "--lease-ms", lease_ms])
}

async fn owners(leases: &SqlStore, stream: &str) -> BTreeMap<String, usize> {
    let (all, now) = leases.leases(stream).await.unwrap();
    let mut m = BTreeMap::new();
    for l in all {
        if let Some(o) = l.owner
            && l.expires_at_ms > now
        {
            *m.entry(o).or_insert(0) += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_survive_a_kill_9_with_exactly_once() {
    let _serial = SERIAL.lock().await;
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("workers");
    support::create_stream(&client, &stream, 8).await.unwrap();
    let db = db::postgres().await;
    let o = Optout::with_store(emu.env(), &db.url);
    let mut workers: Vec<Worker> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| worker(&o, &stream, w, "3000"))
        .collect();
    let leases = db.sql.clone();
    let l: &SqlStore = &leases;
    let st = &stream;
    support::wait_for(
        "8 shards shared by 3 workers",
        Duration::from_secs(60),
        || async move {
            let o = owners(l, st).await;
            o.len() == 3 && o.values().sum::<usize>() == 8 && o.values().all(|&c| c >= 2)
        },
    )
    .await
    .unwrap();
    let table = o.query(&["shards", "--stream", &stream]);
    assert_eq!(table.len(), 8);
    assert!(
        table
            .iter()
            .all(|r| r["owner"].as_str().is_some_and(|w| w.starts_with('w'))
                && r["lease_expires_at"].is_string()),
        "{table:#?}"
    );
    let t0 = Instant::now();
    eprintln!("balanced: {:?}", owners(l, st).await);

    let writer = {
        let (client, stream) = (client.clone(), stream.clone());
        tokio::spawn(async move {
            write(&client, &stream, 0, 3000, 100, Duration::from_millis(100)).await
        })
    };
    support::wait_for("some events stored", Duration::from_secs(60), || async {
        event_count(&*db.store).await > 300
    })
    .await
    .unwrap();
    let mut victim = workers.remove(0);
    let killed_at = Instant::now();
    victim.kill_9(); // no release: its leases must expire
    support::wait_for(
        "w2 and w3 to own all 8 shards",
        Duration::from_secs(30),
        || async move {
            let o = owners(l, st).await;
            !o.contains_key("w1") && o.values().sum::<usize>() == 8
        },
    )
    .await
    .unwrap();
    let takeover = killed_at.elapsed();
    eprintln!(
        "takeover after kill -9: {:.2} s (lease 3 s): {:?}",
        takeover.as_secs_f64(),
        owners(l, st).await
    );
    assert!(takeover < Duration::from_secs(15));
    writer.await.unwrap();
    eprintln!("writes done at {:.1} s", t0.elapsed().as_secs_f64());
    let store = &db.store;
    wait_for_events(&**store, 3000, Duration::from_secs(120)).await;
    for w in workers {
        w.terminate();
    }
    // A graceful stop releases leases at once.
    assert!(
        owners(l, st).await.is_empty(),
        "leases left after a graceful stop"
    );
    check_tables(&o, 3000);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_kills_during_a_backlog_give_the_same_tables() {
    let _serial = SERIAL.lock().await;
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::unique_stream("kill-loop");
    support::create_stream(&client, &stream, 4).await.unwrap();
    let mut synth = optout::synth::Synth::new(optout::synth::MixOptions {
        seed: 21,
        opt_ratio: 0.2,
        subscribers: 60,
    });
    let mut records: Vec<Vec<u8>> = (0..60_000).map(|_| synth.next_record().1).collect();
    records.extend((0..3000).map(opt_event));
    records.extend((0..30).map(|i| format!("broken {i}").into_bytes()));
    fastrand::Rng::with_seed(8).shuffle(&mut records);
    support::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();

    let reference = Optout::new(emu.env());
    reference.run_to_idle(&stream, &[]);
    let expected = reference.tables();

    let db = db::postgres().await;
    let o = Optout::with_store(emu.env(), &db.url);
    let total = expected[1].len();
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut progress = Vec::new();
    let mut stored = 0;
    while progress.len() < 20 && stored < total {
        let mut child = o.spawn_run(
            &stream,
            &[
                "--worker-id",
                "crashy",
                "--lease-ms",
                "1000",
                "--max-records-per-call",
                "300",
            ],
        );
        // Kill at a random moment once this run has committed something.
        let store = &db.store;
        let before = stored;
        support::wait_for("progress", Duration::from_secs(60), || async move {
            event_count(&**store).await > before
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        child.kill_9();
        stored = event_count(&*db.store).await;
        progress.push(stored);
    }
    eprintln!("opt events stored after each kill (of {total}): {progress:?}");
    assert_eq!(progress.len(), 20, "the backlog drained before 20 kills");
    o.run_to_idle(&stream, &["--worker-id", "crashy", "--lease-ms", "1000"]);
    let after = o.tables();
    assert_eq!(after[0], expected[0], "status differs");
    assert_eq!(after[1], expected[1], "events differ");
    assert_eq!(after[2], expected[2], "dead letters differ");
    assert_eq!(after[3], expected[3], "test events differ");
    eprintln!(
        "20 kills: {} events, {} statuses, {} dead letters, all equal to the uninterrupted run",
        after[1].len(),
        after[0].len(),
        after[2].len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn split_and_merge_under_writes_with_two_workers() {
    let _serial = SERIAL.lock().await;
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("reshard-workers");
    support::create_stream(&client, &stream, 3).await.unwrap();
    let db = db::postgres().await;
    let o = Optout::with_store(emu.env(), &db.url);
    let workers: Vec<Worker> = ["a", "b"]
        .iter()
        .map(|w| worker(&o, &stream, w, "3000"))
        .collect();
    let writer = {
        let (client, stream) = (client.clone(), stream.clone());
        tokio::spawn(async move {
            write(&client, &stream, 0, 1000, 50, Duration::from_millis(50)).await
        })
    };
    let store = &db.store;
    support::wait_for("writes under way", Duration::from_secs(60), || async move {
        event_count(&**store).await > 200
    })
    .await
    .unwrap();
    let (children, merged) = split_0_merge_1_2(&client, &stream).await;
    writer.await.unwrap();
    // The rest can only go to the children.
    write(&client, &stream, 1000, 2000, 50, Duration::from_millis(20)).await;
    wait_for_events(&**store, 2000, Duration::from_secs(120)).await;
    let mut logs = Vec::new();
    for w in workers {
        logs.extend(w.terminate());
    }
    check_tables(&o, 2000);
    // Each child started (on whichever worker) after its parents ended (on whichever worker).
    assert_children_after_parents(&logs, &children, &merged);
}
