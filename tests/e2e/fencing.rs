//! Fencing end to end, on PostgreSQL: a worker is paused (SIGSTOP) with a commit in flight,
//! its lease is taken over meanwhile and another worker reads on; resumed (SIGCONT), its
//! commit is refused, it stops that shard, and nothing it held lands twice or moves the
//! checkpoint back.
//!
//! To have a commit surely in flight when the worker is paused, the test holds the lease row
//! locked (as a takeover's own transaction would) until the database shows the worker's commit
//! waiting on it (its fencing check, not a housekeeping call, which waits on the same row),
//! and takes the lease over in that same transaction.
//!
//! The paused worker's transaction then keeps that row locked (PostgreSQL keeps the lock of a
//! `FOR UPDATE` row whose recheck failed), which would block every other worker's lease
//! housekeeping until it resumes. The database therefore ends idle transactions after 5 s
//! (`idle_in_transaction_session_timeout`), as a deployment with several workers should.

use crate::common::optout::*;
use crate::common::{db, effects, emulator};

use std::process::Command;
use std::time::Duration;

use sqlx::{Connection, Row};

const LEASE_MS: i64 = 3000;

async fn metrics(addr: &str) -> String {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    body
}

fn signal(w: &Worker, sig: &str) {
    let pid = w.child.id().to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Backends of this database waiting on a lock in a commit's fencing check (the statement
/// that locks the lease row inside the commit), as opposed to lease housekeeping, which waits
/// on the same row.
async fn commits_waiting(url: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() \
         AND query LIKE 'SELECT token FROM leases %FOR UPDATE%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get("n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_cannot_commit_after_its_lease_is_taken() {
    let emu = emulator::ferrokinesis().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("fencing");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let db = db::postgres().await;
    effects::install(&db.url).await;
    let o = Optout::with_store(emu.env(), &db.url);
    let name = db.url.rsplit('/').next().unwrap();
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET idle_in_transaction_session_timeout = '5s'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let a_addr = format!("127.0.0.1:{}", free_port());
    let lease = LEASE_MS.to_string();
    let mut a = o.spawn_run(
        &stream,
        &[
            "--worker-id",
            "a",
            "--lease-ms",
            &lease,
            "--http-addr",
            &a_addr,
        ],
    );
    // A steady flow, so the worker always has a batch to commit.
    let writer = {
        let (client, stream) = (client.clone(), stream.clone());
        tokio::spawn(
            async move { write(&client, &stream, 0, 400, 5, Duration::from_millis(50)).await },
        )
    };
    wait_for_events(&db.reader, 50, Duration::from_secs(60)).await;

    // Hold the lease row as a takeover would, until a's commit waits on it.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut probe = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut holder).await.unwrap();
    let token: i64 = sqlx::query("SELECT token FROM leases WHERE stream_name = $1 FOR UPDATE")
        .bind(&stream)
        .fetch_one(&mut holder)
        .await
        .unwrap()
        .get("token");
    let url = &db.url;
    emulator::poll(
        "a commit waiting on the lease",
        Duration::from_secs(30),
        || async move { Ok((commits_waiting(url).await > 0).then_some(())) },
    )
    .await
    .unwrap();
    signal(&a, "-STOP");
    // The takeover: a new owner and a larger token, in the transaction that held the row.
    sqlx::query(
        "UPDATE leases SET owner = 'b', token = token + 1, \
         expires_at = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $2 \
         WHERE stream_name = $1",
    )
    .bind(&stream)
    .bind(LEASE_MS)
    .execute(&mut holder)
    .await
    .unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    // Worker b takes the shard once that lease runs out, and reads everything written.
    let b = o.spawn_run(&stream, &["--worker-id", "b", "--lease-ms", &lease]);
    writer.await.unwrap();
    write(&client, &stream, 400, 500, 50, Duration::from_millis(10)).await;
    let st = &db.reader;
    if let Err(e) = emulator::wait_for("b to store all 500", Duration::from_secs(60), || async {
        event_count(st).await >= 500
    })
    .await
    {
        panic!("{e}\nb's log:\n{}", b.raw_log());
    }
    let held: (String, i64) = {
        let r = sqlx::query("SELECT owner, token FROM leases WHERE stream_name = $1")
            .bind(&stream)
            .fetch_one(&mut probe)
            .await
            .unwrap();
        (r.get("owner"), r.get("token"))
    };
    assert_eq!(held.0, "b");
    assert!(held.1 > token, "the lease token did not grow: {held:?}");
    let checkpoint = checkpoint_map(&db.reader, &stream).await;

    signal(&a, "-CONT");
    // a's commit in flight is refused, and a stops reading the shard.
    let addr = &a_addr;
    emulator::poll(
        "a to give the shard up",
        Duration::from_secs(30),
        || async move {
            let m = metrics(addr).await;
            Ok((metric(&m, "optout_shards_reading") == 0.0).then_some(m))
        },
    )
    .await
    .unwrap();
    let m = metrics(&a_addr).await;
    let refused = metric(&m, "optout_commit_failures_total{kind=\"lease_lost\"}");
    assert!(refused >= 1.0, "a's in-flight commit was not refused:\n{m}");
    // Whatever a held landed nowhere: the checkpoint did not move back, and b still owns it.
    tokio::time::sleep(Duration::from_millis(LEASE_MS as u64 / 3 * 2)).await;
    assert_eq!(checkpoint_map(&db.reader, &stream).await, checkpoint);
    let owner: String = sqlx::query("SELECT owner FROM leases WHERE stream_name = $1")
        .bind(&stream)
        .fetch_one(&mut probe)
        .await
        .unwrap()
        .get("owner");
    assert_eq!(owner, "b");
    assert!(a.is_running(), "a should keep running, without the shard");
    a.terminate();
    b.terminate();
    check_tables(&o, 500);
    // Whatever a held was applied by b alone, once.
    effects::assert_exactly_once(&db.url, 500).await;
    eprintln!(
        "fenced: a's commit refused {refused} time(s) after the takeover (token {token} -> {})",
        held.1
    );
}
