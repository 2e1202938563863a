//! `POST /console/dead-letters/retry`: every dead letter decoded again by today's decoder, and
//! those that now decode stored (each with its dead letter removed in the same transaction).
//!
//! The console reads; this is its one action, and the console does not know how it is done:
//! the composition root hands it a [`RetryDeadLetters`] where this process writes the store
//! (`optout run --http-addr`). Elsewhere the page shows the CLI command instead, and this route
//! refuses. One retry runs at a time per process; a second one is told to wait.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::future::BoxFuture;

use super::auth::{CsrfForm, same_origin};
use super::session::Session;
use super::{Console, problem};
use crate::store::Reader;

/// Re-runs every dead letter through today's decoder, storing what now decodes, paging the
/// dead letters with the console's own reader; an error is a sentence for the log (no record
/// content).
pub type RetryDeadLetters =
    Arc<dyn Fn(Arc<Reader>) -> BoxFuture<'static, Result<RetryCounts, String>> + Send + Sync>;

/// What a retry did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryCounts {
    /// Dead letters tried.
    pub matched: u64,
    /// Stored now, their dead letters removed.
    pub stored: u64,
    /// Still refused (or kept only in part), left as they were.
    pub left: u64,
}

pub(super) async fn retry(
    State(console): State<Console>,
    headers: HeaderMap,
    session: Option<axum::Extension<Session>>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(retry) = console.live.as_ref().and_then(|l| l.retry.clone()) else {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "This process does not write the store: run optout dead-letters --retry --apply \
             where one does.",
        );
    };
    // Signed in: the session's CSRF token. Open console (loopback, no tokens): the browser's
    // Origin must be this host, and must be there.
    let allowed = match &session {
        Some(axum::Extension(s)) => s.csrf_matches(form.csrf()) && same_origin(&headers),
        None => headers.contains_key(axum::http::header::ORIGIN) && same_origin(&headers),
    };
    if !allowed {
        return problem(
            StatusCode::FORBIDDEN,
            "This form came from elsewhere or has expired; nothing was done.",
        );
    }
    let Ok(_one) = console.retrying.try_lock() else {
        return problem(
            StatusCode::CONFLICT,
            "A retry is running in this process; reload the page when it ends.",
        );
    };
    match retry(console.reader.clone()).await {
        Ok(c) => {
            tracing::info!(
                matched = c.matched,
                stored = c.stored,
                left = c.left,
                "Console retried dead letters."
            );
            Redirect::to(&format!(
                "/console/dead-letters?retried={}&stored={}&left={}",
                c.matched, c.stored, c.left
            ))
            .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "A console retry of dead letters failed.");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "The retry failed (the store refused it); what was stored before the failure \
                 stays stored. See the logs, and try again.",
            )
        }
    }
}
