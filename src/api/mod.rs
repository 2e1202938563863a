//! `/v1`: the query API. Lists answer `{"items": [...], "next_cursor": ...}` a page at a time
//! (keyset pagination, `?limit=` and `?cursor=`, at most [`crate::store::query::PAGE_BYTES`] of JSON a page), or,
//! with `Accept: application/x-ndjson`, every matching row as one JSON object per line,
//! streamed in constant memory. Lists carry bodies and raw records cut short (`truncated`);
//! `/v1/events/{event_id}` and `/v1/dead-letters/{id}` stream one item whole. Errors are
//! `{"error": "...", "detail": "..."}`; a client's mistake is a 400 on every backend, never
//! the database's error.

mod changes;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

use std::sync::Arc;

use crate::event::{Detection, OptOutType};
use crate::http::ApiError;
use crate::store::Reader;
use crate::store::query::{
    AsOfFilter, DeadLetterFilter, HistoryFilter, LOOKUP_ROWS, Listing, LookupFilter,
    MAX_LIST_VALUES, PageRequest, QueryError, TestEventFilter, check_text,
};
use crate::store::{EventFilter, FailureKind, StatusFilter};

/// The API's description, served as written.
const OPENAPI: &str = include_str!("../../schemas/openapi.json");
/// The media type that asks a list for a stream of every row.
const NDJSON: &str = "application/x-ndjson";

/// The `/v1` routes, reading through `reader` (the store's read pool, never the consumer's
/// connections).
pub(crate) fn routes(reader: Arc<Reader>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/status/{subscriber}", get(lookup))
        .route("/v1/history/{subscriber}", get(history))
        .route("/v1/events", get(events))
        .route("/v1/events/{event_id}", get(event))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/dead-letters/{id}", get(dead_letter))
        .route("/v1/test-events", get(test_events))
        .route("/v1/changes", get(changes::changes))
        .route("/v1/deliveries", get(changes::deliveries))
        .route(
            "/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .with_state(reader)
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(detail) => ApiError::bad_request(detail),
            // The database refused a value the client sent (every known case is checked before
            // the query; this is the fence behind them): the client's to fix, and its text may
            // echo the value, so it is not repeated.
            QueryError::Store(e) if e.kind() == FailureKind::Data => {
                // Not the error's text: it may quote the value, a phone number say.
                tracing::debug!("Query refused for a parameter.");
                ApiError::bad_request("a parameter holds a value the store cannot compare")
            }
            QueryError::Store(e) => {
                tracing::warn!(error = %e, "Query failed.");
                ApiError::unavailable("store_unavailable", e.to_string())
            }
        }
    }
}

/// Whether the client asked for NDJSON.
fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(NDJSON)))
}

/// Answers a list: one page as JSON, or the whole list as an NDJSON stream.
async fn list<L: Listing>(
    reader: &Arc<Reader>,
    headers: &HeaderMap,
    listing: L,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Response, ApiError> {
    let req = PageRequest::parse(limit, cursor)?;
    if !wants_ndjson(headers) {
        return Ok(Json(reader.page(&listing, &req).await?).into_response());
    }
    // The first page is read before answering, so that a failing store is a 503, not a
    // stream cut after a 200.
    let cap = limit.map(u64::from);
    let mut pages = Box::pin(reader.clone().export(listing, req.cursor, cap));
    let first = pages.next().await.transpose()?;
    let rest = pages.map_err(|e| {
        tracing::warn!(error = %e, "Export failed mid-stream; the response is cut short.");
        std::io::Error::other(e.to_string())
    });
    let body = futures_util::stream::iter(first.map(Ok))
        .chain(rest)
        .map_ok(|rows| Bytes::from(ndjson(&rows)));
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON))],
        Body::from_stream(body),
    )
        .into_response())
}

fn ndjson<T: serde::Serialize>(rows: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 256);
    for row in rows {
        // Plain structs of strings and numbers: serialization cannot fail.
        if serde_json::to_writer(&mut out, row).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// `account=AC1,AC2`: at most [`MAX_LIST_VALUES`] accounts.
fn accounts(account: Option<String>) -> Result<Vec<String>, ApiError> {
    let Some(account) = account else {
        return Ok(Vec::new());
    };
    let values: Vec<String> = account.split(',').map(str::to_string).collect();
    if values.len() > MAX_LIST_VALUES {
        return Err(ApiError::bad_request(format!(
            "account: at most {MAX_LIST_VALUES} accounts (got {}); ask in several requests",
            values.len()
        )));
    }
    for v in &values {
        check_text("account", v)?;
    }
    Ok(values)
}

/// A text parameter, refused if no stored value could hold it.
fn text(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    if let Some(v) = &value {
        check_text(name, v)?;
    }
    Ok(value)
}

fn rfc3339(
    name: &str,
    value: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    value
        .map(|v| {
            crate::store::parse_time(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name}: not an RFC 3339 time with a year from 0001 to 9999; \
                     e.g. 2026-03-01T00:00:00Z"
                ))
            })
        })
        .transpose()
}

