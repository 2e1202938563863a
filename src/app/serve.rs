//! `optout serve` and the HTTP server beside the consumer: the ways out that answer over HTTP
//! (the query API), with health and metrics, and, with an auth token file, the webhook way in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::deliver::{Delivery, DeliverySettings, system_clock};
use super::settings::{DecodeSettings, HttpSettings, WebhookSettings};
use super::{AppError, store, upkeep};
use crate::console::{ConsoleConfig, Live};
use crate::http::{ApiAuth, AppState, Routes};
use crate::ingest::webhook;
use crate::store::{Reader, Store, StoreError};

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
    /// Deliver changes to Twilio's Consent API and signed webhooks.
    pub delivery: DeliverySettings,
}

/// Serves the query API, health and metrics until `shutdown` (`optout serve`, a query-only
/// instance beside the consumer): read-only connections, never a write. With
/// `--twilio-auth-token-file` it also takes Twilio's webhooks, and with a delivery target
/// (`--twilio-consent`, `--notify-url`) it delivers the outbox; either makes it a writer: it
/// opens the store for writing and, on SQLite, takes the one-runner lock and looks after the
/// file as `optout run` does.
pub async fn serve(settings: ServeSettings, shutdown: CancellationToken) -> Result<(), AppError> {
    let auth = settings.http.auth()?;
    // Pushing revocations to Twilio is honouring them: optout's own answer must agree.
    let honor = settings.decode.honor_revocations || settings.delivery.implies_honor_revocations();
    let config = settings
        .webhooks
        .load(|| settings.decode.options(), honor)?;
    let targets = settings.delivery.targets(system_clock())?;
    let console = settings
        .http
        .console(settings.webhooks.public_url.as_deref())?;
    let ready = Arc::new(AtomicBool::new(true));
    if config.is_none() && targets.is_empty() {
        let http = bind_http(
            &settings.store_url,
            &settings.http,
            auth,
            ready,
            None,
            console,
            None,
        )
        .await?;
        return http.serve(shutdown).await;
    }
    let pool = PG_WEBHOOK_COMMITTERS as u32 + 2 + targets.len() as u32 + 1;
    let store = store::open(&settings.store_url, pool).await?;
    if let Err(e) = store.claim_single_runner().await {
        store.close().await;
        return Err(match e {
            StoreError::Locked { path } => AppError::Usage(format!(
                "another optout writer (`optout run`, or `optout serve` taking webhooks or \
                 delivering) is already using {path}: on SQLite, take webhooks and deliver in \
                 the process that runs `optout run` (--http-addr), or use PostgreSQL"
            )),
            other => other.into(),
        });
    }
    info!(
        store = store.backend(),
        webhooks = config.is_some(),
        delivery_targets = targets.len(),
        "Serving as a writer."
    );
    // The feed and the deliveries follow the same mode as the API's answers.
    store.set_revocation_scope(settings.http.revocation_scope);
    let delivery = Delivery::start(targets, store.clone(), &settings.delivery);
    let stop = CancellationToken::new();
    let hooks =
        config.map(|c| webhook::start(store.clone(), c, PG_WEBHOOK_COMMITTERS, stop.clone()));
    let (router, committers) = match hooks {
        Some(h) => (Some(h.router), Some(h.committers)),
        None => (None, None),
    };
    let bound = bind_http(
        &settings.store_url,
        &settings.http,
        auth,
        ready.clone(),
        None,
        console,
        router,
    )
    .await;
    let http = match bound {
        Ok(http) => http,
        Err(e) => {
            if let Some(d) = delivery {
                d.finish().await;
            }
            finish_webhooks(stop, committers, &store).await;
            return Err(e);
        }
    };
    let upkeep = upkeep::spawn(store.clone(), shutdown.clone(), Some(ready));
    let served = http.serve(shutdown.clone()).await;
    shutdown.cancel();
    let lost_store = upkeep.await.ok().flatten();
    if let Some(d) = delivery {
        d.finish().await;
    }
    finish_webhooks(stop, committers, &store).await;
    match lost_store {
        Some(e) => Err(AppError::Store(e)),
        None => served,
    }
}

