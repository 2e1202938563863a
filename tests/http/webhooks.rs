//! Twilio's webhooks in process, over real HTTP, on both backends: every request signed by
//! Twilio's own helper library (tests/common/twilio.rs), never by optout's code.
//!
//! - the library's signatures pass, in every form Twilio sends: repeated and unknown
//!   parameters, HMAC-SHA256 with the signing-settings header, either token of a rotation, a
//!   single CloudEvent or a batch, the URL with and without its port;
//! - tampering with the URL, a parameter, the body, `bodySHA256` or the token, and a signature
//!   made for another host, are refused with 403 and store nothing;
//! - a token tied to an account signs only that account; Basic credentials stand in for a
//!   signature on the event sink; without the token file the routes answer 404.
//!
//! Bad input, retries and duplicates are in `webhook_input.rs`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use optout::http::{ApiAuth, AppState};
use optout::ingest::webhook::{AuthTokens, BasicCredentials};
use optout::store::query::TestEventFilter;
use tokio_util::sync::CancellationToken;

use crate::common::db::Db;
use crate::common::twilio::{self, Payload, Request, ToSign};
use crate::common::webhooks::*;

both_backends! {
    twilio_s_signatures_pass_and_store_one_event_each;
    tampering_is_refused_and_stores_nothing;
}

/// Message `n`, a STOP Advanced Opt-Out flagged, as the Messaging webhook posts it.
fn stop_form(n: u32) -> Payload {
    form(n, "Stop", Some("STOP"))
}

/// The same message as an Event Streams CloudEvent.
fn stop_event(n: u32) -> String {
    cloud_event_text(n, "STOP")
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
