//! Twilio's webhooks through the `optout` binary, on both backends, with requests signed by
//! Twilio's own helper library:
//! - one STOP delivered through Kinesis (either emulator: `OPTOUT_TEST_EMULATOR`), the Event
//!   Streams webhook and the Messaging webhook, in either order, is one opt event with Twilio's
//!   time, recording the three paths; a reassigned-number opt-out through Kinesis and the event
//!   sink is one event too;
//! - a `kill -9` during a burst of webhook requests: every request that got 2xx is stored,
//!   and sending the whole burst again stores nothing twice;
//! - refusals and group commits show in `/metrics`; no phone number reaches the logs.
//!
//! Settings mistakes and a second SQLite writer are in `webhook_settings.rs`.

use super::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::db;
use crate::common::twilio::{self, Connection, Payload};
use crate::common::webhooks::*;

/// A directory with an auth token file (the rotation's two tokens).
pub(crate) fn token_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twilio-tokens");
    std::fs::write(
        &path,
        format!(
            "# primary, secondary\n{}\n{}\n",
            twilio::TOKEN,
            twilio::SECOND_TOKEN
        ),
    )
    .unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

pub(crate) async fn wait_ready(addr: &str) {
    emulator::wait_for("/readyz", Duration::from_secs(60), || async move {
        http_get(addr, "/readyz").await.0 == 200
    })
    .await
    .unwrap();
}

