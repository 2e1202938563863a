//! SIGTERM while records keep arriving, a commit failing during shutdown, and the second signal.
//!
//! - While a writer keeps putting records, SIGTERM: `run` exits 0; what is stored is exactly
//!   the records up to the stored checkpoint (the batch in hand committed with it, nothing
//!   after it), records after it exist, and a restart stores the rest, every effect once.
//! - The store fails (connections refused) while a batch is in hand, then SIGTERM: the reader
//!   stops waiting for the store, the batch is not committed (nor acknowledged: its checkpoint
//!   did not move), the leases cannot be released and are left to expire, and `run` exits 0
//!   as for any stop (docs/operating.md); a restart stores every record once.
//! - The store hangs (a black hole) so the first SIGTERM cannot finish: a second signal exits
//!   at once with code 130.

use crate::common::db;
use crate::common::effects;
use crate::common::emulator;
use crate::common::optout::*;
use crate::common::proxy::Proxy;
use crate::common::records::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Puts events `0..` in chunks of 20 until `stop`; returns (event index, sequence number) of
/// each, in order (one shard: index order is sequence order).
fn keep_writing(
    client: aws_sdk_kinesis::Client,
    stream: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(usize, String)>> {
    tokio::spawn(async move {
        let mut put = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let from = put.len();
            let records: Vec<Vec<u8>> = (from..from + 20).map(opt_event).collect();
            let seqs = emulator::put_records(&client, &stream, &keyed(records))
                .await
                .unwrap();
            put.extend(
                seqs.into_iter()
                    .enumerate()
                    .map(|(i, (_, s))| (from + i, s)),
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        put
    })
}

async fn sigterm_while_records_arrive(store: Option<&str>) {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("sigterm");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let o = match store {
        Some(url) => Optout::with_store(emu.env(), url),
        None => Optout::new(emu.env()),
    };
    effects::install(&o.store).await;
    let reader = db::open_reader(&o.store).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(client.clone(), stream.clone(), stop.clone());
    let worker = o.spawn_run(&stream, &[]);
    wait_for_events(&reader, 200, Duration::from_secs(120)).await;
    let (status, logs) = worker.signal_and_wait("-TERM");
    assert!(status.success(), "exit {status}: {logs:?}");
    // Records keep arriving after the exit too, then the writer stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let put = writer.await.unwrap();

    let shards = o.query(&["shards", "--stream", &stream]);
    let checkpoint = shards[0]["checkpoint"].as_str().unwrap().to_string();
    let upto = put
        .iter()
        .position(|(_, s)| *s == checkpoint)
        .expect("the checkpoint is a record's sequence number");
    let mut stored: Vec<String> = o
        .query(&["events"])
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    stored.sort();
    let want: Vec<String> = (0..=upto).map(|i| format!("EZw{i:08}")).collect();
    assert_eq!(
        stored, want,
        "stored: exactly the records up to the checkpoint (the batch in hand and nothing after)"
    );
    assert!(upto + 1 < put.len(), "records arrived after the checkpoint");
    eprintln!(
        "SIGTERM: {} records put, {} stored up to the checkpoint",
        put.len(),
        upto + 1
    );

    o.run_to_idle(&stream, &[]);
    check_tables(&o, put.len());
    effects::assert_exactly_once(&o.store, put.len()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_records_arrive_on_sqlite() {
    sigterm_while_records_arrive(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_records_arrive_on_postgres() {
    let pg = db::postgres().await;
    sigterm_while_records_arrive(Some(&pg.url)).await;
}

/// A PostgreSQL database reached through a TCP proxy the test can break: (database, proxy,
/// the URL through the proxy).
async fn proxied_postgres() -> (db::Db, Proxy, String) {
    let pg = db::postgres().await;
    let mut url = url::Url::parse(&pg.url).unwrap();
    let server = format!(
        "http://{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(&server).await;
    let port: u16 = proxy.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    (pg, proxy, url.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_failing_during_shutdown_commits_nothing_and_loses_nothing() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("sigterm-fail");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let (pg, proxy, url) = proxied_postgres().await;
    effects::install(&pg.url).await;
    let o = Optout::with_store(emu.env(), &url);
    // Its leases will expire rather than be released: a short lease, and the same worker id
    // for the restart, so that it need not wait one out.
    let worker_args = ["--worker-id", "w1", "--lease-ms", "1000"];
    let worker = o.spawn_run(&stream, &worker_args);
    worker.wait_shard_event("caught_up", 1).await;
    // The store refuses every connection; then records arrive: the batch read cannot commit.
    proxy.cut();
    let records: Vec<Vec<u8>> = (0..50).map(opt_event).collect();
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    emulator::wait_for("a failed commit", Duration::from_secs(60), || async {
        worker.raw_log().contains("Call failed; backing off.")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", worker.raw_log()));
    let (status, logs) = worker.signal_and_wait("-TERM");
    assert_eq!(status.code(), Some(0), "{logs:?}");
    assert!(
        logs.iter()
            .any(|l| l["message"] == "Could not release leases; they will expire."),
        "{logs:?}"
    );
    assert_eq!(
        db::open_reader(&pg.url)
            .await
            .all(&optout::store::EventFilter::default())
            .await
            .unwrap()
            .len(),
        0,
        "nothing of the batch landed"
    );
    proxy.heal();
    let o = Optout::with_store(emu.env(), &pg.url);
    o.run_to_idle(&stream, &worker_args);
    check_tables(&o, 50);
    effects::assert_exactly_once(&pg.url, 50).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once_with_130() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("sigterm-twice");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let (_pg, proxy, url) = proxied_postgres().await;
    let o = Optout::with_store(emu.env(), &url);
    let mut worker = o.spawn_run(&stream, &[]);
    worker.wait_shard_event("caught_up", 1).await;
    // The store hangs: the first signal's shutdown (the batch in hand, the leases) waits on it.
    proxy.blackhole();
    let records: Vec<Vec<u8>> = (0..10).map(opt_event).collect();
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let pid = worker.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    emulator::wait_for("the first signal seen", Duration::from_secs(30), || async {
        worker.raw_log().contains("Shutting down")
    })
    .await
    .unwrap();
    assert!(worker.is_running(), "{}", worker.raw_log());
    let (status, logs) = worker.signal_and_wait("-TERM");
    assert_eq!(status.code(), Some(130), "{logs:?}");
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Second signal"))),
        "{logs:?}"
    );
    proxy.heal();
}
