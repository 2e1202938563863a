//! What the decoder produces: opt events, sink test events, skips and dead letters, and the
//! small vocabularies they carry (how an event was recognised, what it asks for, where its time
//! comes from).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How an opt event was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detection {
    /// Twilio set `optOutType` (`OptOutType` on the Messaging webhook).
    Twilio,
    /// Twilio's Compliance Toolkit found the number reassigned and opted it out
    /// (`com.twilio.messaging.reassigned-number.detected`).
    Reassigned,
    /// `--infer-keywords`: the body of a message without `optOutType` is a default keyword.
    Keyword,
    /// A revocation phrase in the body of a message Twilio did not flag.
    Phrase,
}

impl Detection {
    /// Every detection, best first (see [`Detection::rank`]).
    pub const ALL: [Detection; 4] = [
        Detection::Twilio,
        Detection::Reassigned,
        Detection::Keyword,
        Detection::Phrase,
    ];

    /// The lower-case name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Detection::Twilio => "twilio",
            Detection::Reassigned => "reassigned",
            Detection::Keyword => "keyword",
            Detection::Phrase => "phrase",
        }
    }

    /// Reads `twilio`, `reassigned`, `keyword` or `phrase` in any ASCII case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
    }

    /// How much a detection is worth when two paths saw the same message (higher wins):
    /// Twilio's own flag, then Twilio's reassigned-number opt-out, then a keyword we inferred,
    /// then a phrase we matched. Twilio decides; our guesses come last.
    pub fn rank(self) -> u8 {
        match self {
            Detection::Twilio => 4,
            Detection::Reassigned => 3,
            Detection::Keyword => 2,
            Detection::Phrase => 1,
        }
    }

    /// Whether the event was derived from the message body rather than from Twilio.
    pub fn is_inferred(self) -> bool {
        matches!(self, Detection::Keyword | Detection::Phrase)
    }
}

impl Serialize for Detection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What an opt event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OptOutType {
    /// Opt out: stop sending to this subscriber.
    Stop,
    /// Opt back in.
    Start,
    /// A help request; recorded, status unchanged.
    Help,
}

impl OptOutType {
    /// The canonical upper-case name, as Twilio writes it and as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OptOutType::Stop => "STOP",
            OptOutType::Start => "START",
            OptOutType::Help => "HELP",
        }
    }

    /// Reads "STOP", "START" or "HELP" in any ASCII case; anything else (even padded) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        [OptOutType::Stop, OptOutType::Start, OptOutType::Help]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

impl Serialize for OptOutType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where an opt event's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimeSource {
    /// Twilio's event time (`data.timestamp`).
    #[default]
    Twilio,
    /// When optout received it: the Messaging webhook carries no event time. Replaced by
    /// Twilio's time when another path brings the same message.
    Received,
}

impl TimeSource {
    /// The lower-case name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Twilio => "twilio",
            TimeSource::Received => "received",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [TimeSource::Twilio, TimeSource::Received]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

impl Serialize for TimeSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An opt-out, opt-in or help request, with everything the store needs to key and order it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptEvent {
    /// The CloudEvent `id`; for the Messaging webhook, which has none, the `MessageSid`.
    pub event_id: String,
    /// What the subscriber asked for.
    pub opt_out_type: OptOutType,
    /// True when derived from the body (keyword inference or a phrase), not from Twilio.
    pub inferred: bool,
    /// How it was recognised: `twilio`, `reassigned`, `keyword` or `phrase`.
    pub detection: Detection,
    /// The revocation rule that matched (`builtin-2026.1:stop-texting`), for phrase detections.
    pub rule: Option<String>,
    /// The Twilio account (`data.accountSid`, `data.account_sid`, `AccountSid`).
    pub account_sid: String,
    /// The Messaging Service, when there is one.
    pub messaging_service_sid: Option<String>,
    /// The Twilio sender (`data.to` of an inbound message), verbatim.
    pub sender: String,
    /// The subscriber (`data.from` of an inbound message), verbatim (may carry a channel
    /// prefix like `whatsapp:`).
    pub subscriber: String,
    /// The message body, when there is one.
    pub body: Option<String>,
    /// The message SID, when a string.
    pub message_sid: Option<String>,
    /// When it happened: orders events per subscriber.
    pub occurred_at: DateTime<Utc>,
    /// Whether `occurred_at` is Twilio's event time or our receive time.
    pub time_source: TimeSource,
    /// The version from `dataschema`, when it has one.
    pub schema_version: Option<u32>,
}

impl OptEvent {
    /// Where the opt event applies: the Messaging Service when there is one, else the sender.
    pub fn scope(&self) -> &str {
        match self.messaging_service_sid.as_deref() {
            Some(sid) if !sid.is_empty() => sid,
            _ => &self.sender,
        }
    }

    /// The event's identity across every way in: its message SID when it has one, so the same
    /// message seen through Kinesis, the Event Streams webhook and the Messaging webhook is one
    /// event; else its event id (a reassigned-number event, say).
    pub fn identity(&self) -> &str {
        match self.message_sid.as_deref() {
            Some(sid) if is_sid(sid) => sid,
            _ => &self.event_id,
        }
    }
}

/// Whether `s` has the shape of a Twilio SID: two capital letters and 32 hex digits
/// (`SM5b1e…`). Only such a value joins events across paths: free text that happens to sit in
/// `messageSid` must never merge two messages.
pub fn is_sid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 34
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..].iter().all(u8::is_ascii_hexdigit)
}

/// The sink test event the operator must echo to Twilio to activate a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestEvent {
    /// `data.test_id`: what Twilio's Validate call wants back.
    pub test_id: String,
    /// The CloudEvent `id`, which for this event is the account SID.
    pub account_sid: String,
    /// The CloudEvent `time`, when present and RFC 3339.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Why a well-formed record is irrelevant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not an inbound message, a reassigned number or a test event (delivery receipts and the
    /// like).
    OtherType,
    /// An inbound message that is not an opt keyword.
    NotOptKeyword,
}

/// The one thing a record turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An opt-out, opt-in or help request.
    Opt(OptEvent),
    /// A sink test event.
    Test(TestEvent),
    /// Shown irrelevant.
    Skip(Skip),
    /// A dead letter. The reason starts with a stable category followed by `: ` and details:
    /// `not JSON`, `not a CloudEvent`, `not a form`, `no usable data`, `missing field`,
    /// `bad timestamp`, `unknown optOutType`, `unknown consent_operation`, `no test_id`,
    /// `unstorable field`.
    Dead(String),
}