/// Message `n` as the Messaging webhook posts it, the keyword `kind` flagged.
fn keyword_form(n: u32, kind: &str) -> Payload {
    form(n, kind, Some(kind))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_stop_through_three_paths_is_one_event_on_sqlite() {
    let emu = emulator::from_env().await;
    one_stop_through_three_paths_is_one_event(Optout::new(emu.env()), emu).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_stop_through_three_paths_is_one_event_on_postgres() {
    let (emu, pg) = (emulator::from_env().await, db::postgres().await);
    one_stop_through_three_paths_is_one_event(Optout::with_store(emu.env(), &pg.url), emu).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_during_a_burst_loses_no_answered_request_on_sqlite() {
    a_kill_9_during_a_burst_loses_no_answered_request(Optout::new(Vec::new())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_during_a_burst_loses_no_answered_request_on_postgres() {
    let pg = db::postgres().await;
    a_kill_9_during_a_burst_loses_no_answered_request(Optout::with_store(Vec::new(), &pg.url))
        .await;
}

async fn one_stop_through_three_paths_is_one_event(o: Optout, emu: emulator::Emulator) {
    let client = emu.client().await;
    let stream = emulator::unique_stream("hooks");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let (_dir, tokens) = token_file();
    let addr = format!("127.0.0.1:{}", free_port());
    let worker = o.spawn_run(
        &stream,
        &[
            "--http-addr",
            &addr,
            "--twilio-auth-token-file",
            &tokens,
            "--public-url",
            PUBLIC,
        ],
    );
    wait_ready(&addr).await;
    let reader = db::open_reader(&o.store).await;
    let events = || async {
        reader
            .all(&optout::store::EventFilter::default())
            .await
            .unwrap()
    };
    let a_at = "2026-03-01T10:00:00.250Z";
    let reassigned = fixture("reassigned-number-detected.json");
    let requests = twilio::requests(
        PUBLIC,
        twilio::TOKEN,
        &[
            (MESSAGING, keyword_form(1, "STOP")),
            (
                EVENTS,
                Payload::Json(format!(
                    "[{}]",
                    String::from_utf8(cloud_event(1, "STOP", a_at)).unwrap()
                )),
            ),
            (
                EVENTS,
                Payload::Json(String::from_utf8(reassigned.clone()).unwrap()),
            ),
            (MESSAGING, keyword_form(2, "STOP")),
        ],
    );
    // Message 1: the Messaging webhook first, with only a receive time.
    assert_eq!(twilio::post(&addr, &requests[0]).await.unwrap().status, 200);
    let first = events().await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].time_source.as_str(), first[0].paths.as_str()),
        ("received", "messaging_webhook")
    );
    // Then the event sink: Twilio's time replaces the receive time.
    assert_eq!(twilio::post(&addr, &requests[1]).await.unwrap().status, 200);
    let second = events().await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].occurred_at, "2026-03-01T10:00:00.250000Z");
    assert_eq!(second[0].paths, "events_webhook,messaging_webhook");
    assert_eq!(twilio::post(&addr, &requests[2]).await.unwrap().status, 200);
    // Then Kinesis brings 1, message 2 (before its webhook) and the reassigned number.
    let records = vec![
        cloud_event(1, "STOP", a_at),
        cloud_event(2, "STOP", "2026-03-01T10:00:01Z"),
        reassigned,
    ];
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let r = &reader;
    emulator::wait_for("Kinesis's copies", Duration::from_secs(30), || async move {
        let e = r.all(&optout::store::EventFilter::default()).await.unwrap();
        e.len() == 3 && e.iter().all(|e| e.paths.starts_with("kinesis"))
    })
    .await
    .unwrap();
    assert_eq!(twilio::post(&addr, &requests[3]).await.unwrap().status, 200);

    let mut all = events().await;
    all.sort_by(|a, b| a.identity.cmp(&b.identity));
    let summary: Vec<(&str, &str, &str, &str, &str, &str)> = all
        .iter()
        .map(|e| {
            (
                e.identity.as_str(),
                e.event_id.as_str(),
                e.detection.as_str(),
                e.paths.as_str(),
                e.time_source.as_str(),
                e.subscriber.as_str(),
            )
        })
        .collect();
    let (e1, e2, s1, s2) = (event_id(1), event_id(2), sid(1), sid(2));
    let (n1, n2) = (subscriber(1), subscriber(2));
    assert_eq!(
        summary,
        [
            (
                "NO00000000000000000000000001",
                "NO00000000000000000000000001",
                "reassigned",
                "kinesis,events_webhook",
                "twilio",
                "+14155552671"
            ),
            (
                s1.as_str(),
                e1.as_str(),
                "twilio",
                "kinesis,events_webhook,messaging_webhook",
                "twilio",
                n1.as_str()
            ),
            (
                s2.as_str(),
                e2.as_str(),
                "twilio",
                "kinesis,messaging_webhook",
                "twilio",
                n2.as_str()
            ),
        ]
    );
    let status = reader
        .all(&optout::store::StatusFilter::default())
        .await
        .unwrap();
    let mut status: Vec<(String, String, String, String)> = status
        .into_iter()
        .map(|s| (s.subscriber, s.status, s.changed_at, s.event_id))
        .collect();
    status.sort();
    assert_eq!(status.len(), 3);
    assert_eq!(
        status[0],
        (
            "+14155552671".into(),
            "opted_out".into(),
            "2026-09-21T00:00:00.000000Z".into(),
            "NO00000000000000000000000001".into()
        )
    );
    assert_eq!(
        status[1],
        (
            n1.clone(),
            "opted_out".into(),
            "2026-03-01T10:00:00.250000Z".into(),
            e1.clone()
        )
    );

    // A request without a signature is refused, and counted by reason; so are the commits.
    let unsigned = twilio::Request {
        headers: vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        ..requests[0].clone()
    };
    assert_eq!(twilio::post(&addr, &unsigned).await.unwrap().status, 403);
    let (_, metrics) = http_get(&addr, "/metrics").await;
    let value = |needles: &[&str]| -> f64 {
        metrics
            .lines()
            .find(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let rejected = [
        "optout_webhook_rejected_total",
        "route=\"messaging\"",
        "reason=\"no_signature\"",
    ];
    assert_eq!(value(&rejected), 1.0, "{metrics}");
    let accepted = ["optout_webhook_accepted_total", "route=\"messaging\""];
    assert_eq!(value(&accepted), 2.0, "{metrics}");
    assert_eq!(
        value(&["optout_webhook_committed_requests_total"]),
        4.0,
        "{metrics}"
    );
    // Message 1's event sink copy (Twilio's time) and Kinesis copy (the best path's own
    // fields), and the reassigned number's Kinesis copy, each rewrote the stored event; the
    // Messaging webhook's copy of message 2 only added its path.
    assert_eq!(
        value(&["optout_opt_events_updated_total"]),
        3.0,
        "{metrics}"
    );
    let logs = worker.terminate();
    let text = serde_json::to_string(&logs).unwrap();
    for number in [n1.as_str(), n2.as_str(), "+14155552671"] {
        assert!(!text.contains(number), "a phone number in the logs: {text}");
    }
}

async fn a_kill_9_during_a_burst_loses_no_answered_request(o: Optout) {
    const N: u32 = 1_500;
    const SENDERS: usize = 32;
    let (_dir, tokens) = token_file();
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = |o: &Optout| {
        o.spawn(&[
            "serve",
            "--http-addr",
            &addr,
            "--twilio-auth-token-file",
            &tokens,
            "--public-url",
            PUBLIC,
        ])
    };
    // Half the burst by the Messaging webhook, half by the event sink.
    let payloads: Vec<(&str, Payload)> = (0..N)
        .map(|n| {
            if n % 2 == 0 {
                (MESSAGING, keyword_form(n, "STOP"))
            } else {
                let e = cloud_event(n, "STOP", "2026-03-01T10:00:00Z");
                (EVENTS, Payload::Json(String::from_utf8(e).unwrap()))
            }
        })
        .collect();
    let requests = Arc::new(twilio::requests(PUBLIC, twilio::TOKEN, &payloads));
    let mut worker = serve(&o);
    wait_ready(&addr).await;
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (requests, next, answered, addr) = (
                requests.clone(),
                next.clone(),
                answered.clone(),
                addr.clone(),
            );
            tokio::spawn(async move {
                let mut ok = Vec::new();
                let Ok(mut conn) = Connection::open(&addr).await else {
                    return ok;
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = requests.get(i) else { break };
                    match conn.send(r).await {
                        Ok(a) if a.status == 200 => {
                            ok.push(i as u32);
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(a) => panic!("request {i}: {} {}", a.status, a.body),
                        Err(_) => break, // the server is gone
                    }
                }
                ok
            })
        })
        .collect();
    let a = &answered;
    emulator::wait_for(
        "a third of the burst",
        Duration::from_secs(120),
        || async move { a.load(Ordering::Relaxed) >= N as usize / 3 },
    )
    .await
    .unwrap();
    worker.kill_9();
    let mut ok = Vec::new();
    for s in senders {
        ok.extend(s.await.unwrap());
    }
    assert!(
        ok.len() < N as usize,
        "the kill came after the burst: nothing tested"
    );
    let reader = db::open_reader(&o.store).await;
    let stored: BTreeSet<String> = reader
        .all(&optout::store::EventFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.identity)
        .collect();
    let lost: Vec<u32> = ok
        .iter()
        .copied()
        .filter(|&n| !stored.contains(&sid(n)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} answered 200 but not stored: {lost:?}",
        lost.len()
    );
    eprintln!(
        "kill -9 after {} of {N} answers: all {} stored ({} stored in all)",
        ok.len(),
        ok.len(),
        stored.len()
    );
    // Twilio retries what it got no 2xx for; sending everything again stores nothing twice.
    let worker = serve(&o);
    wait_ready(&addr).await;
    let mut conn = Connection::open(&addr).await.unwrap();
    for r in requests.iter() {
        assert_eq!(conn.send(r).await.unwrap().status, 200);
    }
    let all = reader
        .all(&optout::store::EventFilter::default())
        .await
        .unwrap();
    let identities: BTreeSet<&str> = all.iter().map(|e| e.identity.as_str()).collect();
    assert_eq!((all.len(), identities.len()), (N as usize, N as usize));
    worker.terminate();
}
