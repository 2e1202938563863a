//! The two handlers: read the body (bounded), check who sent it, split it into records, wait
//! for their commit, answer.
//!
//! Answers: 200 once stored (the Messaging webhook gets an empty TwiML `<Response/>`, so
//! Twilio's own Advanced Opt-Out replies still go out); 403 when the signature (or
//! `bodySHA256`, or the account a token is tied to) is missing or wrong, storing nothing; 413
//! over [`MAX_BODY_BYTES`]; 415 for another content type; 400 for a signed body that is no form
//! or no JSON (kept as a dead letter first, so nothing is lost); 503 when the store cannot take
//! it (Twilio retries an Event Streams delivery; a Messaging webhook goes to the fallback URL).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use http_body_util::{BodyExt, Limited};
use serde_json::value::RawValue;
use tracing::warn;

use super::committer::{Queue, Record};
use super::verify::{self, Algorithm, AuthToken, body_sha256, matching_tokens, signed_text};
use super::{Config, MAX_BODY_BYTES, Route};
use crate::event::{self, Outcome, form};
use crate::pipeline::RecordFormat;

/// What the handlers share.
pub(super) struct State {
    pub settings: Config,
    pub queue: Queue,
}

/// The empty TwiML answer: acknowledge, send no reply of our own.
const TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

pub(super) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(Route::Messaging.path(), post(messaging))
        .route(Route::Events.path(), post(events))
        .with_state(state)
}

/// A refusal: counted by route and reason, logged without the request's content.
fn refuse(route: Route, status: StatusCode, reason: &'static str, detail: &str) -> Response {
    super::metrics::rejected(route, reason);
    warn!(
        route = route.path(),
        reason,
        status = status.as_u16(),
        "Webhook request refused."
    );
    let body = serde_json::json!({ "error": reason, "detail": detail });
    (status, axum::Json(body)).into_response()
}

/// Reads the body up to [`MAX_BODY_BYTES`].
async fn read_body(route: Route, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        let detail = format!("the body is over {MAX_BODY_BYTES} bytes");
        refuse(route, StatusCode::PAYLOAD_TOO_LARGE, "too_large", &detail)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(refuse(
            route,
            StatusCode::BAD_REQUEST,
            "malformed",
            "the body could not be read",
        )),
    }
}

/// The media type of a request, lower-cased, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Why a signature did not pass: the metric's reason and what to tell the caller.
type Unsigned = (&'static str, &'static str);

/// The tokens that signed the request (over one of `texts`), or why none did.
fn signed_by<'s>(
    s: &'s State,
    headers: &HeaderMap,
    texts: &[Vec<u8>],
) -> Result<Vec<&'s AuthToken>, Unsigned> {
    let Some(presented) = header_str(headers, "x-twilio-signature") else {
        return Err(("no_signature", "no X-Twilio-Signature header"));
    };
    let settings = header_str(headers, "x-twilio-webhooks-signature-settings");
    let matched = match Algorithm::from_settings(settings) {
        Some(algorithm) => matching_tokens(&s.settings.tokens, algorithm, texts, presented),
        None => Vec::new(),
    };
    if matched.is_empty() {
        let detail = "X-Twilio-Signature does not match: check --twilio-auth-token-file and that \
                      --public-url is the URL Twilio calls";
        return Err(("bad_signature", detail));
    }
    Ok(matched)
}

/// Whether the tokens that signed may sign for every account in `accounts`: a token tied to an
/// account signs only that account's records.
fn accounts_allowed<'a>(
    matched: &[&AuthToken],
    accounts: impl IntoIterator<Item = &'a str>,
) -> bool {
    if matched.iter().any(|t| t.account.is_none()) {
        return true;
    }
    accounts
        .into_iter()
        .all(|a| matched.iter().any(|t| t.account.as_deref() == Some(a)))
}

/// Commits `records` and answers `ok` once they are stored, or 503.
async fn store(s: &State, route: Route, records: Vec<Record>, ok: Response) -> Response {
    match s.queue.commit(route, records).await {
        Ok(()) => {
            super::metrics::accepted(route);
            ok
        }
        Err(e) => {
            let mut r = refuse(route, StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e);
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            r
        }
    }
}

