//! Twilio-shaped records for the scenarios: inbound-message CloudEvents, the shared fixtures,
//! ordinary traffic, and a steady stream of opt events whose final tables are known.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

/// A Twilio inbound-message CloudEvent, built field by field instead of an eight-argument call:
/// `Inbound::new("EZ1", "+15550000001").body("STOP").opt_out_type("STOP").build()`.
/// Defaults: sent to +15559870002 without a messaging service, an empty body, no `optOutType`,
/// at 2026-03-01T10:00:00Z, schema version 5.
#[derive(Debug, Clone)]
pub struct Inbound {
    id: String,
    from: String,
    to: String,
    service: Option<String>,
    body: String,
    opt_out_type: Option<String>,
    timestamp: String,
    version: u32,
}

impl Inbound {
    /// Event `id` (its message SID is derived from it) from subscriber `from`.
    pub fn new(id: &str, from: &str) -> Self {
        Inbound {
            id: id.into(),
            from: from.into(),
            to: "+15559870002".into(),
            service: None,
            body: String::new(),
            opt_out_type: None,
            timestamp: "2026-03-01T10:00:00Z".into(),
            version: 5,
        }
    }

    /// The sender (the business number) the message went to.
    pub fn to(mut self, to: &str) -> Self {
        self.to = to.into();
        self
    }

    /// `messagingServiceSid`, the opt-out scope when present.
    pub fn service<'a>(mut self, sid: impl Into<Option<&'a str>>) -> Self {
        self.service = sid.into().map(Into::into);
        self
    }

    /// The message text.
    pub fn body(mut self, body: &str) -> Self {
        self.body = body.into();
        self
    }

    /// Twilio's `optOutType` (absent unless set).
    pub fn opt_out_type<'a>(mut self, t: impl Into<Option<&'a str>>) -> Self {
        self.opt_out_type = t.into().map(Into::into);
        self
    }

    /// A keyword message Twilio flagged: body and `optOutType` both `kind` (STOP, START, HELP).
    pub fn keyword(self, kind: &str) -> Self {
        self.body(kind).opt_out_type(kind)
    }

    /// `data.timestamp` and the envelope's `time`.
    pub fn at(mut self, timestamp: &str) -> Self {
        self.timestamp = timestamp.into();
        self
    }

    /// The schema version in `dataschema`.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The record's bytes, as Twilio writes them.
    pub fn build(&self) -> Vec<u8> {
        let (id, from, to, body, timestamp, version) = (
            self.id.as_str(),
            self.from.as_str(),
            self.to.as_str(),
            self.body.as_str(),
            self.timestamp.as_str(),
            self.version,
        );
        let (service, opt_out_type) = (self.service.as_deref(), self.opt_out_type.as_deref());
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
    let kind = if (i / 40).is_multiple_of(2) {
        "STOP"
    } else {
        "START"
    };
    let ts = chrono::DateTime::from_timestamp(1_772_366_400 + i as i64, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Inbound::new(&format!("EZw{i:08}"), &subscriber)
        .service("MGw")
        .keyword(kind)
        .at(&ts)
        .build()
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
