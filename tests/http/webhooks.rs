//! Twilio's webhooks in process, over real HTTP, on both backends: every request signed by
//! Twilio's own helper library (tests/common/twilio.rs), never by optout's code.
//!
//! - the library's signatures pass, in every form Twilio sends: repeated and unknown
//!   parameters, HMAC-SHA256 with the signing-settings header, either token of a rotation, a
//!   single CloudEvent or a batch, the URL with and without its port;
//! - tampering with the URL, a parameter, the body, `bodySHA256` or the token, and a signature
//!   made for another host, are refused with 403 and store nothing;
//! - bad input gets its code (413, 415, 400) and loses nothing: a signed body that cannot be
//!   read or decoded is kept as a dead letter, once however often Twilio retries;
//! - retries and concurrent duplicates are stored once; a token tied to an account signs only
//!   that account; Basic credentials stand in for a signature on the event sink.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use optout::event::DecodeOptions;
use optout::http::{ApiAuth, AppState};
use optout::ingest::webhook::{self, AuthTokens, BasicCredentials, Config, PublicUrl};
use optout::store::query::{DeadLetterFilter, TestEventFilter};
use optout::store::{EventFilter, EventRow, StatusFilter};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::db::Db;
use crate::common::records::Inbound;
use crate::common::twilio::{self, Payload, Request, ToSign};

both_backends! {
    twilio_s_signatures_pass_and_store_one_event_each;
    tampering_is_refused_and_stores_nothing;
    bad_input_gets_its_code_and_loses_nothing;
    retries_and_concurrent_duplicates_are_stored_once;
}

/// What Twilio calls: a TLS-terminating proxy in front of the test's plain listener.
const PUBLIC: &str = "https://optout.example.com";
const MESSAGING: &str = "/twilio/messaging";
const EVENTS: &str = "/twilio/events";

