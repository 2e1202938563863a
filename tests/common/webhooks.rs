//! The webhook tests' messages and, for the in-process tests, the real router with the webhook
//! way in on a loopback port (`Hooks`). Message `n` has the SID [`sid`]`(n)`, the event id
//! [`event_id`]`(n)` (the same digits) and the subscriber [`subscriber`]`(n)`, whichever way it
//! is sent.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use optout::event::DecodeOptions;
use optout::http::{ApiAuth, AppState};
use optout::ingest::webhook::{self, AuthTokens, BasicCredentials, Config, PublicUrl};
use optout::store::query::DeadLetterFilter;
use optout::store::{DeadLetterRow, EventFilter, EventRow};
use tokio_util::sync::CancellationToken;

use super::db::Db;
use super::records::Inbound;
use super::twilio::{self, Payload, Request};

/// What Twilio calls: a TLS-terminating proxy in front of the test's plain listener.
pub const PUBLIC: &str = "https://optout.example.com";
pub const MESSAGING: &str = "/twilio/messaging";
pub const EVENTS: &str = "/twilio/events";
pub const SERVICE: &str = "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c";

/// Message `n`'s SID (34 characters).
pub fn sid(n: u32) -> String {
    format!("SM{n:032x}")
}

/// Message `n`'s CloudEvent id.
pub fn event_id(n: u32) -> String {
    format!("EZ{n:032x}")
}

/// Message `n`'s subscriber.
pub fn subscriber(n: u32) -> String {
    format!("+1555765{n:04}")
}

/// Message `n` as the Messaging webhook posts it, to the tests' Messaging Service: `body`, and
/// `OptOutType` when Advanced Opt-Out flagged it.
pub fn form(n: u32, body: &str, opt_out_type: Option<&str>) -> Payload {
    Payload::Form(twilio::inbound_params(
        &sid(n),
        &subscriber(n),
        Some(SERVICE),
        body,
        opt_out_type,
    ))
}

/// Message `n` as Event Streams writes it (to Kinesis or a webhook sink): the keyword `kind`,
/// flagged, at `at`.
pub fn cloud_event(n: u32, kind: &str, at: &str) -> Vec<u8> {
    Inbound::new(&event_id(n), &subscriber(n))
        .service(SERVICE)
        .keyword(kind)
        .at(at)
        .build()
}

/// [`cloud_event`] as text, at 2026-03-01T10:00:00Z.
pub fn cloud_event_text(n: u32, kind: &str) -> String {
    String::from_utf8(cloud_event(n, kind, "2026-03-01T10:00:00Z")).unwrap()
}

/// The webhook way in as the tests run it: both tokens of a rotation, [`PUBLIC`], the decoder's
/// defaults.
pub fn config() -> Config {
    Config {
        tokens: AuthTokens::parse(&format!("{}\n{}\n", twilio::TOKEN, twilio::SECOND_TOKEN))
            .unwrap(),
        basic: BasicCredentials::default(),
        public_url: PublicUrl::parse(PUBLIC).unwrap(),
        options: DecodeOptions::default(),
        honor_revocations: false,
    }
}

/// A running server with the webhook way in, and its store; stopped when dropped.
pub struct Hooks {
    pub addr: String,
    pub db: Db,
    stop: CancellationToken,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves the real router with the webhook routes of `config` on a loopback port.
pub async fn start(db: Db, config: Config) -> Hooks {
    let stop = CancellationToken::new();
    let hooks = webhook::start(db.store.clone(), config, 4, stop.clone());
    let state = AppState {
        reader: db.reader.clone(),
        metrics: None,
        ready: Arc::new(AtomicBool::new(true)),
        auth: Arc::new(ApiAuth::new(vec!["api-token".into()], false)),
        health: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(optout::http::serve_on(
        listener,
        optout::app::http_app_with(state, Some(hooks.router)),
        stop.clone(),
    ));
    Hooks { addr, db, stop }
}

impl Hooks {
    /// Sends `r`, on a connection of its own.
    pub async fn post(&self, r: &Request) -> twilio::Answer {
        twilio::post(&self.addr, r).await.unwrap()
    }

    /// The stored opt events.
    pub async fn events(&self) -> Vec<EventRow> {
        self.db.reader.all(&EventFilter::default()).await.unwrap()
    }

    /// The stored dead letters.
    pub async fn dead_letters(&self) -> Vec<DeadLetterRow> {
        self.db.reader.all(&DeadLetterFilter).await.unwrap()
    }
}
