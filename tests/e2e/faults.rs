//! Faults between optout and Kinesis, injected with a TCP proxy in front of the real emulator:
//! the emulator unreachable for 30 s, and a hung network that answers nothing. The consumer
//! must wait, recover and lose nothing, and a reader that makes no progress is restarted.
//! And AWS's own error answers, injected by an HTTP proxy on a fifth of the calls (throttling,
//! KMS throttling, expired iterators, 500s, slow answers, connections cut mid-body): every
//! record lands exactly once, no shard is polled more than 5 times a second (each call at
//! least 200 ms after the previous, by the reader's own clock), and the retries show in
//! `optout_retries_total{kind}`. With AWS's read limit of bytes per shard enforced, the
//! readers pace themselves to it: no throttling, and reads at about the limit.

use crate::common::emulator;
use crate::common::optout::*;

use std::time::{Duration, Instant};

use serde_json::Value;

/// Consumes `n` opt events through an AWS fault proxy failing calls as `plan` says; the
/// retries must show in `optout_retries_total{kind}` for each of `kinds`.
async fn through_aws_faults(
    n: usize,
    plan: crate::common::aws_faults::Plan,
    kinds: &[&str],
    extra: &[&str],
) {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("awsfaults");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    write(&client, &stream, 0, n, 100, Duration::from_millis(10)).await;
    let proxy = crate::common::aws_faults::AwsFaults::start(&emu.endpoint, plan, 20261128).await;
    let mut env = emu.env_via(&proxy.endpoint);
    // Each GetRecords call logged with the time since the shard's previous one.
    env.push((
        "RUST_LOG".into(),
        "warn,optout=info,kinesis_engine=info,kinesis_engine::poller=debug".into(),
    ));
    let o = Optout::new(env);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--http-addr", addr.as_str(), "--max-records-per-call", "10"];
    args.extend_from_slice(extra);
    let worker = o.spawn_run(&stream, &args);
    let reader = crate::common::db::open_reader(&o.store).await;
    wait_for_events(&reader, n, Duration::from_secs(180)).await;
    let (_, text) = http_get(&addr, "/metrics").await;
    let logs = worker.terminate();
    let injected = proxy.seen(|s| s.injected.clone());
    eprintln!("injected {injected:?}");
    for kind in kinds {
        let series = format!("optout_retries_total{{kind=\"{kind}\"}}");
        let retries = metric(&text, &series);
        eprintln!("{series} {retries}");
        assert!(
            retries > 0.0,
            "{kind} failures were retried and counted:\n{text}"
        );
    }
    assert_eq!(
        records_read(&logs),
        n as u64,
        "every record read exactly once"
    );
    check_tables(&o, n);
    // At most 5 calls a second per shard: each call starts at least 200 ms after the shard's
    // previous one, by the reader's own clock. (Arrival times at the proxy, printed below,
    // are not asserted: a late arrival on a loaded machine bunches the next ones up.)
    let calls: Vec<&Value> = logs
        .iter()
        .filter(|l| l["shard_event"] == "get_records")
        .collect();
    let polling = !extra.contains(&"--consumer-name");
    assert!(
        !polling || calls.len() > 10,
        "GetRecords calls logged: {}",
        calls.len()
    );
    for l in &calls {
        if let Some(ms) = l["since_previous_ms"].as_u64() {
            assert!(
                ms >= 200,
                "a GetRecords call {ms} ms after the previous: {l}"
            );
        }
    }
    proxy.seen(|s| {
        for (shard, times) in &s.get_records_at {
            let most = crate::common::aws_faults::max_calls_per_second(times);
            eprintln!(
                "{shard}: {} GetRecords calls, at most {most} arriving in one second",
                times.len()
            );
        }
    });
}

