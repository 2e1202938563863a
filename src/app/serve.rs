//! `optout serve` and the HTTP server beside the consumer: the ways out that answer over HTTP
//! (the query API), with health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use tokio_util::sync::CancellationToken;

use super::settings::HttpSettings;
use super::{AppError, store};
use crate::http::{ApiAuth, AppState};

/// Everything `optout serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// `--store` URL.
    pub store_url: String,
    /// Where to listen, and who may call.
    pub http: HttpSettings,
}

/// Serves the query API, health and metrics until `shutdown` (`optout serve`, a query-only
/// instance beside the consumer): read-only connections, never a write.
pub async fn serve(settings: ServeSettings, shutdown: CancellationToken) -> Result<(), AppError> {
    let auth = settings.http.auth()?;
    let ready = Arc::new(AtomicBool::new(true));
    let (listener, app) =
        bind_api(&settings.store_url, settings.http.addr, auth, ready, None).await?;
    crate::http::serve_on(listener, app, shutdown)
        .await
        .map_err(AppError::Http)
}

/// The HTTP server's routes: the probes and metrics of [`crate::http`], and the ways out that
/// answer over HTTP (the query API), behind the token check.
pub fn http_app(state: AppState) -> Router {
    let api = crate::api::routes(state.reader.clone());
    crate::http::router(state, api)
}

/// The HTTP API's listener on `addr` and its routes: queries on read connections of their own
/// (so they never wait behind a commit), readiness from `ready` and, beside a consumer, the
/// engine's shard `health` with its failing threshold.
pub(super) async fn bind_api(
    store_url: &str,
    addr: SocketAddr,
    auth: ApiAuth,
    ready: Arc<AtomicBool>,
    health: Option<(kinesis_engine::Health, std::time::Duration)>,
) -> Result<(tokio::net::TcpListener, Router), AppError> {
    let reader = store::open_reader(store_url, 4).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Usage(format!("cannot listen on --http-addr {addr}: {e}")))?;
    let state = AppState {
        reader,
        metrics: super::metrics::install(),
        ready,
        auth: Arc::new(auth),
        health,
    };
    Ok((listener, http_app(state)))
}
