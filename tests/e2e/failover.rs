//! A PostgreSQL failover seen from a running consumer: the database turns read-only (the old
//! writer, demoted, still named by DNS) with every session cut, then disappears (3D000), then
//! comes back writable. The worker never exits: its commits retry with backoff, `/readyz` and
//! `/metrics` say so, and once the database is back every record lands exactly once.

use crate::common::optout::*;
use crate::common::{db, emulator};

use std::time::Duration;

use sqlx::Connection;

/// Cuts every session of database `name` but the caller's.
async fn terminate_sessions(admin: &mut sqlx::PgConnection, name: &str) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut *admin)
    .await
    .unwrap();
}

/// Runs `sql` through the admin connection (another database than the test's).
async fn admin_sql(admin: &mut sqlx::PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *admin)
        .await
        .map(|_| ())
}

/// Waits until `/readyz` answers 503 naming a failing shard and the worker is still running.
async fn wait_unready(addr: &str, worker: &mut Worker, what: &str) -> String {
    let body = emulator::poll(what, Duration::from_secs(60), || async {
        Ok(match http_get(addr, "/readyz").await {
            (503, body) if body.contains("failing for") => Some(body),
            _ => None,
        })
    })
    .await
    .unwrap();
    assert!(
        worker.is_running(),
        "the worker exited: {}",
        worker.raw_log()
    );
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_or_missing_database_is_waited_out_not_fatal() {
    let pg = db::postgres().await;
    let name = pg.url.rsplit('/').next().unwrap().to_string();
    let mut admin = sqlx::PgConnection::connect(&db::pg_admin_url())
        .await
        .unwrap();
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("failover");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    write(&client, &stream, 0, 40, 40, Duration::ZERO).await;
    let o = Optout::with_store(emu.env(), &pg.url);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut worker = o.spawn_run(
        &stream,
        &["--http-addr", &addr, "--failing-after-secs", "2"],
    );
    wait_for_events(&pg.reader, 40, Duration::from_secs(60)).await;

    // The failover: read-only for every new session, and every session cut.
    admin_sql(
        &mut admin,
        format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
    )
    .await
    .unwrap();
    terminate_sessions(&mut admin, &name).await;
    write(&client, &stream, 40, 80, 40, Duration::ZERO).await;
    let body = wait_unready(&addr, &mut worker, "/readyz 503 while read-only").await;
    assert!(body.contains("read-only"), "{body}");
    let metrics = emulator::poll(
        "transient commit failures counted",
        Duration::from_secs(30),
        || async {
            let (_, m) = http_get(&addr, "/metrics").await;
            Ok(
                (metric(&m, r#"optout_commit_failures_total{kind="transient"}"#) >= 1.0)
                    .then_some(m),
            )
        },
    )
    .await
    .unwrap();
    assert_eq!(
        metric(&metrics, r#"optout_commit_failures_total{kind="fatal"}"#),
        0.0,
        "a read-only database is not fatal"
    );
    assert_eq!(event_count(&pg.reader).await, 40, "nothing lands meanwhile");

    // Then the database is gone altogether (3D000) for a while.
    let away = format!("{name}_away");
    // The worker reconnects at once: cut its sessions until the rename slips in between.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        terminate_sessions(&mut admin, &name).await;
        let renamed = admin_sql(
            &mut admin,
            format!("ALTER DATABASE {name} RENAME TO {away}"),
        );
        if renamed.await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "could not rename");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        worker.is_running(),
        "the worker exited on a missing database: {}",
        worker.raw_log()
    );
    let (code, body) = http_get(&addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");

    // Back, writable, under its name.
    admin_sql(
        &mut admin,
        format!("ALTER DATABASE {away} RENAME TO {name}"),
    )
    .await
    .unwrap();
    admin_sql(
        &mut admin,
        format!("ALTER DATABASE {name} SET default_transaction_read_only = off"),
    )
    .await
    .unwrap();
    terminate_sessions(&mut admin, &name).await;
    wait_for_events(&pg.reader, 80, Duration::from_secs(90)).await;
    emulator::wait_for("/readyz ready again", Duration::from_secs(60), || async {
        http_get(&addr, "/readyz").await.0 == 200
    })
    .await
    .unwrap();
    let (_, metrics) = http_get(&addr, "/metrics").await;
    for series in [
        r#"optout_commit_failures_total{kind="fatal"}"#,
        r#"optout_shard_restarts_total{reason="error"}"#,
    ] {
        assert_eq!(metric(&metrics, series), 0.0, "{series}: retried in place");
    }
    worker.terminate();
    check_tables(&o, 80);
}
