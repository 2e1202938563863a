//! End to end with enhanced fan-out: `optout run --consumer-name` against a Kinesis emulator
//! (ferrokinesis by default; `OPTOUT_TEST_EMULATOR=kinesis-local` for the npm one) and a SQLite
//! store. The same scenarios as tests/e2e/scenarios.rs, read with `SubscribeToShard`: the results
//! must be exactly those of the polling reader.

use super::ids;
use crate::common::emulator;
use crate::common::optout::*;
use crate::common::records::*;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ConsumerStatus;
use serde_json::Value;

const CONSUMER: &str = "optout-fanout-test";

/// `optout run --consumer-name CONSUMER` until idle; asserts it really read with fan-out.
fn run_fanout(optout: &Optout, stream: &str) -> Vec<Value> {
    let logs = optout.run_to_idle(stream, &["--consumer-name", CONSUMER]);
    assert!(
        logs.iter().any(|l| l["consumer_arn"].is_string()),
        "no fan-out in {logs:#?}"
    );
    assert!(logs.iter().any(|l| l["fan_out"] == true), "{logs:#?}");
    logs
}

/// How many times a run registered the consumer (0 when it reused it).
fn registrations(logs: &[Value]) -> usize {
    logs.iter()
        .filter(|l| l["stream_arn"].is_string() && l["consumer"].is_string())
        .count()
}

/// The consumer's status as the emulator describes it.
async fn consumer_status(client: &Client, stream: &str) -> ConsumerStatus {
    let arn = emulator::stream_arn(client, stream).await.unwrap();
    let described = client
        .describe_stream_consumer()
        .stream_arn(arn)
        .consumer_name(CONSUMER)
        .send()
        .await
        .unwrap();
    described
        .consumer_description()
        .unwrap()
        .consumer_status()
        .clone()
}

fn opt(id: &str, from: &str, kind: &str, timestamp: &str) -> Vec<u8> {
    Inbound::new(id, from)
        .service("MGfan")
        .keyword(kind)
        .at(timestamp)
        .build()
}

fn strings<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn status_map(rows: &[Value]) -> BTreeSet<(String, String, String)> {
    rows.iter()
        .map(|r| {
            let field = |f: &str| r[f].as_str().unwrap().to_string();
            (field("subscriber"), field("status"), field("event_id"))
        })
        .collect()
}

/// The polling scenario's mixed stream, read with enhanced fan-out: the tables must be exactly
/// the same, and the first run registers the consumer.
#[tokio::test(flavor = "multi_thread")]
async fn mixed_stream_read_with_enhanced_fan_out() {
    let mixed = super::scenarios::mixed_stream("fanout-mixed", 2, 30, run_fanout).await;
    assert_eq!(registrations(&mixed.logs), 1, "the first run registers");
    assert_eq!(
        consumer_status(&mixed.client, &mixed.stream).await,
        ConsumerStatus::Active
    );
}

