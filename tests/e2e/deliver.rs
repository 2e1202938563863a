//! Delivery through the `optout` binary:
//! - `optout run --twilio-consent revocations` against the fake Consent API
//!   (tests/common/consent_api.rs): a phrase revocation in the stream reaches Twilio as an
//!   opt-out, a keyword STOP (which Twilio blocked itself) does not, and the time from the
//!   stream to the fake is measured (printed, not asserted: speed is measured, never asserted);
//! - two instances on PostgreSQL, one killed with a request in flight: nothing lost, the only
//!   copies carry the same `correlation_id`;
//! - `--notify-url`: every change arrives signed (checked by the Standard Webhooks library),
//!   in order per subscriber, through a refused first try;
//! - `serve --notify-url` beside `run` on PostgreSQL: two dispatchers share the outbox;
//! - configuration mistakes exit 2 with one line.

use super::*;

use std::sync::Arc;
use std::time::Instant;

use optout::deliver::{Clock, SystemClock};

use crate::common::consent_api::ConsentApi;

const KEY: &str = "SK0123456789abcdef0123456789abcdef";
const SECRET: &str = "e2e-api-secret";

/// A STOP Twilio flagged (and so blocked itself) from `from`, to the tests' Messaging Service.
fn twilio_stop(id: &str, from: &str) -> Vec<u8> {
    Inbound::new(id, from)
        .service("MG0123456789abcdef0123456789abcdef")
        .body("STOP")
        .opt_out_type("STOP")
        .build()
}

fn revocation(i: usize) -> Vec<u8> {
    Inbound::new(&format!("EZrev{i:04}"), &format!("+1555321{i:04}"))
        .service("MG0123456789abcdef0123456789abcdef")
        .body("please stop texting me")
        .build()
}

/// The fake Consent API serving, its URL, and an `optout` on a SQLite store of its own with
/// API-key credentials for it in the environment (as Twilio's variables name them).
pub(super) async fn consent_api_and_optout(
    emu: &emulator::Emulator,
) -> (Arc<ConsentApi>, String, Optout) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let api = ConsentApi::new(clock, ACCOUNT, KEY, SECRET);
    let url = api.serve().await;
    let mut env = emu.env();
    env.extend([
        ("TWILIO_ACCOUNT_SID".to_string(), ACCOUNT.to_string()),
        ("TWILIO_API_KEY".to_string(), KEY.to_string()),
        ("TWILIO_API_SECRET".to_string(), SECRET.to_string()),
    ]);
    (api, url, Optout::new(env))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phrase_revocation_in_the_stream_reaches_the_consent_api_and_a_stop_does_not() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::new_stream(&client, "deliver", 1).await;
    let (api, url, optout) = consent_api_and_optout(&emu).await;
    let worker = optout.spawn_run(
        &stream,
        &["--twilio-consent", "revocations", "--twilio-api-url", &url],
    );
    // A keyword STOP first: recorded, but Twilio already blocked it, so never pushed.
    let stop = twilio_stop("EZstop0001", "+15553339999");
    emulator::put_records(&client, &stream, &keyed(vec![stop]))
        .await
        .unwrap();
    // Then revocations one at a time, each timed from its put to its arrival at the fake.
    // scripts/measure-consent-latency.sh asks for more.
    let n: usize = std::env::var("OPTOUT_LATENCY_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let mut latencies = Vec::new();
    for i in 0..n {
        let sent = Instant::now();
        emulator::put_records(&client, &stream, &keyed(vec![revocation(i)]))
            .await
            .unwrap();
        let contact = format!("+1555321{i:04}");
        emulator::wait_for(
            "the revocation at the fake",
            Duration::from_secs(60),
            || {
                let found = api
                    .items()
                    .iter()
                    .any(|it| it["contact_id"] == contact.as_str());
                async move { found }
            },
        )
        .await
        .unwrap();
        latencies.push(sent.elapsed());
    }
    let items = api.items();
    assert!(
        items.iter().all(|i| i["contact_id"] != "+15553339999"),
        "the STOP was pushed"
    );
    for i in &items {
        assert_eq!(i["status"], "opt-out");
        assert_eq!(i["source"], "opt-out-message");
        assert_eq!(i["sender_id"], "MG0123456789abcdef0123456789abcdef");
    }
    let arrivals = api.arrivals.lock().unwrap().clone();
    assert!(arrivals.iter().all(|a| a.status == 201), "{arrivals:?}");
    // The revocation was honoured here too (revocations mode implies it).
    let status = optout.query(&["status", "--subscriber", "+15553210000"]);
    assert_eq!(status[0]["status"], "opted_out", "{status:?}");
    worker.terminate();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "consent latency ms: p50 {:.0} p99 {:.0} max {:.0} n {n}",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap()),
    );
}

