//! Synthetic Twilio Event Streams traffic, for `optout produce`, tests and the benchmark.
//!
//! [`Synth`] yields spec-valid CloudEvents (built with cloudevents-sdk) in the mix a busy
//! messaging account writes to Kinesis: by default 53% delivery receipts, 45% ordinary inbound
//! messages and 2% opt requests: mostly opt keywords (STOP/START/HELP and the other default
//! keywords, in mixed case, schema v5/v6 with `optOutType` set as Twilio sets it), and about one
//! in four a revocation phrase Twilio does not flag ("Stop texting me", "opt out", no
//! `optOutType`). About 10% of events carry `data` as a
//! JSON-encoded string, as in Twilio's own Kinesis examples. Output is deterministic for a seed:
//! timestamps start at 2026-03-01T12:00:00Z and advance 1-200 ms per record. Records are compact
//! JSON averaging about 765 bytes (pinned by a test).

use chrono::{DateTime, Duration, TimeZone, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use serde::Serialize;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct MixOptions {
    /// Seed of the generator: the same seed gives the same records.
    pub seed: u64,
    /// Share of opt-keyword messages (clamped to 0..=1); the rest splits 45:53 inbound:receipts.
    pub opt_ratio: f64,
    /// How many distinct subscribers (phone numbers) the traffic comes from (at least 1).
    pub subscribers: usize,
}

impl Default for MixOptions {
    fn default() -> Self {
        MixOptions {
            seed: 1,
            opt_ratio: 0.02,
            subscribers: 200,
        }
    }
}

/// The kind of a generated record, so callers can count what they sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A delivery receipt (`com.twilio.messaging.message.delivered`, `.sent`, ...).
    DeliveryReceipt,
    /// An ordinary inbound message, not an opt keyword.
    InboundMessage,
    /// An inbound message that is an opt keyword, with `optOutType` set.
    OptKeyword,
    /// An inbound message that revokes consent in words Twilio does not flag (no `optOutType`).
    Revocation,
    /// A sink test event.
    TestEvent,
}

impl Kind {
    /// A stable lower-case name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DeliveryReceipt => "delivery_receipt",
            Kind::InboundMessage => "inbound_message",
            Kind::OptKeyword => "opt_keyword",
            Kind::Revocation => "revocation_phrase",
            Kind::TestEvent => "test_event",
        }
    }
}

mod data;

use data::*;

/// A deterministic generator of Twilio-like records.
pub struct Synth {
    rng: fastrand::Rng,
    opt_ratio: f64,
    subscribers: Vec<String>,
    /// Records generated so far; drives the clock and makes event ids unique.
    seq: u64,
    /// Mixes the seed into event ids so two seeds do not share ids.
    id_key: u64,
}

impl Synth {
    /// A generator for `opts`; the same options always give the same records.
    pub fn new(opts: MixOptions) -> Self {
        let mut rng = fastrand::Rng::with_seed(opts.seed);
        let subscribers = (0..opts.subscribers.max(1))
            .map(|_| {
                if rng.u32(0..10) == 0 {
                    format!("+447700900{:03}", rng.u32(0..1000))
                } else {
                    format!("+1555{:07}", rng.u32(0..10_000_000))
                }
            })
            .collect();
        let opt_ratio = if opts.opt_ratio.is_nan() {
            0.0
        } else {
            opts.opt_ratio.clamp(0.0, 1.0)
        };
        Synth {
            rng,
            opt_ratio,
            subscribers,
            seq: 0,
            id_key: splitmix64(opts.seed),
        }
    }

    /// The next record of the mix and its kind (never [`Kind::TestEvent`]).
    ///
    /// # Panics
    /// Never in practice: building and serialising events from constant URLs cannot fail
    /// (every branch is exercised by the tests).
    pub fn next_record(&mut self) -> (Kind, Vec<u8>) {
        let kind = if self.rng.f64() < self.opt_ratio {
            Kind::OptKeyword
        } else if self.rng.u32(0..98) < 45 {
            Kind::InboundMessage
        } else {
            Kind::DeliveryReceipt
        };
        match kind {
            Kind::DeliveryReceipt => (kind, self.receipt()),
            _ => self.inbound(kind == Kind::OptKeyword),
        }
    }

