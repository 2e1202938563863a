//! The HTTP server shell: the accept loop with its limits, bearer-token authentication, the
//! health and readiness probes and Prometheus metrics. The routes of the ways in and out (the
//! query API, `/v1`; Twilio's webhooks) are handed in by the composition root, which merges
//! them here: the ways out behind the token check, the ways in (which authenticate their own
//! callers) beside it, both under the in-flight bound; this module knows none of them.
//!
//! The query API serves phone numbers, so protected routes take a bearer token when one is set
//! ([`ApiAuth`]); the probes stay open for the orchestrator, and `/metrics` is open unless
//! asked otherwise.

mod auth;
mod error;
mod serve;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use auth::ApiAuth;
pub use error::ApiError;

use crate::store::Reader;

/// Requests the API answers at once; more get 503 at once rather than queueing without end.
const MAX_IN_FLIGHT: usize = 512;
/// Longest time a request may take to produce its response head (an export's body may stream
/// longer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// Where queries go: the store's read pool, separate from the consumer's writes.
    pub reader: Arc<Reader>,
    /// Prometheus exposition, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// Set once the consumer has started reading (or always, for `optout serve`).
    pub ready: Arc<AtomicBool>,
    /// Who may call the query API (and `/metrics`, if so configured).
    pub auth: Arc<ApiAuth>,
    /// The consumer's shard health and the time after which a failing shard makes the
    /// process unready (`optout run` only).
    pub health: Option<(kinesis_engine::Health, Duration)>,
}

/// The routes: `protected` (the ways out, e.g. `/v1/*`; and `/metrics` if so configured)
/// behind [`ApiAuth`], and `ingest` (ways in that check their own callers, e.g. Twilio's signed
/// webhooks), both bounded in time and in concurrency, beside the open probes.
pub fn router(state: AppState, protected: Router, ingest: Option<Router>) -> Router {
    let auth = state.auth.clone();
    let mut protected_here = Router::new();
    let mut open = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if auth.metrics_require_token {
        protected_here = protected_here.route("/metrics", get(metrics));
    } else {
        open = open.route("/metrics", get(metrics));
    }
    let guard = middleware::from_fn_with_state(auth, auth::require_token);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let bound = middleware::from_fn_with_state(slots, bounded);
    let protected = protected_here
        .with_state(state.clone())
        .merge(protected)
        .route_layer(guard)
        .route_layer(bound.clone());
    let ingest = ingest.map_or_else(Router::new, |r| r.route_layer(bound));
    open.with_state(state)
        .merge(protected)
        .merge(ingest)
        .fallback(|| async { ApiError::not_found("no such route; see /v1/openapi.json") })
}

/// At most [`MAX_IN_FLIGHT`] requests at once, each with [`REQUEST_TIMEOUT`] to answer.
async fn bounded(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Ok(_slot) = slots.try_acquire() else {
        return ApiError::unavailable("busy", "too many requests in flight; retry shortly")
            .into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            "timeout",
            format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        )
        .into_response(),
    }
}

/// Serves `app` (see [`router`]) on `listener` until `shutdown` is cancelled.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP API listening.");
    serve::serve(listener, app, shutdown).await
}

async fn readyz(State(s): State<AppState>) -> Response {
    if !s.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    if let Err(e) = s.reader.ping().await {
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
