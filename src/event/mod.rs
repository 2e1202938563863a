//! Turns one record into exactly one [`Outcome`]: a Kinesis record or an Event Streams webhook
//! event (one Twilio CloudEvent as JSON, [`classify`]), or a Messaging webhook request (a form,
//! [`classify_messaging_form`]).
//!
//! Pure functions, no I/O, knows nothing of Kinesis, HTTP or SQL. [`classify`] is the hot path: a
//! single validating pass over the record with a hand-written scanner (`event::scan`) that borrows
//! slices and builds nothing, so the ~98% of records that are delivery receipts or ordinary
//! messages cost one scan. Owned strings are made only for opt events and test events.
//!
//! The rules (docs/semantics.md):
//! 1. `com.twilio.messaging.inbound-message.received` with `data.optOutType` STOP/START/HELP in
//!    any case is an opt event. Without `optOutType` (absent or null): schema version >= 5 is not
//!    an opt event; version < 5 or unknown is one only with `infer_keywords` and a body that,
//!    trimmed, is a default keyword (the event is then marked `inferred`, detection `keyword`).
//!    Then, any version, revocation phrases ([`revocation`], on by default): a body the active
//!    rules match is a STOP with detection `phrase` and the rule's id (also `inferred`).
//! 2. `data` may be an object or a JSON string holding one (inbound messages, reassigned
//!    numbers and test events; other types never look at `data`).
//! 3. Records that cannot be shown irrelevant are dead letters: see [`Outcome::Dead`].
//! 4. Other event types are skipped, once the record is known to be JSON and a CloudEvent.
//! 5. `com.twilio.eventstreams.test-event` yields the sink's `test_id`.
//! 6. `com.twilio.messaging.reassigned-number.detected` with `consent_operation`
//!    `opt-out-created` is a STOP with detection `reassigned` (`reassigned.rs` has the mapping).
//! 7. A Messaging webhook form is an inbound message with Twilio's `OptOutType`, or none; it has
//!    no schema version and no event time, so its receive time stands in (`messaging.rs`).
//!
//! Choices beyond those rules: a record must be JSON exactly as `serde_json::Value` accepts it, even
//! inside values nobody reads (no leniency, so a damaged record is never a silent skip); duplicate
//! keys, last one wins (as `serde_json::Value`); escaped keys are decoded before matching; `specversion` must be exactly "1.0" (0.3 is a dead letter, Twilio
//! sends only 1.0); `id`, `type` and `source` must be non-empty (the CloudEvents spec says so, and
//! `id` is the deduplication key), and so must a test event's `test_id`; optional attributes and
//! optional `data` fields of the wrong JSON type read as absent; keywords and `optOutType` match
//! ignoring ASCII case.

mod envelope;
pub mod form;
mod jstr;
mod keywords;
mod messaging;
mod reassigned;
pub mod revocation;
mod scan;
mod types;

use chrono::{DateTime, Utc};

pub use envelope::{Envelope, envelope};
use envelope::{Fields, clip};
pub use messaging::classify_messaging_form;
use scan::Val;
pub use types::*;

/// The CloudEvent type of an inbound SMS/WhatsApp message, the only type that can be an opt event.
pub const INBOUND_MESSAGE_TYPE: &str = "com.twilio.messaging.inbound-message.received";
/// The CloudEvent type Twilio writes when an operator tests a new sink.
pub const TEST_EVENT_TYPE: &str = "com.twilio.eventstreams.test-event";
/// The CloudEvent type of Twilio's Compliance Toolkit finding a number reassigned.
pub const REASSIGNED_NUMBER_TYPE: &str = "com.twilio.messaging.reassigned-number.detected";

/// Longest identity value (event id, account, from, to, Messaging Service, test id), in bytes.
///
/// Twilio's are tens of bytes; the limit exists so that every backend can index what the
/// decoder accepts: PostgreSQL's btree refuses index rows over 2,704 bytes, and the status key
/// holds three of these values. Longer ones make the record a dead letter (`unstorable field`)
/// on every backend alike, instead of a batch one database refuses and another stores.
pub const MAX_IDENTITY_BYTES: usize = 512;

/// Switches that change which records count as opt events.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// Infer opt events from the body for schema versions without `optOutType` (< 5 or unknown).
    pub infer_keywords: bool,
    /// Which revocation phrases make an inbound message without `optOutType` a STOP.
    pub revocations: Revocations,
}

