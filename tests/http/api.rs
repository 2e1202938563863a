//! The `/v1` API over real HTTP, on both backends: pages and cursors, NDJSON exports, JSON
//! errors, the per-number lookup (with a URL-encoded `+`) and point-in-time status; and every
//! kind of real response checked against `schemas/openapi.json`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Bytes;
use axum::http::{Request, header};
use chrono::{TimeZone, Utc};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use optout::event::{Detection, OptEvent, OptOutType, TestEvent, TimeSource};
use optout::http::{ApiAuth, AppState};
use optout::store::{Batch, DeadLetter, Positioned, Reader};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::db as support_db;

use support_db::Db;

both_backends! {
    lists_page_stream_and_fail_in_json;
    responses_match_the_openapi_document;
}

const TOKEN: &str = "api-test-token";

fn ev(n: usize, t: OptOutType, scope: &str, from: &str) -> OptEvent {
    OptEvent {
        event_id: format!("EV{n:06}"),
        opt_out_type: t,
        inferred: false,
        detection: Detection::Twilio,
        rule: None,
        account_sid: "AC1".into(),
        messaging_service_sid: Some(scope.into()),
        sender: "+15559870002".into(),
        subscriber: from.into(),
        body: Some("=HYPERLINK(\"x\")".into()),
        message_sid: None,
        occurred_at: Utc.timestamp_opt(1_772_366_400 + n as i64, 0).unwrap(),
        time_source: TimeSource::Twilio,
        schema_version: Some(5),
    }
}

