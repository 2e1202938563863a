//! The fixed tables the generator draws from: accounts, senders, places, message bodies,
//! opt keywords and revocation phrases, delivery-receipt statuses, and the shapes of the
//! events' `data`.

use serde::Serialize;

pub(super) const ACCOUNTS: [&str; 2] = [
    "AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a",
    "AC7d5b3f1e9c7a5d3b1f9e7c5a3d1b9f7e",
];
pub(super) const SCHEMA_BASE: &str = "https://events-schemas.twilio.com/";

/// A Twilio sender: number, location, and the Messaging Service it belongs to (7 of 10 do).
pub(super) struct Sender {
    pub(super) number: &'static str,
    pub(super) state: &'static str,
    pub(super) city: &'static str,
    pub(super) zip: &'static str,
    pub(super) service: Option<&'static str>,
}

#[rustfmt::skip]
pub(super) const SENDERS: [Sender; 10] = [
    Sender { number: "+15559870002", state: "FL", city: "FORT MEADE", zip: "33841", service: Some("MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c") },
    Sender { number: "+15559870003", state: "FL", city: "TAMPA", zip: "33602", service: Some("MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c") },
    Sender { number: "+15559870004", state: "NY", city: "NEW YORK", zip: "10001", service: Some("MG9e1c3a5f7b9d1e3c5a7f9b1d3e5c7a9f") },
    Sender { number: "+15559870005", state: "NY", city: "BROOKLYN", zip: "11201", service: Some("MG9e1c3a5f7b9d1e3c5a7f9b1d3e5c7a9f") },
    Sender { number: "+15559870006", state: "CA", city: "SAN JOSE", zip: "95113", service: Some("MG4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a") },
    Sender { number: "+15559870007", state: "CA", city: "OAKLAND", zip: "94612", service: Some("MG4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a") },
    Sender { number: "+15559870008", state: "TX", city: "AUSTIN", zip: "73301", service: Some("MG4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a") },
    Sender { number: "+15559870009", state: "WA", city: "SEATTLE", zip: "98101", service: None },
    Sender { number: "+15559870010", state: "IL", city: "CHICAGO", zip: "60601", service: None },
    Sender { number: "+15559870011", state: "MA", city: "BOSTON", zip: "02108", service: None },
];

pub(super) const FROM_PLACES: [(&str, &str, &str, &str); 6] = [
    ("US", "NH", "NASHUA", "03049"),
    ("US", "NY", "NEW YORK", "10013"),
    ("US", "CA", "LOS ANGELES", "90012"),
    ("US", "TX", "HOUSTON", "77002"),
    ("US", "", "", ""),
    ("GB", "", "", ""),
];

pub(super) const BODIES: [&str; 16] = [
    "See you at 5",
    "Can you call me back when you get a chance?",
    "Thanks! Got it.",
    "What time does the store open tomorrow morning?",
    "Yes please, confirm my appointment for Tuesday at 10:30",
    "ok",
    "Sounds good, see you there",
    "Is my order #48213 shipped yet? The tracking link says \"pending\".",
    "Merci beaucoup 😊",
    "👍",
    "Running 10 min late, sorry!\nSave me a seat.",
    "Can I reschedule to next week?",
    "Where do I find my receipt from last Friday's purchase?",
    "on my way",
    "C'est parfait, à demain",
    "Please send the invoice to my work email instead",
];

/// Opt requests as subscribers type them, with the `optOutType` Twilio sets for each: none for
/// revocation phrases, which Twilio does not recognise.
pub(super) const OPT_BODIES: [(&str, Option<&str>); 26] = [
    ("STOP", Some("STOP")),
    ("Stop", Some("STOP")),
    ("stop", Some("STOP")),
    ("sToP", Some("STOP")),
    (" stop ", Some("STOP")),
    ("STOPALL", Some("STOP")),
    ("Unsubscribe", Some("STOP")),
    ("cancel", Some("STOP")),
    ("END", Some("STOP")),
    ("quit", Some("STOP")),
    ("REVOKE", Some("STOP")),
    ("optout", Some("STOP")),
    ("START", Some("START")),
    ("Start", Some("START")),
    (" start ", Some("START")),
    ("yes", Some("START")),
    ("UNSTOP", Some("START")),
    ("HELP", Some("HELP")),
    ("help", Some("HELP")),
    ("Info", Some("HELP")),
    ("Stop sending me these please", None),
    ("opt out", None),
    ("STOP!!", None),
    ("Stop texting me", None),
    ("please unsubscribe me", None),
    ("Remove me from this list", None),
];

pub(super) const RECEIPT_TYPES: [(&str, &str, u32); 6] = [
    ("delivered", "DELIVERED", 40),
    ("sent", "SENT", 35),
    ("queued", "QUEUED", 12),
    ("read", "READ", 5),
    ("undelivered", "UNDELIVERED", 5),
    ("failed", "FAILED", 3),
];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InboundData<'a> {
    pub(super) message_sid: &'a str,
    pub(super) timestamp: &'a str,
    pub(super) account_sid: &'a str,
    pub(super) event_name: &'a str,
    pub(super) from: &'a str,
    pub(super) to: &'a str,
    pub(super) body: &'a str,
    pub(super) num_media: u32,
    pub(super) num_segments: u32,
    pub(super) recipients: [&'a str; 0],
    pub(super) from_country: &'a str,
    pub(super) from_state: &'a str,
    pub(super) from_city: &'a str,
    pub(super) from_zip: &'a str,
    pub(super) to_country: &'a str,
    pub(super) to_state: &'a str,
    pub(super) to_city: &'a str,
    pub(super) to_zip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) messaging_service_sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) opt_out_type: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReceiptData<'a> {
    pub(super) message_sid: &'a str,
    pub(super) account_sid: &'a str,
    pub(super) to: &'a str,
    pub(super) from: &'a str,
    pub(super) message_status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error_code: Option<u32>,
    pub(super) timestamp: &'a str,
    pub(super) event_name: &'a str,
}
