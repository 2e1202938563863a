//! The SQLite file deleted under a running consumer (`rm` of the database, its WAL and SHM):
//! the consumer stops with exit 1 instead of committing into a file no path names and
//! saying "stopped cleanly"; `optout serve` on it answers `/readyz` 503.

use crate::common::emulator;
use crate::common::optout::*;

use std::time::{Duration, Instant};

fn remove_database(o: &Optout) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = o.db_path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_database_stops_the_consumer_with_exit_1() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("deleted");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    write(&client, &stream, 0, 20, 20, Duration::ZERO).await;
    let o = Optout::new(emu.env());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut worker = o.spawn_run(&stream, &["--http-addr", &addr]);
    let reader = crate::common::db::open_reader(&o.store).await;
    wait_for_events(&reader, 20, Duration::from_secs(60)).await;
    reader.close().await;
    assert_eq!(http_get(&addr, "/readyz").await.0, 200);

    remove_database(&o);
    write(&client, &stream, 20, 40, 20, Duration::ZERO).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the consumer kept running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(1), "{}", worker.raw_log());
    let logs = worker.logs();
    assert!(
        logs.iter().all(|l| l["shards_finished"].is_null()),
        "no clean-stop summary after losing the database: {logs:?}"
    );
    assert!(
        !o.db_path.exists(),
        "nothing recreated the file behind our back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_is_unready_once_its_database_is_deleted() {
    let o = Optout::new(vec![]);
    assert!(o.output(&["migrate"]).status.success());
    let served = Served::start(&o.store, &[]).await;
    assert_eq!(http_get(&served.addr, "/readyz").await.0, 200);
    remove_database(&o);
    let (code, body) = http_get(&served.addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
}
