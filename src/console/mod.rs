//! The web console under `/console/`: a way out for the people who answer "why did this
//! customer stop getting our texts?" without the CLI, curl or SQL. It reads through the
//! store's [`Reader`] as the query API does, and renders every page on the server from typed
//! templates (askama) that escape by default: bodies are written by strangers.
//!
//! What it is not: a second API (it serves HTML, and CSV for one export) nor a writer of its
//! own: its one action, re-running dead letters, is done by what the composition root hands it
//! where the process writes the store, and is shown as its CLI command elsewhere.
//!
//! Security, from the outside in: every response carries a strict `Content-Security-Policy`
//! (no inline script, nothing from elsewhere, no framing), `nosniff` and `same-origin` (deep
//! links hold phone numbers). Where the API needs a bearer token, so does the console: the
//! login form takes one of the same tokens and sets a signed session cookie ([`session`]);
//! failed logins are slowed; state changes are POSTs with a CSRF token. On a loopback bind
//! without tokens the console is open, as the API is.

mod activity;
mod auth;
mod chart;
mod health;
mod pages;
mod retry;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::http::ApiAuth;
use crate::store::Reader;
use crate::store::query::QueryError;

pub use retry::{RetryCounts, RetryDeadLetters};
pub use session::SessionKey;

/// How the console is set up (`optout serve`, `optout run --http-addr`).
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Signs session cookies.
    pub session_key: SessionKey,
    /// Cookies always `Secure` (the public URL is HTTPS); else only on HTTPS requests (as a
    /// TLS-terminating proxy tells with `X-Forwarded-Proto`).
    pub https: bool,
}

impl Default for ConsoleConfig {
    /// A random session key and cookies `Secure` only on HTTPS requests.
    fn default() -> Self {
        ConsoleConfig {
            session_key: SessionKey::random(),
            https: false,
        }
    }
}

/// The consumer's live figures, when it runs in the same process (`optout run --http-addr`).
#[derive(Clone)]
pub struct Live {
    /// Shards the engine reports failing.
    pub health: kinesis_engine::Health,
    /// After how long a failing shard makes the process unready.
    pub failing_after: Duration,
    /// Bytes of records between fetch and commit.
    pub budget: Option<kinesis_engine::Budget>,
    /// Re-runs dead letters, where this process writes the store.
    pub retry: Option<RetryDeadLetters>,
}

/// What every console handler holds.
#[derive(Clone)]
struct Console {
    reader: Arc<Reader>,
    auth: Arc<ApiAuth>,
    config: Arc<ConsoleConfig>,
    live: Option<Live>,
    /// Held by a failed login while it waits: failed attempts are answered one at a time, at
    /// most one a second, however many guessers connect.
    failures: Arc<tokio::sync::Mutex<()>>,
    /// Sessions signed out on this process before their expiry.
    signed_out: Arc<session::SignedOut>,
    /// Held while a dead-letter retry runs: one at a time.
    retrying: Arc<tokio::sync::Mutex<()>>,
}

/// The console's routes, `/` (a redirect to `/console/`) and `/console/…`.
pub fn routes(
    reader: Arc<Reader>,
    auth: Arc<ApiAuth>,
    config: ConsoleConfig,
    live: Option<Live>,
) -> Router {
    let console = Console {
        reader,
        auth,
        config: Arc::new(config),
        live,
        failures: Arc::default(),
        signed_out: Arc::default(),
        retrying: Arc::default(),
    };
    let pages = Router::new()
        .route("/console/", get(pages::lookup))
        .route("/console/subscribers/{number}", get(pages::subscriber))
        .route("/console/revocations", get(pages::revocations))
        .route("/console/revocations.csv", get(pages::revocations_csv))
        .route("/console/activity", get(activity::page))
        .route("/console/dead-letters", get(pages::dead_letters))
        .route("/console/dead-letters/retry", post(retry::retry))
        .route("/console/health", get(health::page))
        .route("/console/logout", post(auth::logout))
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/static/favicon.svg", get(favicon))
        .route("/console/{*rest}", get(not_found))
        .merge(pages)
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// An HTML 404 for paths under `/console/` (the shell's own fallback answers the rest).
async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "No such page.")
}

/// The policy every console response carries: nothing but this server's own stylesheet and
/// images, no script at all, no plugins, no framing, forms only back here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Deep links hold phone numbers: never hand them to another site. (`no-referrer` would
    // also make browsers send `Origin: null` on our own forms, defeating the origin check.)
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The stylesheet, embedded in the binary (no CDN, no file to ship).
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}

/// The icon, embedded too (without one, browsers ask for `/favicon.ico` and log a 404).
async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("assets/favicon.svg"),
    )
        .into_response()
}

/// What the page frame needs: which tab is current and, when signed in, the logout form's
/// CSRF token.
pub(crate) struct Chrome {
    pub current: &'static str,
    pub csrf: Option<String>,
}

/// Renders a page; a template that fails to render (it cannot, short of a bug) is a 500.
fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "A console page failed to render.");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This page failed to render.",
            )
        }
    }
}

#[derive(Template)]
#[template(path = "problem.html")]
struct Problem<'a> {
    chrome: Chrome,
    message: &'a str,
}

/// A plain page that says what went wrong.
fn problem(status: StatusCode, message: &str) -> Response {
    let page = Problem {
        chrome: Chrome {
            current: "",
            csrf: None,
        },
        message,
    };
    let html = page.render().unwrap_or_else(|_| "error".into());
    (status, Html(html)).into_response()
}

/// A failed query as a page: the caller's mistake (400) or the store's (503).
fn query_failed(e: QueryError) -> Response {
    match e {
        QueryError::Invalid(detail) => problem(StatusCode::BAD_REQUEST, &detail),
        QueryError::Store(e) => {
            tracing::warn!(error = %e, "Console query failed.");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "The store did not answer; retry shortly.",
            )
        }
    }
}
