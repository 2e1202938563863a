//! The customer's side of signed webhooks: a receiver that records every request (headers and
//! body) and fails a chosen number of tries per `webhook-id`, and a check of the signatures by
//! the Standard Webhooks reference library (PyPI `standardwebhooks`, through
//! tests/standardwebhooks_verify.py in .standardwebhooks-venv/, which
//! scripts/install-standardwebhooks.sh creates), never by optout's code.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
}

/// A webhook receiver.
#[derive(Default)]
pub struct Receiver {
    pub received: Mutex<Vec<Received>>,
    /// Tries still to fail, per `webhook-id`; ids not listed get `default_failures`.
    pub failures: Mutex<HashMap<String, usize>>,
    pub default_failures: usize,
}

impl Receiver {
    /// A receiver that fails the first `default_failures` tries of every id.
    pub fn new(default_failures: usize) -> Arc<Self> {
        Arc::new(Receiver {
            default_failures,
            ..Receiver::default()
        })
    }

    /// Serves it; its URL.
    pub async fn serve(self: &Arc<Self>) -> String {
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    /// The requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Received> {
        let r = self.received.lock().unwrap();
        r.iter().filter(|r| r.status < 300).cloned().collect()
    }
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let id = h("webhook-id");
    let fail = {
        let mut f = rx.failures.lock().unwrap();
        let left = f.entry(id.clone()).or_insert(rx.default_failures);
        if *left > 0 {
            *left -= 1;
            true
        } else {
            false
        }
    };
    let status = if fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    };
    rx.received.lock().unwrap().push(Received {
        id,
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: status.as_u16(),
    });
    status
}

/// The interpreter with `standardwebhooks`.
fn python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".standardwebhooks-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-standardwebhooks.sh (scripts/test.sh does)",
        py.display()
    );
    py
}

/// What the reference library makes of each request signed with `secret`: the verified
/// payload, or `{"error": …}`.
pub fn verify_all(secret: &str, requests: &[Received]) -> Vec<Value> {
    let job = json!({
        "secret": secret,
        "requests": requests.iter().map(|r| json!({
            "headers": {"webhook-id": r.id, "webhook-timestamp": r.timestamp,
                        "webhook-signature": r.signature},
            "body": r.body,
        })).collect::<Vec<_>>(),
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/standardwebhooks_verify.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the verifier failed");
    serde_json::from_slice(&out.stdout).unwrap()
}