/// The test's server and a client for it.
pub struct Api {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    stop: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Api {
    pub async fn start(db: &Db) -> Api {
        let reader = Reader::open(&db.url, 2).await.unwrap();
        let state = AppState {
            reader: Arc::new(reader),
            metrics: None,
            ready: Arc::new(AtomicBool::new(true)),
            auth: Arc::new(ApiAuth::new(vec![TOKEN.into()], false)),
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
        Api { base, client, stop }
    }

    /// GET `path` with the token (and `accept`, if given): status, content type, body.
    pub async fn get(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        self.get_as(path, accept, Some(TOKEN)).await
    }

    /// GET `path` with `token`, if any.
    pub async fn get_as(
        &self,
        path: &str,
        accept: Option<&str>,
        token: Option<&str>,
    ) -> (u16, String, String) {
        let mut req = Request::get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    /// GET `path` expecting 200 and JSON.
    pub async fn json(&self, path: &str) -> Value {
        let (status, ctype, body) = self.get(path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ctype.starts_with("application/json"), "{path}: {ctype}");
        serde_json::from_str(&body).unwrap()
    }
}

async fn fill(db: &Db) {
    fill_with(db, Vec::new(), Vec::new()).await;
}

async fn fill_with(
    db: &Db,
    dead_letters: Vec<DeadLetter>,
    test_events: Vec<Positioned<TestEvent>>,
) {
    let events: Vec<_> = (0..2_500)
        .map(|n| {
            let t = if n % 3 == 0 {
                OptOutType::Start
            } else {
                OptOutType::Stop
            };
            // Each of 700 numbers texts in both scopes.
            let scope = if (n / 700) % 2 == 0 { "MG1" } else { "MG2" };
            ev(n, t, scope, &format!("+1555{:07}", n % 700))
        })
        .collect();
    let batch = Batch {
        stream: "s".into(),
        shard_id: "a".into(),
        opt_events: events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Positioned {
                sequence_number: format!("{i:08}"),
                value: e,
            })
            .collect(),
        dead_letters,
        test_events,
        ..Batch::default()
    };
    db.store.commit(&batch).await.unwrap();
}

async fn lists_page_stream_and_fail_in_json(db: Db) {
    fill(&db).await;
    let api = Api::start(&db).await;

    // Pages of the default size, then a cursor to follow, until null.
    let first = api.json("/v1/events").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1_000);
    assert_eq!(first["items"][0]["event_id"], "EV000000");
    assert_eq!(
        first["items"][0]["occurred_at"],
        "2026-03-01T12:00:00.000000Z"
    );
    let mut ids = Vec::new();
    let mut path = "/v1/events?limit=700".to_string();
    loop {
        let page = api.json(&path).await;
        for item in page["items"].as_array().unwrap() {
            ids.push(item["event_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/events?limit=700&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..2_500).map(|n| format!("EV{n:06}")).collect();
    assert_eq!(ids, expected);

    // NDJSON: every row, one object a line, whatever the page size.
    let (status, ctype, body) = api
        .get("/v1/events?type=stop", Some("application/x-ndjson"))
        .await;
    assert_eq!((status, ctype.as_str()), (200, "application/x-ndjson"));
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2_500 - 834);
    assert!(lines.iter().all(|l| l["opt_out_type"] == "STOP"));
    let (_, _, status_export) = api.get("/v1/status", Some("application/x-ndjson")).await;
    assert_eq!(
        status_export.lines().count(),
        1_400,
        "700 numbers in 2 scopes"
    );

    // The per-number lookup, with the `+` URL-encoded.
    let out = api
        .json("/v1/status/%2B15550000001?scope=MG2&account=AC1")
        .await;
    assert_eq!(out["subscriber"], "+15550000001");
    assert_eq!(out["items"].as_array().unwrap().len(), 1);
    let latest = out["items"][0]["event_id"].as_str().unwrap().to_string();
    let never = api.json("/v1/status/%2B19999999999").await;
    assert_eq!(never["status"], "no_opt_event_seen");
    assert_eq!(never["send_allowed"], true);

    // Point in time: before anything, nothing; at the end, the live rows.
    let before = api.json("/v1/status?as_of=2026-03-01T11:00:00Z").await;
    assert_eq!(before["items"].as_array().unwrap().len(), 0);
    let end = api
        .json("/v1/status?as_of=2026-03-02T00:00:00Z&subscriber=%2B15550000001&scope=MG2")
        .await;
    assert_eq!(end["items"][0]["event_id"], latest.as_str());
    let history = api.json("/v1/history/%2B15550000001?limit=2").await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
    assert!(history["next_cursor"].is_string());

    // Errors are JSON and say what to fix.
    for (path, status, needle) in [
        ("/v1/events?limit=0", 400, "limit"),
        ("/v1/events?limit=10001", 400, "limit"),
        ("/v1/events?limit=ten", 400, "limit"),
        ("/v1/events?cursor=not-a-cursor", 400, "cursor"),
        ("/v1/events?type=unsubscribe", 400, "type"),
        ("/v1/events?since=yesterday", 400, "since"),
        ("/v1/events?limt=10", 400, "limt"),
        ("/v1/status?as_of=3%20March", 400, "as_of"),
        ("/v1/nothing-here", 404, "no such route"),
    ] {
        let (got, ctype, body) = api.get(path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(ctype.starts_with("application/json"), "{path}: {ctype}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"].is_string(), "{path}: {json}");
        assert!(
            json["detail"].as_str().unwrap().contains(needle),
            "{path}: {json}"
        );
    }
}

/// The document's schema for `template`'s GET answer `status` in `media`, as a validator.
fn response_schema(doc: &Value, template: &str, status: u16, media: &str) -> jsonschema::Validator {
    let pointer = format!(
        "/paths/{}/get/responses/{status}/content/{}/schema",
        template.replace('~', "~0").replace('/', "~1"),
        media.replace('/', "~1")
    );
    assert!(doc.pointer(&pointer).is_some(), "no schema at {pointer}");
    // The whole document is the root, so `#/components/...` references resolve.
    let mut root = doc.clone();
    let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
    root["$ref"] = Value::String(format!("#{fragment}"));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{pointer}: {e}"))
}

fn assert_valid(v: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the document: {errors:?}\n{instance}"
    );
}

async fn responses_match_the_openapi_document(db: Db) {
    let dead = DeadLetter {
        sequence_number: "9".into(),
        partition_key: Some("pk".into()),
        reason: "not JSON".into(),
        data: vec![0, 255],
    };
    let test = Positioned {
        sequence_number: "10".into(),
        value: TestEvent {
            test_id: "95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11".into(),
            account_sid: "AC1".into(),
            occurred_at: None,
        },
    };
    // Every change also goes to the outbox, so that deliveries list items.
    db.store
        .set_outbox_targets(vec![optout::store::OutboxTarget {
            name: "notify:0".into(),
            wants: Arc::new(|_| true),
        }]);
    fill_with(&db, vec![dead], vec![test]).await;
    let api = Api::start(&db).await;
    let (status, _, served) = api.get("/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&served).unwrap();
    let file: Value = serde_json::from_str(include_str!("../../schemas/openapi.json")).unwrap();
    assert_eq!(doc, file, "the served document is the file");
    assert_eq!(doc["openapi"], "3.1.0");

    let json = "application/json";
    for (path, template) in [
        ("/v1/status?limit=5", "/v1/status"),
        (
            "/v1/status?as_of=2026-03-01T12:10:00Z&limit=5",
            "/v1/status",
        ),
        (
            "/v1/status/%2B15550000001?scope=MG1",
            "/v1/status/{subscriber}",
        ),
        ("/v1/status/%2B19999999999", "/v1/status/{subscriber}"),
        ("/v1/history/%2B15550000001", "/v1/history/{subscriber}"),
        ("/v1/events?limit=5&type=start", "/v1/events"),
        ("/v1/dead-letters", "/v1/dead-letters"),
        ("/v1/test-events", "/v1/test-events"),
        ("/v1/changes?limit=5", "/v1/changes"),
        ("/v1/changes?limit=5&wait=1", "/v1/changes"),
        ("/v1/deliveries?limit=5", "/v1/deliveries"),
        (
            "/v1/deliveries?target=notify:0&state=pending",
            "/v1/deliveries",
        ),
    ] {
        let (status, ctype, body) = api.get(path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ctype.starts_with(json), "{path}: {ctype}");
        let v = response_schema(&doc, template, 200, json);
        assert_valid(&v, &serde_json::from_str(&body).unwrap(), path);
    }
    // Single items, whole, and 404s.
    let listed = api.json("/v1/dead-letters").await;
    let id = listed["items"][0]["id"].as_str().unwrap().to_string();
    for (path, template) in [
        (format!("/v1/dead-letters/{id}"), "/v1/dead-letters/{id}"),
        ("/v1/events/EV000001".to_string(), "/v1/events/{event_id}"),
    ] {
        let (status, ctype, body) = api.get(&path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ctype.starts_with(json), "{path}: {ctype}");
        let v = response_schema(&doc, template, 200, json);
        assert_valid(&v, &serde_json::from_str(&body).unwrap(), &path);
    }
    for (path, template) in [
        ("/v1/events/EVnone", "/v1/events/{event_id}"),
        (
            "/v1/dead-letters/WyJzIiwiYSIsIm5vbmUiXQ",
            "/v1/dead-letters/{id}",
        ),
    ] {
        let (status, _, body) = api.get(path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        let v = response_schema(&doc, template, 404, json);
        assert_valid(&v, &serde_json::from_str(&body).unwrap(), path);
    }
    for (path, template) in [
        ("/v1/status", "/v1/status"),
        ("/v1/events", "/v1/events"),
        ("/v1/history/%2B15550000001", "/v1/history/{subscriber}"),
        ("/v1/dead-letters", "/v1/dead-letters"),
        ("/v1/test-events", "/v1/test-events"),
        ("/v1/deliveries", "/v1/deliveries"),
    ] {
        let (status, ctype, body) = api.get(path, Some("application/x-ndjson")).await;
        assert_eq!(
            (status, ctype.as_str()),
            (200, "application/x-ndjson"),
            "{path}"
        );
        let v = response_schema(&doc, template, 200, "application/x-ndjson");
        let mut lines = 0;
        for line in body.lines() {
            assert_valid(&v, &serde_json::from_str(line).unwrap(), path);
            lines += 1;
        }
        assert!(lines > 0, "{path} streamed nothing");
    }
    for (path, template, status, token) in [
        ("/v1/events?limit=0", "/v1/events", 400, Some(TOKEN)),
        ("/v1/status?as_of=never", "/v1/status", 400, Some(TOKEN)),
        ("/v1/changes?wait=26", "/v1/changes", 400, Some(TOKEN)),
        ("/v1/changes?cursor=bm9uZQ", "/v1/changes", 400, Some(TOKEN)),
        (
            "/v1/deliveries?state=lost",
            "/v1/deliveries",
            400,
            Some(TOKEN),
        ),
        ("/v1/changes", "/v1/changes", 401, None),
        ("/v1/events", "/v1/events", 401, None),
        (
            "/v1/status/%2B1",
            "/v1/status/{subscriber}",
            401,
            Some("wrong"),
        ),
    ] {
        let (got, _, body) = api.get_as(path, None, token).await;
        assert_eq!(got, status, "{path}: {body}");
        let v = response_schema(&doc, template, status, json);
        assert_valid(&v, &serde_json::from_str(&body).unwrap(), path);
    }
}

/// A client that opens a connection and never finishes its headers (or sits idle on a
/// keep-alive connection) is disconnected by the server, instead of holding it forever.
#[tokio::test]
async fn a_client_that_never_sends_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = support_db::sqlite().await;
    let api = Api::start(&db).await;
    let addr = api.base.trim_start_matches("http://").to_string();
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for conn in [&mut idle, &mut slow] {
        let mut buf = Vec::new();
        // The server's deadline is 10 s; a minute only bounds a hung test.
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            conn.read_to_end(&mut buf),
        )
        .await
        .expect("the server closed the connection");
        assert!(read.is_ok() || buf.is_empty(), "{read:?}");
    }
}