fn record(data: &[u8], format: RecordFormat) -> Record {
    Record {
        sequence_number: body_sha256(data),
        data: data.to_vec(),
        format,
    }
}

/// `POST /twilio/messaging`.
async fn messaging(AxumState(s): AxumState<Arc<State>>, request: Request) -> Response {
    let route = Route::Messaging;
    let received_at = chrono::Utc::now();
    let (parts, body) = request.into_parts();
    if media_type(&parts.headers) != "application/x-www-form-urlencoded" {
        let detail = "send application/x-www-form-urlencoded, as Twilio's Messaging webhook does";
        return refuse(
            route,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            detail,
        );
    }
    let body = match read_body(route, &parts.headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let form = form::parse(&body);
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let texts: Vec<Vec<u8>> = s
        .settings
        .public_url
        .candidates(path_and_query, None)
        .iter()
        .map(|url| signed_text(url, &form.params))
        .collect();
    let matched = match signed_by(&s, &parts.headers, &texts) {
        Ok(m) => m,
        Err((reason, detail)) => return refuse(route, StatusCode::FORBIDDEN, reason, detail),
    };
    if !accounts_allowed(&matched, form.get("AccountSid")) {
        let detail = "the token that signed is tied to another account";
        return refuse(route, StatusCode::FORBIDDEN, "wrong_account", detail);
    }
    let format = RecordFormat::MessagingForm { received_at };
    if let Some(reason) = &form.malformed {
        // Signed, so Twilio's: keep its bytes as a dead letter before saying it is malformed.
        let bad = (StatusCode::BAD_REQUEST, format!("not a form: {reason}")).into_response();
        return keep_malformed(&s, route, record(&body, format), bad).await;
    }
    let ok = ([(header::CONTENT_TYPE, "text/xml")], TWIML).into_response();
    store(&s, route, vec![record(&body, format)], ok).await
}

/// Stores a signed but unreadable body as a dead letter, then answers `bad` (or 503).
async fn keep_malformed(s: &State, route: Route, r: Record, bad: Response) -> Response {
    match s.queue.commit(route, vec![r]).await {
        Ok(()) => {
            super::metrics::rejected(route, "malformed");
            warn!(
                route = route.path(),
                reason = "malformed",
                status = 400,
                "Webhook request refused; its body is kept as a dead letter."
            );
            bad
        }
        Err(e) => refuse(route, StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e),
    }
}

/// `POST /twilio/events`.
async fn events(AxumState(s): AxumState<Arc<State>>, request: Request) -> Response {
    let route = Route::Events;
    let (parts, body) = request.into_parts();
    let media = media_type(&parts.headers);
    if !(media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json")))
    {
        let detail = "send application/json, as Twilio's Event Streams webhook does";
        return refuse(
            route,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            detail,
        );
    }
    let body = match read_body(route, &parts.headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let matched = match authenticate_event_sink(&s, &parts, &body) {
        Ok(m) => m,
        Err((reason, detail)) => return refuse(route, StatusCode::FORBIDDEN, reason, detail),
    };
    let cloud_event = RecordFormat::CloudEvent;
    let events = match split(&body) {
        Ok(events) => events,
        Err(reason) => {
            let bad = (StatusCode::BAD_REQUEST, reason).into_response();
            return keep_malformed(&s, route, record(&body, cloud_event), bad).await;
        }
    };
    // Only tokens tied to accounts need the accounts of the events: decode them for that.
    if let Some(matched) = &matched
        && matched.iter().all(|t| t.account.is_some())
    {
        let outcomes: Vec<Outcome> = events
            .iter()
            .map(|e| event::classify(e.get().as_bytes(), s.settings.options))
            .collect();
        let accounts = outcomes.iter().filter_map(|o| match o {
            Outcome::Opt(e) => Some(e.account_sid.as_str()),
            Outcome::Test(t) => Some(t.account_sid.as_str()),
            _ => None,
        });
        if !accounts_allowed(matched, accounts) {
            let detail = "the token that signed is tied to another account";
            return refuse(route, StatusCode::FORBIDDEN, "wrong_account", detail);
        }
    }
    let records: Vec<Record> = events
        .iter()
        .map(|e| record(e.get().as_bytes(), cloud_event))
        .collect();
    let ok = axum::Json(serde_json::json!({ "received": records.len() })).into_response();
    store(&s, route, records, ok).await
}

/// Who sent an Event Streams delivery: a valid signature over the URL (which carries
/// `bodySHA256`, checked against the body), or the sink URL's Basic credentials when
/// `--twilio-basic-auth-file` lists them. `Some(tokens)` when a signature passed, `None` when
/// Basic credentials did; else why the request is refused (403).
fn authenticate_event_sink<'s>(
    s: &'s State,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<Option<Vec<&'s AuthToken>>, Unsigned> {
    let userinfo = basic_credentials(&parts.headers);
    let by_basic = !s.settings.basic.is_empty()
        && userinfo
            .as_deref()
            .is_some_and(|u| s.settings.basic.allows(u.as_bytes()));
    let claimed_hash = parts.uri.query().and_then(|q| {
        form::parse(q.as_bytes())
            .get("bodySHA256")
            .map(str::to_owned)
    });
    if let Some(claimed) = &claimed_hash
        && !verify::same(
            claimed.to_ascii_lowercase().as_bytes(),
            body_sha256(body).as_bytes(),
        )
    {
        return Err(("bad_body_hash", "bodySHA256 is not the SHA-256 of the body"));
    }
    if by_basic && header_str(&parts.headers, "x-twilio-signature").is_none() {
        return Ok(None);
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let texts: Vec<Vec<u8>> = s
        .settings
        .public_url
        .candidates(path_and_query, userinfo.as_deref())
        .iter()
        .map(|url| signed_text(url, &[]))
        .collect();
    match signed_by(s, &parts.headers, &texts) {
        Ok(_) if claimed_hash.is_none() => Err((
            "no_body_hash",
            "the URL carries no bodySHA256: Twilio adds it to every JSON delivery",
        )),
        Ok(matched) => Ok(Some(matched)),
        Err(_) if by_basic => Ok(None),
        Err(unsigned) => Err(unsigned),
    }
}

/// The `user:password` of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<String> {
    let value = header_str(headers, "authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(decoded).ok()
}

/// The CloudEvents of a body: one object, or an array of anything (each element is a record:
/// one that is no CloudEvent becomes a dead letter). A body that is no JSON, or JSON of another
/// shape, is the reason why not.
fn split(body: &[u8]) -> Result<Vec<&RawValue>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let parsed = match first {
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body),
        Some(b'{') => serde_json::from_slice::<&RawValue>(body).map(|e| vec![e]),
        _ => return Err("not JSON: the body is neither a CloudEvent nor an array of them".into()),
    };
    parsed.map_err(|e| format!("not JSON: {e}"))
}

/// A sanity check for the records a route builds: the pipeline decodes them the same way.
#[cfg(test)]
fn raw(r: &Record) -> crate::pipeline::RawRecord<'_> {
    crate::pipeline::RawRecord {
        sequence_number: &r.sequence_number,
        partition_key: None,
        data: &r.data,
        size: r.data.len(),
        format: r.format,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_into_events() {
        assert_eq!(split(b" []").unwrap().len(), 0);
        let two = split(br#"[{"a":1}, 2]"#).unwrap();
        assert_eq!(
            two.iter().map(|e| e.get()).collect::<Vec<_>>(),
            [r#"{"a":1}"#, "2"]
        );
        assert_eq!(split(br#"{"id":"x"}"#).unwrap().len(), 1);
        for bad in [&b""[..], b"null", b"\"x\"", b"[1,", b"{} {}"] {
            assert!(split(bad).unwrap_err().starts_with("not JSON: "), "{bad:?}");
        }
    }

    #[test]
    fn a_record_is_keyed_by_its_hash_and_decodes_as_its_route_says() {
        let r = record(b"{}", RecordFormat::CloudEvent);
        assert_eq!(r.sequence_number, body_sha256(b"{}"));
        assert!(matches!(
            raw(&r).classify(crate::event::DecodeOptions::default()),
            Outcome::Dead(_)
        ));
    }
}
