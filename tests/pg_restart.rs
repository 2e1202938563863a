//! PostgreSQL restarted under a running worker: the worker backs off and continues, never
//! stores a checkpoint ahead of the effects it covers, and loses nothing.
//!
//! Alone in its test binary because it restarts the machine's PostgreSQL cluster (Debian's
//! `pg_ctlcluster`, as root, as CI runs); it is skipped with a message where that is not possible.

#[path = "common/optout.rs"]
mod common;
#[path = "common/db.rs"]
mod db;
mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use optout::event::{DecodeOptions, Outcome, classify};

fn cluster_version() -> Option<String> {
    let dir = std::fs::read_dir("/etc/postgresql").ok()?;
    let mut versions: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions.pop()
}

fn pg_ctl(action: &str, version: &str) {
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", action])
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

/// Sequence numbers are decimal strings of up to 128 bits: compare by length, then text.
fn seq_le(a: &str, b: &str) -> bool {
    (a.len(), a) <= (b.len(), b)
}

/// Every opt event at or before each shard's checkpoint is stored: the checkpoint is never
/// ahead of the data it covers.
async fn checkpoints_never_ahead(
    store: &dyn optout::store::Store,
    stream: &str,
    records: &[(String, String, Vec<u8>)],
) -> usize {
    let cps: HashMap<String, String> = store
        .checkpoints(stream)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| Some((c.shard_id, c.sequence_number?)))
        .collect();
    let stored: std::collections::HashSet<String> = store
        .events(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    let mut covered = 0;
    for (shard, seq, data) in records {
        if let (Some(cp), Outcome::Opt(ev)) =
            (cps.get(shard), classify(data, DecodeOptions::default()))
            && seq_le(seq, cp)
        {
            assert!(
                stored.contains(&ev.event_id),
                "checkpoint {cp} of {shard} is ahead of event {}",
                ev.event_id
            );
            covered += 1;
        }
    }
    covered
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_mid_run_loses_nothing() {
    let Some(version) = cluster_version() else {
        eprintln!("skipped: no /etc/postgresql cluster to restart on this machine");
        return;
    };
    let emu = support::ferrokinesis().await;
    let client = emu.client().await;
    let stream = support::unique_stream("pg-restart");
    support::create_stream(&client, &stream, 4).await.unwrap();
    let db = db::postgres().await;
    let o = Optout::with_store(emu.env(), &db.url);
    let worker = o.spawn_run(&stream, &["--worker-id", "survivor", "--lease-ms", "3000"]);
    write(&client, &stream, 0, 500, 100, Duration::from_millis(20)).await;
    let store = &db.store;
    wait_for_events(&**store, 200, Duration::from_secs(60)).await;

    pg_ctl("stop", &version);
    let stopped_at = std::time::Instant::now();
    // Writes go on while the database is down, longer than the pool's 10 s acquire timeout, so
    // the worker's commits fail and it must back off rather than wait quietly.
    write(&client, &stream, 500, 1500, 100, Duration::from_millis(100)).await;
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(stopped_at.elapsed())).await;
    pg_ctl("start", &version);
    eprintln!(
        "PostgreSQL was down for {:.1} s",
        stopped_at.elapsed().as_secs_f64()
    );
    let mut w = worker;
    assert!(w.is_running(), "the worker died with the database");
    wait_for_events(&**store, 1500, Duration::from_secs(120)).await;
    let records: Vec<(String, String, Vec<u8>)> = support::read_all(&client, &stream).await;
    let covered = checkpoints_never_ahead(&**store, &stream, &records).await;
    let logs = w.terminate();
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("backing off") || m.contains("retry"))),
        "the outage was noticed and waited out: {:#?}",
        logs.iter()
            .filter(|l| l["level"] != "INFO")
            .collect::<Vec<_>>()
    );
    check_tables(&o, 1500);
    eprintln!(
        "PostgreSQL restarted mid-run: {covered} opt events covered by checkpoints, all stored"
    );
}
