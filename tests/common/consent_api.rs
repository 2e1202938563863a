//! A fake of Twilio's Consent Management API (`POST /v1/Consents/Bulk`) that enforces what
//! Twilio documents, since the real one cannot be reached from the tests: HTTP basic auth
//! per account (API key or auth token), a form with `Items` repeated (each a JSON object of
//! the documented fields, at most 25), at most 100 requests per account in any minute (429
//! with `Retry-After`), an `error_code` per `correlation_id` (0 = accepted) and a 201 answer
//! as the `twilio-oai` spec shows it. Faults on demand: 500s, and requests held past the 3 s
//! Twilio gives a client. Time for the rate limit comes from a clock the test shares with the
//! dispatcher, so the limit is checked in virtual time. Every request is recorded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

use optout::deliver::Clock;

/// Twilio's per-account limit.
pub const PER_MINUTE: usize = 100;
/// Most items a request may carry.
pub const MAX_ITEMS: usize = 25;

/// One request that reached the fake.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub account: Option<String>,
    pub at: SystemTime,
    pub items: Vec<Value>,
    pub status: u16,
}

/// The fake's state, shared with the test.
pub struct ConsentApi {
    /// username → (password, account).
    credentials: HashMap<String, (String, String)>,
    clock: Arc<dyn Clock>,
    /// Accepted request times per account (for the sliding minute).
    windows: Mutex<HashMap<String, Vec<SystemTime>>>,
    pub arrivals: Mutex<Vec<Arrival>>,
    /// The next this many requests answer 500.
    pub fail_next: Mutex<usize>,
    /// The next this many requests are held this long before answering.
    pub hang_next: Mutex<(usize, Duration)>,
    /// Contacts answered with this error code.
    pub bad_contacts: Mutex<HashMap<String, i64>>,
    /// Requests per account in any minute ([`PER_MINUTE`] unless a test lowers it).
    pub per_minute: Mutex<usize>,
    base: Mutex<String>,
}

impl ConsentApi {
    /// A fake that knows `account`'s API key and secret, timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>, account: &str, username: &str, password: &str) -> Arc<Self> {
        Arc::new(ConsentApi {
            credentials: HashMap::from([(
                username.to_string(),
                (password.to_string(), account.to_string()),
            )]),
            clock,
            windows: Mutex::default(),
            arrivals: Mutex::default(),
            fail_next: Mutex::new(0),
            hang_next: Mutex::new((0, Duration::ZERO)),
            bad_contacts: Mutex::default(),
            per_minute: Mutex::new(PER_MINUTE),
            base: Mutex::default(),
        })
    }

    /// The base URL [`ConsentApi::serve`] returned.
    pub fn base_url(&self) -> String {
        self.base.lock().unwrap().clone()
    }

    /// Serves the fake on a port of its own; its base URL.
    pub async fn serve(self: &Arc<Self>) -> String {
        let app = Router::new()
            .route("/v1/Consents/Bulk", post(bulk))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let base = format!("http://{addr}");
        *self.base.lock().unwrap() = base.clone();
        base
    }

    /// Every item accepted (error code 0 or not) in arrival order.
    pub fn items(&self) -> Vec<Value> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.status == 201)
            .flat_map(|a| a.items.clone())
            .collect()
    }

    fn account_of(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers.get("authorization")?.to_str().ok()?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.strip_prefix("Basic ")?)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        let (expected, account) = self.credentials.get(user)?;
        (expected == pass).then(|| account.clone())
    }
}

fn twilio_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"code": code, "message": message, "status": status.as_u16(),
                      "more_info": format!("https://www.twilio.com/docs/errors/{code}")});
    (status, axum::Json(body)).into_response()
}

