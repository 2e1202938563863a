//! Unit tests of `classify` on hand-written records (fixture files are tested in tests/decode/decoder.rs).

use super::*;

const ON: DecodeOptions = DecodeOptions {
    infer_keywords: true,
    revocations: crate::event::Revocations::Off,
};
const OFF: DecodeOptions = DecodeOptions {
    infer_keywords: false,
    revocations: crate::event::Revocations::Off,
};
const SCHEMA: &str = "https://events-schemas.twilio.com/Messaging.InboundMessageV1/";
const DATA: &str = r#""accountSid":"AC1","from":"+15551230001","to":"+15559870002","timestamp":"2026-03-01T12:00:04.512Z""#;

/// An inbound-message record with schema `version` and extra `data` members.
fn inbound(version: &str, extra: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","type":"{INBOUND_MESSAGE_TYPE}","source":"/s","id":"EZ1","dataschema":"{SCHEMA}{version}","data":{{{DATA}{extra}}}}}"#
    )
}

fn opt(outcome: Outcome) -> OptEvent {
    match outcome {
        Outcome::Opt(e) => e,
        other => panic!("expected an opt event, got {other:?}"),
    }
}

fn dead(outcome: Outcome) -> String {
    match outcome {
        Outcome::Dead(reason) => reason,
        other => panic!("expected a dead letter, got {other:?}"),
    }
}

