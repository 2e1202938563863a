//! The API's limits, each one at its boundary, through `optout serve`:
//! - the connection cap: 1,024 connections are served, the 1,025th is closed at once, and one
//!   closed makes room again;
//! - the header-read deadline: a client that sends half a request head is closed after 10 s,
//!   measured (never before, and within 2 s after);
//! - the in-flight cap: with every read held behind a table lock, 40 requests at once get
//!   exactly 8 answers `503 busy` (counted in `optout_http_requests_refused_total`), the 32
//!   others 503 too once they give up, none a 200; the webhooks' own cap: 64 requests whose
//!   bodies never come hold it, the 65th is `busy`, and queries still answer;
//! - the response time limit: a request blocked on the database is answered `503 timeout`
//!   after 30 s, measured;
//! - `store_unavailable`: with the database unreachable, a query is a 503 that says so.
//!
//! Times are measured against the deadlines the code sets; each bound is the deadline plus a
//! margin for a loaded machine, so the figures are printed too.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::db;
use crate::common::optout::{Served, http_get, metric};
use crate::common::proxy::Proxy;

/// How long a server may take past a deadline before the test calls it late.
const MARGIN: Duration = Duration::from_secs(2);

/// Waits until the server closes `s` (EOF or reset); returns how long that took.
async fn closed_after(s: &mut tokio::net::TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
}

/// A GET on an open connection (HTTP/1.1, kept alive): the status code.
async fn get_on(s: &mut tokio::net::TcpStream, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_is_1024_and_the_header_deadline_10_s() {
    let db = db::sqlite().await;
    let served = Served::start(&db.url, &[]).await;
    // 1,024 connections, opened within the header deadline; the last one is served.
    let mut open = Vec::new();
    for _ in 0..1_024 {
        open.push(tokio::net::TcpStream::connect(&served.addr).await.unwrap());
    }
    let last = open.last_mut().unwrap();
    assert_eq!(
        get_on(last, "/v1/status").await,
        200,
        "the 1,024th is served"
    );
    // The 1,025th is closed at once.
    let mut over = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
    let took = closed_after(&mut over, Duration::from_secs(5)).await;
    assert!(took < MARGIN, "the 1,025th was closed after {took:?}");
    // One closed makes room for one.
    open.remove(0);
    let wait = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(1), get_on(&mut s, "/v1/status"))
            .await
            .ok();
        if answered == Some(200) {
            open.push(s);
            break;
        }
        assert!(Instant::now() < wait, "no room after one connection closed");
    }
    drop(open);

    // Half a request head: closed 10 s after the connection was ready for one.
    let mut slow = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = closed_after(&mut slow, Duration::from_secs(30)).await;
    eprintln!("header deadline: closed after {took:?} (deadline 10 s)");
    assert!(
        Duration::from_secs(10) - Duration::from_millis(100) <= took
            && took <= Duration::from_secs(10) + MARGIN,
        "closed after {took:?}, the deadline is 10 s"
    );
}

/// (status code, `error` field) of a GET.
async fn error_of(addr: &str, path: &str) -> (u16, String) {
    let (code, body) = http_get(addr, path).await;
    let error = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    (code, error)
}

