//! Exports nobody reads: each holds an in-flight slot until its body is sent, so the 33rd at
//! once is told `busy` instead of piling up (500 of them held 303 MB); and after 30 s without
//! taking a byte the server closes them (one was still open after 300 s), which frees the
//! slots for everyone else. Memory stays under the ceiling meanwhile.

use std::time::{Duration, Instant};

use optout::event::OptOutType;

use crate::common::db;
use crate::common::events::{batch, opt_event};
use crate::common::optout::{Served, http_get};

/// An NDJSON export request on a socket with a small receive buffer, never read.
async fn stalled_export(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr.parse().unwrap()).await.unwrap();
    s.write_all(
        format!("GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: application/x-ndjson\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_nobody_reads_are_bounded_and_closed() {
    let db = db::sqlite().await;
    let body = "b".repeat(1_000);
    for chunk in 0..20 {
        let events = (0..1_000)
            .map(|i| {
                let n = chunk * 1_000 + i;
                let mut e = opt_event(&format!("EX{n:06}"), OptOutType::Stop, "+15550000001", n);
                e.body = Some(body.clone());
                e
            })
            .collect();
        db.store.commit(&batch("x", events)).await.unwrap();
    }
    let served = Served::start(&db.url, &[]).await;
    let mut stalled = Vec::new();
    for _ in 0..32 {
        stalled.push(stalled_export(&served.addr).await);
    }
    // Every slot is held by a body nobody takes: the next request is told so at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, body) = http_get(&served.addr, "/v1/status").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("busy"), "{body}");

    // Within the send deadline (30 s) and a margin, the server gives up on them.
    let started = Instant::now();
    loop {
        let (code, _) = http_get(&served.addr, "/v1/status").await;
        if code == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the stalled exports still hold every slot"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "slots free again {:.0} s after the stall was seen; peak RSS {} MiB",
        started.elapsed().as_secs_f64(),
        served.peak_rss() >> 20
    );
    assert!(served.peak_rss() < 128 << 20);
    // The stalled sockets were closed by the server: reading them ends.
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut s = stalled.pop().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was never closed");
}
