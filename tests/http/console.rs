//! The web console over real HTTP, on both backends: every page renders the store's rows with
//! hostile bodies shown as text; the security headers; the login form, its cookie's flags, the
//! CSRF refusals and logout; the CSV export; the daily rollup behind the activity chart
//! (duplicates never count twice, a merge that moves an event's time moves its count).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, header};
use chrono::{TimeZone, Utc};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use optout::event::{Detection, OptEvent, OptOutType, TimeSource};
use optout::http::{ApiAuth, AppState};
use optout::store::{Batch, CheckpointUpdate, DeadLetter, Positioned};
use tokio_util::sync::CancellationToken;

use crate::common::db::{self, Db};
use optout::store::query::console::ActivityKey;

both_backends! {
    pages_show_the_store_and_hostile_text_stays_text;
    the_rollup_counts_each_event_once_on_its_day;
}

const TOKEN: &str = "console-test-token";

/// The bodies strangers may send, each of which must reach the page as text.
pub const HOSTILE: [&str; 3] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "javascript:alert(1)",
];

/// A server on a loopback port and a client that keeps no cookies of its own.
pub struct Console {
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: CancellationToken,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

impl Console {
    /// Serves the real router on `url`'s store; with `tokens`, the console needs a login.
    pub async fn start(url: &str, tokens: Vec<String>) -> Console {
        let reader = optout::store::Reader::open(url, 2).await.unwrap();
        let state = AppState {
            reader: Arc::new(reader),
            metrics: None,
            ready: Arc::new(AtomicBool::new(true)),
            auth: Arc::new(ApiAuth::new(tokens, false)),
            health: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(optout::http::serve_on(
            listener,
            optout::app::http_app(state),
            stop.clone(),
        ));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Console { base, client, stop }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        form: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if form.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let body = Full::new(Bytes::from(form.unwrap_or("").to_string()));
        let resp = self.client.request(req.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let c;
        let headers: Vec<(&str, &str)> = match cookie {
            Some(v) => {
                c = format!("optout_session={v}");
                vec![("cookie", c.as_str())]
            }
            None => vec![],
        };
        self.send(Method::GET, path, &headers, None).await
    }
}

/// The value of `name="…"`'s `value` in a form (the page escapes it; tokens are URL-safe).
fn hidden(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} field in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn form_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The session cookie's value in a `Set-Cookie`.
fn session_value(set_cookie: &str) -> String {
    let v = set_cookie.strip_prefix("optout_session=").unwrap();
    v[..v.find(';').unwrap()].to_string()
}

fn event(n: u32, t: OptOutType, detection: Detection, from: &str, body: &str) -> OptEvent {
    OptEvent {
        event_id: format!("EV{n:06}"),
        opt_out_type: t,
        inferred: detection == Detection::Phrase,
        detection,
        rule: (detection == Detection::Phrase).then(|| "builtin-2026.1:<b>stop</b>".into()),
        account_sid: "AC1".into(),
        messaging_service_sid: Some("MG1".into()),
        sender: "+15559870002".into(),
        subscriber: from.into(),
        body: Some(body.into()),
        message_sid: Some(format!("SM{n:032x}")),
        occurred_at: Utc
            .timestamp_opt(1_772_366_400 + i64::from(n) * 3_600, 0)
            .unwrap(),
        time_source: TimeSource::Twilio,
        schema_version: Some(5),
    }
}

fn batch(events: Vec<OptEvent>, dead_letters: Vec<DeadLetter>) -> Batch {
    Batch {
        stream: "optout-stream".into(),
        shard_id: "shardId-000000000000".into(),
        opt_events: events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Positioned {
                sequence_number: format!("{i:08}"),
                value: e,
            })
            .collect(),
        dead_letters,
        checkpoint: Some(CheckpointUpdate {
            sequence_number: Some("00000099".into()),
            ..CheckpointUpdate::default()
        }),
        ..Batch::default()
    }
}

/// A number with a STOP, a HELP and a phrase revocation, each body hostile, and a dead
/// letter whose raw record is hostile too.
pub async fn fill(db: &Db) {
    let number = "+15551230001";
    let events = vec![
        event(1, OptOutType::Stop, Detection::Twilio, number, HOSTILE[0]),
        event(2, OptOutType::Help, Detection::Twilio, number, HOSTILE[1]),
        event(3, OptOutType::Stop, Detection::Phrase, number, HOSTILE[2]),
        event(
            4,
            OptOutType::Start,
            Detection::Twilio,
            "+15551230002",
            "START",
        ),
    ];
    let dead = vec![DeadLetter {
        sequence_number: "00000050".into(),
        partition_key: None,
        reason: "not JSON: <script>alert(1)</script>".into(),
        data: b"{\"body\":\"<img src=x onerror=alert(1)>\"".to_vec(),
    }];
    db.store.commit(&batch(events, dead)).await.unwrap();
}

/// `page` with numeric character references as named ones (`&#60;` as `&lt;`), so that checks
/// do not depend on which of the equivalent forms the templates write.
fn named(page: &str) -> String {
    page.replace("&#60;", "&lt;")
        .replace("&#62;", "&gt;")
        .replace("&#34;", "&quot;")
        .replace("&#39;", "&apos;")
        .replace("&#38;", "&amp;")
        .replace("&#47;", "/")
        .replace("&#x2f;", "/")
}

/// Every hostile string is in `page` only escaped, never as markup or a link.
fn assert_inert(page: &str, what: &str) {
    for bad in [
        "<script>alert",
        "<img src=x",
        "onerror=alert(1)>",
        "href=\"javascript:",
    ] {
        assert!(
            !page.contains(bad),
            "{what}: `{bad}` reached the page as markup"
        );
    }
}

async fn pages_show_the_store_and_hostile_text_stays_text(db: Db) {
    fill(&db).await;
    let c = Console::start(&db.url, Vec::new()).await;

    // Open on loopback without tokens; `/` leads to the console.
    let root = c.get("/", None).await;
    assert_eq!((root.status, root.header("location")), (303, "/console/"));
    let lookup = c.get("/console/?number=%2B15551230001", None).await;
    assert_eq!(
        (lookup.status, lookup.header("location")),
        (303, "/console/subscribers/%2B15551230001")
    );

    let mut page = c.get("/console/subscribers/%2B15551230001", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body = named(&page.body);
    assert!(page.header("content-type").starts_with("text/html"));
    assert_inert(&page.body, "subscriber");
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        page.body
            .contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;")
    );
    assert!(page.body.contains("javascript:alert(1)"), "shown as text");
    assert!(
        page.body.contains("Do not send"),
        "the phrase revocation blocks sending"
    );
    assert!(page.body.contains("phrase_revocation"));
    assert!(
        page.body.contains("builtin-2026.1:&lt;b&gt;stop&lt;/b&gt;"),
        "the rule"
    );
    assert!(
        page.body.contains(&format!("SM{:032x}", 1)),
        "the message SID"
    );
    for detection in ["detected by twilio", "detected by phrase"] {
        assert!(page.body.contains(detection), "{detection}");
    }
    // Newest first: the phrase revocation (event 3) before the STOP (event 1).
    assert!(page.body.find("EV000003").unwrap() < page.body.find("EV000001").unwrap());

    // A number that never wrote, and a hostile one in the path.
    let none = c.get("/console/subscribers/%2B15550000000", None).await;
    assert!(none.status == 200 && none.body.contains("Sending allowed"));
    let evil = c
        .get(
            "/console/subscribers/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            None,
        )
        .await;
    assert_eq!(evil.status, 200);
    assert_inert(&evil.body, "hostile path");

    let mut rev = c.get("/console/revocations", None).await;
    assert_eq!(rev.status, 200);
    rev.body = named(&rev.body);
    assert_inert(&rev.body, "revocations");
    assert!(rev.body.contains("/console/subscribers/%2B15551230001"));
    assert!(rev.body.contains("javascript:alert(1)"));

    let csv = c.get("/console/revocations.csv", None).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").starts_with("text/csv"));
    let mut lines = csv.body.lines();
    assert!(lines.next().unwrap().starts_with("revoked_at,subscriber,"));
    let row = lines.next().unwrap();
    assert!(
        row.contains(",+15551230001,") && row.contains("javascript:alert(1)"),
        "{row}"
    );
    assert_eq!(lines.next(), None);

    let mut dl = c.get("/console/dead-letters", None).await;
    assert_eq!(dl.status, 200);
    dl.body = named(&dl.body);
    assert_inert(&dl.body, "dead letters");
    assert!(dl.body.contains("not JSON: &lt;script&gt;"));
    assert!(dl.body.contains("optout dead-letters --retry"));

    let act = c
        .get("/console/activity?from=2026-03-01&to=2026-03-07", None)
        .await;
    assert_eq!(act.status, 200, "{}", act.body);
    assert!(
        act.body.contains("<svg"),
        "the chart is drawn on the server"
    );
    assert!(
        act.body
            .contains("2 opt-outs, 1 opt-ins and 1 help requests over 7 days")
    );
    assert!(
        act.body.contains("by_scope=1"),
        "totals by scope on request"
    );
    let scopes = c
        .get(
            "/console/activity?from=2026-03-01&to=2026-03-07&by_scope=1",
            None,
        )
        .await;
    assert!(scopes.status == 200 && scopes.body.contains("<code>MG1</code>"));
    let bad = c
        .get("/console/activity?from=2026-03-07&to=2026-03-01", None)
        .await;
    assert_eq!(bad.status, 400);

    let health = c.get("/console/health", None).await;
    assert_eq!(health.status, 200);
    assert!(health.body.contains("optout-stream") && health.body.contains("shardId-000000000000"));
    assert!(health.body.contains("Nothing waits to be delivered"));

    // Every answer, pages, redirects, errors and the stylesheet, carries the headers.
    for path in [
        "/console/",
        "/",
        "/console/health",
        "/console/nope",
        "/console/static/console.css",
        "/console/subscribers/%2B1?cursor=junk",
    ] {
        let a = c.get(path, None).await;
        let csp = a.header("content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(a.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(a.header("referrer-policy"), "same-origin", "{path}");
    }
    assert_eq!(c.get("/console/nope", None).await.status, 404);
    assert_eq!(
        c.get("/console/subscribers/%2B1?cursor=junk", None)
            .await
            .status,
        400
    );
    // No inline script or style anywhere: the CSP would block it.
    assert!(!page.body.contains("<script") && !page.body.contains("style="));
}

/// A batch without a checkpoint (a replay's), so that it may be committed again.
fn plain(events: Vec<OptEvent>) -> Batch {
    Batch {
        checkpoint: None,
        ..batch(events, vec![])
    }
}

async fn the_rollup_counts_each_event_once_on_its_day(db: Db) {
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let count = |rows: &[optout::store::query::console::DailyCount], d: &str, t: &str| {
        rows.iter()
            .filter(|r| r.day == d && r.opt_out_type == t)
            .map(|r| r.events)
            .sum::<i64>()
    };
    let mut received = event(10, OptOutType::Stop, Detection::Twilio, "+1555", "STOP");
    received.time_source = TimeSource::Received;
    received.occurred_at = Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0).unwrap();
    db.store
        .commit(&plain(vec![received.clone()]))
        .await
        .unwrap();
    // The same batch again (a re-read) and the same message by another event id (a duplicate).
    db.store
        .commit(&plain(vec![received.clone()]))
        .await
        .unwrap();
    let mut copy = received.clone();
    copy.event_id = "EV999999".into();
    db.store.commit(&plain(vec![copy])).await.unwrap();
    let rows = db.reader.daily_counts(day(1), day(7), 100).await.unwrap();
    assert_eq!(count(&rows, "2026-03-03", "STOP"), 1, "{rows:?}");

    // Twilio's own time arrives for the same message: the event moves to 2026-03-02.
    let mut twilio = received.clone();
    twilio.time_source = TimeSource::Twilio;
    twilio.occurred_at = Utc.with_ymd_and_hms(2026, 3, 2, 23, 59, 0).unwrap();
    db.store.commit(&plain(vec![twilio])).await.unwrap();
    let rows = db.reader.daily_counts(day(1), day(7), 100).await.unwrap();
    assert_eq!(count(&rows, "2026-03-03", "STOP"), 0, "{rows:?}");
    assert_eq!(count(&rows, "2026-03-02", "STOP"), 1, "{rows:?}");
    assert!(rows.iter().all(|r| r.events > 0), "no empty rows: {rows:?}");

    // The rollup agrees with the events themselves over many events and days.
    let events: Vec<OptEvent> = (100..400)
        .map(|n| {
            let t = [OptOutType::Stop, OptOutType::Start, OptOutType::Help][n as usize % 3];
            event(n, t, Detection::Twilio, &format!("+1555{n}"), "x")
        })
        .collect();
    db.store.commit(&plain(events.clone())).await.unwrap();
    let rows = db
        .reader
        .daily_counts(day(1), day(31), 10_000)
        .await
        .unwrap();
    let total: i64 = rows.iter().map(|r| r.events).sum();
    assert_eq!(total, 300 + 1);
    let d = events[0].occurred_at.format("%Y-%m-%d").to_string();
    let expected = events
        .iter()
        .filter(|e| e.occurred_at.format("%Y-%m-%d").to_string() == d)
        .count() as i64;
    let got: i64 = rows.iter().filter(|r| r.day == d).map(|r| r.events).sum();
    assert_eq!(got, expected);
    assert!(db.reader.daily_counts(day(7), day(1), 10).await.is_err());

    // The rollup without scopes (the chart of all) agrees, the moved event included.
    let all = db
        .reader
        .activity_counts(day(1), day(31), ActivityKey::Day, None)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|r| r.2).sum::<i64>(), total);
    let on = |d: &str, t: &str| {
        all.iter()
            .filter(|r| r.0 == d && r.1 == t)
            .map(|r| r.2)
            .sum::<i64>()
    };
    assert_eq!((on("2026-03-02", "STOP"), on("2026-03-03", "STOP")), (1, 0));
    let by_scope = db
        .reader
        .activity_counts(day(1), day(31), ActivityKey::Scope, None)
        .await
        .unwrap();
    assert_eq!(by_scope.iter().map(|r| r.2).sum::<i64>(), total);
}

