//! Who may see the console: the guard in front of every page, the login form that turns one of
//! the API's bearer tokens into a session cookie, and logout.

use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, Session};
use super::{Chrome, Console, problem, render};

/// How long a failed login waits before it is answered (one at a time: see
/// [`Console::failures`]).
const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The session a request's cookie holds, if valid.
fn session_of(console: &Console, headers: &HeaderMap) -> Option<Session> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = session::cookie(cookies, session::COOKIE)?;
    let s = console.config.session_key.verify(value, now())?;
    (!console.signed_out.contains(&s)).then_some(s)
}

/// Whether the browser reached us over HTTPS: the public URL says so, or the TLS-terminating
/// proxy in front does (`X-Forwarded-Proto` or `Forwarded: proto=`).
fn is_https(console: &Console, headers: &HeaderMap) -> bool {
    if console.config.https {
        return true;
    }
    let first = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).map(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    };
    first("x-forwarded-proto").as_deref() == Some("https")
        || first("forwarded").is_some_and(|f| {
            f.split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        })
}

/// Only a path inside the console may be where a login returns (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console/") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/console/",
    }
}

/// Lets a request through when the console is open (no tokens) or it holds a valid session
/// (its CSRF token then reaches the handler), or a valid bearer token (scripts, curl).
/// Otherwise sends the browser to the login form, coming back here afterwards.
pub(super) async fn require_session(
    State(console): State<Console>,
    mut request: Request,
    next: Next,
) -> Response {
    if console.auth.is_open() {
        return next.run(request).await;
    }
    if let Some(s) = session_of(&console, request.headers()) {
        request.extensions_mut().insert(s);
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if bearer.is_some() && console.auth.allows_header(bearer) {
        return next.run(request).await;
    }
    if request.method() != axum::http::Method::GET {
        return problem(
            StatusCode::FORBIDDEN,
            "Your session has ended; sign in again.",
        );
    }
    let here = request
        .uri()
        .path_and_query()
        .map_or("/console/", |p| p.as_str());
    let to = format!(
        "/console/login?next={}",
        percent_encoding::utf8_percent_encode(here, percent_encoding::NON_ALPHANUMERIC)
    );
    Redirect::to(&to).into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    chrome: Chrome,
    token: String,
    next: &'a str,
    error: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// The login form (or, when the console is open, the console itself).
pub(super) async fn login_form(
    State(console): State<Console>,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if console.auth.is_open() {
        return Redirect::to(next).into_response();
    }
    login_page(&console, next, None, StatusCode::OK)
}

fn login_page(console: &Console, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let page = LoginPage {
        chrome: Chrome {
            current: "login",
            csrf: None,
        },
        token: console.config.session_key.login_token(now()),
        next,
        error,
    };
    (status, render(page)).into_response()
}

/// Missing fields are empty (and so refused with a page that says why, not a 422).
#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginForm(***)")
    }
}

/// `POST /console/login`: one of the API's tokens for a session cookie. A wrong token waits
/// [`FAILED_LOGIN_DELAY`] behind every other failure, so guessing runs at one try a second
/// per process however many connections try.
pub(super) async fn login(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_string();
    if !console
        .config
        .session_key
        .check_login_token(&form.csrf, now())
        || !same_origin(&headers)
    {
        return login_page(
            &console,
            &next,
            Some("This form has expired or came from elsewhere; try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let bearer = format!("Bearer {}", form.token.trim());
    if console.auth.is_open() || !console.auth.allows_header(Some(bearer.as_bytes())) {
        let _one_at_a_time = console.failures.lock().await;
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        tracing::info!("Console login refused: the token is not valid.");
        return login_page(
            &console,
            &next,
            Some("That token is not valid."),
            StatusCode::UNAUTHORIZED,
        );
    }
    tracing::info!("Console login.");
    let cookie = console.config.session_key.issue(now());
    let secure = is_https(&console, &headers);
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(Some(&cookie), secure),
        )],
        Redirect::to(&next),
    )
        .into_response()
}

/// When the browser says where a form came from (`Origin`, every current browser on a POST),
/// it must be this host: a second fence behind the CSRF token.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm {
    pub(super) fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/logout`: ends the session (the cookie is deleted). Needs the session's
/// CSRF token, so another site cannot sign a user out.
pub(super) async fn logout(
    State(console): State<Console>,
    headers: HeaderMap,
    session: Option<axum::Extension<Session>>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(axum::Extension(session)) = session else {
        return Redirect::to("/console/").into_response();
    };
    if !session.csrf_matches(&form.csrf) || !same_origin(&headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "This form came from elsewhere or has expired; nothing was done.",
        );
    }
    console.signed_out.add(&session, now());
    tracing::info!("Console logout.");
    let secure = is_https(&console, &headers);
    (
        [(header::SET_COOKIE, session::set_cookie(None, secure))],
        Redirect::to("/console/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_returns_only_inside_the_console() {
        assert_eq!(
            safe_next(Some("/console/subscribers/%2B1")),
            "/console/subscribers/%2B1"
        );
        for evil in [
            "https://evil.example",
            "//evil.example",
            "/console/\\evil",
            "/v1/status",
        ] {
            assert_eq!(safe_next(Some(evil)), "/console/", "{evil}");
        }
        assert_eq!(safe_next(Some("/console//evil.example")), "/console/");
    }

    #[test]
    fn origins_must_be_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "optout.example:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            "http://optout.example:8080".parse().unwrap(),
        );
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h));
    }
}
