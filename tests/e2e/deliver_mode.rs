//! Deliveries under `--revocation-scope account`, through the `optout` binary:
//! - `optout run --twilio-consent all --revocation-scope account`: a STOP sent to one Messaging
//!   Service reaches the fake Consent API as an opt-out for every Messaging Service of the
//!   account the subscriber wrote to;
//! - `optout deliveries --resync` after a `replay` in `scope` mode: the changes the new mode
//!   implies, none on a second run, every current answer once for a new target, and a target
//!   that is not configured refused with one line and exit 2.

use super::*;

const MG_A: &str = "MG0123456789abcdef0123456789abcdea";
const MG_B: &str = "MG0123456789abcdef0123456789abcdeb";

/// A Twilio-flagged `kw` (`STOP`, `START`) from `from` to Messaging Service `service`.
fn signal(id: &str, from: &str, service: &str, kw: &str, at: &str) -> Vec<u8> {
    Inbound::new(id, from)
        .service(service)
        .body(kw)
        .opt_out_type(kw)
        .at(at)
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn account_pushes_an_opt_out_per_sender() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::new_stream(&client, "delivermode", 1).await;
    let (api, url, optout) = super::deliver::consent_api_and_optout(&emu).await;
    let worker = optout.spawn_run(
        &stream,
        &[
            "--twilio-consent",
            "all",
            "--twilio-api-url",
            &url,
            "--revocation-scope",
            "account",
            "--delivery-poll-ms",
            "50",
        ],
    );
    let who = "+15557770001";
    let pushed = |status: &'static str, n: usize| {
        let api = &api;
        move || {
            let got = api
                .items()
                .iter()
                .filter(|i| i["contact_id"] == who && i["status"] == status)
                .count();
            async move { got >= n }
        }
    };
    // The number opts in on both services, then out on A only.
    let starts = vec![
        signal("EZdm0001", who, MG_A, "START", "2026-03-01T10:00:00Z"),
        signal("EZdm0002", who, MG_B, "START", "2026-03-01T10:00:00Z"),
    ];
    emulator::put_records(&client, &stream, &keyed(starts))
        .await
        .unwrap();
    let waited = emulator::wait_for(
        "two opt-ins pushed",
        Duration::from_secs(60),
        pushed("opt-in", 2),
    )
    .await;
    if let Err(e) = waited {
        panic!("{e}; log:\n{}", worker.raw_log());
    }
    let stop = signal("EZdm0003", who, MG_A, "STOP", "2026-03-01T10:01:00Z");
    emulator::put_records(&client, &stream, &keyed(vec![stop]))
        .await
        .unwrap();
    let waited = emulator::wait_for(
        "two opt-outs pushed",
        Duration::from_secs(60),
        pushed("opt-out", 2),
    )
    .await;
    if let Err(e) = waited {
        panic!("{e}; log:\n{}", worker.raw_log());
    }
    worker.terminate();
    let senders: BTreeSet<String> = api
        .items()
        .iter()
        .filter(|i| i["status"] == "opt-out")
        .map(|i| i["sender_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(senders, BTreeSet::from([MG_A.into(), MG_B.into()]));
    // The feed says why B is out.
    let changes = json_rows(&optout.output(&["changes"]).stdout);
    let last = changes.last().unwrap();
    assert_eq!(
        (&last["scope"], &last["reason"], &last["origin_scope"]),
        (
            &json_str(MG_B),
            &json_str("account_opt_out"),
            &json_str(MG_A)
        ),
        "{changes:?}"
    );
}

fn json_str(s: &str) -> Value {
    Value::String(s.into())
}

/// `optout deliveries --resync ARGS`: its stdout, asserting exit 0.
fn resync(optout: &Optout, args: &[&str]) -> String {
    let mut all = vec!["deliveries", "--resync"];
    all.extend_from_slice(args);
    let out = optout.output(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn resync_catches_up_after_a_switch() {
    let optout = Optout::new(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let who = "+15557770002";
    let mut text = Vec::new();
    for line in [
        signal("EZdm0011", who, MG_A, "START", "2026-03-01T10:00:00Z"),
        signal("EZdm0012", who, MG_B, "START", "2026-03-01T10:00:00Z"),
        signal("EZdm0013", who, MG_A, "STOP", "2026-03-01T10:01:00Z"),
    ] {
        text.extend(line);
        text.push(b'\n');
    }
    std::fs::write(&file, text).unwrap();
    let out = optout.output(&["replay", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    // Replayed under `scope`: B's answer is its own START.
    let changes = || json_rows(&optout.output(&["changes"]).stdout);
    let before = changes().len();
    let switch = ["--revocation-scope", "account"];
    assert_eq!(
        resync(&optout, &switch),
        "keys=2 changes=1 outbox_items=0 target_items=0"
    );
    let after = changes();
    assert_eq!(after.len(), before + 1);
    assert_eq!(after[before]["scope"], MG_B);
    assert_eq!(after[before]["reason"], "account_opt_out");
    assert_eq!(
        resync(&optout, &switch),
        "keys=2 changes=0 outbox_items=0 target_items=0"
    );
    // A target that is not configured: one line, exit 2.
    let mut cmd = bare_command(&[
        "deliveries",
        "--store",
        &optout.store,
        "--resync",
        "--target",
        "notify:1",
    ]);
    let (code, stderr) = output_of(&mut cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("not a configured delivery target"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // A new webhook target gets both current answers, once.
    let secret = dir.path().join("whsec");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let target = [
        "--revocation-scope",
        "account",
        "--notify-url",
        "http://127.0.0.1:9/hook",
        "--notify-secret-file",
        secret.to_str().unwrap(),
        "--target",
        "notify:1",
    ];
    assert_eq!(
        resync(&optout, &target),
        "keys=2 changes=0 outbox_items=0 target_items=2"
    );
    assert_eq!(
        resync(&optout, &target),
        "keys=2 changes=0 outbox_items=0 target_items=0"
    );
    let items = optout.query(&["deliveries", "--target", "notify:1"]);
    let reasons: BTreeSet<&str> = items
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, BTreeSet::from(["twilio_stop", "account_opt_out"]));
}
