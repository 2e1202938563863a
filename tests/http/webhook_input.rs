//! Bad input and retries on Twilio's webhooks, in process, on both backends, with requests
//! signed by Twilio's own helper library:
//! - bad input gets its code (413, 415, 400) and loses nothing: a signed body that cannot be
//!   read or decoded is kept as a dead letter, once however often Twilio retries;
//! - retries and concurrent duplicates are stored once.

use std::sync::Arc;

use optout::ingest::webhook;
use optout::store::StatusFilter;

use crate::common::db::Db;
use crate::common::twilio::{self, Payload, Request, ToSign};
use crate::common::webhooks::*;

both_backends! {
    bad_input_gets_its_code_and_loses_nothing;
    retries_and_concurrent_duplicates_are_stored_once;
}

fn stop_form(n: u32) -> Payload {
    form(n, "Stop", Some("STOP"))
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
        &[(EVENTS, Payload::Json(cloud_event_text(2, "STOP")))],
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
    let mut form = twilio::inbound_params(&sid(3), &subscriber(3), None, "100% sure", Some("STOP"));
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
        &[(EVENTS, Payload::Json(cloud_event_text(2, "STOP")))],
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
