//! A shard that cannot commit is visible: `/readyz` answers 503 naming the shard and the
//! database's error once it has failed for `--failing-after-secs`, `/metrics` counts it in
//! `optout_shards_failing` and its restarts, and both recover once the database does.

use crate::common::optout::*;
use crate::common::{db, emulator};

use std::time::{Duration, Instant};

/// The checkpoint upsert fails with a permission error (not the data's fault, not transient):
/// what a role that lost its grants, or a schema changed under the consumer, looks like.
const BREAK: &str = "CREATE FUNCTION refuse_checkpoints() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN RAISE EXCEPTION 'checkpoints are read-only here' USING ERRCODE = 'insufficient_privilege'; END $$; \
     CREATE TRIGGER refuse_checkpoints BEFORE INSERT OR UPDATE ON checkpoints \
     FOR EACH ROW EXECUTE FUNCTION refuse_checkpoints();";
const MEND: &str = "DROP TRIGGER refuse_checkpoints ON checkpoints;";

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_that_cannot_commit_shows_in_readyz_and_metrics() {
    use sqlx::Connection;
    let pg = db::postgres().await;
    let mut admin = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    sqlx::raw_sql(BREAK).execute(&mut admin).await.unwrap();
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("unready");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    write(&client, &stream, 0, 50, 50, Duration::ZERO).await;
    let o = Optout::with_store(emu.env(), &pg.url);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let worker = o.spawn_run(
        &stream,
        &["--http-addr", &addr, "--failing-after-secs", "2"],
    );
    let body = emulator::poll(
        "/readyz to name the failing shard",
        Duration::from_secs(60),
        || async {
            Ok(match http_get(&addr, "/readyz").await {
                (503, body) if body.contains("shardId-000000000000 failing for") => Some(body),
                _ => None,
            })
        },
    )
    .await
    .unwrap();
    eprintln!(
        "failing shard surfaced {:.1} s after start (threshold 2 s): {}",
        started.elapsed().as_secs_f64(),
        body.trim()
    );
    assert!(body.contains("checkpoints are read-only here"), "{body}");
    // The gauge is published by the engine's housekeeping, once a second.
    let metrics = emulator::poll(
        "optout_shards_failing 1",
        Duration::from_secs(10),
        || async {
            let (_, m) = http_get(&addr, "/metrics").await;
            Ok(m.lines()
                .any(|l| l == "optout_shards_failing 1")
                .then_some(m))
        },
    )
    .await
    .unwrap();
    assert!(
        metrics.contains(r#"optout_shard_restarts_total{reason="error"}"#),
        "{metrics}"
    );
    assert_eq!(
        event_count(&pg.reader).await,
        0,
        "nothing lands without its checkpoint"
    );

    sqlx::raw_sql(MEND).execute(&mut admin).await.unwrap();
    wait_for_events(&pg.reader, 50, Duration::from_secs(60)).await;
    emulator::wait_for(
        "/readyz to be ready again",
        Duration::from_secs(30),
        || async { http_get(&addr, "/readyz").await.0 == 200 },
    )
    .await
    .unwrap();
    let metrics = emulator::poll(
        "optout_shards_failing 0",
        Duration::from_secs(10),
        || async {
            let (_, m) = http_get(&addr, "/metrics").await;
            Ok(m.lines()
                .any(|l| l == "optout_shards_failing 0")
                .then_some(m))
        },
    )
    .await
    .unwrap();
    assert!(
        metrics.contains(
            "optout_shard_last_commit_timestamp_seconds{shard_id=\"shardId-000000000000\"}"
        ),
        "{metrics}"
    );
    worker.terminate();
    check_tables(&o, 50);
}