    /// A sink test event (`data` a JSON string holding `test_id`, as Twilio sends it).
    ///
    /// # Panics
    /// Never in practice, as for [`Synth::next_record`].
    pub fn test_event(&mut self) -> Vec<u8> {
        let time = self.tick();
        let r = &mut self.rng;
        let test_id = format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            r.u32(..),
            r.u16(..),
            r.u16(..0x1000),
            0x8000 | r.u16(..0x4000),
            r.u64(..1 << 48)
        );
        let data = format!("{{\"test_id\": \"{test_id}\"}}");
        let schema = format!("{SCHEMA_BASE}EventStreams.TestSink/1.json");
        build(
            ACCOUNTS[0].to_owned(),
            crate::event::TEST_EVENT_TYPE,
            "Sink".to_owned(),
            time,
            &schema,
            cloudevents::Data::String(data),
        )
    }

    /// Advances the clock: record i is at base + i*200 ms + 0..200 ms, never on a whole second
    /// (so every RFC 3339 rendering has milliseconds), strictly increasing.
    fn tick(&mut self) -> DateTime<Utc> {
        let base = Utc
            .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .unwrap_or_default();
        let mut ms = self.seq.saturating_mul(200) + self.rng.u64(0..200);
        if ms.is_multiple_of(1000) {
            ms += 1;
        }
        self.seq += 1;
        let offset = Duration::milliseconds(i64::try_from(ms).unwrap_or(0));
        base.checked_add_signed(offset).unwrap_or(base)
    }

    fn event_id(&mut self) -> String {
        format!(
            "EZ{:016x}{:016x}",
            splitmix64(self.seq ^ self.id_key),
            self.rng.u64(..)
        )
    }

    fn sid(&mut self, prefix: &str) -> String {
        format!("{prefix}{:016x}{:016x}", self.rng.u64(..), self.rng.u64(..))
    }

    fn account(&mut self) -> &'static str {
        ACCOUNTS[usize::from(self.rng.u32(0..10) == 0)]
    }

    fn subscriber(&mut self) -> &str {
        let i = self.rng.usize(..self.subscribers.len());
        self.subscribers
            .get(i)
            .map_or("+15551230001", String::as_str)
    }

    fn inbound(&mut self, opt: bool) -> (Kind, Vec<u8>) {
        let time = self.tick();
        let id = self.event_id();
        let message_sid = self.sid("SM");
        let account = self.account();
        let sender = &SENDERS[self.rng.usize(..SENDERS.len())];
        let whatsapp = self.rng.u32(0..100) < if opt { 10 } else { 5 };
        let subscriber = self.subscriber().to_owned();
        let (from, to) = if whatsapp {
            (
                format!("whatsapp:{subscriber}"),
                format!("whatsapp:{}", sender.number),
            )
        } else {
            (subscriber.clone(), sender.number.to_owned())
        };
        let place = if subscriber.starts_with("+44") {
            FROM_PLACES[5]
        } else {
            FROM_PLACES[self.rng.usize(..5)]
        };
        let (body, opt_out_type, version) = if opt {
            let (body, t) = OPT_BODIES[self.rng.usize(..OPT_BODIES.len())];
            (body, t, 5 + self.rng.u32(0..2))
        } else {
            let version = match self.rng.u32(0..100) {
                0..45 => 6,
                45..90 => 5,
                90..97 => 4,
                _ => 3,
            };
            (BODIES[self.rng.usize(..BODIES.len())], None, version)
        };
        let timestamp = rfc3339_millis(time);
        let data = InboundData {
            message_sid: &message_sid,
            timestamp: &timestamp,
            account_sid: account,
            event_name: crate::event::INBOUND_MESSAGE_TYPE,
            from: &from,
            to: &to,
            body,
            num_media: u32::from(self.rng.u32(0..20) == 0),
            num_segments: if body.len() > 70 { 2 } else { 1 },
            recipients: [],
            from_country: place.0,
            from_state: place.1,
            from_city: place.2,
            from_zip: place.3,
            to_country: "US",
            to_state: sender.state,
            to_city: sender.city,
            to_zip: sender.zip,
            messaging_service_sid: sender.service,
            opt_out_type,
        };
        let source = format!("/2010-04-01/Accounts/{account}/Messages/{message_sid}.json");
        let schema = format!("{SCHEMA_BASE}Messaging.InboundMessageV1/{version}");
        let data = self.data(&data);
        let kind = match (opt, opt_out_type) {
            (false, _) => Kind::InboundMessage,
            (true, Some(_)) => Kind::OptKeyword,
            (true, None) => Kind::Revocation,
        };
        let bytes = build(
            id,
            crate::event::INBOUND_MESSAGE_TYPE,
            source,
            time,
            &schema,
            data,
        );
        (kind, bytes)
    }

    fn receipt(&mut self) -> Vec<u8> {
        let time = self.tick();
        let id = self.event_id();
        let message_sid = self.sid("SM");
        let account = self.account();
        let sender = &SENDERS[self.rng.usize(..SENDERS.len())];
        let subscriber = self.subscriber().to_owned();
        let mut pick = self.rng.u32(0..100);
        let (name, status) = RECEIPT_TYPES
            .iter()
            .find(|&&(_, _, weight)| {
                let hit = pick < weight;
                pick = pick.saturating_sub(weight);
                hit
            })
            .map_or(("delivered", "DELIVERED"), |&(n, s, _)| (n, s));
        let error_code = match status {
            "UNDELIVERED" | "FAILED" => Some([30003, 30005, 30007][self.rng.usize(..3)]),
            _ => None,
        };
        let ty = format!("com.twilio.messaging.message.{name}");
        let timestamp = rfc3339_millis(time);
        let data = ReceiptData {
            message_sid: &message_sid,
            account_sid: account,
            to: &subscriber,
            from: sender.number,
            message_status: status,
            error_code,
            timestamp: &timestamp,
            event_name: &ty,
        };
        let source = format!("/2010-04-01/Accounts/{account}/Messages/{message_sid}.json");
        let schema = format!("{SCHEMA_BASE}Messaging.MessageStatus/5");
        let data = self.data(&data);
        build(id, &ty, source, time, &schema, data)
    }

    /// `data` as an object, or in ~10% of events as a JSON string holding the object.
    fn data<T: Serialize>(&mut self, data: &T) -> cloudevents::Data {
        let as_string = self.rng.u32(0..10) == 0;
        if as_string {
            // Twilio's string form has a space after `:` and `,`; any JSON text would do.
            let compact = serde_json::to_string(data).expect("plain structs serialise");
            cloudevents::Data::String(spaced(&compact))
        } else {
            cloudevents::Data::Json(serde_json::to_value(data).expect("plain structs serialise"))
        }
    }
}