/// A second run with the same consumer reuses it and reads exactly the new records, although
/// a subscription starts where the last one stopped (kinesis-local still holds the first run's
/// subscriptions for a moment; ferrokinesis re-sends from the shard's start). Each shard is
/// subscribed to after its stored checkpoint, and on kinesis-local, which honours the starting
/// position, the server sends nothing again: the position is right, not merely filtered.
#[tokio::test(flavor = "multi_thread")]
async fn resume_with_the_same_consumer_reads_only_new_records() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("fanout-resume");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    let mut first = vec![
        opt("EZr1", "+15550000001", "STOP", "2026-03-01T10:00:00Z"),
        b"garbage one".to_vec(),
    ];
    first.extend(filler(3, 20));
    emulator::put_records(&client, &stream, &keyed(first.clone()))
        .await
        .unwrap();
    let optout = Optout::new(emu.env());
    let logs = run_fanout(&optout, &stream);
    assert_eq!(records_read(&logs), first.len() as u64);
    assert_eq!(registrations(&logs), 1);

    let mut second = vec![
        first[0].clone(), // an old event delivered again
        opt("EZr2", "+15550000001", "START", "2026-03-01T11:00:00Z"),
        b"garbage two".to_vec(),
    ];
    second.extend(filler(4, 10));
    emulator::put_records(&client, &stream, &keyed(second.clone()))
        .await
        .unwrap();
    let checkpoints: BTreeSet<(String, String)> = optout
        .query(&["shards", "--stream", &stream])
        .iter()
        .filter_map(|s| {
            Some((
                s["shard_id"].as_str()?.to_string(),
                s["checkpoint"].as_str()?.to_string(),
            ))
        })
        .collect();
    // The engine's debug lines say where each subscription starts and what the server sent
    // again at or before the checkpoint.
    let mut env = emu.env();
    env.push((
        "RUST_LOG".into(),
        "warn,optout=info,kinesis_engine=debug".into(),
    ));
    let debug = Optout::with_store(env, &optout.store);
    let logs = run_fanout(&debug, &stream);
    let subscribed: BTreeSet<(String, String)> = logs
        .iter()
        .filter(|l| l["message"] == "Subscribed to shard.")
        .filter_map(|l| {
            let after = l["after"].as_str()?;
            let seq = after.strip_prefix("Some(\"")?.strip_suffix("\")")?;
            Some((l["shard_id"].as_str()?.to_string(), seq.to_string()))
        })
        .collect();
    assert_eq!(
        subscribed, checkpoints,
        "each shard is subscribed to after its checkpoint"
    );
    let sent_again: u64 = logs.iter().filter_map(|l| l["skipped"].as_u64()).sum();
    match emu.kind {
        // kinesis-local honours the starting position: nothing is sent again.
        emulator::EmulatorKind::KinesisLocal => {
            assert_eq!(
                sent_again, 0,
                "kinesis-local sent records before the position"
            )
        }
        // ferrokinesis starts every subscription at the shard's beginning.
        emulator::EmulatorKind::Ferrokinesis => {
            assert_eq!(
                sent_again,
                first.len() as u64,
                "ferrokinesis re-sends the first run"
            )
        }
    }
    assert_eq!(registrations(&logs), 0, "the consumer is reused");
    assert_eq!(
        records_read(&logs),
        second.len() as u64,
        "the second run reads exactly the new records"
    );
    assert_eq!(
        ids(&optout.query(&["events"]), "event_id"),
        strings(["EZr1", "EZr2"])
    );
    assert_eq!(optout.query(&["dead-letters"]).len(), 2);
    assert_eq!(
        status_map(&optout.query(&["status"])),
        [("+15550000001", "opted_in", "EZr2")]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .into()
    );
    assert_eq!(records_read(&run_fanout(&optout, &stream)), 0);
}

/// Subscriptions that end after a second (AWS ends them after 5 minutes): the reader subscribes
/// again from its checkpoint, no faster than AWS allows, and reads every record exactly once
/// although ferrokinesis re-sends each shard from its start on every subscription.
/// ferrokinesis only: kinesis-local's session length is fixed at 5 minutes.
#[tokio::test(flavor = "multi_thread")]
async fn expiring_subscriptions_are_renewed_from_the_checkpoint() {
    let (_emu, client, stream, optout) = short_sessions("fanout-renew").await;
    let addr = format!("127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let worker = optout.spawn_run(
        &stream,
        &["--consumer-name", CONSUMER, "--http-addr", &addr],
    );
    let reader = crate::common::db::open_reader(&optout.store).await;
    let mut put = 0;
    for round in 0..3 {
        let batch: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let n = round * 4 + i;
                opt(
                    &format!("EZn{n:02}"),
                    &format!("+1555200{n:04}"),
                    "STOP",
                    "2026-03-01T10:00:00Z",
                )
            })
            .collect();
        put += batch.len();
        emulator::put_records(&client, &stream, &keyed(batch))
            .await
            .unwrap();
        let (s, want) = (&reader, put);
        emulator::wait_for(
            &format!("{want} events stored"),
            Duration::from_secs(30),
            || async move {
                let events = s.all(&optout::store::EventFilter::default()).await;
                events.is_ok_and(|e| e.len() == want)
            },
        )
        .await
        .unwrap();
        // The next batch comes after the current subscriptions have expired (a scenario step,
        // not a synchronisation: the wait above is the sync point).
        tokio::time::sleep(SESSION * 3 / 2).await;
    }
    // Sessions end every second, but each shard subscribes at most once per 5 s (AWS allows
    // one SubscribeToShard per second and shard; the reader keeps well under it), and did
    // renew: more than one subscription per shard.
    let (_, m) = http_get(&addr, "/metrics").await;
    let subscriptions = metric(&m, "optout_subscriptions_total");
    let elapsed = started.elapsed().as_secs_f64();
    let most = 2.0 * (elapsed / 5.0).ceil();
    eprintln!("{subscriptions} subscriptions for 2 shards in {elapsed:.1} s (at most {most})");
    assert!(
        subscriptions > 2.0 && subscriptions <= most,
        "{subscriptions} subscriptions for 2 shards in {elapsed:.1} s: want 3..={most}"
    );
    let logs = worker.terminate();
    assert_eq!(records_read(&logs), put as u64, "every record read once");
    assert_eq!(optout.query(&["events"]).len(), put);
}