/// The revocation rules in force (see [`revocation`]).
#[derive(Debug, Clone, Copy, Default)]
pub enum Revocations {
    /// No phrase detection.
    Off,
    /// The built-in rules ([`revocation::BUILTIN_VERSION`]); the default.
    #[default]
    Builtin,
    /// Rules loaded once at start-up (`--revocation-rules`), alive for the whole process.
    Custom(&'static revocation::RuleSet),
}

impl Revocations {
    /// The rule set in force, if any.
    pub fn rules(self) -> Option<&'static revocation::RuleSet> {
        match self {
            Revocations::Off => None,
            Revocations::Builtin => Some(revocation::RuleSet::builtin()),
            Revocations::Custom(r) => Some(r),
        }
    }
}

/// Classifies one record's bytes; never panics, whatever the input.
pub fn classify(bytes: &[u8], opts: DecodeOptions) -> Outcome {
    let mut fields = Fields::default();
    let env = match envelope::scan(bytes, &mut fields) {
        Ok(env) => env,
        Err(reason) => return Outcome::Dead(reason),
    };
    let outcome = match env.ty.as_ref() {
        INBOUND_MESSAGE_TYPE => {
            let version = env.dataschema.as_deref().and_then(schema_version);
            env.with_data(&fields, |d| inbound(&env, d, version, opts))
        }
        TEST_EVENT_TYPE => env.with_data(&fields, |d| test_event(&env, d)),
        REASSIGNED_NUMBER_TYPE => {
            let version = env.dataschema.as_deref().and_then(schema_version);
            env.with_data(&fields, |d| reassigned::decode(&env, d, version))
        }
        _ => return Outcome::Skip(Skip::OtherType),
    };
    outcome.unwrap_or_else(Outcome::Dead)
}

/// The schema version of a `dataschema` URL: its last path segment, digits only, optionally
/// followed by `.json` (`…/Messaging.InboundMessageV1/5` → 5, `…/EventStreams.TestSink/1.json` → 1).
pub fn schema_version(dataschema: &str) -> Option<u32> {
    let last = dataschema.rsplit('/').next()?;
    let digits = last.strip_suffix(".json").unwrap_or(last);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn inbound(
    env: &Envelope<'_>,
    d: &Fields<'_>,
    version: Option<u32>,
    opts: DecodeOptions,
) -> Outcome {
    let (opt_out_type, detection, rule) = match d.opt_out_type {
        None | Some(Val::Null) => {
            let may_infer = opts.infer_keywords && version.is_none_or(|v| v < 5);
            match body_detection(text(d.body).as_deref(), may_infer, opts) {
                Some(found) => found,
                None => return Outcome::Skip(Skip::NotOptKeyword),
            }
        }
        Some(Val::Str(j)) => match j.decode() {
            Some(s) => match OptOutType::parse(&s) {
                Some(t) => (t, Detection::Twilio, None),
                None => return Outcome::Dead(format!("unknown optOutType: {:?}", clip(&s))),
            },
            None => return Outcome::Dead("unknown optOutType: undecodable".to_owned()),
        },
        Some(other) => return Outcome::Dead(format!("unknown optOutType: {}", other.kind())),
    };
    let inferred = detection.is_inferred();
    match opt_event(env, d, opt_out_type, inferred, version) {
        Ok(e) => Outcome::Opt(OptEvent {
            detection,
            rule,
            ..e
        }),
        Err(reason) => Outcome::Dead(reason),
    }
}

/// What the body of a message without Twilio's `optOutType` stands for: a default keyword (when
/// `may_infer`: `infer_keywords` on a message whose schema predates `optOutType`), else a
/// revocation phrase of the active rules, else nothing. Shared by every way a message arrives.
fn body_detection(
    body: Option<&str>,
    may_infer: bool,
    opts: DecodeOptions,
) -> Option<(OptOutType, Detection, Option<String>)> {
    let rules = opts.revocations.rules();
    if !may_infer && rules.is_none() {
        return None;
    }
    let body = body?;
    if may_infer && let Some(t) = keywords::infer(body) {
        return Some((t, Detection::Keyword, None));
    }
    let rule = rules?.detect(body)?;
    Some((
        OptOutType::Stop,
        Detection::Phrase,
        Some(rule.id().to_owned()),
    ))
}

fn opt_event(
    env: &Envelope<'_>,
    d: &Fields<'_>,
    opt_out_type: OptOutType,
    inferred: bool,
    schema_version: Option<u32>,
) -> Result<OptEvent, String> {
    let account_sid = required("accountSid", d.account_sid)?;
    let subscriber = required("from", d.from)?;
    let sender = required("to", d.to)?;
    let timestamp = required("timestamp", d.timestamp)?;
    let occurred_at = occurred_at(&timestamp)?;
    let messaging_service_sid = text(d.messaging_service_sid).map(String::from);
    identity("id", &env.id)?;
    identity("data.accountSid", &account_sid)?;
    identity("data.from", &subscriber)?;
    identity("data.to", &sender)?;
    if let Some(sid) = &messaging_service_sid {
        identity("data.messagingServiceSid", sid)?;
    }
    Ok(OptEvent {
        event_id: env.id.clone().into_owned(),
        opt_out_type,
        inferred,
        detection: Detection::Twilio,
        rule: None,
        account_sid,
        messaging_service_sid,
        sender,
        subscriber,
        body: text(d.body).map(|b| sanitize(&b)),
        message_sid: text(d.message_sid).map(|s| sanitize(&s)),
        occurred_at,
        time_source: TimeSource::Twilio,
        schema_version,
    })
}

fn test_event(env: &Envelope<'_>, d: &Fields<'_>) -> Outcome {
    match text(d.test_id) {
        Some(id) if !id.is_empty() => {
            if let Err(reason) = identity("data.test_id", &id).and(identity("id", &env.id)) {
                return Outcome::Dead(reason);
            }
            Outcome::Test(TestEvent {
                test_id: id.into_owned(),
                account_sid: env.id.clone().into_owned(),
                occurred_at: env.time.as_deref().and_then(|t| occurred_at(t).ok()),
            })
        }
        _ => {
            Outcome::Dead("no test_id: test event without a non-empty string `test_id`".to_owned())
        }
    }
}

/// A string value's text; other JSON types read as absent.
pub(crate) fn text<'a>(v: Option<Val<'a>>) -> Option<std::borrow::Cow<'a, str>> {
    match v {
        Some(Val::Str(j)) => j.decode(),
        _ => None,
    }
}

