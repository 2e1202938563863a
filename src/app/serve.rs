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
    let http = bind_http(&settings.store_url, &settings.http, auth, ready, None).await?;
    http.serve(shutdown).await
}

/// The HTTP server's routes on one listener: the probes and metrics of [`crate::http`], and
/// the ways out that answer over HTTP (the query API), behind the token check.
pub fn http_app(state: AppState) -> Router {
    let api = crate::api::routes(state.reader.clone());
    crate::http::router(state, api)
}

/// The bound listeners of the HTTP server: the API's, and the probes' own if asked.
pub(super) struct Http {
    api: (tokio::net::TcpListener, Router),
    health: Option<(tokio::net::TcpListener, Router)>,
}

impl Http {
    /// Serves every listener until `shutdown`; the first to fail cancels the others.
    pub(super) async fn serve(self, shutdown: CancellationToken) -> Result<(), AppError> {
        use crate::http::{Listener, serve_as};
        let (listener, app) = self.api;
        let api = serve_as(listener, app, Listener::API, shutdown.clone());
        let result = match self.health {
            None => api.await,
            Some((listener, app)) => {
                let health = serve_as(listener, app, Listener::HEALTH, shutdown.clone());
                let (a, h) = tokio::join!(
                    async {
                        let r = api.await;
                        shutdown.cancel();
                        r
                    },
                    async {
                        let r = health.await;
                        shutdown.cancel();
                        r
                    }
                );
                a.and(h)
            }
        };
        result.map_err(AppError::Http)
    }
}

/// Binds the HTTP server: queries on read connections of their own (so they never wait behind
/// a commit), readiness from `ready` and, beside a consumer, the engine's shard `health` with
/// its failing threshold. With `--health-addr`, the probes and `/metrics` get a listener of
/// their own (its own connection cap; readiness on a connection of its own), and the API's
/// listener serves `/v1` only.
pub(super) async fn bind_http(
    store_url: &str,
    http: &HttpSettings,
    auth: ApiAuth,
    ready: Arc<AtomicBool>,
    health: Option<(kinesis_engine::Health, std::time::Duration)>,
) -> Result<Http, AppError> {
    let reader = store::open_reader(store_url, 4).await?;
    let bind = |flag: &'static str, addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AppError::Usage(format!("cannot listen on {flag} {addr}: {e}")))
    };
    let listener = bind("--http-addr", http.addr).await?;
    let state = AppState {
        reader: reader.clone(),
        metrics: super::metrics::install(),
        ready,
        auth: Arc::new(auth),
        health,
    };
    let Some(health_addr) = http.health_addr else {
        return Ok(Http {
            api: (listener, http_app(state)),
            health: None,
        });
    };
    let health_listener = bind("--health-addr", health_addr).await?;
    let api = crate::http::api_router(state.clone(), crate::api::routes(reader));
    Ok(Http {
        api: (listener, api),
        health: Some((health_listener, crate::http::health_router(state))),
    })
}
