//! The HTTP server shell: the accept loop with its limits, bearer-token authentication, the
//! health and readiness probes and Prometheus metrics. The routes of the ways in and out (the
//! query API, `/v1`; the web console, `/console/`; Twilio's webhooks) are handed in by the
//! composition root, which merges them here: the API behind the token check, the console
//! (which checks its own sessions) and the ways in (which authenticate their own callers)
//! beside it, all under the URI bound and an in-flight bound; this module knows none of them.
//!
//! The query API serves phone numbers, so protected routes take a bearer token when one is set
//! ([`ApiAuth`]); the probes stay open for the orchestrator, and `/metrics` is open unless
//! asked otherwise. The probes are served beside the API ([`router`]) or on a listener of their
//! own ([`api_router`] and [`health_router`], `--health-addr`), where no flood of the API port
//! can reach them.

mod auth;
mod deadline;
mod error;
pub mod metrics;
mod serve;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use auth::ApiAuth;
pub use error::ApiError;
pub use serve::Listener;

use crate::store::Reader;

/// Requests the API answers at once, each counted until its body is sent (an export holds its
/// slot to the end); more wait up to [`SLOT_WAIT`] for a slot, then get 503 rather than
/// queueing without end. With the page's byte cap ([`crate::store::query::PAGE_BYTES`]: a
/// page in rows, its JSON, and what hyper queues) this bounds the API's memory, whatever the
/// rows hold, to about 32 × 1.5 MiB (docs/operating.md, "Sizing").
pub const MAX_IN_FLIGHT: usize = 32;
/// How long a request past [`MAX_IN_FLIGHT`] waits for a slot (first come, first served)
/// before `503 busy`. A stall of a few milliseconds (a commit's fsync, a busy core) filled all
/// 32 slots at 5,000 lookups/s, and refused about 2% of them that a moment's wait would have
/// answered; a wait holds no page, only the request head, and connections are capped.
pub const SLOT_WAIT: Duration = Duration::from_millis(100);
/// Webhook requests taken at once, on a bound of their own so that queries cannot starve
/// Twilio's deliveries (nor the reverse). Each holds at most its body (1 MiB) and its records
/// until committed, so this bounds the way in's memory to about 64 MiB (docs/operating.md,
/// "Sizing"); 64 is also what one group commit drains well (scripts/bench-webhooks.sh).
pub const MAX_INGEST_IN_FLIGHT: usize = 64;
/// Longest time a request may take to produce its response head (an export's body may stream
/// longer, as long as the client keeps reading).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request target (path and query) the API reads: a list parameter of thousands of
/// values made statements SQLite refuses and pages that starved every other reader.
pub const MAX_URI_BYTES: usize = 8 << 10;

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

/// The routes the composition root hands the shell.
pub struct Routes {
    /// Ways out behind [`ApiAuth`]'s bearer token (`/v1/*`).
    pub protected: Router,
    /// Ways out that check their own callers against [`ApiAuth`] (the web console's
    /// sessions), sharing the API's in-flight bound.
    pub sessions: Option<Router>,
    /// Ways in that check their own callers (Twilio's signed webhooks), on a bound of their
    /// own.
    pub ingest: Option<Router>,
}

/// One listener for everything: the probes, `/metrics` and `routes`, bounded in time, size
/// and concurrency.
pub fn router(state: AppState, routes: Routes) -> Router {
    finish(probes(state.clone()).merge(api_routes(state, routes)))
}

/// The API's listener when the probes have their own (`--health-addr`): `routes` only.
pub fn api_router(state: AppState, routes: Routes) -> Router {
    finish(api_routes(state, routes))
}

/// The probes' own listener (`--health-addr`): `/healthz`, `/readyz` and `/metrics`.
pub fn health_router(state: AppState) -> Router {
    finish(probes(state))
}

fn finish(routes: Router) -> Router {
    routes.fallback(|| async { ApiError::not_found("no such route; see /v1/openapi.json") })
}

/// `/healthz` and `/readyz`, always open; `/metrics`, open unless it requires the token.
fn probes(state: AppState) -> Router {
    let auth = state.auth.clone();
    let open = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    let metrics_route = Router::new().route("/metrics", get(metrics));
    let metrics_route = if auth.metrics_require_token {
        metrics_route.route_layer(middleware::from_fn_with_state(auth, auth::require_token))
    } else {
        metrics_route
    };
    open.merge(metrics_route).with_state(state)
}

