//! Twilio's webhooks through the `optout` binary, on both backends, with requests signed by
//! Twilio's own helper library:
//! - one STOP delivered through Kinesis, the Event Streams webhook and the Messaging webhook,
//!   in either order, is one opt event with Twilio's time, recording the three paths; a
//!   reassigned-number opt-out through Kinesis and the event sink is one event too;
//! - a `kill -9` during a burst of webhook requests: every request that got 2xx is stored,
//!   and sending the whole burst again stores nothing twice;
//! - refusals and group commits show in `/metrics`; no phone number reaches the logs;
//! - a settings mistake is one line and exit 2, without the token.

use super::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::db;
use crate::common::twilio::{self, Connection, Payload};

const PUBLIC: &str = "https://optout.example.com";
const MESSAGING: &str = "/twilio/messaging";
const EVENTS: &str = "/twilio/events";
const SERVICE: &str = "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c";

/// A directory with an auth token file (the rotation's two tokens).
fn token_file() -> (tempfile::TempDir, String) {
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

async fn wait_ready(addr: &str) {
    emulator::wait_for("/readyz", Duration::from_secs(60), || async move {
        http_get(addr, "/readyz").await.0 == 200
    })
    .await
    .unwrap();
}

/// A message's event id; its message SID is `SM` and the same digits.
fn event_id(n: u32) -> String {
    format!("EZ{n:032x}")
}

fn sid(n: u32) -> String {
    format!("SM{n:032x}")
}

fn subscriber(n: u32) -> String {
    format!("+1555765{n:04}")
}

/// Message `n` as Event Streams writes it (to Kinesis or the webhook sink).
fn cloud_event(n: u32, kind: &str, at: &str) -> Vec<u8> {
    Inbound::new(&event_id(n), &subscriber(n))
        .service(SERVICE)
        .keyword(kind)
        .at(at)
        .build()
}

/// Message `n` as the Messaging webhook posts it.
fn form(n: u32, kind: &str) -> Payload {
    Payload::Form(twilio::inbound_params(
        &sid(n),
        &subscriber(n),
        Some(SERVICE),
        kind,
        Some(kind),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_stop_through_three_paths_is_one_event_on_sqlite() {
    let emu = emulator::ferrokinesis().await;
    one_stop_through_three_paths_is_one_event(Optout::new(emu.env()), emu).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_stop_through_three_paths_is_one_event_on_postgres() {
    let (emu, pg) = (emulator::ferrokinesis().await, db::postgres().await);
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
            (MESSAGING, form(1, "STOP")),
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
            (MESSAGING, form(2, "STOP")),
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
                (MESSAGING, form(n, "STOP"))
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

#[test]
fn webhook_settings_mistakes_are_one_line_and_exit_2() {
    let (_dir, tokens) = token_file();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let empty = write("empty", "\n# nothing\n");
    let bad = write("bad", &format!("MG0123 {}\n", twilio::TOKEN));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["serve", "--twilio-auth-token-file", &tokens],
            "--public-url",
        ),
        (
            vec!["serve", "--public-url", PUBLIC],
            "--twilio-auth-token-file",
        ),
        (
            vec![
                "run",
                "--stream",
                "s",
                "--twilio-auth-token-file",
                &tokens,
                "--public-url",
                PUBLIC,
            ],
            "--http-addr",
        ),
        (
            vec![
                "serve",
                "--twilio-auth-token-file",
                &empty,
                "--public-url",
                PUBLIC,
            ],
            "holds no token",
        ),
        (
            vec![
                "serve",
                "--twilio-auth-token-file",
                &bad,
                "--public-url",
                PUBLIC,
            ],
            "line 1",
        ),
        (
            vec![
                "serve",
                "--twilio-auth-token-file",
                "/nonexistent/tokens",
                "--public-url",
                PUBLIC,
            ],
            "cannot read",
        ),
        (
            vec![
                "serve",
                "--twilio-auth-token-file",
                &tokens,
                "--public-url",
                "optout.example.com",
            ],
            "invalid --public-url",
        ),
    ];
    for (args, says) in cases {
        let (code, text) = exits_within(&args, Duration::from_secs(30));
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
        assert!(!text.contains(twilio::TOKEN), "the token shown: {text}");
    }
}

/// `optout ARGS` on an in-memory store: its exit code and output; a process still running
/// after `limit` (a mistake that went unnoticed, so it serves) is killed and fails the test.
fn exits_within(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = bare_command(args)
        .env("OPTOUT_STORE", "sqlite::memory:")
        .stdout(std::process::Stdio::from(log.reopen().unwrap()))
        .stderr(std::process::Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(log.path()).unwrap();
    (status.code(), text)
}

#[tokio::test]
async fn a_second_sqlite_writer_taking_webhooks_is_refused() {
    let (_dir, tokens) = token_file();
    let o = Optout::new(Vec::new());
    let addr = format!("127.0.0.1:{}", free_port());
    let args = |addr: &str| {
        vec![
            "serve".to_owned(),
            "--http-addr".into(),
            addr.into(),
            "--twilio-auth-token-file".into(),
            tokens.clone(),
            "--public-url".into(),
            PUBLIC.into(),
        ]
    };
    let first: Vec<String> = args(&addr);
    let worker = o.spawn(&first.iter().map(String::as_str).collect::<Vec<_>>());
    wait_ready(&addr).await;
    let second: Vec<String> = args(&format!("127.0.0.1:{}", free_port()));
    let out = o.output(&second.iter().map(String::as_str).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("already using") && text.contains("optout run"),
        "{text}"
    );
    // Read-only, without webhooks, `serve` still runs beside it.
    let third_addr = format!("127.0.0.1:{}", free_port());
    let third = o.spawn(&["serve", "--http-addr", &third_addr]);
    wait_ready(&third_addr).await;
    third.terminate();
    worker.terminate();
}
