//! `optout serve` and the HTTP server beside the consumer: the ways out that answer over HTTP
//! (the query API), with health and metrics, and, with an auth token file, the webhook way in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::settings::{DecodeSettings, HttpSettings, WebhookSettings};
use super::{AppError, store};
use crate::http::{ApiAuth, AppState};
use crate::ingest::webhook;
use crate::store::{Store, StoreError};

/// PostgreSQL transactions the webhook way in runs side by side (SQLite has one writer).
/// Measured with scripts/bench-webhooks.sh on a shared 2-core machine: 2 gave bigger groups
/// but fewer requests/s, 8 smaller groups and a worse p99; 4 was best of the three.
pub(super) const PG_WEBHOOK_COMMITTERS: usize = 4;

/// Everything `optout serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// `--store` URL.
    pub store_url: String,
    /// Where to listen, and who may call.
    pub http: HttpSettings,
    /// Twilio's webhooks: off unless an auth token file is given.
    pub webhooks: WebhookSettings,
    /// How webhook records are decoded.
    pub decode: DecodeSettings,
}

/// Serves the query API, health and metrics until `shutdown` (`optout serve`, a query-only
/// instance beside the consumer): read-only connections, never a write. With
/// `--twilio-auth-token-file` it also takes Twilio's webhooks, and so becomes a writer: it
/// opens the store for writing and, on SQLite, takes the one-runner lock.
pub async fn serve(settings: ServeSettings, shutdown: CancellationToken) -> Result<(), AppError> {
    let auth = settings.http.auth()?;
    let config = settings.webhooks.load(
        || settings.decode.options(),
        settings.decode.honor_revocations,
    )?;
    let ready = Arc::new(AtomicBool::new(true));
    let Some(config) = config else {
        let (listener, app) = bind_api(
            &settings.store_url,
            settings.http.addr,
            auth,
            ready,
            None,
            None,
        )
        .await?;
        return crate::http::serve_on(listener, app, shutdown)
            .await
            .map_err(AppError::Http);
    };
    let store = store::open(&settings.store_url, PG_WEBHOOK_COMMITTERS as u32 + 2).await?;
    if let Err(e) = store.claim_single_runner().await {
        store.close().await;
        return Err(match e {
            StoreError::Locked { path } => AppError::Usage(format!(
                "another optout writer (`optout run`, or `optout serve` taking webhooks) is \
                 already using {path}: on SQLite, take webhooks in the process that runs \
                 `optout run` (--http-addr), or use PostgreSQL"
            )),
            other => other.into(),
        });
    }
    info!(
        store = store.backend(),
        "Serving as a writer: Twilio webhooks on."
    );
    let stop = CancellationToken::new();
    let hooks = webhook::start(store.clone(), config, PG_WEBHOOK_COMMITTERS, stop.clone());
    let bound = bind_api(
        &settings.store_url,
        settings.http.addr,
        auth,
        ready,
        None,
        Some(hooks.router),
    )
    .await;
    let served = match bound {
        Ok((listener, app)) => {
            webhook::describe_metrics();
            crate::http::serve_on(listener, app, shutdown).await
        }
        Err(e) => {
            finish_webhooks(stop, hooks.committers, &store).await;
            return Err(e);
        }
    };
    finish_webhooks(stop, hooks.committers, &store).await;
    served.map_err(AppError::Http)
}

/// Once the HTTP server has stopped: lets the committers store and answer what is queued,
/// then closes the store.
pub(super) async fn finish_webhooks(
    stop: CancellationToken,
    committers: tokio::task::JoinHandle<()>,
    store: &Arc<dyn Store>,
) {
    stop.cancel();
    let _ = committers.await;
    store.close().await;
}

/// The HTTP server's routes: the probes and metrics of [`crate::http`], and the ways out that
/// answer over HTTP (the query API), behind the token check.
pub fn http_app(state: AppState) -> Router {
    http_app_with(state, None)
}

/// [`http_app`] with the routes of a way in over HTTP (Twilio's webhooks), which check their
/// own callers.
pub fn http_app_with(state: AppState, ingest: Option<Router>) -> Router {
    let api = crate::api::routes(state.reader.clone());
    crate::http::router(state, api, ingest)
}

/// The HTTP API's listener on `addr` and its routes: queries on read connections of their own
/// (so they never wait behind a commit), readiness from `ready` and, beside a consumer, the
/// engine's shard `health` with its failing threshold; `ingest`, the webhook routes, if on.
pub(super) async fn bind_api(
    store_url: &str,
    addr: SocketAddr,
    auth: ApiAuth,
    ready: Arc<AtomicBool>,
    health: Option<(kinesis_engine::Health, std::time::Duration)>,
    ingest: Option<Router>,
) -> Result<(tokio::net::TcpListener, Router), AppError> {
    let reader = store::open_reader(store_url, 4).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Usage(format!("cannot listen on --http-addr {addr}: {e}")))?;
    let state = AppState {
        reader,
        metrics: crate::telemetry::init_metrics(),
        ready,
        auth: Arc::new(auth),
        health,
    };
    Ok((listener, http_app_with(state, ingest)))
}