#[tokio::test(flavor = "multi_thread")]
async fn past_32_in_flight_is_busy_and_30_s_is_a_timeout() {
    use sqlx::Connection;
    let pg = db::postgres().await;
    let served = Served::start(&pg.url, &[]).await;
    assert_eq!(http_get(&served.addr, "/v1/status").await.0, 200);
    let mut admin = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let mut lock = admin.begin().await.unwrap();
    sqlx::raw_sql("LOCK TABLE opt_status IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    // One request that holds a read connection on the lock: the response time limit.
    let addr = served.addr.clone();
    let first = tokio::spawn(async move {
        let started = Instant::now();
        let answer = error_of(&addr, "/v1/status").await;
        (answer, started.elapsed())
    });
    // It holds its slot (and a connection) before the others come.
    crate::common::emulator::wait_for(
        "the first read waits on the lock",
        Duration::from_secs(10),
        || async {
            use sqlx::Row;
            let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
            sqlx::query("SELECT count(*) FROM pg_locks WHERE NOT granted")
                .fetch_one(&mut c)
                .await
                .unwrap()
                .get::<i64, _>(0)
                > 0
        },
    )
    .await
    .unwrap();
    // 39 more at once: 31 slots are left, so exactly 8 are busy.
    let rest: Vec<_> = (0..39)
        .map(|_| {
            let addr = served.addr.clone();
            tokio::spawn(async move { error_of(&addr, "/v1/status").await })
        })
        .collect();
    let mut answers = Vec::new();
    for r in rest {
        answers.push(r.await.unwrap());
    }
    let ((code, error), took) = first.await.unwrap();
    lock.rollback().await.unwrap();
    eprintln!("response time limit: 503 {error} after {took:?} (limit 30 s)");
    assert_eq!((code, error.as_str()), (503, "timeout"));
    assert!(
        Duration::from_secs(30) <= took && took <= Duration::from_secs(30) + MARGIN,
        "answered after {took:?}, the limit is 30 s"
    );
    let busy = answers.iter().filter(|(_, e)| e == "busy").count();
    assert_eq!(busy, 8, "{answers:?}");
    assert!(answers.iter().all(|(c, _)| *c == 503), "{answers:?}");
    let (_, metrics) = http_get(&served.addr, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            r#"optout_http_requests_refused_total{reason="busy"}"#
        ),
        8.0
    );
    // The lock gone, the API answers again.
    assert_eq!(http_get(&served.addr, "/v1/status").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_store_is_store_unavailable() {
    let pg = db::postgres().await;
    let mut url = url::Url::parse(&pg.url).unwrap();
    let proxy = Proxy::start(&format!(
        "http://{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await;
    let port: u16 = proxy.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    url.set_port(Some(port)).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    let served = Served::start(url.as_str(), &[]).await;
    assert_eq!(http_get(&served.addr, "/v1/status").await.0, 200);
    proxy.cut();
    let (code, body) = http_get(&served.addr, "/v1/status").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, v["error"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    assert!(
        !body.contains("postgres://"),
        "the store's URL is not echoed: {body}"
    );
    proxy.heal();
    let wait = Instant::now() + Duration::from_secs(30);
    while http_get(&served.addr, "/v1/status").await.0 != 200 {
        assert!(Instant::now() < wait, "the API never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The webhooks' own bound: 64 requests whose bodies have not come hold every slot; the 65th
/// is `503 busy` at once, and queries (their own 32 slots) still answer.
#[tokio::test(flavor = "multi_thread")]
async fn past_64_webhooks_in_flight_is_busy_and_queries_still_answer() {
    use crate::common::{twilio, webhooks};
    let db = db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{}\n", twilio::TOKEN)).unwrap();
    let served = Served::start(
        &db.url,
        &[
            "--twilio-auth-token-file",
            tokens.to_str().unwrap(),
            "--public-url",
            webhooks::PUBLIC,
        ],
    )
    .await;
    // 64 requests announce a body they never send: each holds an ingest slot.
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 100\r\n\r\n",
        webhooks::MESSAGING
    );
    let hold = || async {
        let mut s = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s
    };
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(hold().await);
    }
    // The 65th is busy. The server may handle a probe before the last held heads, and a held
    // request that arrives while a probe has the 64th slot is itself refused (answered, so no
    // longer held): such a one is replaced before the next probe. The wait is 25 s, short of
    // the 30 s after which the server answers a held request itself.
    let wait = Instant::now() + Duration::from_secs(25);
    let body = "x=1";
    let request = format!(
        "POST {} HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        webhooks::MESSAGING,
        body.len()
    );
    // One unsigned webhook on a connection of its own: the server's whole answer.
    let probe = || async {
        let mut s = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    };
    let mut replaced = 0;
    let answer = loop {
        let text = probe().await;
        if text.contains(" 503 ") || Instant::now() > wait {
            break text;
        }
        for h in &mut held {
            let mut buf = [0u8; 512];
            let got = match h.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => format!("error: {e}"),
                Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            // The race above is the only reason a held request is answered early.
            assert!(
                got.starts_with("HTTP/1.1 503") && got.contains("\"busy\""),
                "a held request was answered other than busy: {got}"
            );
            *h = hold().await;
            replaced += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("held requests answered before the probe, replaced: {replaced}");
    assert!(answer.starts_with("HTTP/1.0 503"), "{answer}");
    assert!(answer.contains("\"busy\""), "{answer}");
    // Queries have slots of their own.
    assert_eq!(http_get(&served.addr, "/v1/status").await.0, 200);
    // The held requests gone, a webhook is no longer busy (unsigned: 403).
    drop(held);
    let wait = Instant::now() + Duration::from_secs(10);
    loop {
        if probe().await.starts_with("HTTP/1.0 403") {
            break;
        }
        assert!(Instant::now() < wait, "webhooks stayed busy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
