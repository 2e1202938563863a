//! Unit tests of the Consent API target: the items' fields, the correlation id, the form body
//! and the per-item answer.

use super::*;

pub(crate) fn change(subscriber: &str, detection: &str, status: &str) -> Change {
    Change {
        cursor: 1,
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        scope: "MG1".into(),
        messaging_service_sid: Some("MG1".into()),
        sender: "+15550001111".into(),
        subscriber: subscriber.into(),
        status: status.into(),
        send_allowed: status != "opted_out",
        reason: match detection {
            "phrase" => "phrase_revocation",
            "reassigned" => "reassigned_number",
            _ => "twilio_stop",
        }
        .into(),
        event_id: "ev1".into(),
        message_sid: Some("SM1".into()),
        opt_out_type: "STOP".into(),
        detection: detection.into(),
        rule: None,
        occurred_at: "2026-03-01T10:00:00Z".into(),
        origin_account_sid: None,
        origin_scope: None,
    }
}

fn target(mode: ConsentMode) -> ConsentTarget {
    let creds = Credentials::parse_file("AC0123456789abcdef0123456789abcdef SKk s").unwrap();
    ConsentTarget::new(
        ConsentConfig {
            mode,
            api_url: "http://127.0.0.1:9".parse().unwrap(),
            credentials: creds,
        },
        HttpClient::new().unwrap(),
        Arc::new(super::super::SystemClock),
    )
}

#[test]
fn modes_choose_what_is_pushed() {
    let phrase = change("+15551230000", "phrase", "opted_out");
    let stop = change("+15551230000", "twilio", "opted_out");
    let wa = change("whatsapp:+15551230000", "phrase", "opted_out");
    let reassigned = change("+15551230000", "reassigned", "opted_out");
    let off = target(ConsentMode::Off);
    assert!(!off.wants(&phrase));
    let rev = target(ConsentMode::Revocations);
    assert!(rev.wants(&phrase) && !rev.wants(&stop));
    assert_eq!(rev.skip_reason(&wa), Some("whatsapp"));
    let all = target(ConsentMode::All);
    assert!(all.wants(&phrase) && all.wants(&stop));
    assert!(all.wants(&change("+15551230000", "twilio", "opted_in")));
    assert_eq!(all.skip_reason(&reassigned), Some("reassigned"));
    let mut other = stop.clone();
    other.account_sid = "AC1111111111111111111111111111111f".into();
    assert_eq!(all.skip_reason(&other), Some("no_credentials"));
    // A Twilio STOP that reached another scope of the account: Twilio did not block it
    // there, so `revocations` pushes it (a reassigned number's still not).
    let mut reached = stop.clone();
    reached.reason = "account_opt_out".into();
    reached.origin_account_sid = Some(reached.account_sid.clone());
    reached.origin_scope = Some("MG2".into());
    assert!(rev.wants(&reached));
    let mut reached_reassigned = reached.clone();
    reached_reassigned.detection = "reassigned".into();
    assert_eq!(rev.skip_reason(&reached_reassigned), Some("reassigned"));
}

#[test]
fn items_carry_the_fields_twilio_documents_and_a_stable_correlation_id() {
    let item = Item {
        id: 7,
        target: NAME.into(),
        key: "k-1".into(),
        ordering_key: "o".into(),
        change: change("+15551230000", "phrase", "opted_out"),
        attempts: 3,
        created: std::time::SystemTime::UNIX_EPOCH,
    };
    let v = consent_item(&item);
    assert_eq!(v["contact_id"], "+15551230000");
    assert_eq!(v["sender_id"], "MG1");
    assert_eq!(v["status"], "opt-out");
    assert_eq!(v["source"], "opt-out-message");
    assert_eq!(v["date_of_consent"], "2026-03-01T10:00:00Z");
    let id = v["correlation_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(id, correlation_id("k-1"));
    assert_ne!(id, correlation_id("k-2"));
    let body = form_body(&[&item, &item]);
    let text = std::str::from_utf8(&body).unwrap();
    assert_eq!(text.matches("Items=").count(), 2);
}

#[test]
fn each_item_gets_its_own_error_code() {
    let mk = |key: &str| Item {
        id: 1,
        target: NAME.into(),
        key: key.into(),
        ordering_key: key.into(),
        change: change("+15551230000", "phrase", "opted_out"),
        attempts: 0,
        created: std::time::SystemTime::UNIX_EPOCH,
    };
    let (a, b, c) = (mk("a"), mk("b"), mk("c"));
    let body = serde_json::json!({"items": [
        {"correlation_id": correlation_id("a"), "error_code": 0, "error_messages": []},
        {"correlation_id": correlation_id("b"), "error_code": 30646,
         "error_messages": ["INVALID_CONTACT_ID"]},
    ]});
    let out = per_item(&[&a, &b, &c], body.to_string().as_bytes());
    assert_eq!(out[0], Outcome::Delivered);
    assert_eq!(
        out[1],
        Outcome::Failed {
            reason: "error_code 30646: INVALID_CONTACT_ID".into()
        }
    );
    assert!(matches!(out[2], Outcome::Retry { .. }));
}