/// A required `data` field of an opt event: a non-empty string.
pub(crate) fn required(name: &str, v: Option<Val<'_>>) -> Result<String, String> {
    match text(v) {
        Some(s) if !s.is_empty() => Ok(s.into_owned()),
        _ => Err(format!(
            "missing field: `data.{name}` is absent, empty or not a string"
        )),
    }
}

/// An identity value must be storable and indexable by every backend: no U+0000 (PostgreSQL
/// text cannot hold it) and at most [`MAX_IDENTITY_BYTES`].
pub(crate) fn identity(name: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!("unstorable field: `{name}` holds U+0000"));
    }
    if value.len() > MAX_IDENTITY_BYTES {
        return Err(format!(
            "unstorable field: `{name}` is {} bytes, over the {MAX_IDENTITY_BYTES}-byte limit",
            value.len()
        ));
    }
    Ok(())
}

/// Free text (a body, a message SID, a partition key, a reason) made storable everywhere:
/// PostgreSQL text refuses U+0000, so each becomes U+FFFD; a STOP whose body holds one is
/// still recorded, never lost for its body.
pub fn sanitize(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

/// Whether every backend stores `t` alike: years 0001 to 9999 in UTC. PostgreSQL refuses
/// year 0 and cannot read `+10000-…`, while SQLite's text sorted `+10000` before every other
/// year, so such a record was a dead letter on one backend and the oldest event on the other.
pub fn in_storable_range(t: DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (1..=9999).contains(&t.year())
}

/// An event's time, parsed and inside the years every backend stores alike; one check for
/// every event type (a test event's time, optional, is dropped when it fails), so no type can
/// bring in a year the other backend refuses.
pub(crate) fn occurred_at(timestamp: &str) -> Result<DateTime<Utc>, String> {
    let t = parse_timestamp(timestamp)
        .ok_or_else(|| format!("bad timestamp: {:?}", clip(timestamp)))?;
    if !in_storable_range(t) {
        return Err(format!(
            "bad timestamp: year outside 0001-9999 (in UTC): {:?}",
            clip(timestamp)
        ));
    }
    Ok(t)
}

/// RFC 3339, or ISO 8601 with a `T` and a numeric offset without a colon (`+0100`).
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests;
