//! Twilio-shaped records for the scenarios: inbound-message CloudEvents, the shared fixtures,
//! ordinary traffic, and a steady stream of opt events whose final tables are known.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

/// A Twilio inbound-message CloudEvent (schema `version`), with `optOutType` when given.
#[allow(clippy::too_many_arguments)]
pub fn inbound(
    id: &str,
    from: &str,
    to: &str,
    service: Option<&str>,
    body: &str,
    opt_out_type: Option<&str>,
    timestamp: &str,
    version: u32,
) -> Vec<u8> {
    let mut data = json!({
        "messageSid": format!("SM{}", &id[2..]),
        "timestamp": timestamp,
        "accountSid": "AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a",
        "eventName": "com.twilio.messaging.inbound-message.received",
        "from": from,
        "to": to,
        "body": body,
        "numMedia": 0,
        "numSegments": 1,
        "recipients": [],
    });
    if let Some(s) = service {
        data["messagingServiceSid"] = json!(s);
    }
    if let Some(t) = opt_out_type {
        data["optOutType"] = json!(t);
    }
    serde_json::to_vec(&json!({
        "specversion": "1.0",
        "type": "com.twilio.messaging.inbound-message.received",
        "source": "/2010-04-01/Accounts/AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a/Messages.json",
        "id": id,
        "dataschema": format!("https://events-schemas.twilio.com/Messaging.InboundMessageV1/{version}"),
        "datacontenttype": "application/json",
        "time": timestamp,
        "data": data,
    }))
    .unwrap()
}

/// A shared example payload from `tests/fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    serde_json::to_vec(&v).unwrap() // compact, as Twilio writes records
}

/// `n` records of ordinary traffic (delivery receipts, plain messages): no opt events.
pub fn filler(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut synth = optout::synth::Synth::new(optout::synth::MixOptions {
        seed,
        opt_ratio: 0.0,
        ..Default::default()
    });
    (0..n).map(|_| synth.next_record().1).collect()
}

/// Random partition keys, so records spread over every shard.
pub fn keyed(records: Vec<Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    records
        .into_iter()
        .map(|r| (format!("{:032x}", fastrand::u128(..)), r))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A steady stream of opt events whose final tables are known

/// The `i`-th opt event of a steady stream: 40 subscribers alternating STOP and START, one
/// second apart, so the expected final status is known.
pub fn opt_event(i: usize) -> Vec<u8> {
    let subscriber = format!("+1555200{:04}", i % 40);
    let (body, t) = if (i / 40).is_multiple_of(2) {
        ("STOP", "STOP")
    } else {
        ("START", "START")
    };
    let ts = chrono::DateTime::from_timestamp(1_772_366_400 + i as i64, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    inbound(
        &format!("EZw{i:08}"),
        &subscriber,
        "+15559870002",
        Some("MGw"),
        body,
        Some(t),
        &ts,
        5,
    )
}

/// What the tables must say after events `0..n`.
pub fn expected_status(n: usize) -> BTreeMap<String, (String, String)> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        let status = if (i / 40).is_multiple_of(2) {
            "opted_out"
        } else {
            "opted_in"
        };
        m.insert(
            format!("+1555200{:04}", i % 40),
            (status.to_string(), format!("EZw{i:08}")),
        );
    }
    m
}
