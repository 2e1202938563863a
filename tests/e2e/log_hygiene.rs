//! Phone numbers and message bodies are never logged: the consumer reads opt events, a phrase
//! revocation and undecodable records carrying numbers and bodies, at the default level and at
//! `RUST_LOG=debug` (every crate), in both log formats, and none of them shows in stderr.

use crate::common::emulator;
use crate::common::optout::*;
use crate::common::records::*;

use std::process::Command;

/// Subscriber numbers (as the 10 digits that any rendering of them contains) and body
/// markers that must never reach the logs.
const NUMBERS: [&str; 5] = [
    "5557770001",
    "5557770002",
    "5557770003",
    "5557770004",
    "5557770005",
];
const BODIES: [&str; 4] = ["quokka-a", "quokka-b", "quokka-c", "quokka-d"];

fn records() -> Vec<Vec<u8>> {
    let at = "2026-03-01T10:00:00Z";
    let to = "+15559870002";
    let opt = |id: &str, from: &str, body: &str, t: Option<&str>| {
        Inbound::new(id, from)
            .to(to)
            .service("MGh")
            .body(body)
            .opt_out_type(t)
            .at(at)
            .build()
    };
    let mut r = vec![
        opt("EZh1", "+15557770001", "STOP quokka-a", Some("STOP")),
        opt("EZh2", "+15557770002", "START quokka-b", Some("START")),
        opt("EZh3", "+15557770003", "HELP", Some("HELP")),
        // No opt-out type: a phrase the revocation detector reads.
        opt(
            "EZh4",
            "+15557770004",
            "please stop texting me, quokka-c",
            None,
        ),
    ];
    // Undecodable: cut short, and a record that is JSON but not an event.
    let mut cut = opt("EZh5", "+15557770005", "STOP quokka-d", Some("STOP"));
    cut.truncate(cut.len() - 20);
    r.push(cut);
    r.push(br#"{"from":"+15557770005","body":"quokka-d"}"#.to_vec());
    r
}

/// One `optout run` to idle over `stream` on a fresh store; returns its stderr.
fn run(o: &Optout, stream: &str, rust_log: Option<&str>, json: bool) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_optout"));
    c.args(["run", "--stream", stream, "--exit-when-idle", "1"])
        .args(["--poll-interval-ms", "100", "--store", &o.store])
        .envs(o.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("OPTOUT_STORE")
        .env_remove("OPTOUT_STREAM")
        .env_remove("OPTOUT_LOG_FORMAT")
        .env_remove("RUST_LOG");
    if json {
        c.args(["--log-format", "json"]);
    }
    if let Some(level) = rust_log {
        c.env("RUST_LOG", level);
    }
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "optout run failed: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn no_phone_number_or_body_reaches_the_logs() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("hygiene");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    emulator::put_records(&client, &stream, &keyed(records()))
        .await
        .unwrap();
    for (level, json) in [
        (None, false),
        (None, true),
        (Some("debug"), false),
        (Some("debug"), true),
    ] {
        let o = Optout::new(emu.env());
        let stderr = run(&o, &stream, level, json);
        // The run did read them all: three opt events, the revocation and the dead letters.
        assert_eq!(o.query(&["events"]).len(), 4, "{stderr}"); // with the revocation
        assert!(!o.query(&["dead-letters"]).is_empty(), "{stderr}");
        assert!(stderr.lines().count() > 2, "nothing logged: {stderr}");
        for secret in NUMBERS.iter().chain(&BODIES) {
            if let Some(line) = stderr.lines().find(|l| l.contains(secret)) {
                panic!("{secret} logged at RUST_LOG={level:?} (json {json}): {line}");
            }
        }
        eprintln!(
            "RUST_LOG={level:?}, json {json}: {} log lines, no number or body",
            stderr.lines().count()
        );
    }
}