/// Once the HTTP server has stopped: lets the webhook committers, if any, store and answer
/// what is queued, then closes the store.
pub(super) async fn finish_webhooks(
    stop: CancellationToken,
    committers: Option<JoinHandle<()>>,
    store: &Arc<dyn Store>,
) {
    stop.cancel();
    if let Some(c) = committers {
        let _ = c.await;
    }
    store.close().await;
}

/// The HTTP server's routes on one listener: the probes and metrics of [`crate::http`], and
/// the ways out that answer over HTTP: the query API behind the token check, and the web
/// console (a random session key; cookies `Secure` on HTTPS requests).
pub fn http_app(state: AppState) -> Router {
    http_app_with(state, None)
}

/// [`http_app`] with the routes of a way in over HTTP (Twilio's webhooks), which check their
/// own callers.
pub fn http_app_with(state: AppState, ingest: Option<Router>) -> Router {
    console_app(state, ConsoleConfig::default(), None, ingest)
}

/// [`http_app_with`] with the console set up as given, and the consumer's `live` figures
/// when it runs in this process.
pub fn console_app(
    state: AppState,
    console: ConsoleConfig,
    live: Option<Live>,
    ingest: Option<Router>,
) -> Router {
    crate::http::router(state.clone(), ways_out(&state, console, live, ingest))
}

/// The query API and the console, and `ingest` beside them.
fn ways_out(
    state: &AppState,
    console: ConsoleConfig,
    live: Option<Live>,
    ingest: Option<Router>,
) -> Routes {
    Routes {
        protected: crate::api::routes(state.reader.clone()),
        sessions: Some(crate::console::routes(
            state.reader.clone(),
            state.auth.clone(),
            console,
            live,
        )),
        ingest,
    }
}

/// The bound listeners of the HTTP server: the API's, and the probes' own if asked.
pub(super) struct Http {
    api: (tokio::net::TcpListener, Router),
    health: Option<(tokio::net::TcpListener, Router)>,
    /// The routes' reader: its waiting long-polls end when shutdown begins.
    reader: Arc<Reader>,
}

impl Http {
    /// Serves every listener until `shutdown`; the first to fail cancels the others.
    pub(super) async fn serve(self, shutdown: CancellationToken) -> Result<(), AppError> {
        use crate::http::{Listener, serve_as};
        // A long-poll of the change feed would hold the graceful shutdown for up to its wait.
        let (reader, stopping) = (self.reader.clone(), shutdown.clone());
        tokio::spawn(async move {
            stopping.cancelled().await;
            reader.end_waits();
        });
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
/// its failing threshold; `ingest`, the webhook routes, if on (on the API's listener). With
/// `--health-addr`, the probes and `/metrics` get a listener of their own (its own connection
/// cap; readiness on a connection of its own), and the API's listener serves the routes only.
pub(super) async fn bind_http(
    store_url: &str,
    http: &HttpSettings,
    auth: ApiAuth,
    ready: Arc<AtomicBool>,
    live: Option<Live>,
    console: ConsoleConfig,
    ingest: Option<Router>,
) -> Result<Http, AppError> {
    let health = live.as_ref().map(|l| (l.health.clone(), l.failing_after));
    let reader = store::open_reader(store_url, 4, http.revocation_scope).await?;
    let bind = |flag: &'static str, addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AppError::Usage(format!("cannot listen on {flag} {addr}: {e}")))
    };
    let listener = bind("--http-addr", http.addr).await?;
    let state = AppState {
        reader,
        metrics: super::metrics::install(),
        ready,
        auth: Arc::new(auth),
        health,
    };
    let Some(health_addr) = http.health_addr else {
        return Ok(Http {
            reader: state.reader.clone(),
            api: (listener, console_app(state, console, live, ingest)),
            health: None,
        });
    };
    let health_listener = bind("--health-addr", health_addr).await?;
    let api = crate::http::api_router(state.clone(), ways_out(&state, console, live, ingest));
    Ok(Http {
        reader: state.reader.clone(),
        api: (listener, api),
        health: Some((health_listener, crate::http::health_router(state))),
    })
}
