//! The console's list pages: lookup of a number with its timeline, the phrase revocations to
//! act on (and their CSV export) and the dead letters. Each reads one keyset page (the API's
//! way), so a page costs the same at a million rows as at ten.

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::session::Session;
use super::{Chrome, Console, problem, query_failed, render};
use crate::store::query::console::TimelineRow;
use crate::store::query::{Cursor, DeadLetterFilter, Lookup, LookupFilter, PageRequest};
use crate::store::{RevocationFilter, RevocationRow};

/// Events of a timeline per page.
const TIMELINE_ROWS: u32 = 100;
/// Scopes shown per lookup.
const LOOKUP_SCOPES: u32 = 200;
/// Rows of the revocation and dead-letter lists per page.
const LIST_ROWS: u32 = 100;
/// Longest number the lookup form takes (E.164 is at most 16 characters; other channels'
/// addresses, `whatsapp:+…`, a little more).
const MAX_NUMBER_CHARS: usize = 64;

pub(super) fn chrome(current: &'static str, session: &Option<axum::Extension<Session>>) -> Chrome {
    Chrome {
        current,
        csrf: session.as_ref().map(|s| s.0.csrf.clone()),
    }
}

/// The path of a number's page: the number percent-encoded (`+` as `%2B`).
pub(crate) fn subscriber_path(number: &str) -> String {
    format!(
        "/console/subscribers/{}",
        percent_encoding::utf8_percent_encode(number, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// A `?cursor=` link to the next page, percent-encoded.
fn next_link(base: &str, cursor: Option<String>) -> Option<String> {
    cursor.map(|c| {
        format!(
            "{base}?cursor={}",
            percent_encoding::utf8_percent_encode(&c, percent_encoding::NON_ALPHANUMERIC)
        )
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct LookupQuery {
    number: Option<String>,
}

#[derive(Template)]
#[template(path = "lookup.html")]
struct LookupPage {
    chrome: Chrome,
    error: Option<String>,
}

/// `/console/`: the lookup form; a submitted number goes to its own page (a link to share).
pub(super) async fn lookup(
    session: Option<axum::Extension<Session>>,
    Query(q): Query<LookupQuery>,
) -> Response {
    let error = match q.number.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) if n.chars().count() > MAX_NUMBER_CHARS || n.contains('\0') => Some(format!(
            "A number is at most {MAX_NUMBER_CHARS} characters, e.g. +15551230001."
        )),
        Some(n) => return Redirect::to(&subscriber_path(n)).into_response(),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = LookupPage {
        chrome: chrome("lookup", &session),
        error,
    };
    (status, render(page)).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct CursorQuery {
    cursor: Option<String>,
}

impl CursorQuery {
    fn cursor(&self) -> Result<Option<Cursor>, crate::store::query::QueryError> {
        self.cursor.as_deref().map(Cursor::decode).transpose()
    }
}

#[derive(Template)]
#[template(path = "subscriber.html")]
struct SubscriberPage {
    chrome: Chrome,
    number: String,
    lookup: Lookup,
    events: Vec<TimelineRow>,
    next: Option<String>,
    more_scopes: bool,
}

/// `/console/subscribers/{number}`: the number's status in every scope, whether a send is
/// allowed and why, and its events newest first.
pub(super) async fn subscriber(
    State(console): State<Console>,
    session: Option<axum::Extension<Session>>,
    Path(number): Path<String>,
    Query(q): Query<CursorQuery>,
) -> Response {
    if number.chars().count() > MAX_NUMBER_CHARS {
        return problem(StatusCode::BAD_REQUEST, "That is not a phone number.");
    }
    let cursor = match q.cursor() {
        Ok(c) => c,
        Err(e) => return query_failed(e),
    };
    let filter = LookupFilter {
        subscriber: number.clone(),
        scope: None,
        accounts: Vec::new(),
    };
    let req = PageRequest {
        limit: LOOKUP_SCOPES,
        cursor: None,
    };
    let (lookup, timeline) = tokio::join!(
        console.reader.lookup_page(&filter, &req),
        console
            .reader
            .timeline(&number, cursor.as_ref(), TIMELINE_ROWS)
    );
    let (lookup, timeline) = match (lookup, timeline) {
        (Ok(l), Ok(t)) => (l, t),
        (Err(e), _) | (_, Err(e)) => return query_failed(e),
    };
    let page = SubscriberPage {
        chrome: chrome("lookup", &session),
        next: next_link(&subscriber_path(&number), timeline.next_cursor),
        more_scopes: lookup.next_cursor.is_some(),
        number,
        lookup,
        events: timeline.items,
    };
    render(page)
}

#[derive(Template)]
#[template(path = "revocations.html")]
struct RevocationsPage {
    chrome: Chrome,
    /// Each revocation with the link to its number's page.
    rows: Vec<(RevocationRow, String)>,
    next: Option<String>,
}

/// `/console/revocations`: phrase revocations Twilio did not block, newest first.
pub(super) async fn revocations(
    State(console): State<Console>,
    session: Option<axum::Extension<Session>>,
    Query(q): Query<CursorQuery>,
) -> Response {
    let cursor = match q.cursor() {
        Ok(c) => c,
        Err(e) => return query_failed(e),
    };
    match console
        .reader
        .recent_revocations(cursor.as_ref(), LIST_ROWS)
        .await
    {
        Ok(page) => render(RevocationsPage {
            chrome: chrome("revocations", &session),
            next: next_link("/console/revocations", page.next_cursor),
            rows: page
                .items
                .into_iter()
                .map(|r| {
                    let link = subscriber_path(&r.subscriber);
                    (r, link)
                })
                .collect(),
        }),
        Err(e) => query_failed(e),
    }
}

/// A CSV cell that a spreadsheet will not run: text a stranger wrote that starts like a
/// formula gets a leading apostrophe (OWASP's advice). An E.164 number (`+1555…`) stays as is.
fn cell(value: &str) -> String {
    let e164 =
        value.len() > 1 && value.starts_with('+') && value[1..].bytes().all(|b| b.is_ascii_digit());
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if !e164 => format!("'{value}"),
        _ => value.to_string(),
    }
}

fn csv_rows(rows: &[RevocationRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record([
            cell(&r.revoked_at),
            cell(&r.subscriber),
            cell(&r.account_sid),
            cell(&r.scope),
            cell(&r.sender),
            cell(r.rule.as_deref().unwrap_or("")),
            cell(r.body.as_deref().unwrap_or("")),
            cell(if r.truncated { "true" } else { "false" }),
            cell(r.status.as_deref().unwrap_or("")),
            cell(&r.event_id),
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// `/console/revocations.csv`: every revocation to act on, oldest first, streamed a page at a
/// time (constant memory however many).
pub(super) async fn revocations_csv(State(console): State<Console>) -> Response {
    let head =
        "revoked_at,subscriber,account_sid,scope,sender,rule,body,truncated,status,event_id\n";
    let pages = console
        .reader
        .clone()
        .export(RevocationFilter::default(), None, None);
    let mut pages = Box::pin(pages);
    // The first page before the 200, so that a failing store is an error page.
    let first = match pages.next().await.transpose() {
        Ok(first) => first,
        Err(e) => return query_failed(e),
    };
    let rest = pages.map_err(|e| {
        tracing::warn!(error = %e, "CSV export failed mid-stream; the file is cut short.");
        std::io::Error::other(e.to_string())
    });
    let body = futures_util::stream::iter([Ok(head.as_bytes().to_vec())])
        .chain(
            futures_util::stream::iter(first.map(Ok))
                .chain(rest)
                .map(|rows| rows.and_then(|rows| csv_rows(&rows).map_err(std::io::Error::other))),
        )
        .map_ok(Bytes::from);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"revocations.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// A dead letter as the page shows it.
struct DeadLetterView {
    id: String,
    shard_id: String,
    sequence_number: String,
    reason: String,
    recorded_at: String,
    /// The raw record's first bytes as text (invalid UTF-8 replaced), for reading.
    raw: String,
    data_bytes: i64,
    truncated: bool,
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct DeadLettersPage {
    chrome: Chrome,
    rows: Vec<DeadLetterView>,
    next: Option<String>,
    /// This process writes the store: the page offers the retry.
    can_retry: bool,
    /// The form's CSRF token (signed in), else none (open console).
    csrf: Option<String>,
    /// What the last retry did, when the page comes after one.
    retried: Option<super::RetryCounts>,
}

/// What the retry's redirect says it did.
#[derive(Debug, Deserialize)]
pub(super) struct RetriedQuery {
    retried: Option<u64>,
    stored: Option<u64>,
    left: Option<u64>,
}

/// `/console/dead-letters`: each record the decoder refused, with the reason and its raw
/// bytes, and a button to re-run them where this process writes the store (else the CLI
/// command).
pub(super) async fn dead_letters(
    State(console): State<Console>,
    session: Option<axum::Extension<Session>>,
    Query(q): Query<CursorQuery>,
    Query(done): Query<RetriedQuery>,
) -> Response {
    let cursor = match q.cursor() {
        Ok(c) => c,
        Err(e) => return query_failed(e),
    };
    let req = PageRequest {
        limit: LIST_ROWS,
        cursor,
    };
    let page = match console.reader.page(&DeadLetterFilter, &req).await {
        Ok(p) => p,
        Err(e) => return query_failed(e),
    };
    let rows = page
        .items
        .into_iter()
        .map(|d| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&d.data_base64)
                .unwrap_or_default();
            DeadLetterView {
                id: d.id,
                shard_id: d.shard_id,
                sequence_number: d.sequence_number,
                reason: d.reason,
                recorded_at: d.recorded_at,
                raw: String::from_utf8_lossy(&raw).into_owned(),
                data_bytes: d.data_bytes,
                truncated: d.truncated,
            }
        })
        .collect();
    let retried = done.retried.map(|matched| super::RetryCounts {
        matched,
        stored: done.stored.unwrap_or(0),
        left: done.left.unwrap_or(0),
    });
    render(DeadLettersPage {
        chrome: chrome("dead-letters", &session),
        rows,
        next: next_link("/console/dead-letters", page.next_cursor),
        can_retry: console.live.as_ref().is_some_and(|l| l.retry.is_some()),
        csrf: session.as_ref().map(|s| s.0.csrf.clone()),
        retried,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_encoded_into_their_path() {
        assert_eq!(
            subscriber_path("+15551230001"),
            "/console/subscribers/%2B15551230001"
        );
        assert_eq!(
            subscriber_path("a/../b?c"),
            "/console/subscribers/a%2F%2E%2E%2Fb%3Fc"
        );
    }

    #[test]
    fn formulas_from_strangers_are_defused_but_numbers_stay() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("+1+cmd"), "'+1+cmd");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("+15551230001"), "+15551230001");
        assert_eq!(cell("stop texting me"), "stop texting me");
    }
}
