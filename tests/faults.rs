//! Faults between optout and Kinesis, injected with a TCP proxy in front of the real emulator:
//! the emulator unreachable for 30 s, and a hung network that answers nothing. The consumer
//! must wait, recover and lose nothing, and a reader that makes no progress is restarted.

#[path = "common/optout.rs"]
mod common;
#[path = "common/proxy.rs"]
mod proxy;
mod support;

use std::time::{Duration, Instant};

use common::*;

/// The emulator's environment, with optout's endpoint pointed at the proxy.
fn through(env: Vec<(String, String)>, proxy: &proxy::Proxy) -> Vec<(String, String)> {
    env.into_iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_ENDPOINT_URL" => (k, proxy.endpoint.clone()),
            _ => (k, v),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn emulator_unreachable_for_30_seconds_loses_nothing() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("outage");
    support::create_stream(&client, &stream, 2).await.unwrap();
    let proxy = proxy::Proxy::start(&emu.endpoint).await;
    let o = Optout::new(through(emu.env(), &proxy));
    let mut worker = o.spawn_run(&stream, &[]);
    write(&client, &stream, 0, 200, 50, Duration::from_millis(20)).await;
    let store = optout::store::open(&o.store, 1).await.unwrap();
    let s = &store;
    wait_for_events(&**s, 200, Duration::from_secs(60)).await;

    proxy.cut();
    let cut_at = Instant::now();
    // Twilio keeps writing while we cannot read.
    write(&client, &stream, 200, 600, 50, Duration::from_millis(100)).await;
    let remaining = Duration::from_secs(30).saturating_sub(cut_at.elapsed());
    tokio::time::sleep(remaining).await; // the outage itself, not a synchronisation
    assert!(
        worker.is_running(),
        "the consumer gave up during the outage"
    );
    assert_eq!(
        event_count(&*store).await,
        200,
        "nothing can be read while cut off"
    );
    proxy.heal();
    let healed_at = Instant::now();
    wait_for_events(&**s, 600, Duration::from_secs(60)).await;
    eprintln!(
        "outage 30 s: caught up {:.1} s after the network came back",
        healed_at.elapsed().as_secs_f64()
    );
    let logs = worker.terminate();
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("backing off"))),
        "retries were logged"
    );
    check_tables(&o, 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_network_restarts_stalled_readers() {
    let emu = support::from_env().await;
    let client = emu.client().await;
    let stream = support::unique_stream("stall");
    support::create_stream(&client, &stream, 2).await.unwrap();
    let proxy = proxy::Proxy::start(&emu.endpoint).await;
    let o = Optout::new(through(emu.env(), &proxy));
    let worker = o.spawn_run(&stream, &["--stall-timeout-secs", "2"]);
    write(&client, &stream, 0, 100, 50, Duration::from_millis(10)).await;
    let store = optout::store::open(&o.store, 1).await.unwrap();
    let s = &store;
    wait_for_events(&**s, 100, Duration::from_secs(60)).await;
    // Requests now hang (the SDK's own timeout is 30 s): the watchdog must act first.
    proxy.blackhole();
    write(&client, &stream, 100, 300, 50, Duration::from_millis(10)).await;
    let w = &worker;
    support::wait_for(
        "a stalled reader to be restarted",
        Duration::from_secs(30),
        || async move {
            w.logs()
                .iter()
                .any(|l| l["message"] == "Shard reader made no progress; restarting it.")
        },
    )
    .await
    .unwrap();
    proxy.heal();
    wait_for_events(&**s, 300, Duration::from_secs(60)).await;
    worker.terminate();
    check_tables(&o, 300);
}