#[test]
fn delivery_configuration_mistakes_exit_2_with_one_line() {
    let cases: [(&[&str], &str); 3] = [
        (&["--twilio-consent", "all"], "TWILIO_ACCOUNT_SID"),
        (
            &["--notify-url", "https://example.com/hook"],
            "one secret file per URL",
        ),
        (
            &[
                "--notify-url",
                "https://example.com/hook",
                "--notify-secret-file",
                "/nonexistent/s",
            ],
            "cannot read --notify-secret-file",
        ),
    ];
    for (args, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}", dir.path().join("o.db").display());
        let mut all = vec!["run", "--stream", "s", "--store", &store];
        all.extend_from_slice(args);
        let mut cmd = bare_command(&all);
        for var in [
            "TWILIO_ACCOUNT_SID",
            "TWILIO_API_KEY",
            "TWILIO_API_SECRET",
            "TWILIO_AUTH_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        let (code, stderr) = output_of(&mut cmd);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// Two instances on PostgreSQL; the first is killed (`kill -9`) while its request to the
/// Consent API is in flight (the fake holds every request 2 s, within Twilio's 3 s). The
/// second takes its claims over once they expire: every opt-out arrives, and the items of the
/// request in flight arrive again with the same `correlation_id`s, the only duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn a_dispatcher_killed_mid_delivery_loses_nothing_on_postgres() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::new_stream(&client, "deliverkill", 2).await;
    let pg = crate::common::db::postgres().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Auth token credentials: the account SID is the user name.
    let api = ConsentApi::new(clock, ACCOUNT, ACCOUNT, SECRET);
    *api.hang_next.lock().unwrap() = (usize::MAX, Duration::from_secs(2));
    let url = api.serve().await;
    let mut env = emu.env();
    env.extend([
        ("TWILIO_ACCOUNT_SID".to_string(), ACCOUNT.to_string()),
        ("TWILIO_AUTH_TOKEN".to_string(), SECRET.to_string()),
    ]);
    let optout = Optout::with_store(env, &pg.url);
    let flags = |id: &'static str| {
        vec![
            "--twilio-consent",
            "all",
            "--twilio-api-url",
            url.as_str(),
            "--delivery-hold-secs",
            "5",
            "--delivery-poll-ms",
            "50",
            "--lease-ms",
            "2000",
            "--worker-id",
            id,
        ]
    };
    let mut first = optout.spawn_run(&stream, &flags("first"));
    let n = 60;
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| twilio_stop(&format!("EZkill{i:04}"), &format!("+1555444{i:04}")))
        .collect();
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    emulator::wait_for("a request in flight", Duration::from_secs(60), || {
        let any = !api.arrivals.lock().unwrap().is_empty();
        async move { any }
    })
    .await
    .unwrap();
    first.kill_9();
    let in_flight = api.arrivals.lock().unwrap()[0].items.clone();
    let second = optout.spawn_run(&stream, &flags("second"));
    // Every opt-out arrives, and the items the first held are taken over once its claim
    // (5 s) expires and sent again.
    let resent = |items: &[Value]| {
        in_flight.iter().all(|f| {
            let copies = items
                .iter()
                .filter(|i| i["correlation_id"] == f["correlation_id"]);
            copies.count() >= 2
        })
    };
    emulator::wait_for(
        "every opt-out at the fake",
        Duration::from_secs(120),
        || {
            let items = api.items();
            let contacts: BTreeSet<String> = items
                .iter()
                .map(|i| i["contact_id"].as_str().unwrap().to_string())
                .collect();
            let done = contacts.len() == n && resent(&items);
            async move { done }
        },
    )
    .await
    .unwrap();
    second.terminate();
    let items = api.items();
    // One correlation id per contact, however many copies.
    let mut ids: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for i in &items {
        ids.entry(i["contact_id"].as_str().unwrap().to_string())
            .or_default()
            .insert(i["correlation_id"].as_str().unwrap().to_string());
    }
    assert!(ids.values().all(|s| s.len() == 1), "{ids:?}");
    println!(
        "{} items for {n} opt-outs ({} in flight at the kill)",
        items.len(),
        in_flight.len()
    );
}