/// `/v1/status?subscriber=&scope=&account=&as_of=&honor_revocations=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    subscriber: Option<String>,
    scope: Option<String>,
    /// Comma-separated accounts.
    account: Option<String>,
    as_of: Option<String>,
    #[serde(default)]
    honor_revocations: bool,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn status(
    State(reader): State<Arc<Reader>>,
    headers: HeaderMap,
    q: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let accounts = accounts(q.account)?;
    let (subscriber, scope) = (text("subscriber", q.subscriber)?, text("scope", q.scope)?);
    if let Some(at) = rfc3339("as_of", q.as_of.as_deref())? {
        let listing = AsOfFilter {
            at,
            subscriber,
            scope,
            accounts,
            honor_revocations: q.honor_revocations,
        };
        return list(&reader, &headers, listing, q.limit, q.cursor.as_deref()).await;
    }
    if q.honor_revocations {
        return Err(ApiError::bad_request(
            "honor_revocations: only with as_of (the live table already applied the consumer's setting)",
        ));
    }
    let listing = StatusFilter {
        subscriber,
        scope,
        accounts,
    };
    list(&reader, &headers, listing, q.limit, q.cursor.as_deref()).await
}

/// `/v1/status/{subscriber}?scope=&account=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    scope: Option<String>,
    account: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn lookup(
    State(reader): State<Arc<Reader>>,
    Path(subscriber): Path<String>,
    q: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let filter = LookupFilter {
        subscriber,
        scope: text("scope", q.scope)?,
        accounts: accounts(q.account)?,
    };
    let req = PageRequest::parse(Some(q.limit.unwrap_or(LOOKUP_ROWS)), q.cursor.as_deref())?;
    Ok(Json(reader.lookup_page(&filter, &req).await?).into_response())
}

/// `/v1/history/{subscriber}?scope=&honor_revocations=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    scope: Option<String>,
    #[serde(default)]
    honor_revocations: bool,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn history(
    State(reader): State<Arc<Reader>>,
    headers: HeaderMap,
    Path(subscriber): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    check_text("subscriber", &subscriber)?;
    let listing = HistoryFilter {
        subscriber,
        scope: text("scope", q.scope)?,
        honor_revocations: q.honor_revocations,
    };
    list(&reader, &headers, listing, q.limit, q.cursor.as_deref()).await
}

/// `/v1/events?since=&type=&subscriber=&detection=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    since: Option<String>,
    r#type: Option<String>,
    subscriber: Option<String>,
    detection: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn events(
    State(reader): State<Arc<Reader>>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let opt_out_type = match q.r#type.as_deref().map(OptOutType::parse) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => return Err(ApiError::bad_request("type: use stop, start or help")),
    };
    let detection = match q.detection.as_deref().map(Detection::parse) {
        None => None,
        Some(Some(d)) => Some(d),
        Some(None) => {
            return Err(ApiError::bad_request(
                "detection: use twilio, reassigned, keyword or phrase",
            ));
        }
    };
    let listing = EventFilter {
        since: rfc3339("since", q.since.as_deref())?,
        opt_out_type,
        subscriber: text("subscriber", q.subscriber)?,
        detection,
    };
    list(&reader, &headers, listing, q.limit, q.cursor.as_deref()).await
}

/// `?limit=&cursor=` of the lists without filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn dead_letters(
    State(reader): State<Arc<Reader>>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    list(
        &reader,
        &headers,
        DeadLetterFilter,
        q.limit,
        q.cursor.as_deref(),
    )
    .await
}

async fn test_events(
    State(reader): State<Arc<Reader>>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    list(
        &reader,
        &headers,
        TestEventFilter,
        q.limit,
        q.cursor.as_deref(),
    )
    .await
}

/// `/v1/events/{event_id}`: one opt event whole (its body uncut), streamed.
async fn event(
    State(reader): State<Arc<Reader>>,
    Path(event_id): Path<String>,
) -> Result<Response, ApiError> {
    match reader.event(&event_id).await? {
        Some(chunks) => Ok(json_stream(chunks)),
        None => Err(ApiError::not_found("no opt event with this id")),
    }
}

/// `/v1/dead-letters/{id}`: one dead letter whole (every byte of its raw record), streamed.
async fn dead_letter(
    State(reader): State<Arc<Reader>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match reader.dead_letter(&id).await? {
        Some(chunks) => Ok(json_stream(chunks)),
        None => Err(ApiError::not_found("no dead letter with this id")),
    }
}

/// A JSON document written as its chunks come (a failing store cuts it short, which a JSON
/// parser notices).
fn json_stream(
    chunks: impl futures_util::Stream<Item = Result<Vec<u8>, QueryError>> + Send + 'static,
) -> Response {
    let body = chunks.map_ok(Bytes::from).map_err(|e| {
        tracing::warn!(error = %e, "Item failed mid-stream; the response is cut short.");
        std::io::Error::other(e.to_string())
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from_stream(body),
    )
        .into_response()
}
