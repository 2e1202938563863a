//! `/v1/changes` (the change feed, with long-poll) and `/v1/deliveries` (the outbox's items).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http::ApiError;
use crate::store::Reader;
use crate::store::query::{DeliveryFilter, MAX_CHANGES_WAIT, PageRequest};

/// `/v1/changes?cursor=&limit=&wait=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    /// Seconds to wait for a change when none follows the cursor (0 to 25).
    wait: Option<u64>,
}

/// Every change after `cursor` in commit order; with `wait`, a long-poll that answers as soon
/// as one commits (or with no items once `wait` has passed). The connection to the store is
/// only held while reading, never while waiting.
pub(super) async fn changes(
    State(reader): State<Arc<Reader>>,
    q: Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let req = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    if wait > MAX_CHANGES_WAIT {
        return Err(ApiError::bad_request(format!(
            "wait: use 0 to {} seconds (got {})",
            MAX_CHANGES_WAIT.as_secs(),
            wait.as_secs()
        )));
    }
    Ok(Json(reader.changes_wait(&req, wait).await?).into_response())
}

/// `/v1/deliveries?target=&state=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    target: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(super) async fn deliveries(
    State(reader): State<Arc<Reader>>,
    headers: HeaderMap,
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let listing = DeliveryFilter {
        target: q.target,
        state: q.state,
    };
    super::list(&reader, &headers, listing, q.limit, q.cursor.as_deref()).await
}