/// `optout run --notify-url`: every change in the stream reaches the receiver, signed so that
/// the Standard Webhooks reference library accepts it, in commit order per subscriber.
#[tokio::test(flavor = "multi_thread")]
async fn every_change_reaches_a_signed_webhook() {
    use crate::common::webhook_receiver::{Receiver, verify_all};
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::new_stream(&client, "notify", 1).await;
    // Every id refused once first: each change is retried before it is taken.
    let receiver = Receiver::new(1);
    let url = receiver.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("whsec");
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let optout = Optout::new(emu.env());
    let worker = optout.spawn_run(
        &stream,
        &[
            "--notify-url",
            &url,
            "--notify-secret-file",
            secret_file.to_str().unwrap(),
            "--delivery-poll-ms",
            "50",
        ],
    );
    // A STOP then a START for one subscriber, and a STOP for another.
    let rec = |id: &str, from: &str, kw: &str, at: &str| {
        Inbound::new(id, from)
            .service("MG0123456789abcdef0123456789abcdef")
            .body(kw)
            .opt_out_type(kw)
            .at(at)
            .build()
    };
    // A change is the answer after a commit: the START goes in once the STOPs are delivered,
    // so that it is a change of its own.
    let batches = [
        vec![
            rec("EZn1", "+15556660001", "STOP", "2026-03-01T10:00:00Z"),
            rec("EZn3", "+15556660002", "STOP", "2026-03-01T10:02:00Z"),
        ],
        vec![rec("EZn2", "+15556660001", "START", "2026-03-01T10:01:00Z")],
    ];
    let mut expected = 0;
    for batch in batches {
        expected += batch.len();
        emulator::put_records(&client, &stream, &keyed(batch))
            .await
            .unwrap();
        let waited = emulator::wait_for("the changes delivered", Duration::from_secs(60), || {
            let n = receiver.delivered().len();
            async move { n >= expected }
        })
        .await;
        if let Err(e) = waited {
            let got = receiver.received.lock().unwrap().len();
            panic!("{e}: {got} requests received; log:\n{}", worker.raw_log());
        }
    }
    worker.terminate();
    let all = receiver.received.lock().unwrap().clone();
    let verified = verify_all(secret, &all);
    assert!(
        verified.iter().all(|v| v.get("error").is_none()),
        "{verified:?}"
    );
    let delivered: Vec<&Value> = all
        .iter()
        .zip(&verified)
        .filter(|(r, _)| r.status < 300)
        .map(|(_, v)| v)
        .collect();
    let first: Vec<&str> = delivered
        .iter()
        .filter(|v| v["data"]["subscriber"] == "+15556660001")
        .map(|v| v["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["opted_out", "opted_in"]);
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    // Each refused try and its retry share one webhook-id.
    let ids: BTreeSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(all.len(), 6);
}

/// On PostgreSQL, `optout serve --notify-url` beside `optout run --notify-url`: two
/// dispatchers share the outbox; every change is delivered, and any copy has its item's id.
#[tokio::test(flavor = "multi_thread")]
async fn serve_and_run_share_the_outbox_on_postgres() {
    use crate::common::webhook_receiver::Receiver;
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::new_stream(&client, "notifyserve", 2).await;
    let pg = crate::common::db::postgres().await;
    let receiver = Receiver::new(0);
    let url = receiver.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("whsec");
    std::fs::write(&secret_file, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let secret_path = secret_file.to_str().unwrap();
    let optout = Optout::with_store(emu.env(), &pg.url);
    let notify = ["--notify-url", &url, "--notify-secret-file", secret_path];
    let mut run_flags = notify.to_vec();
    run_flags.extend(["--delivery-poll-ms", "50"]);
    let worker = optout.spawn_run(&stream, &run_flags);
    let addr = format!("127.0.0.1:{}", crate::common::http::free_port());
    let mut serve_args = vec!["serve", "--http-addr", &addr, "--delivery-poll-ms", "50"];
    serve_args.extend(notify);
    let server = optout.spawn(&serve_args);
    let n = 40;
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| twilio_stop(&format!("EZsv{i:04}"), &format!("+1555777{i:04}")))
        .collect();
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    emulator::wait_for("every change delivered", Duration::from_secs(60), || {
        let ids: BTreeSet<String> = receiver.delivered().into_iter().map(|r| r.id).collect();
        async move { ids.len() == n }
    })
    .await
    .unwrap();
    let serve_log = server.terminate();
    worker.terminate();
    assert!(
        serve_log
            .iter()
            .any(|l| l["message"] == "Dispatcher started."),
        "serve ran no dispatcher: {serve_log:?}"
    );
    let all = receiver.delivered();
    let subscribers: BTreeSet<String> = all
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            v["data"]["subscriber"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(subscribers.len(), n);
}