/// Why an item is invalid, as Twilio's `error_messages` name it.
fn item_errors(item: &Value) -> Vec<&'static str> {
    let s = |k: &str| item.get(k).and_then(Value::as_str);
    let mut errors = Vec::new();
    let e164 = |v: &str| {
        v.strip_prefix('+')
            .is_some_and(|d| (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()))
    };
    if !s("contact_id").is_some_and(e164) {
        errors.push("INVALID_CONTACT_ID");
    }
    let sender = s("sender_id").unwrap_or("");
    if !(sender.starts_with("MG") && sender.len() == 34 || e164(sender)) {
        errors.push("INVALID_SENDER_ID");
    }
    if !matches!(s("status"), Some("opt-in" | "opt-out")) {
        errors.push("INVALID_STATUS");
    }
    if !matches!(
        s("source"),
        Some("website" | "offline" | "opt-in-message" | "opt-out-message" | "others")
    ) {
        errors.push("INVALID_SOURCE");
    }
    if let Some(d) = s("date_of_consent")
        && chrono::DateTime::parse_from_rfc3339(d).is_err()
        && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
    {
        errors.push("INVALID_DATE_OF_CONSENT");
    }
    errors
}

async fn bulk(State(api): State<Arc<ConsentApi>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = api.clock.now();
    let account = api.account_of(&headers);
    let record = |status: u16, items: Vec<Value>| {
        api.arrivals.lock().unwrap().push(Arrival {
            account: account.clone(),
            at: now,
            items,
            status,
        });
    };
    let Some(acct) = account.clone() else {
        record(401, vec![]);
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authentication Error");
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        record(415, vec![]);
        return twilio_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            20001,
            "Unsupported Media Type",
        );
    }
    // The sliding minute, per account.
    {
        let mut windows = api.windows.lock().unwrap();
        let w = windows.entry(acct.clone()).or_default();
        w.retain(|t| now.duration_since(*t).unwrap_or_default() < Duration::from_secs(60));
        if w.len() >= *api.per_minute.lock().unwrap() {
            let frees = w[0] + Duration::from_secs(60);
            let secs = frees.duration_since(now).unwrap_or_default().as_secs() + 1;
            drop(windows);
            record(429, vec![]);
            let mut r = twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            r.headers_mut().insert("retry-after", secs.into());
            return r;
        }
        w.push(now);
    }
    let mut raw_items = Vec::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        if k == "Items" {
            raw_items.push(v.into_owned());
        } else {
            record(400, vec![]);
            return twilio_error(StatusCode::BAD_REQUEST, 20001, "Unknown parameter");
        }
    }
    let items: Result<Vec<Value>, _> = raw_items.iter().map(|s| serde_json::from_str(s)).collect();
    let Ok(items) = items else {
        record(400, vec![]);
        return twilio_error(StatusCode::BAD_REQUEST, 20001, "Items must be JSON objects");
    };
    if items.is_empty() || items.len() > MAX_ITEMS {
        record(400, items);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            20001,
            "Items must hold 1 to 25 objects",
        );
    }
    if items.iter().any(|i| {
        !i.get("correlation_id")
            .and_then(Value::as_str)
            .is_some_and(|c| c.len() == 32 && c.chars().all(|c| c.is_ascii_hexdigit()))
    }) {
        record(400, items);
        return twilio_error(StatusCode::BAD_REQUEST, 20001, "Invalid correlation_id");
    }
    let fail = {
        let mut f = api.fail_next.lock().unwrap();
        (*f > 0).then(|| *f -= 1).is_some()
    };
    // A request that fails at once is not also held.
    let hang = (!fail)
        .then(|| {
            let mut h = api.hang_next.lock().unwrap();
            (h.0 > 0).then(|| {
                h.0 -= 1;
                h.1
            })
        })
        .flatten();
    if fail {
        record(500, items);
        return twilio_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error",
        );
    }
    record(201, items.clone());
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    let bad = api.bad_contacts.lock().unwrap().clone();
    let answers: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut errors = item_errors(i);
            let contact = i["contact_id"].as_str().unwrap_or("");
            let code = match bad.get(contact) {
                Some(code) => {
                    errors.push("REJECTED");
                    *code
                }
                None if errors.is_empty() => 0,
                None => 30646,
            };
            json!({"correlation_id": i["correlation_id"], "error_code": code,
                   "error_messages": errors})
        })
        .collect();
    (StatusCode::CREATED, axum::Json(json!({"items": answers}))).into_response()
}