#[test]
fn opt_out_type_in_any_case_whatever_the_version() {
    for (version, value, expected) in [
        ("5", "STOP", OptOutType::Stop),
        ("6", "start", OptOutType::Start),
        ("4", "Help", OptOutType::Help),
        ("1", "sToP", OptOutType::Stop),
    ] {
        let e = opt(classify(
            inbound(version, &format!(r#","optOutType":"{value}""#)).as_bytes(),
            OFF,
        ));
        assert_eq!((e.opt_out_type, e.inferred), (expected, false));
        assert_eq!(e.schema_version, version.parse().ok());
    }
}

#[test]
fn inference_only_below_version_5_and_only_when_asked() {
    let v4 = inbound("4", r#","body":"  sToP ""#);
    assert_eq!(
        classify(v4.as_bytes(), OFF),
        Outcome::Skip(Skip::NotOptKeyword)
    );
    let e = opt(classify(v4.as_bytes(), ON));
    assert_eq!((e.opt_out_type, e.inferred), (OptOutType::Stop, true));
    let v5 = inbound("5", r#","body":"STOP","optOutType":null"#);
    assert_eq!(
        classify(v5.as_bytes(), ON),
        Outcome::Skip(Skip::NotOptKeyword)
    );
    let unknown = inbound("latest", r#","body":"info""#);
    assert_eq!(
        opt(classify(unknown.as_bytes(), ON)).opt_out_type,
        OptOutType::Help
    );
    let spaced = inbound("4", r#","body":"OPT OUT""#);
    assert_eq!(
        classify(spaced.as_bytes(), ON),
        Outcome::Skip(Skip::NotOptKeyword)
    );
    let not_text = inbound("4", r#","body":5"#);
    assert_eq!(
        classify(not_text.as_bytes(), ON),
        Outcome::Skip(Skip::NotOptKeyword)
    );
}

#[test]
fn nested_keys_do_not_leak_to_the_top_level() {
    // A receipt whose data (and an extension) carry keys named like envelope attributes.
    let record = format!(
        r#"{{"ext":{{"type":"{INBOUND_MESSAGE_TYPE}","id":""}},"specversion":"1.0","type":"com.twilio.messaging.message.sent","source":"/s","id":"EZ2","data":{{"type":"{TEST_EVENT_TYPE}","optOutType":"STOP","data":{{"specversion":"0.3"}}}}}}"#
    );
    assert_eq!(
        classify(record.as_bytes(), ON),
        Outcome::Skip(Skip::OtherType)
    );
}

#[test]
fn escapes_unicode_and_duplicates() {
    // An escaped key is its decoded name; duplicate keys: the last one wins.
    let record = format!(
        r#"{{"type":"other","\u0074ype":"{INBOUND_MESSAGE_TYPE}","specversion":"1.0","source":"/s","id":"EZ\u0033","data":{{{DATA},"optOutType":"HELP","body":"x","body":"caf\u00e9 \"\ud83d\ude00\" 😊","\u0066rom":"whatsapp:+447700900123"}}}}"#
    );
    let e = opt(classify(record.as_bytes(), OFF));
    assert_eq!(e.event_id, "EZ3");
    assert_eq!(e.body.as_deref(), Some("café \"😀\" 😊"));
    assert_eq!(e.subscriber, "whatsapp:+447700900123");
    assert_eq!(e.opt_out_type, OptOutType::Help);
}

#[test]
fn data_as_a_string_for_every_type() {
    let inner = format!(r#"{{{DATA},"optOutType":"STOP","messagingServiceSid":"MG1"}}"#);
    let quoted = serde_json::to_string(&inner).expect("a string serialises");
    let record = format!(
        r#"{{"specversion":"1.0","type":"{INBOUND_MESSAGE_TYPE}","source":"/s","id":"EZ1","data":{quoted}}}"#
    );
    let e = opt(classify(record.as_bytes(), OFF));
    assert_eq!((e.scope(), e.schema_version), ("MG1", None));
    let junk = record.replace("\\\"MG1\\\"}", "\\\"MG1\\\"} x");
    assert!(dead(classify(junk.as_bytes(), OFF)).starts_with("no usable data: "));
    let test = format!(
        r#"{{"specversion":"1.0","type":"{TEST_EVENT_TYPE}","source":"Sink","id":"AC1","time":"2026-03-01T11:58:00Z","data":"{{\"test_id\": \"t-1\"}}"}}"#
    );
    let Outcome::Test(t) = classify(test.as_bytes(), OFF) else {
        panic!("expected a test event")
    };
    assert_eq!((t.test_id.as_str(), t.account_sid.as_str()), ("t-1", "AC1"));
    assert_eq!(t.occurred_at, parse_timestamp("2026-03-01T11:58:00Z"));
}

#[test]
fn scope_is_the_service_else_the_sender() {
    let with = opt(classify(
        inbound("5", r#","optOutType":"STOP","messagingServiceSid":"MG9""#).as_bytes(),
        OFF,
    ));
    assert_eq!(with.scope(), "MG9");
    let empty = opt(classify(
        inbound("5", r#","optOutType":"STOP","messagingServiceSid":"""#).as_bytes(),
        OFF,
    ));
    assert_eq!(
        (empty.scope(), empty.messaging_service_sid.as_deref()),
        ("+15559870002", Some(""))
    );
    let without = opt(classify(
        inbound("5", r#","optOutType":"STOP""#).as_bytes(),
        OFF,
    ));
    assert_eq!(without.scope(), "+15559870002");
}

#[test]
fn dead_letter_reasons_start_with_their_category() {
    let cases = [
        ("".to_owned(), "not JSON: "),
        ("[1]".to_owned(), "not JSON: "),
        (r#"{"a":1} x"#.to_owned(), "not JSON: "),
        (
            r#"{"specversion":"1.0","type":"t","source":"s"}"#.to_owned(),
            "not a CloudEvent: ",
        ),
        (
            r#"{"specversion":"0.3","type":"t","source":"s","id":"1"}"#.to_owned(),
            "not a CloudEvent: ",
        ),
        (
            r#"{"specversion":"1.0","type":7,"source":"s","id":"1"}"#.to_owned(),
            "not a CloudEvent: ",
        ),
        (
            inbound("5", "").replace(r#","data":{"#, r#","dat":{"#),
            "no usable data: ",
        ),
        (
            inbound("5", r#","optOutType":"UNSUBSCRIBE""#),
            "unknown optOutType: ",
        ),
        (inbound("5", r#","optOutType":"""#), "unknown optOutType: "),
        (inbound("5", r#","optOutType":1"#), "unknown optOutType: "),
        (
            inbound("5", r#","optOutType":"STOP","from":"""#),
            "missing field: ",
        ),
        (
            inbound("5", r#","optOutType":"STOP","to":null"#),
            "missing field: ",
        ),
        (
            inbound("5", r#","optOutType":"STOP","timestamp":"yesterday""#),
            "bad timestamp: ",
        ),
        (
            inbound(
                "5",
                r#","optOutType":"STOP","timestamp":"0000-12-31T00:00:00Z""#,
            ),
            "bad timestamp: year outside 0001-9999",
        ),
        (
            inbound(
                "5",
                r#","optOutType":"STOP","timestamp":"9999-12-31T23:30:00-01:00""#,
            ),
            "bad timestamp: year outside 0001-9999",
        ),
        // The reassigned-number event goes through the same range check: year 0 was once
        // stored from it (the fuzzer found it), and PostgreSQL refuses year 0.
        (
            format!(
                r#"{{"specversion":"1.0","type":"{REASSIGNED_NUMBER_TYPE}","source":"1","id":"1","data":{{"timestamp":"0000-01-01T00:00:00Z","account_sid":"AC1","from_number":"+15559870002","to_number":"+15551230001","consent_operation":"opt-out-created"}}}}"#
            ),
            "bad timestamp: year outside 0001-9999",
        ),
        (
            format!(
                r#"{{"specversion":"1.0","type":"{TEST_EVENT_TYPE}","source":"Sink","id":"AC1","data":{{}}}}"#
            ),
            "no test_id: ",
        ),
    ];
    for (record, category) in cases {
        let reason = dead(classify(record.as_bytes(), ON));
        assert!(reason.starts_with(category), "{record}: {reason}");
    }
}

#[test]
fn truncations_and_byte_flips_never_panic_nor_pass_broken_json() {
    let record = inbound("5", r#","optOutType":"STOP","body":"Stop \"now\" 😊""#);
    let bytes = record.as_bytes();
    assert!(matches!(classify(bytes, OFF), Outcome::Opt(_)));
    for end in 0..bytes.len() {
        let reason = dead(classify(&bytes[..end], ON));
        assert!(reason.starts_with("not JSON: "), "{end}: {reason}");
    }
    // A flipped byte either leaves valid JSON (then any verdict but a changed opt type: the
    // flip may land in a value) or breaks it (then a "not JSON" dead letter, never an event),
    // with serde_json as the independent judge of validity.
    let (mut opts, mut deads) = (0, 0);
    for i in 0..bytes.len() {
        for flip in [0x01, 0x20, 0x80] {
            let mut b = bytes.to_vec();
            b[i] ^= flip;
            let outcome = classify(&b, ON);
            match outcome {
                Outcome::Opt(_) => opts += 1,
                Outcome::Dead(_) => deads += 1,
                _ => {}
            }
            match serde_json::from_slice::<serde_json::Value>(&b) {
                Err(_) => {
                    let reason = dead(outcome);
                    assert!(
                        reason.starts_with("not JSON: "),
                        "byte {i} ^ {flip:#x}: {reason}"
                    );
                }
                Ok(_) => {
                    if let Outcome::Opt(ev) = &outcome {
                        assert_eq!(ev.opt_out_type, OptOutType::Stop, "byte {i} ^ {flip:#x}");
                    }
                }
            }
        }
    }
    // Both kinds occur: flips in values keep the event, flips in the structure lose it.
    assert!(
        opts > 0 && deads > 0,
        "{opts} opt events, {deads} dead letters"
    );
}

#[test]
fn schema_versions_and_timestamps() {
    assert_eq!(schema_version(&format!("{SCHEMA}5")), Some(5));
    assert_eq!(
        schema_version("https://events-schemas.twilio.com/EventStreams.TestSink/1.json"),
        Some(1)
    );
    for bad in [
        "",
        "https://x/",
        "https://x/v5",
        "https://x/+5",
        "https://x/5.JSON",
        "https://x/99999999999",
    ] {
        assert_eq!(schema_version(bad), None, "{bad}");
    }
    let utc = parse_timestamp("2026-03-01T12:00:04.512Z");
    assert!(utc.is_some());
    assert_eq!(parse_timestamp("2026-03-01T13:00:04.512+01:00"), utc);
    assert_eq!(parse_timestamp("2026-03-01T13:00:04.512+0100"), utc);
    assert_eq!(parse_timestamp("2026-03-01 12:00:04.512Z"), utc);
    assert_eq!(parse_timestamp("2026-03-01T12:00:04"), None);
    for (edge, storable) in [
        ("0001-01-01T00:00:00Z", true),
        ("9999-12-31T23:59:59.999999Z", true),
        ("0000-12-31T23:59:59Z", false),
        ("0001-01-01T00:30:00+01:00", false),
        ("9999-12-31T23:30:00-01:00", false),
    ] {
        let t = parse_timestamp(edge).unwrap();
        assert_eq!(in_storable_range(t), storable, "{edge}");
    }
    assert_eq!(OptOutType::parse("hElP"), Some(OptOutType::Help));
    assert_eq!(OptOutType::parse(" STOP"), None);
    assert_eq!(OptOutType::Start.as_str(), "START");
}
