//! The HTTP API's bearer tokens: `/v1/*` needs one when tokens are set, the probes never do,
//! `/metrics` only with `--metrics-require-token`; a server reachable from other hosts refuses
//! to start without a token; `--help` never shows a secret's value.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use optout::http::{ApiAuth, AppState};

use crate::common::optout::{bare_command, output_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Serves the real router on a loopback port; returns its address and the stop switch.
async fn serve(auth: ApiAuth) -> (std::net::SocketAddr, CancellationToken) {
    let reader = optout::store::Reader::open("sqlite::memory:", 1)
        .await
        .unwrap();
    let state = AppState {
        reader: Arc::new(reader),
        metrics: None,
        ready: Arc::new(AtomicBool::new(true)),
        health: None,
        auth: Arc::new(auth),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(optout::http::serve_on(
        listener,
        optout::app::http_app(state),
        stop.clone(),
    ));
    (addr, stop)
}

/// One HTTP/1.1 GET; returns the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("response within 10 s")
    .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    (status, body.to_string())
}

#[tokio::test]
async fn v1_needs_a_valid_token_and_probes_stay_open() {
    let (addr, stop) = serve(ApiAuth::new(
        vec!["old-token".into(), "new-token".into()],
        false,
    ))
    .await;

    for path in [
        "/v1/status",
        "/v1/events",
        "/v1/dead-letters",
        "/v1/test-events",
    ] {
        let (status, body) = get(addr, path, None).await;
        assert_eq!(status, 401, "{path} without a token");
        let json: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON 401 body");
        assert_eq!(json["error"], "unauthorized");
        assert!(
            json["detail"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer"),
            "{json}"
        );

        let (status, body) = get(addr, path, Some("Bearer wrong-token")).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
        assert_eq!(json["detail"], "the bearer token is not valid");

        // Either token of a rotation works; the scheme is case-insensitive.
        for auth in ["Bearer old-token", "Bearer new-token", "bearer new-token"] {
            let (status, body) = get(addr, path, Some(auth)).await;
            assert_eq!(status, 200, "{path} with `{auth}`: {body}");
            let page: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
            assert!(page["items"].is_array(), "{body}");
        }
    }
    // Neither a prefix, an extension, nor another scheme of a valid token passes.
    for auth in [
        "Bearer old",
        "Bearer old-token-x",
        "Basic old-token",
        "old-token",
        "Bearer ",
    ] {
        assert_eq!(get(addr, "/v1/status", Some(auth)).await.0, 401, "`{auth}`");
    }
    assert_eq!(get(addr, "/healthz", None).await.0, 200);
    assert_eq!(get(addr, "/readyz", None).await.0, 200);
    // Open by default (404 here only because this test installs no recorder).
    assert_eq!(get(addr, "/metrics", None).await.0, 404);
    stop.cancel();
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let (addr, stop) = serve(ApiAuth::new(vec!["t0ken".into()], true)).await;
    assert_eq!(get(addr, "/metrics", None).await.0, 401);
    assert_ne!(get(addr, "/metrics", Some("Bearer t0ken")).await.0, 401);
    assert_eq!(get(addr, "/healthz", None).await.0, 200);
    stop.cancel();
}

#[tokio::test]
async fn without_tokens_everything_is_open() {
    let (addr, stop) = serve(ApiAuth::open()).await;
    assert_eq!(get(addr, "/v1/status", None).await.0, 200);
    stop.cancel();
}

/// The binary with a clean environment and an in-memory store.
fn optout(args: &[&str]) -> Command {
    let mut cmd = bare_command(args);
    cmd.env("OPTOUT_STORE", "sqlite::memory:");
    cmd
}

#[test]
fn a_reachable_address_without_a_token_is_refused_at_start() {
    for args in [
        vec!["serve", "--http-addr", "0.0.0.0:0"],
        vec!["run", "--stream", "s", "--http-addr", "0.0.0.0:0"],
        vec!["serve", "--http-addr", "[::]:0"],
    ] {
        let (code, text) = output_of(&mut optout(&args));
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
        assert!(
            text.contains("OPTOUT_HTTP_TOKEN") && text.contains("--http-token-file"),
            "{text}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("tokens");
    std::fs::write(&empty, "\n  \n").unwrap();
    let (code, text) = output_of(&mut optout(&[
        "serve",
        "--http-addr",
        "0.0.0.0:0",
        "--http-token-file",
        empty.to_str().unwrap(),
    ]));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("holds no token"), "{text}");
}

/// A token shorter than 32 characters guards nothing on a reachable address: refused at
/// start, exit 2, without the token in the message; on loopback it is accepted.
#[test]
fn a_short_token_is_refused_on_a_reachable_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{}\nx\n", "k".repeat(40))).unwrap();
    for mut cmd in [
        optout(&["serve", "--http-addr", "0.0.0.0:0"]),
        optout(&["run", "--stream", "s", "--http-addr", "0.0.0.0:0"]),
    ] {
        cmd.env("OPTOUT_HTTP_TOKEN", "Sh0rtT0ken");
        let (code, text) = output_of(&mut cmd);
        assert_eq!(code, Some(2), "{text}");
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
        assert!(
            text.contains("10 characters") && text.contains("32"),
            "{text}"
        );
        assert!(!text.contains("Sh0rtT0ken"), "the token was echoed: {text}");
    }
    // One short token among long ones in the file is refused too.
    let (code, text) = output_of(&mut optout(&[
        "serve",
        "--http-addr",
        "0.0.0.0:0",
        "--http-token-file",
        file.to_str().unwrap(),
    ]));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("1 characters"), "{text}");
}

#[tokio::test]
async fn serve_reads_rotating_tokens_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "first-secret-token\n\n  second-secret-token  \n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // `serve` opens the store read-only, so it must exist first.
    let store = format!("sqlite://{}", dir.path().join("optout.db").display());
    let (code, text) = output_of(optout(&["migrate"]).env("OPTOUT_STORE", &store));
    assert_eq!(code, Some(0), "{text}");
    let child = Killed(
        optout(&[
            "serve",
            "--http-addr",
            &addr.to_string(),
            "--http-token-file",
            tokens.to_str().unwrap(),
        ])
        .env("OPTOUT_STORE", &store)
        .spawn()
        .unwrap(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "optout serve did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(addr, "/v1/status", None).await.0, 401);
    assert_eq!(
        get(addr, "/v1/status", Some("Bearer first-secret-token"))
            .await
            .0,
        200
    );
    assert_eq!(
        get(addr, "/v1/status", Some("Bearer second-secret-token"))
            .await
            .0,
        200
    );
    assert_eq!(get(addr, "/metrics", None).await.0, 200);
    drop(child);
}

/// A child process killed when the test ends, pass or fail.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn help_never_shows_secret_values() {
    let store = "postgres://u:HelpSecret1@db/optout";
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["serve", "--help"],
    ] {
        let (code, text) = output_of(
            optout(&args)
                .env("OPTOUT_STORE", store)
                .env("OPTOUT_HTTP_TOKEN", "HelpSecret2"),
        );
        assert_eq!(code, Some(0), "{text}");
        assert!(
            !text.contains("HelpSecret"),
            "{args:?} shows a secret: {text}"
        );
    }
    let (_, text) = output_of(&mut optout(&["serve", "--help"]));
    assert!(
        text.contains("OPTOUT_HTTP_TOKEN") && text.contains("--http-token-file"),
        "{text}"
    );
}
