//! PostgreSQL restarted under a running worker: the worker backs off and continues, never
//! stores a checkpoint ahead of the effects it covers, loses nothing and applies nothing twice
//! (effects counted by triggers).
//!
//! Alone in its test binary because it restarts the machine's PostgreSQL cluster (Debian's
//! `pg_ctlcluster`, as root, as CI runs). Where that is not possible it fails, unless
//! `OPTOUT_TEST_SKIP_PG_RESTART=1` asks to skip it, and then it says so: no silent pass.

#[macro_use]
mod common;

use common::optout::*;
use common::{db, effects, emulator};

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use optout::event::{DecodeOptions, Outcome, classify};

/// The cluster to restart, or why there is none.
fn cluster_version() -> Result<String, String> {
    let dir = std::fs::read_dir("/etc/postgresql")
        .map_err(|e| format!("no /etc/postgresql cluster to restart ({e})"))?;
    let mut versions: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    let version = versions.pop().ok_or("/etc/postgresql lists no cluster")?;
    let which = Command::new("pg_ctlcluster").arg("--help").output();
    if which.is_err() {
        return Err("pg_ctlcluster is not installed".into());
    }
    Ok(version)
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
/// ahead of the data it covers. Checkpoints are read before events, so an event a checkpoint
/// covered when it was read is visible to the later events read (events are only added).
/// Returns the opt events covered, or `None` while the database does not answer.
async fn checkpoints_never_ahead(
    reader: &optout::store::Reader,
    stream: &str,
    records: &[(String, String, Vec<u8>)],
) -> Option<usize> {
    let cps: HashMap<String, String> = reader
        .shard_states(stream)
        .await
        .ok()?
        .0
        .into_iter()
        .filter_map(|c| Some((c.shard_id, c.sequence_number?)))
        .collect();
    let stored: std::collections::HashSet<String> = reader
        .all(&optout::store::EventFilter::default())
        .await
        .ok()?
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
                "checkpoint {cp} of {shard} is ahead of event {} ({} events stored)",
                ev.event_id,
                stored.len()
            );
            covered += 1;
        }
    }
    Some(covered)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_mid_run_loses_nothing() {
    let version = match cluster_version() {
        Ok(v) => v,
        Err(why) if std::env::var("OPTOUT_TEST_SKIP_PG_RESTART").as_deref() == Ok("1") => {
            eprintln!("SKIPPED postgres_restart_mid_run_loses_nothing: {why}");
            return;
        }
        Err(why) => panic!(
            "{why}: this test restarts the local PostgreSQL cluster; \
             set OPTOUT_TEST_SKIP_PG_RESTART=1 to skip it on purpose"
        ),
    };
    let emu = emulator::ferrokinesis().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("pg-restart");
    emulator::create_stream(&client, &stream, 4).await.unwrap();
    let db = db::postgres().await;
    effects::install(&db.url).await;
    let o = Optout::with_store(emu.env(), &db.url);
    let worker = o.spawn_run(
        &stream,
        &[
            "--worker-id",
            "survivor",
            "--lease-ms",
            "3000",
            // Many small commits during the catch-up, so the snapshots land between them.
            "--max-records-per-call",
            "10",
        ],
    );
    write(&client, &stream, 0, 500, 100, Duration::from_millis(20)).await;
    let reader = &db.reader;
    wait_for_events(reader, 200, Duration::from_secs(60)).await;

    pg_ctl("stop", &version);
    let stopped_at = std::time::Instant::now();
    // Writes go on while the database is down, longer than the pool's 10 s acquire timeout, so
    // the worker's commits fail and it must back off rather than wait quietly.
    write(&client, &stream, 500, 1500, 100, Duration::from_millis(100)).await;
    // All records are in the stream now; read them before the catch-up starts.
    let records: Vec<(String, String, Vec<u8>)> = emulator::read_all(&client, &stream).await;
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(stopped_at.elapsed())).await;
    pg_ctl("start", &version);
    eprintln!(
        "PostgreSQL was down for {:.1} s",
        stopped_at.elapsed().as_secs_f64()
    );
    let mut w = worker;
    assert!(w.is_running(), "the worker died with the database");
    // Snapshot checkpoints and events over and over while the worker catches up, so a
    // checkpoint that lands before its effects is seen.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (mut snapshots, mut during_catch_up, mut unanswered) = (0, 0, 0);
    let mut covered;
    loop {
        if let Some(c) = checkpoints_never_ahead(reader, &stream, &records).await {
            snapshots += 1;
            covered = c;
            if event_count(reader).await >= 1500 {
                break;
            }
            during_catch_up += 1;
        } else {
            unanswered += 1;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "1500 events not stored within 120 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        during_catch_up >= 3,
        "only {during_catch_up} snapshots were taken before the worker caught up \
         ({unanswered} unanswered)"
    );
    eprintln!("{snapshots} snapshots, {during_catch_up} of them during catch-up");
    let logs = w.terminate();
    // A shard's backoff line carries `delay_ms`; the coordinator's retries carry `error`.
    assert!(
        logs.iter()
            .any(|l| l["level"] == "WARN" && (l["delay_ms"].is_u64() || l["error"].is_string())),
        "the outage was noticed and waited out: {:#?}",
        logs.iter()
            .filter(|l| l["level"] != "INFO")
            .collect::<Vec<_>>()
    );
    check_tables(&o, 1500);
    // A commit cut by the restart either landed or not; either way it is applied once.
    effects::assert_exactly_once(&db.url, 1500).await;
    eprintln!(
        "PostgreSQL restarted mid-run: {covered} opt events covered by checkpoints, all stored"
    );
}
