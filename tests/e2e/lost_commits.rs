//! Failover mid-commit, end to end: a COMMIT that lands but whose answer is lost (a proxy
//! between optout and PostgreSQL swallows the answer and drops the connection), and a store
//! that loses a shard's last commits underneath a running reader (rows deleted and the
//! checkpoint moved back in one transaction, as when an asynchronous replica is promoted
//! without them). In both, every record ends up stored exactly once: effects are counted by
//! triggers, so a batch applied twice shows, and the reader makes durable exactly the records
//! it had to (none skipped, none read twice but the lost ones).

use crate::common::db::{self, Db};
use crate::common::effects;
use crate::common::emulator;
use crate::common::optout::*;
use crate::common::pg_proxy::PgProxy;

use std::time::Duration;

use serde_json::Value;

both_backends! {
    commits_lost_underneath_a_running_reader_are_read_again;
}

/// Log lines of a reader-level event (`shard_event` field).
fn events(logs: &[Value], event: &str) -> Vec<Value> {
    logs.iter()
        .filter(|l| l["shard_event"] == event)
        .cloned()
        .collect()
}

/// Writes events `from..to` in the background, a few at a time, so that every shard is
/// committed in many small batches.
fn writing(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    from: usize,
    to: usize,
) -> tokio::task::JoinHandle<()> {
    let (client, stream) = (client.clone(), stream.to_string());
    tokio::spawn(
        async move { write(&client, &stream, from, to, 10, Duration::from_millis(30)).await },
    )
}

/// Three COMMITs land but their answers are lost. After each, the reader reads its checkpoint
/// again, finds the batch there and goes on after it: nothing is applied twice, and the
/// records it made durable are exactly those in the stream.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_whose_answer_is_lost_is_not_applied_again() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("lost-ack");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    let db = db::postgres().await;
    effects::install(&db.url).await;
    let proxy = PgProxy::start(&db.url).await;
    let o = Optout::with_store(emu.env(), &proxy.url);
    let worker = o.spawn_run(
        &stream,
        &[
            "--worker-id",
            "w",
            "--lease-ms",
            "3000",
            "--max-records-per-call",
            "20",
        ],
    );
    let writer = writing(&client, &stream, 0, 600);
    wait_for_events(&db.reader, 100, Duration::from_secs(60)).await;
    proxy.drop_next_commits(3);
    let p = &proxy;
    emulator::wait_for(
        "three lost answers",
        Duration::from_secs(60),
        || async move { p.dropped() == 3 },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {} commits seen\n{}",
            proxy.commits(),
            worker.raw_log()
        )
    });
    writer.await.unwrap();
    wait_for_events(&db.reader, 600, Duration::from_secs(120)).await;
    let logs = worker.terminate();
    effects::assert_exactly_once(&db.url, 600).await;
    assert_eq!(records_read(&logs), 600, "no record made durable twice");
    check_tables(&o, 600);
    let landed = events(&logs, "commit_landed");
    assert_eq!(
        landed.len(),
        3,
        "each lost answer found landed: {landed:#?}"
    );
}

/// The reader has committed everything and waits at the tip when the store loses the last
/// two commits of one shard, with no error to tell it. Its next commit, for new records, is
/// refused by the checkpoint's compare-and-set; it reloads the checkpoint and reads again
/// from there: the lost records are stored again, once, and nothing new is skipped.
async fn commits_lost_underneath_a_running_reader_are_read_again(db: Db) {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("rollback");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    effects::install(&db.url).await;
    let o = Optout::with_store(emu.env(), &db.url);
    let mut args = vec!["--max-records-per-call", "10"];
    if db.url.starts_with("postgres") {
        args.extend(["--worker-id", "w", "--lease-ms", "3000"]);
    }
    let worker = o.spawn_run(&stream, &args);
    writing(&client, &stream, 0, 200).await.unwrap();
    wait_for_events(&db.reader, 200, Duration::from_secs(60)).await;

    // The shard with the most commits loses its last two.
    let mut shards = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let written = effects::checkpoints_written(&db.url, &stream, shard).await;
        shards.push((written.len(), shard, written));
    }
    shards.sort();
    let (commits, shard, written) = shards.pop().unwrap();
    assert!(commits >= 3, "{shard}: only {commits} commits");
    let to = &written[commits - 3];
    let lost = effects::roll_back(&db.url, &stream, shard, to).await;
    assert!(!lost.is_empty(), "two commits of {shard} hold opt events");
    assert_eq!(event_count(&db.reader).await, 200 - lost.len());
    assert_eq!(
        checkpoint_map(&db.reader, &stream).await.get(shard),
        Some(to)
    );

    writing(&client, &stream, 200, 300).await.unwrap();
    let (reader, w) = (&db.reader, &worker);
    emulator::wait_for(
        "every event again",
        Duration::from_secs(60),
        || async move { event_count(reader).await >= 300 },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", w.raw_log()));
    let logs = worker.terminate();
    let reloaded = events(&logs, "checkpoint_reloaded");
    assert!(
        reloaded.iter().any(|l| l["shard_id"] == shard
            && l["stored"]
                .as_str()
                .is_some_and(|s| s.contains(to.as_str()))),
        "{shard} read again from {to}: {reloaded:#?}"
    );
    // Each lost record was made durable twice (before and after the loss), every other once.
    assert_eq!(records_read(&logs), 300 + lost.len() as u64);
    check_tables(&o, 300);
    effects::assert_exactly_once(&db.url, 300).await;
    eprintln!(
        "{}: {} opt events of {shard} lost underneath after {to}, read again",
        db.store.backend(),
        lost.len()
    );
}