/// Builds and serialises one CloudEvent (structured mode, compact JSON).
fn build(
    id: String,
    ty: &str,
    source: String,
    time: DateTime<Utc>,
    schema: &str,
    data: cloudevents::Data,
) -> Vec<u8> {
    let event = EventBuilderV10::new()
        .id(id)
        .ty(ty)
        .source(source)
        .time(time)
        .data_with_schema("application/json", schema, data)
        .build()
        .expect("constant schema URLs parse");
    serde_json::to_vec(&event).expect("a CloudEvent always serialises")
}

/// RFC 3339 in UTC with milliseconds and `Z`, as Twilio writes `data.timestamp`.
fn rfc3339_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Adds a space after each structural `:` and `,` of compact JSON (outside strings).
fn spaced(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() + compact.len() / 8);
    let (mut in_string, mut escaped) = (false, false);
    for c in compact.chars() {
        out.push(c);
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ':' | ',' if !in_string => out.push(' '),
            _ => {}
        }
    }
    out
}

/// A bijective 64-bit mix (SplitMix64's finaliser): distinct inputs give distinct ids.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaced_adds_spaces_outside_strings_only() {
        let compact = r#"{"a":"x:y, \"q\": 1","b":[1,2],"c":{}}"#;
        let out = spaced(compact);
        assert_eq!(out, r#"{"a": "x:y, \"q\": 1", "b": [1, 2], "c": {}}"#);
        let a: serde_json::Value = serde_json::from_str(compact).expect("valid");
        let b: serde_json::Value = serde_json::from_str(&out).expect("still valid");
        assert_eq!(a, b);
    }

    #[test]
    fn splitmix_is_a_bijection_on_a_sample() {
        let ids: std::collections::HashSet<u64> = (0..10_000).map(splitmix64).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
