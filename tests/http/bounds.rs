//! Parameters are bounded and a client's mistake is a 400 on both backends, never a 503 with
//! the database's words: a list of 30,000 accounts, 101 accounts, `%00` in a subscriber (in
//! the query and in the path), a forged cursor holding a non-time or a year the backends
//! cannot store, and times outside 0001–9999.

use base64::Engine as _;
use serde_json::Value;

use super::api::Api;
use crate::common::db::Db;

both_backends! {
    client_mistakes_are_400_on_both_backends;
}

/// A cursor as the API encodes one, holding `key`.
fn forged(key: &[&str]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap())
}

async fn client_mistakes_are_400_on_both_backends(db: Db) {
    let api = Api::start(&db).await;
    let commas = ",".repeat(30_000);
    let many: Vec<String> = (0..101).map(|i| format!("AC{i}")).collect();
    let many = many.join(",");
    let cases = [
        (format!("/v1/status?account={commas}"), "8192-byte limit"),
        (format!("/v1/status?account={many}"), "at most 100"),
        (format!("/v1/status/%2B1555?account={many}"), "at most 100"),
        ("/v1/status?subscriber=%2B1%00".to_string(), "U+0000"),
        ("/v1/status?scope=MG%00".to_string(), "U+0000"),
        ("/v1/status/%2B1555%00".to_string(), "U+0000"),
        ("/v1/history/%2B1555%00".to_string(), "U+0000"),
        ("/v1/events?subscriber=%00".to_string(), "U+0000"),
        ("/v1/events/EV%00".to_string(), "U+0000"),
        (
            format!("/v1/events?cursor={}", forged(&["not a time", "EV1"])),
            "cursor",
        ),
        (
            format!(
                "/v1/events?cursor={}",
                forged(&["0000-01-01T00:00:00.000000Z", "EV1"])
            ),
            "cursor",
        ),
        (
            format!(
                "/v1/events?cursor={}",
                forged(&["2026-03-01T00:00:00.000000Z", "EV\u{0}"])
            ),
            "U+0000",
        ),
        (
            format!("/v1/status?cursor={}", forged(&["AC1", "MG\u{0}", "+1"])),
            "U+0000",
        ),
        (
            format!("/v1/dead-letters/{}", forged(&["s", "a\u{0}", "1"])),
            "U+0000",
        ),
        (
            "/v1/events?since=0000-01-01T00:00:00Z".to_string(),
            "0001 to 9999",
        ),
        (
            "/v1/status?as_of=%2B10000-01-01T00:00:00Z".to_string(),
            "0001 to 9999",
        ),
    ];
    for (path, needle) in cases {
        let (status, ctype, body) = api.get(&path, None).await;
        let shown = &path[..path.len().min(120)];
        assert_eq!(status, 400, "{shown}: {body}");
        assert!(ctype.starts_with("application/json"), "{shown}: {ctype}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "bad_request", "{shown}: {json}");
        let detail = json["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{shown}: {detail}");
        assert!(
            !detail.contains("database"),
            "{shown}: the database's words reached the client: {detail}"
        );
    }
    // Right at the bounds, the API answers.
    let hundred: Vec<String> = (0..100).map(|i| format!("AC{i}")).collect();
    let ok = api
        .json(&format!("/v1/status?account={}", hundred.join(",")))
        .await;
    assert!(ok["items"].as_array().unwrap().is_empty());
    let since = api
        .json("/v1/events?since=0001-01-01T00:00:00Z&limit=1")
        .await;
    assert!(since["items"].is_array());
}