/// A stream consumer deregistered while optout reads (an operator's cleanup, a Terraform
/// apply) is registered again, and reading resumes from the checkpoints: nothing lost, nothing
/// read twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_deregistered_consumer_is_registered_again() {
    let (_emu, client, stream, optout) = short_sessions("fanout-dereg").await;
    let worker = optout.spawn_run(&stream, &["--consumer-name", CONSUMER]);
    let reader = crate::common::db::open_reader(&optout.store).await;
    let batch = |from: usize| -> Vec<Vec<u8>> {
        (from..from + 4)
            .map(|n| {
                opt(
                    &format!("EZd{n:02}"),
                    &format!("+1555300{n:04}"),
                    "STOP",
                    "2026-03-01T10:00:00Z",
                )
            })
            .collect()
    };
    emulator::put_records(&client, &stream, &keyed(batch(0)))
        .await
        .unwrap();
    wait_for_count(&reader, 4).await;
    let stream_arn = emulator::stream_arn(&client, &stream).await.unwrap();
    client
        .deregister_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name(CONSUMER)
        .send()
        .await
        .unwrap();
    // Only once it is gone for good do the next records arrive, so that reading them proves
    // the consumer was registered again.
    let (c, arn) = (&client, &stream_arn);
    emulator::wait_for(
        "the consumer to be gone",
        Duration::from_secs(30),
        || async move {
            c.describe_stream_consumer()
                .stream_arn(arn)
                .consumer_name(CONSUMER)
                .send()
                .await
                .is_err()
        },
    )
    .await
    .unwrap();
    // The subscriptions open before the deregistration run out their session (a scenario
    // step, not a synchronisation): after it, reading needs a registered consumer again.
    tokio::time::sleep(SESSION * 2).await;
    emulator::put_records(&client, &stream, &keyed(batch(4)))
        .await
        .unwrap();
    wait_for_count(&reader, 8).await;
    let consumer = client
        .describe_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name(CONSUMER)
        .send()
        .await
        .expect("the consumer was registered again");
    assert_eq!(
        consumer.consumer_description().unwrap().consumer_status(),
        &ConsumerStatus::Active
    );
    let logs = worker.terminate();
    assert_eq!(records_read(&logs), 8, "every record read once");
    assert_eq!(optout.query(&["events"]).len(), 8);
}

/// Waits until `store` holds exactly `want` opt events.
async fn wait_for_count(reader: &optout::store::Reader, want: usize) {
    emulator::wait_for(
        &format!("{want} events stored"),
        Duration::from_secs(60),
        || async move {
            let events = reader.all(&optout::store::EventFilter::default()).await;
            events.is_ok_and(|e| e.len() == want)
        },
    )
    .await
    .unwrap();
}

/// How long ferrokinesis keeps a subscription open in the short-session tests (AWS: 5 minutes).
const SESSION: Duration = Duration::from_secs(1);

/// ferrokinesis with subscriptions that end after [`SESSION`], a fresh 2-shard stream, and an
/// optout installation pointed at it.
async fn short_sessions(prefix: &str) -> (emulator::Emulator, Client, String, Optout) {
    let emu = emulator::ferrokinesis_with(ferrokinesis::store::StoreOptions {
        subscribe_to_shard_session_ms: SESSION.as_millis() as u64,
        ..emulator::ferrokinesis_options()
    })
    .await;
    let client = emu.client().await;
    let stream = emulator::unique_stream(prefix);
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    let optout = Optout::new(emu.env());
    (emu, client, stream, optout)
}