fn faults(
    kinds: &[crate::common::aws_faults::Fault],
    share: f64,
    first: u64,
) -> crate::common::aws_faults::OpFaults {
    crate::common::aws_faults::OpFaults {
        kinds: kinds.to_vec(),
        share,
        first,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_errors_on_a_fifth_of_the_calls_lose_nothing() {
    use crate::common::aws_faults::Fault::*;
    let plan = [
        (
            "GetRecords",
            faults(
                &[
                    Throughput,
                    KmsThrottling,
                    ExpiredIterator,
                    Internal,
                    Slow,
                    CutMidBody,
                ],
                0.2,
                0,
            ),
        ),
        (
            "GetShardIterator",
            faults(&[Throughput, Internal, CutMidBody], 0.2, 0),
        ),
        ("ListShards", faults(&[Limit, Internal, Slow], 0.2, 0)),
    ]
    .into_iter()
    .collect();
    through_aws_faults(400, plan, &["throttled", "transient"], &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_errors_on_subscriptions_lose_nothing() {
    use crate::common::aws_faults::Fault::*;
    // Subscriptions are few (one per shard every few minutes), so the first ones always fail.
    let plan = [
        (
            "SubscribeToShard",
            faults(&[Limit, KmsThrottling, Internal], 0.2, 4),
        ),
        ("ListShards", faults(&[Limit, Internal], 0.2, 0)),
        ("DescribeStreamConsumer", faults(&[Limit, Internal], 0.2, 1)),
    ]
    .into_iter()
    .collect();
    through_aws_faults(
        200,
        plan,
        &["throttled"],
        &["--consumer-name", "optout-aws-faults"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn emulator_unreachable_for_30_seconds_loses_nothing() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("outage");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    let proxy = crate::common::proxy::Proxy::start(&emu.endpoint).await;
    let o = Optout::new(emu.env_via(&proxy.endpoint));
    let mut worker = o.spawn_run(&stream, &[]);
    write(&client, &stream, 0, 200, 50, Duration::from_millis(20)).await;
    let reader = crate::common::db::open_reader(&o.store).await;
    let s = &reader;
    wait_for_events(s, 200, Duration::from_secs(60)).await;

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
        event_count(s).await,
        200,
        "nothing can be read while cut off"
    );
    proxy.heal();
    let healed_at = Instant::now();
    wait_for_events(s, 600, Duration::from_secs(60)).await;
    eprintln!(
        "outage 30 s: caught up {:.1} s after the network came back",
        healed_at.elapsed().as_secs_f64()
    );
    let logs = worker.terminate();
    assert!(
        logs.iter().any(|l| l["delay_ms"].is_u64()),
        "retries were logged"
    );
    check_tables(&o, 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_network_restarts_stalled_readers() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("stall");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    let proxy = crate::common::proxy::Proxy::start(&emu.endpoint).await;
    let o = Optout::new(emu.env_via(&proxy.endpoint));
    let worker = o.spawn_run(&stream, &["--stall-timeout-secs", "2"]);
    write(&client, &stream, 0, 100, 50, Duration::from_millis(10)).await;
    let reader = crate::common::db::open_reader(&o.store).await;
    let s = &reader;
    wait_for_events(s, 100, Duration::from_secs(60)).await;
    // Requests now hang (the SDK's own timeout is 30 s): the watchdog must act first.
    proxy.blackhole();
    write(&client, &stream, 100, 300, 50, Duration::from_millis(10)).await;
    let w = &worker;
    emulator::wait_for(
        "a stalled reader to be restarted",
        Duration::from_secs(30),
        || async move { w.logs().iter().any(|l| l["stalled_secs"].is_u64()) },
    )
    .await
    .unwrap();
    proxy.heal();
    wait_for_events(s, 300, Duration::from_secs(60)).await;
    worker.terminate();
    check_tables(&o, 300);
}

/// AWS lets each shard be read at 2 MiB/s; the proxy enforces a small limit the same way
/// (an answer's bytes make the shard unreadable for as long as they take at that rate), and
/// `--shard-read-mib` tells the readers the same limit. They pace themselves: the throttles
/// stay at or near zero, and each shard is read at close to the limit, not far under it.
#[tokio::test(flavor = "multi_thread")]
async fn readers_paced_to_the_byte_limit_are_not_throttled() {
    const LIMIT: u64 = 48 << 10;
    let n = 800;
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("readlimit");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    write(&client, &stream, 0, n, 100, Duration::from_millis(1)).await;
    let proxy =
        crate::common::aws_faults::AwsFaults::start(&emu.endpoint, Default::default(), 7).await;
    proxy.limit_read_bytes(LIMIT);
    let o = Optout::new(emu.env_via(&proxy.endpoint));
    let mib = format!("{}", LIMIT as f64 / f64::from(1u32 << 20));
    // Calls of 20 records (about 16 KiB): the byte limit, not the 5 calls a second, paces.
    let worker = o.spawn_run(
        &stream,
        &["--max-records-per-call", "20", "--shard-read-mib", &mib],
    );
    let reader = crate::common::db::open_reader(&o.store).await;
    wait_for_events(&reader, n, Duration::from_secs(120)).await;
    worker.terminate();
    check_tables(&o, n);
    proxy.seen(|s| {
        eprintln!("throttled by the read limit: {}", s.read_limit_throttles);
        assert!(
            s.read_limit_throttles <= 2,
            "{} calls came before their shard's bytes were paid for",
            s.read_limit_throttles
        );
        assert_eq!(s.bytes_served.len(), 2, "both shards read");
        for (shard, served) in &s.bytes_served {
            // The bytes before the last answer were paid for between the first and last call.
            let span = served.last.duration_since(served.first).as_secs_f64();
            let rate = (served.bytes - served.last_bytes) as f64 / span;
            eprintln!(
                "{shard}: {} bytes in {span:.1} s: {:.0} bytes/s, {:.2} of the limit",
                served.bytes,
                rate,
                rate / LIMIT as f64
            );
            assert!(rate <= LIMIT as f64 * 1.05, "{shard} read over the limit");
            assert!(
                rate >= LIMIT as f64 * 0.6,
                "{shard} read far under the limit"
            );
        }
    });
}
