//! The HTTP API of a running consumer.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn http_api_serves_health_metrics_and_queries() {
    let emu = emulator::ferrokinesis().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("http");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let records = vec![
        fixture("inbound-stop-v5.json"),
        fixture("sink-test-event.json"),
        b"junk".to_vec(),
    ];
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let optout = Optout::new(emu.env());
    let worker = optout.spawn_run(&stream, &["--http-addr", &addr]);
    let reader = crate::common::db::open_reader(&optout.store).await;
    let s = &reader;
    emulator::wait_for("the STOP event", Duration::from_secs(30), || async move {
        s.all(&optout::store::EventFilter::default())
            .await
            .map(|e| e.len() == 1)
            .unwrap_or(false)
    })
    .await
    .unwrap();
    assert_eq!(http_get(&addr, "/healthz").await.0, 200);
    assert_eq!(
        http_get(&addr, "/readyz").await,
        (200, "ready\n".to_string())
    );
    let (code, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(code, 200);
    // Whole lines, so that `… 1` cannot match `… 10`.
    for line in [
        "optout_records_total{outcome=\"opt_event\"} 1",
        "optout_records_total{outcome=\"dead_letter\"} 1",
        "optout_dead_letters_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    every_metric_is_documented(&metrics);
    // The engine read every GetRecords answer itself: the SDK's deserializer, its fallback
    // for an answer shape it does not know, read none (on either emulator).
    assert!(
        metric(&metrics, "optout_get_records_calls_total") > 0.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "optout_get_records_sdk_reads_total"),
        0.0,
        "{metrics}"
    );
    let (code, body) = http_get(&addr, "/v1/status?subscriber=%2B15551230001").await;
    assert_eq!(code, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    let rows = page["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "opted_out");
    let (_, body) = http_get(&addr, "/v1/events?type=stop&since=2026-03-01T00:00:00Z").await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, body) = http_get(&addr, "/v1/test-events").await;
    assert!(
        body.contains("95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11"),
        "{body}"
    );
    let (_, body) = http_get(&addr, "/v1/dead-letters").await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(http_get(&addr, "/v1/events?since=yesterday").await.0, 400);
    // The console's health page shows the consumer of this process: at the tip, reading.
    let (code, health) = http_get(&addr, "/console/health").await;
    assert_eq!(code, 200);
    assert!(health.contains("The consumer in this process"), "{health}");
    assert!(
        health.contains("Behind the stream's tip: 0.0 s"),
        "{health}"
    );
    assert!(health.contains("Every shard is reading."), "{health}");
    worker.terminate();
}

/// Every `optout_*` series in a `/metrics` exposition has a HELP and a TYPE line, and its
/// metric is one of the documented ones (`docs/operating.md`'s table is those, by a unit test).
fn every_metric_is_documented(exposition: &str) {
    let documented = optout::app::metrics::names();
    let mut typed = BTreeSet::new();
    let mut helped = BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("TYPE"), Some(name)) => typed.insert(name.to_string()),
            (Some("#"), Some("HELP"), Some(name)) => helped.insert(name.to_string()),
            _ => continue,
        };
    }
    let seen: BTreeSet<&String> = typed.iter().filter(|n| n.starts_with("optout_")).collect();
    assert!(seen.len() > 10, "too few metrics exposed: {seen:?}");
    for name in seen {
        assert!(documented.contains(name), "{name} is not documented");
        assert!(helped.contains(name), "{name} has no HELP line");
    }
}
