//! The probes on a listener of their own (`--health-addr`): a flood of idle connections on
//! the API port cannot fail them (and is logged in a few lines, not one per socket), and
//! `/readyz` answers while every read connection of the API is held.

use std::time::Duration;

use crate::common::db;
use crate::common::optout::{Served, free_port, http_get, metric};

/// Probes answer within this long (the kubelet's default timeout is 1 s, ours 3 s); a probe
/// queued behind the API never answers at all while the API is held.
const PROBE_WAIT: Duration = Duration::from_secs(5);

async fn probe(addr: &str, path: &str) -> u16 {
    match tokio::time::timeout(PROBE_WAIT, http_get(addr, path)).await {
        Ok((code, _)) => code,
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_flood_on_the_api_port_cannot_fail_a_probe() {
    let db = db::sqlite().await;
    let health = format!("127.0.0.1:{}", free_port());
    let served = Served::start(&db.url, &["--health-addr", &health]).await;
    // Without --health-addr the probes are still on the API port.
    assert_eq!(probe(&served.addr, "/v1/status").await, 200);
    assert_eq!(probe(&served.addr, "/healthz").await, 404);

    // 1,030 idle sockets: more than the API listener keeps open.
    let mut idle = Vec::new();
    for _ in 0..1_030 {
        if let Ok(s) = tokio::net::TcpStream::connect(&served.addr).await {
            idle.push(s);
        }
    }
    // The API refuses new connections meanwhile...
    let (refused, _) = http_get(&served.addr, "/v1/status").await;
    assert_eq!(refused, 0, "the API port is full");
    // ...and every probe answers on its own listener.
    for _ in 0..20 {
        assert_eq!(probe(&health, "/healthz").await, 200);
        assert_eq!(probe(&health, "/readyz").await, 200);
        let _ = http_get(&served.addr, "/v1/status").await; // more refusals
    }
    let (code, metrics) = http_get(&health, "/metrics").await;
    assert_eq!(code, 200);
    let counted = metric(
        &metrics,
        r#"optout_http_connections_refused_total{listener="api"}"#,
    );
    assert!(counted >= 20.0, "refusals counted: {counted}\n{metrics}");
    let warned = served
        .logs()
        .iter()
        .filter(|l| l["level"] == "WARN" && l["listener"] == "api" && l["refused"].is_u64())
        .count();
    assert!(
        (1..=2).contains(&warned),
        "{counted} refusals made {warned} WARN lines"
    );
    drop(idle);
    let wait = tokio::time::Instant::now() + Duration::from_secs(30);
    while http_get(&served.addr, "/v1/status").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < wait,
            "the API never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every read connection of the API waits on a table lock; `/readyz` still answers, on a
/// connection of its own.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_never_queues_behind_api_reads() {
    use sqlx::Connection;
    let pg = db::postgres().await;
    let health = format!("127.0.0.1:{}", free_port());
    let served = Served::start(&pg.url, &["--health-addr", &health]).await;
    assert_eq!(probe(&health, "/readyz").await, 200);
    let mut admin = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let mut lock = admin.begin().await.unwrap();
    sqlx::raw_sql("LOCK TABLE opt_status IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    // Eight readers: the four read connections wait on the lock, the rest on the pool.
    let held: Vec<_> = (0..8)
        .map(|_| {
            let addr = served.addr.clone();
            tokio::spawn(async move { http_get(&addr, "/v1/status").await.0 })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..3 {
        assert_eq!(
            probe(&health, "/readyz").await,
            200,
            "readiness waited behind the API's reads"
        );
    }
    lock.rollback().await.unwrap();
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
}
