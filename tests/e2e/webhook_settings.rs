//! Webhook settings through the binary: a mistake is one line and exit 2, without the token;
//! a second SQLite writer taking webhooks is refused, while a read-only `serve` still runs.

use super::*;

use std::time::Duration;

use crate::common::twilio;
use crate::common::webhooks::PUBLIC;
use crate::webhooks::{token_file, wait_ready};

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