/// A running server with the webhook way in, and its store.
struct Hooks {
    addr: String,
    db: Db,
    stop: CancellationToken,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn config() -> Config {
    Config {
        tokens: AuthTokens::parse(&format!("{}\n{}\n", twilio::TOKEN, twilio::SECOND_TOKEN))
            .unwrap(),
        basic: BasicCredentials::default(),
        public_url: PublicUrl::parse(PUBLIC).unwrap(),
        options: DecodeOptions::default(),
        honor_revocations: false,
    }
}

/// Serves the real router with the webhook routes of `config` on a loopback port.
async fn start(db: Db, config: Config) -> Hooks {
    let stop = CancellationToken::new();
    let hooks = webhook::start(db.store.clone(), config, 4, stop.clone());
    let state = AppState {
        reader: db.reader.clone(),
        metrics: None,
        ready: Arc::new(AtomicBool::new(true)),
        auth: Arc::new(ApiAuth::new(vec!["api-token".into()], false)),
        health: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(optout::http::serve_on(
        listener,
        optout::app::http_app_with(state, Some(hooks.router)),
        stop.clone(),
    ));
    Hooks { addr, db, stop }
}

impl Hooks {
    async fn post(&self, r: &Request) -> twilio::Answer {
        twilio::post(&self.addr, r).await.unwrap()
    }

    async fn events(&self) -> Vec<EventRow> {
        self.db.reader.all(&EventFilter::default()).await.unwrap()
    }

    async fn dead_letters(&self) -> Vec<optout::store::DeadLetterRow> {
        self.db.reader.all(&DeadLetterFilter).await.unwrap()
    }
}

/// A message SID (34 characters) numbered `n`.
fn sid(n: u32) -> String {
    format!("SM{n:032x}")
}

/// A Messaging webhook form for a STOP Advanced Opt-Out flagged.
fn stop_form(n: u32) -> Payload {
    Payload::Form(twilio::inbound_params(
        &sid(n),
        &format!("+1555123{n:04}"),
        Some("MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c"),
        "Stop",
        Some("STOP"),
    ))
}

/// The same message as an Event Streams CloudEvent.
fn stop_event(n: u32) -> String {
    let mut e: serde_json::Value = serde_json::from_slice(
        &Inbound::new(&format!("EZ{n:032x}"), &format!("+1555123{n:04}"))
            .service("MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c")
            .keyword("STOP")
            .build(),
    )
    .unwrap();
    e["data"]["messageSid"] = json!(sid(n));
    e.to_string()
}

async fn twilio_s_signatures_pass_and_store_one_event_each(db: Db) {
    let h = start(db, config()).await;
    let mut sms = Vec::new();
    // Unknown, repeated and non-ASCII parameters are all signed and all checked.
    if let Payload::Form(mut p) = stop_form(1) {
        p.push(("AddOns".into(), r#"{"status":"successful"}"#.into()));
        p.push((
            "MediaUrl0".into(),
            "https://api.twilio.com/m?x=1&y=2".into(),
        ));
        p.push(("Repeated".into(), "b".into()));
        p.push(("Repeated".into(), "a".into()));
        p.push(("FromCity".into(), "SÃO PAULO ✓".into()));
        sms.push((MESSAGING, Payload::Form(p)));
    }
    // A plain body goes through revocation-phrase detection, as on Kinesis.
    sms.push((
        MESSAGING,
        Payload::Form(twilio::inbound_params(
            &sid(2),
            "+15551230002",
            None,
            "please stop texting me",
            None,
        )),
    ));
    // A message that is no opt keyword is answered and stores nothing.
    sms.push((
        MESSAGING,
        Payload::Form(twilio::inbound_params(
            &sid(3),
            "+15551230003",
            None,
            "see you at 5",
            None,
        )),
    ));
    // The URL Twilio calls may carry a query of its own.
    sms.push(("/twilio/messaging?tenant=a%20b&x=1", stop_form(4)));
    // Event Streams: one CloudEvent, a batch, and the sink's test event.
    let test_event =
        String::from_utf8(crate::common::records::fixture("sink-test-event.json")).unwrap();
    sms.push((EVENTS, Payload::Json(stop_event(5))));
    sms.push((
        EVENTS,
        Payload::Json(format!("[{},{}]", stop_event(6), test_event)),
    ));
    let requests = twilio::requests(PUBLIC, twilio::TOKEN, &sms);
    for (r, (path, _)) in requests.iter().zip(&sms) {
        let a = h.post(r).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        if path.starts_with(MESSAGING) {
            assert_eq!(a.content_type, "text/xml");
            assert_eq!(
                a.body,
                r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#
            );
        }
    }
    // HMAC-SHA256 (Twilio's webhook signing settings), the rotation's second token, and the
    // URL as signed with its port.
    let others = [
        (
            format!("{PUBLIC}{MESSAGING}"),
            stop_form(7),
            Some("HMAC_SHA256"),
            twilio::SECOND_TOKEN,
        ),
        (
            format!("{PUBLIC}:443{MESSAGING}"),
            stop_form(8),
            None,
            twilio::TOKEN,
        ),
        (
            format!("{PUBLIC}:443{EVENTS}"),
            Payload::Json(stop_event(9)),
            Some("HMAC_SHA256"),
            twilio::TOKEN,
        ),
    ];
    let to_sign: Vec<ToSign> = others
        .iter()
        .map(|(url, p, alg, token)| ToSign {
            token: token.to_string(),
            url: url.clone(),
            payload: p.clone(),
            algorithm: *alg,
        })
        .collect();
    for ((signed, (_, payload, alg, _)), n) in
        twilio::sign_all(&to_sign).iter().zip(&others).zip(7..)
    {
        assert!(signed.valid, "the library's own validate accepts it");
        let mut r = twilio::signed_request(signed, payload);
        if alg.is_some() {
            r = r.with_header(
                "X-Twilio-Webhooks-Signature-Settings",
                Some("key=webhooks_sharedkey_01jtest,algorithm=HMAC_SHA256"),
            );
        }
        let a = h.post(&r).await;
        assert_eq!(a.status, 200, "request {n}: {}", a.body);
    }
    let events = h.events().await;
    let by_sid = |n: u32| events.iter().find(|e| e.identity == sid(n));
    for n in [1, 4, 5, 6, 7, 8, 9] {
        let e = by_sid(n).unwrap_or_else(|| panic!("message {n} not stored: {events:#?}"));
        assert_eq!(
            (e.opt_out_type.as_str(), e.detection.as_str()),
            ("STOP", "twilio")
        );
    }
    let phrase = by_sid(2).expect("the revocation phrase");
    assert_eq!(
        (phrase.detection.as_str(), phrase.paths.as_str()),
        ("phrase", "messaging_webhook")
    );
    assert_eq!(phrase.time_source, "received");
    assert!(by_sid(3).is_none());
    assert_eq!(events.len(), 8, "{events:#?}");
    let sink = by_sid(5).unwrap();
    assert_eq!(
        (sink.paths.as_str(), sink.time_source.as_str()),
        ("events_webhook", "twilio")
    );
    assert_eq!(sink.occurred_at, "2026-03-01T10:00:00.000000Z");
    let tests = h.db.reader.all(&TestEventFilter).await.unwrap();
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0].test_id, "95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11");
    assert_eq!(tests[0].shard_id, EVENTS);
    assert!(h.dead_letters().await.is_empty());
}

async fn tampering_is_refused_and_stores_nothing(db: Db) {
    let h = start(db, config()).await;
    let sms = twilio::requests(PUBLIC, twilio::TOKEN, &[(MESSAGING, stop_form(1))]).remove(0);
    let sink = twilio::requests(
        PUBLIC,
        twilio::TOKEN,
        &[(EVENTS, Payload::Json(stop_event(2)))],
    )
    .remove(0);
    let elsewhere = twilio::requests(
        "https://other.example.com",
        twilio::TOKEN,
        &[(MESSAGING, stop_form(3))],
    );
    let wrong_token = twilio::requests(
        PUBLIC,
        "00000000000000000000000000000000",
        &[(MESSAGING, stop_form(4))],
    );
    let replace = |r: &Request, from: &str, to: &str| Request {
        body: String::from_utf8(r.body.clone())
            .unwrap()
            .replacen(from, to, 1)
            .into_bytes(),
        ..r.clone()
    };
    let mut cases: Vec<(&str, Request, &str)> = vec![
        (
            "a parameter changed",
            replace(&sms, "Body=Stop", "Body=STOP"),
            "bad_signature",
        ),
        (
            "a parameter added",
            replace(&sms, "Body=Stop", "Body=Stop&Extra=1"),
            "bad_signature",
        ),
        (
            "a parameter removed",
            replace(&sms, "&NumMedia=0", ""),
            "bad_signature",
        ),
        (
            "the URL changed",
            Request {
                target: format!("{MESSAGING}?x=1"),
                ..sms.clone()
            },
            "bad_signature",
        ),
        (
            "signed for another host",
            elsewhere[0].clone(),
            "bad_signature",
        ),
        ("another token", wrong_token[0].clone(), "bad_signature"),
        (
            "no signature",
            sms.clone().with_header("X-Twilio-Signature", None),
            "no_signature",
        ),
        (
            "an unknown algorithm",
            sms.clone().with_header(
                "X-Twilio-Webhooks-Signature-Settings",
                Some("algorithm=HMAC_MD5"),
            ),
            "bad_signature",
        ),
        (
            "SHA1 signature under an SHA256 setting",
            sms.clone().with_header(
                "X-Twilio-Webhooks-Signature-Settings",
                Some("algorithm=HMAC_SHA256"),
            ),
            "bad_signature",
        ),
        (
            "the body changed",
            replace(&sink, "STOP", "stop"),
            "bad_body_hash",
        ),
        (
            "bodySHA256 changed to match a new body",
            {
                let body = sink
                    .body
                    .iter()
                    .map(|&b| if b == b'S' { b's' } else { b })
                    .collect::<Vec<u8>>();
                let hash = optout::ingest::webhook::verify::body_sha256(&body);
                let (path, _) = sink.target.split_once('?').unwrap();
                Request {
                    target: format!("{path}?bodySHA256={hash}"),
                    body,
                    ..sink.clone()
                }
            },
            "bad_signature",
        ),
        (
            "no bodySHA256",
            Request {
                target: EVENTS.into(),
                ..sink.clone()
            },
            "bad_signature",
        ),
    ];
    // Nothing: not a request from Twilio.
    cases.push((
        "a bare POST",
        Request {
            headers: vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            ..sms.clone()
        },
        "no_signature",
    ));
    for (what, r, reason) in &cases {
        let a = h.post(r).await;
        assert_eq!(a.status, 403, "{what}: {}", a.body);
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["error"], *reason, "{what}");
    }
    assert!(h.events().await.is_empty());
    assert!(h.dead_letters().await.is_empty());
    // The untampered requests pass.
    assert_eq!(h.post(&sms).await.status, 200);
    assert_eq!(h.post(&sink).await.status, 200);
    assert_eq!(h.events().await.len(), 2);
}

async fn bad_input_gets_its_code_and_loses_nothing(db: Db) {
    let h = start(db, config()).await;
    // Too large: refused before the body is read (and after, when no length is declared).
    let huge = "x".repeat(webhook::MAX_BODY_BYTES + 1);
    let big = twilio::requests(PUBLIC, twilio::TOKEN, &[(EVENTS, Payload::Json(huge))]).remove(0);
    assert_eq!(h.post(&big).await.status, 413);
    // The wrong content type.
    let sms = twilio::requests(PUBLIC, twilio::TOKEN, &[(MESSAGING, stop_form(1))]).remove(0);
    let json_sms = sms
        .clone()
        .with_header("Content-Type", Some("application/json"));
    assert_eq!(h.post(&json_sms).await.status, 415);
    let sink = twilio::requests(
        PUBLIC,
        twilio::TOKEN,
        &[(EVENTS, Payload::Json(stop_event(2)))],
    )
    .remove(0);
    assert_eq!(
        h.post(&sink.clone().with_header("Content-Type", Some("text/plain")))
            .await
            .status,
        415
    );
    assert!(h.events().await.is_empty() && h.dead_letters().await.is_empty());

    // Signed but malformed: 400, and the bytes kept as a dead letter; a retry keeps them once.
    let signed = twilio::sign_all(&[
        ToSign {
            token: twilio::TOKEN.into(),
            url: format!("{PUBLIC}{EVENTS}"),
            payload: Payload::Json(r#"[{"specversion":"1.0","id":"EZ1""#.into()),
            algorithm: None,
        },
        ToSign {
            token: twilio::TOKEN.into(),
            url: format!("{PUBLIC}{EVENTS}"),
            payload: Payload::Json(r#"[{"specversion":"1.0","type":"com.twilio.messaging.inbound-message.received","source":"/s","id":"EZ2","data":{"optOutType":"STOP"}}]"#.into()),
            algorithm: None,
        },
    ]);
    let truncated = twilio::signed_request(&signed[0], &Payload::Json(String::new()));
    let truncated = Request {
        body: r#"[{"specversion":"1.0","id":"EZ1""#.as_bytes().to_vec(),
        ..truncated
    };
    for _ in 0..3 {
        let a = h.post(&truncated).await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(a.body.starts_with("not JSON: "), "{}", a.body);
    }
    // A form whose percent-encoding is broken: Twilio's library signs the decoded values a
    // lenient parser reads, so the signature passes and the body is refused as malformed.
    let mut form = twilio::inbound_params(&sid(3), "+15551230003", None, "100% sure", Some("STOP"));
    form.sort();
    let lenient = twilio::sign_all(&[ToSign {
        token: twilio::TOKEN.into(),
        url: format!("{PUBLIC}{MESSAGING}"),
        payload: Payload::Form(form.clone()),
        algorithm: None,
    }]);
    let raw: String = form
        .iter()
        .map(|(n, v)| format!("{n}={}", v.replace('+', "%2B").replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    let broken = Request {
        body: raw.into_bytes(),
        ..twilio::signed_request(&lenient[0], &Payload::Form(form))
    };
    for _ in 0..2 {
        let a = h.post(&broken).await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(a.body.starts_with("not a form: "), "{}", a.body);
    }
    // Well formed but undecodable: 200, and a dead letter with its raw bytes, once.
    let undecodable = twilio::signed_request(&signed[1], &Payload::Json(r#"[{"specversion":"1.0","type":"com.twilio.messaging.inbound-message.received","source":"/s","id":"EZ2","data":{"optOutType":"STOP"}}]"#.into()));
    for _ in 0..3 {
        assert_eq!(h.post(&undecodable).await.status, 200);
    }
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 3, "{dead:#?}");
    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| d.reason.split(':').next().unwrap())
        .collect();
    for want in ["not JSON", "not a form", "missing field"] {
        assert!(reasons.contains(&want), "{reasons:?}");
    }
    use base64::Engine as _;
    let kept = dead
        .iter()
        .find(|d| d.reason.starts_with("missing field"))
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&kept.data_base64)
        .unwrap();
    assert!(
        bytes.starts_with(br#"{"specversion":"1.0","type""#),
        "the event's own bytes"
    );
    assert_eq!(kept.shard_id, EVENTS);
    assert!(h.events().await.is_empty());
}

async fn retries_and_concurrent_duplicates_are_stored_once(db: Db) {
    let h = Arc::new(start(db, config()).await);
    let sms = twilio::requests(PUBLIC, twilio::TOKEN, &[(MESSAGING, stop_form(1))]).remove(0);
    for _ in 0..3 {
        assert_eq!(h.post(&sms).await.status, 200);
    }
    let sink = twilio::requests(
        PUBLIC,
        twilio::TOKEN,
        &[(EVENTS, Payload::Json(stop_event(2)))],
    )
    .remove(0);
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (h, r) = (
                h.clone(),
                if i % 2 == 0 {
                    sink.clone()
                } else {
                    sms.clone()
                },
            );
            tokio::spawn(async move { h.post(&r).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let events = h.events().await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let status = h.db.reader.all(&StatusFilter::default()).await.unwrap();
    assert_eq!(status.len(), 2);
    assert!(status.iter().all(|s| s.status == "opted_out"));
}

#[tokio::test]
async fn a_token_tied_to_an_account_signs_only_that_account() {
    let other = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cfg = config();
    cfg.tokens = AuthTokens::parse(&format!(
        "{} {}\n{other} {}\n",
        twilio::ACCOUNT,
        twilio::TOKEN,
        twilio::SECOND_TOKEN
    ))
    .unwrap();
    let h = start(crate::common::db::sqlite().await, cfg).await;
    // The account's own token: accepted. The other account's token on this account's
    // messages: refused, on both routes.
    let own = twilio::requests(
        PUBLIC,
        twilio::TOKEN,
        &[
            (MESSAGING, stop_form(1)),
            (EVENTS, Payload::Json(stop_event(2))),
        ],
    );
    let foreign = twilio::requests(
        PUBLIC,
        twilio::SECOND_TOKEN,
        &[
            (MESSAGING, stop_form(3)),
            (EVENTS, Payload::Json(stop_event(4))),
        ],
    );
    for r in &own {
        assert_eq!(h.post(r).await.status, 200);
    }
    for r in &foreign {
        let a = h.post(r).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(a.body.contains("wrong_account"), "{}", a.body);
    }
    assert_eq!(h.events().await.len(), 2);
}

#[tokio::test]
async fn basic_credentials_stand_in_for_a_signature_on_the_event_sink() {
    let mut cfg = config();
    cfg.basic = BasicCredentials::parse("twilio:s3cret-pass\n").unwrap();
    let h = start(crate::common::db::sqlite().await, cfg).await;
    let body = stop_event(1);
    let hash = optout::ingest::webhook::verify::body_sha256(body.as_bytes());
    let basic = |user: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user)
        )
    };
    let unsigned = Request {
        target: format!("{EVENTS}?bodySHA256={hash}"),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into_bytes(),
    };
    let a = h
        .post(
            &unsigned
                .clone()
                .with_header("Authorization", Some(&basic("twilio:wrong"))),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = h
        .post(
            &unsigned
                .clone()
                .with_header("Authorization", Some(&basic("twilio:s3cret-pass"))),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Still checked against the body when the URL carries its hash.
    let tampered = Request {
        body: stop_event(2).into_bytes(),
        ..unsigned.clone()
    };
    let a = h
        .post(&tampered.with_header("Authorization", Some(&basic("twilio:s3cret-pass"))))
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    // A signature over the URL with the credentials in it, as a sink URL carries them.
    let signed = twilio::sign_all(&[ToSign {
        token: twilio::TOKEN.into(),
        url: "https://twilio:s3cret-pass@optout.example.com/twilio/events".into(),
        payload: Payload::Json(stop_event(3)),
        algorithm: None,
    }]);
    let r = twilio::signed_request(&signed[0], &Payload::Json(stop_event(3)))
        .with_header("Authorization", Some(&basic("twilio:s3cret-pass")));
    assert_eq!(h.post(&r).await.status, 200);
    // Basic credentials are no way in on the Messaging webhook.
    let sms = Request {
        target: MESSAGING.into(),
        headers: vec![
            (
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("Authorization".into(), basic("twilio:s3cret-pass")),
        ],
        body: twilio::form_body(&twilio::inbound_params(
            &sid(4),
            "+15551230004",
            None,
            "STOP",
            Some("STOP"),
        )),
    };
    assert_eq!(h.post(&sms).await.status, 403);
    assert_eq!(h.events().await.len(), 2);
}

#[tokio::test]
async fn without_the_webhook_way_in_the_routes_answer_404() {
    let db = crate::common::db::sqlite().await;
    let state = AppState {
        reader: db.reader.clone(),
        metrics: None,
        ready: Arc::new(AtomicBool::new(true)),
        auth: Arc::new(ApiAuth::open()),
        health: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    tokio::spawn(optout::http::serve_on(
        listener,
        optout::app::http_app(state),
        stop.clone(),
    ));
    let sms = twilio::requests(PUBLIC, twilio::TOKEN, &[(MESSAGING, stop_form(1))]).remove(0);
    assert_eq!(twilio::post(&addr, &sms).await.unwrap().status, 404);
    stop.cancel();
}