/// The login form, the session cookie's flags, CSRF refusals, slowed failures and logout.
#[tokio::test]
async fn login_sets_a_strict_cookie_and_logout_ends_it() {
    let db = db::sqlite().await;
    fill(&db).await;
    let c = Console::start(&db.url, vec![TOKEN.into()]).await;

    // Without a session: to the login form, coming back afterwards.
    let a = c.get("/console/subscribers/%2B15551230001", None).await;
    assert_eq!(a.status, 303);
    assert_eq!(
        a.header("location"),
        "/console/login?next=%2Fconsole%2Fsubscribers%2F%252B15551230001"
    );
    for path in [
        "/console/revocations.csv",
        "/console/health",
        "/console/activity",
    ] {
        assert_eq!(c.get(path, None).await.status, 303, "{path}");
    }
    // The API's token works as a bearer too (scripts), and the API itself still needs it.
    let bearer = format!("Bearer {TOKEN}");
    let a = c
        .send(
            Method::GET,
            "/console/health",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(a.status, 200);

    let form = c
        .get("/console/login?next=/console/revocations", None)
        .await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("type=\"password\""));
    let csrf = hidden(&form.body, "csrf");
    let login = |token: &str, csrf: &str| {
        format!(
            "token={}&csrf={}&next=%2Fconsole%2Frevocations",
            form_encode(token),
            form_encode(csrf)
        )
    };

    // A wrong token is refused, and slowly.
    let started = std::time::Instant::now();
    let a = c
        .send(
            Method::POST,
            "/console/login",
            &[],
            Some(&login("wrong", &csrf)),
        )
        .await;
    assert_eq!(a.status, 401);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert!(a.header("set-cookie").is_empty());
    // A forged or missing form token, or another site's form, is refused even with the token.
    for (body, headers) in [
        (login(TOKEN, "123.abc"), vec![]),
        (format!("token={TOKEN}"), vec![]),
        (
            login(TOKEN, &csrf),
            vec![("origin", "https://evil.example")],
        ),
    ] {
        let a = c
            .send(Method::POST, "/console/login", &headers, Some(&body))
            .await;
        assert_eq!(a.status, 403, "{body}");
        assert!(a.header("set-cookie").is_empty());
    }

    // The right token: a session cookie, HttpOnly, SameSite=Strict, expiring, not Secure over
    // plain HTTP, and back where the user was going.
    let origin = c.base.clone();
    let a = c
        .send(
            Method::POST,
            "/console/login",
            &[("origin", &origin)],
            Some(&login(TOKEN, &csrf)),
        )
        .await;
    assert_eq!(
        (a.status, a.header("location")),
        (303, "/console/revocations")
    );
    let set = a.header("set-cookie").to_string();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/console",
    ] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    assert!(!set.contains(TOKEN), "the token itself is never the cookie");
    let session = session_value(&set);

    // Behind a TLS-terminating proxy the cookie is Secure.
    let a = c
        .send(
            Method::POST,
            "/console/login",
            &[("x-forwarded-proto", "https")],
            Some(&login(TOKEN, &csrf)),
        )
        .await;
    assert!(a.header("set-cookie").contains("; Secure"));

    let page = c
        .get("/console/subscribers/%2B15551230001", Some(&session))
        .await;
    assert_eq!(page.status, 200);
    assert_inert(&page.body, "signed in");
    let logout_csrf = hidden(&page.body, "csrf");
    // A tampered cookie is no session.
    let tampered = format!("9{session}");
    assert_eq!(c.get("/console/", Some(&tampered)).await.status, 303);

    // Logout needs the session's CSRF token: without it (or another's), nothing happens.
    let cookie = format!("optout_session={session}");
    for body in ["", "csrf=forged"] {
        let a = c
            .send(
                Method::POST,
                "/console/logout",
                &[("cookie", &cookie)],
                Some(body),
            )
            .await;
        assert_eq!(a.status, 403, "{body}");
        assert!(a.header("set-cookie").is_empty());
    }
    // A GET cannot sign out either.
    assert_eq!(c.get("/console/logout", Some(&session)).await.status, 405);
    assert_eq!(c.get("/console/", Some(&session)).await.status, 200);

    let a = c
        .send(
            Method::POST,
            "/console/logout",
            &[("cookie", &cookie)],
            Some(&format!("csrf={}", form_encode(&logout_csrf))),
        )
        .await;
    assert_eq!((a.status, a.header("location")), (303, "/console/login"));
    assert!(a.header("set-cookie").contains("Max-Age=0"));
    // The old cookie no longer opens anything here.
    assert_eq!(c.get("/console/", Some(&session)).await.status, 303);
    // The API never took cookies.
    assert_eq!(c.get("/v1/status", Some(&session)).await.status, 401);
}
