//! A slow, obviously-correct classifier over `serde_json::Value`. The tests that hold the fast
//! decoder to it are in tests/decode/decoder.rs; the fuzzer (tests/decode/fuzz/) uses it as its oracle.

use chrono::{DateTime, Utc};
use optout::event::{
    DecodeOptions, Detection, INBOUND_MESSAGE_TYPE, OptEvent, OptOutType, Outcome,
    REASSIGNED_NUMBER_TYPE, Skip, TEST_EVENT_TYPE, TestEvent, TimeSource,
};
use serde_json::{Map, Value};

const KEYWORDS: [(&str, OptOutType); 13] = [
    ("stop", OptOutType::Stop),
    ("stopall", OptOutType::Stop),
    ("unsubscribe", OptOutType::Stop),
    ("cancel", OptOutType::Stop),
    ("end", OptOutType::Stop),
    ("quit", OptOutType::Stop),
    ("revoke", OptOutType::Stop),
    ("optout", OptOutType::Stop),
    ("start", OptOutType::Start),
    ("yes", OptOutType::Start),
    ("unstop", OptOutType::Start),
    ("help", OptOutType::Help),
    ("info", OptOutType::Help),
];

/// An identity value every backend can store and index: no NUL, at most 512 bytes.
fn storable_id(v: &str) -> bool {
    !v.contains('\u{0}') && v.len() <= 512
}

fn dead(category: &str) -> Outcome {
    Outcome::Dead(format!("{category}: (reference)"))
}

fn string<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// A timestamp every backend stores: parseable, and a year from 0001 to 9999 in UTC.
fn timestamp(s: &str) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.to_utc())
        .filter(|t| (1..=9999).contains(&t.year()))
}

fn version(dataschema: &str) -> Option<u32> {
    let last = dataschema.split('/').next_back()?;
    let digits = last.strip_suffix(".json").unwrap_or(last);
    let all_digits = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    all_digits.then(|| digits.parse().ok()).flatten()
}

