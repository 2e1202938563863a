//! The HTTP surface: health and readiness probes, Prometheus metrics, and the read-only query
//! API for data teams (JSON arrays; the same rows as the CLI prints).
//!
//! The query API serves phone numbers, so `/v1/*` takes a bearer token when one is set
//! ([`ApiAuth`]); the probes stay open for the orchestrator, and `/metrics` is open unless
//! asked otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::event::{Detection, OptOutType};
use crate::store::{EventFilter, StatusFilter, Store};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// Where queries go.
    pub store: Arc<dyn Store>,
    /// Prometheus exposition, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// Set once the consumer has started reading (or always, for `optout serve`).
    pub ready: Arc<AtomicBool>,
    /// Who may call the query API (and `/metrics`, if so configured).
    pub auth: Arc<ApiAuth>,
    /// The consumer's shard health and the time after which a failing shard makes the
    /// process unready (`optout run` only).
    pub health: Option<(crate::kinesis::Health, std::time::Duration)>,
}

/// The bearer tokens the API accepts; none means open (only allowed on a loopback address,
/// which the CLI enforces).
pub struct ApiAuth {
    tokens: Vec<Vec<u8>>,
    metrics_require_token: bool,
}

impl ApiAuth {
    /// Accepts any of `tokens` (several, so that a token can be rotated without downtime).
    pub fn new(tokens: Vec<String>, metrics_require_token: bool) -> Self {
        ApiAuth {
            tokens: tokens.into_iter().map(String::into_bytes).collect(),
            metrics_require_token,
        }
    }

    /// No token: every route is open.
    pub fn open() -> Self {
        ApiAuth::new(Vec::new(), false)
    }

    /// Whether an `Authorization` header value grants access. Every configured token is
    /// compared, each in constant time, so timing tells neither which token nor how much of
    /// one matched (only, as always, the length of the candidate).
    fn allows(&self, authorization: Option<&[u8]>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let Some(presented) = authorization.and_then(bearer_token) else {
            return false;
        };
        self.tokens
            .iter()
            .fold(subtle::Choice::from(0), |any, token| {
                any | subtle::ConstantTimeEq::ct_eq(token.as_slice(), presented)
            })
            .into()
    }
}

/// The token of `Bearer <token>` (scheme in any case, as RFC 7235 says).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// Rejects a request without a valid bearer token: 401 with a JSON body that says what to send.
async fn require_token(State(auth): State<Arc<ApiAuth>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if auth.allows(presented) {
        return next.run(request).await;
    }
    let detail = if presented.is_some() {
        "the bearer token is not valid"
    } else {
        "send `Authorization: Bearer <token>` with a token from OPTOUT_HTTP_TOKEN or --http-token-file"
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": "unauthorized", "detail": detail })),
    )
        .into_response()
}

/// The routes: `/v1/*` (and `/metrics` if so configured) behind [`ApiAuth`].
pub fn router(state: AppState) -> Router {
    let auth = state.auth.clone();
    let mut protected = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/test-events", get(test_events));
    let mut open = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if auth.metrics_require_token {
        protected = protected.route("/metrics", get(metrics));
    } else {
        open = open.route("/metrics", get(metrics));
    }
    let guard = middleware::from_fn_with_state(auth, require_token);
    open.merge(protected.route_layer(guard)).with_state(state)
}

/// Serves the routes on `listener` until `shutdown` is cancelled.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP API listening.");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn readyz(State(s): State<AppState>) -> Response {
    if !s.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    if let Err(e) = s.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response();
    }
    let failing = match &s.health {
        Some((health, after)) => health.failing(*after),
        None => Vec::new(),
    };
    if failing.is_empty() {
        return "ready\n".into_response();
    }
    // One line per failing shard, so an operator reading the probe sees what to fix.
    let mut body = String::new();
    for f in &failing {
        body.push_str(&format!(
            "shard {} failing for {} s: {}\n",
            f.shard_id, f.for_secs, f.reason
        ));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    match &s.metrics {
        Some(h) => h.render().into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}

fn reply<T: serde::Serialize>(r: Result<Vec<T>, crate::store::StoreError>) -> Response {
    match r {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// `/v1/status?subscriber=&scope=&account=` (account may be a comma-separated list).
#[derive(Debug, Deserialize)]
struct StatusQuery {
    subscriber: Option<String>,
    scope: Option<String>,
    account: Option<String>,
}

async fn status(State(s): State<AppState>, Query(q): Query<StatusQuery>) -> Response {
    let filter = StatusFilter {
        subscriber: q.subscriber,
        scope: q.scope,
        accounts: q
            .account
            .map(|a| a.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
    };
    reply(s.store.status(&filter).await)
}

/// `/v1/events?since=RFC3339&type=stop|start|help&subscriber=&detection=twilio|keyword|phrase`.
#[derive(Debug, Deserialize)]
struct EventsQuery {
    since: Option<String>,
    r#type: Option<String>,
    subscriber: Option<String>,
    detection: Option<String>,
}

async fn events(State(s): State<AppState>, Query(q): Query<EventsQuery>) -> Response {
    let since = match q.since.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(t)) => Some(t.to_utc()),
        Some(Err(e)) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("since: not RFC 3339: {e}\n"),
            )
                .into_response();
        }
    };
    let opt_out_type = match q.r#type.as_deref().map(OptOutType::parse) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => {
            return (StatusCode::BAD_REQUEST, "type: use stop, start or help\n").into_response();
        }
    };
    let detection = match q.detection.as_deref().map(Detection::parse) {
        None => None,
        Some(Some(d)) => Some(d),
        Some(None) => {
            return (
                StatusCode::BAD_REQUEST,
                "detection: use twilio, keyword or phrase\n",
            )
                .into_response();
        }
    };
    let filter = EventFilter {
        since,
        opt_out_type,
        subscriber: q.subscriber,
        detection,
    };
    reply(s.store.events(&filter).await)
}

async fn dead_letters(State(s): State<AppState>) -> Response {
    reply(s.store.dead_letters().await)
}

async fn test_events(State(s): State<AppState>) -> Response {
    reply(s.store.test_events().await)
}