/// `protected` behind the token and the API's in-flight bound, `sessions` under the same
/// bound without the token check, and `ingest` (which authenticates its own callers) under a
/// bound of its own; all under the URI bound.
fn api_routes(state: AppState, routes: Routes) -> Router {
    let Routes {
        protected,
        sessions,
        ingest,
    } = routes;
    let guard = middleware::from_fn_with_state(state.auth.clone(), auth::require_token);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let bound = middleware::from_fn_with_state(slots, bounded);
    let mut protected = protected
        .route_layer(middleware::from_fn(uri_bound))
        .route_layer(guard)
        .route_layer(bound.clone());
    if let Some(sessions) = sessions {
        protected = protected.merge(
            sessions
                .route_layer(middleware::from_fn(uri_bound))
                .route_layer(bound.clone()),
        );
    }
    match ingest {
        None => protected,
        Some(ingest) => {
            let slots = Arc::new(Semaphore::new(MAX_INGEST_IN_FLIGHT));
            let bound = middleware::from_fn_with_state(slots, bounded);
            protected.merge(
                ingest
                    .route_layer(middleware::from_fn(uri_bound))
                    .route_layer(bound),
            )
        }
    }
}

/// Refuses a request target over [`MAX_URI_BYTES`] with a 400 that says what to do.
async fn uri_bound(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let len = uri.path().len() + uri.query().map_or(0, str::len);
    if len > MAX_URI_BYTES {
        return ApiError::bad_request(format!(
            "the request's path and query are {len} bytes, over the {MAX_URI_BYTES}-byte limit; \
             ask for fewer values at once"
        ))
        .into_response();
    }
    next.run(request).await
}

/// At most [`MAX_IN_FLIGHT`] requests at once (a request past them waits up to [`SLOT_WAIT`]),
/// each with [`REQUEST_TIMEOUT`] to answer; the slot is held by the response's body until it
/// is sent or dropped.
async fn bounded(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Some(slot) = take_slot(slots).await else {
        metrics::request_refused_busy();
        return ApiError::unavailable("busy", "too many requests in flight; retry shortly")
            .into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response.map(|body| Body::new(Held { body, _slot: slot })),
        Err(_) => ApiError::unavailable(
            "timeout",
            format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        )
        .into_response(),
    }
}

/// A slot of `slots`, waiting up to [`SLOT_WAIT`] for one (first come, first served).
async fn take_slot(slots: Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    // A free slot first, without the timeout: that would register a timer for every request.
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    match tokio::time::timeout(SLOT_WAIT, slots.acquire_owned()).await {
        Ok(Ok(slot)) => Some(slot),
        _ => None,
    }
}

/// A response body that holds its request's in-flight slot until it is done.
struct Held {
    body: Body,
    _slot: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `app` (see [`router`]) on `listener`, with the API's connection cap, until
/// `shutdown` is cancelled.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_as(listener, app, Listener::API, shutdown).await
}

/// Serves `app` on `listener` with `limits` until `shutdown` is cancelled.
pub async fn serve_as(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Listener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, listener = limits.name, "HTTP listening.");
    serve::serve(listener, app, limits, shutdown).await
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

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_bound_gets_a_slot_freed_within_the_wait() {
        let slots = Arc::new(Semaphore::new(1));
        let held = slots.clone().try_acquire_owned().unwrap();
        let waiting = tokio::spawn(take_slot(slots.clone()));
        tokio::time::sleep(SLOT_WAIT - Duration::from_millis(10)).await;
        drop(held);
        assert!(waiting.await.unwrap().is_some(), "answered, not busy");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_bound_is_busy_after_the_wait() {
        let slots = Arc::new(Semaphore::new(1));
        let held = slots.clone().try_acquire_owned().unwrap();
        let started = tokio::time::Instant::now();
        assert!(take_slot(slots.clone()).await.is_none());
        assert_eq!(started.elapsed(), SLOT_WAIT);
        // Waiters are served in order: the first to wait gets the next slot.
        let (first, second) = (
            tokio::spawn(take_slot(slots.clone())),
            tokio::spawn(take_slot(slots.clone())),
        );
        tokio::task::yield_now().await;
        drop(held);
        let first = first.await.unwrap();
        assert!(first.is_some());
        assert!(
            second.await.unwrap().is_none(),
            "the one slot went to the first"
        );
    }
}