/// The rules of docs/semantics.md, written the slow and plain way.
pub fn reference(bytes: &[u8], opts: DecodeOptions) -> Outcome {
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(bytes) else {
        return dead("not JSON");
    };
    for key in ["id", "type", "source", "specversion"] {
        if string(&top, key).is_none_or(str::is_empty) {
            return dead("not a CloudEvent");
        }
    }
    if string(&top, "specversion") != Some("1.0") {
        return dead("not a CloudEvent");
    }
    let id = string(&top, "id").unwrap_or_default();
    let ty = string(&top, "type").unwrap_or_default();
    if ![
        INBOUND_MESSAGE_TYPE,
        TEST_EVENT_TYPE,
        REASSIGNED_NUMBER_TYPE,
    ]
    .contains(&ty)
    {
        return Outcome::Skip(Skip::OtherType);
    }
    let data = match top.get("data") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => return dead("no usable data"),
        },
        _ => return dead("no usable data"),
    };
    if ty == TEST_EVENT_TYPE {
        return match string(&data, "test_id") {
            Some(t) if !t.is_empty() && (!storable_id(t) || !storable_id(id)) => {
                dead("unstorable field")
            }
            Some(t) if !t.is_empty() => Outcome::Test(TestEvent {
                test_id: t.to_owned(),
                account_sid: id.to_owned(),
                occurred_at: string(&top, "time").and_then(timestamp),
            }),
            _ => dead("no test_id"),
        };
    }
    let schema_version = string(&top, "dataschema").and_then(version);
    if ty == REASSIGNED_NUMBER_TYPE {
        return reassigned(id, &data, schema_version);
    }
    let (opt_out_type, detection, rule) = match data.get("optOutType") {
        None | Some(Value::Null) => {
            let may_infer = opts.infer_keywords && schema_version.is_none_or(|v| v < 5);
            // ASCII case only, as documented (Unicode lower-casing maps the Kelvin sign to `k`).
            let body = string(&data, "body");
            let trimmed = body.map(|b| b.trim().to_ascii_lowercase());
            let keyword = trimmed.and_then(|b| KEYWORDS.iter().find(|(k, _)| *k == b));
            // Phrases: the rules without their prefilter, so the fuzzer also checks that the
            // prefilter never drops a body the rules match.
            let phrase = opts
                .revocations
                .rules()
                .and_then(|r| body.and_then(|b| r.detect_unfiltered(b)));
            match (keyword, phrase) {
                (Some(&(_, t)), _) if may_infer => (t, Detection::Keyword, None),
                (_, Some(rule)) => (
                    OptOutType::Stop,
                    Detection::Phrase,
                    Some(rule.id().to_owned()),
                ),
                _ => return Outcome::Skip(Skip::NotOptKeyword),
            }
        }
        // ASCII case only: Unicode upper-casing maps "ſtop" and "ﬆart" to STOP and START.
        Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
            "STOP" => (OptOutType::Stop, Detection::Twilio, None),
            "START" => (OptOutType::Start, Detection::Twilio, None),
            "HELP" => (OptOutType::Help, Detection::Twilio, None),
            _ => return dead("unknown optOutType"),
        },
        Some(_) => return dead("unknown optOutType"),
    };
    let mut required = ["accountSid", "from", "to", "timestamp"].map(|k| string(&data, k));
    if required.iter().any(|v| v.is_none_or(str::is_empty)) {
        return dead("missing field");
    }
    let [account, from, to, ts] = required
        .each_mut()
        .map(|v| v.unwrap_or_default().to_owned());
    let Some(occurred_at) = timestamp(&ts) else {
        return dead("bad timestamp");
    };
    let optional = |k| string(&data, k).map(str::to_owned);
    let service = optional("messagingServiceSid");
    let ids = [
        Some(id),
        Some(&account),
        Some(&from),
        Some(&to),
        service.as_deref(),
    ];
    if !ids.into_iter().flatten().all(storable_id) {
        return dead("unstorable field");
    }
    // Free text keeps the event: U+0000 becomes U+FFFD.
    let text = |k| optional(k).map(|v: String| v.replace('\u{0}', "\u{FFFD}"));
    Outcome::Opt(OptEvent {
        event_id: id.to_owned(),
        opt_out_type,
        inferred: detection != Detection::Twilio,
        detection,
        rule,
        account_sid: account,
        messaging_service_sid: service,
        sender: to,
        subscriber: from,
        body: text("body"),
        message_sid: text("messageSid"),
        occurred_at,
        time_source: TimeSource::Twilio,
        schema_version,
    })
}

/// A reassigned-number event: an opt-out of `to_number` by `from_number` when Twilio says
/// `consent_operation` is `opt-out-created`; anything else is a dead letter.
fn reassigned(id: &str, data: &Map<String, Value>, schema_version: Option<u32>) -> Outcome {
    if string(data, "consent_operation") != Some("opt-out-created") {
        return dead("unknown consent_operation");
    }
    let fields = ["account_sid", "to_number", "from_number", "timestamp"].map(|k| string(data, k));
    if fields.iter().any(|v| v.is_none_or(str::is_empty)) {
        return dead("missing field");
    }
    let [account, to, from, ts] = fields.map(|v| v.unwrap_or_default().to_owned());
    let Some(occurred_at) = timestamp(&ts) else {
        return dead("bad timestamp");
    };
    let service = string(data, "messaging_service_sid").map(str::to_owned);
    let ids = [
        Some(id),
        Some(&account),
        Some(&to),
        Some(&from),
        service.as_deref(),
    ];
    if !ids.into_iter().flatten().all(storable_id) {
        return dead("unstorable field");
    }
    Outcome::Opt(OptEvent {
        event_id: id.to_owned(),
        opt_out_type: OptOutType::Stop,
        inferred: false,
        detection: Detection::Reassigned,
        rule: None,
        account_sid: account,
        messaging_service_sid: service,
        sender: from,
        subscriber: to,
        body: None,
        message_sid: None,
        occurred_at,
        time_source: TimeSource::Twilio,
        schema_version,
    })
}
