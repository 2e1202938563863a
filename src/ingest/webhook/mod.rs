//! The webhook way in: Twilio's Messaging webhook (`POST /twilio/messaging`, a form per inbound
//! message, with `OptOutType` when Advanced Opt-Out is on) and the Event Streams webhook sink
//! (`POST /twilio/events`, one CloudEvent or a JSON array of them).
//!
//! A request is answered 2xx only once what it carried is committed: verified (`verify.rs`,
//! against `--public-url`), split into raw records, and handed to the group committer
//! (`committer.rs`), which commits concurrent requests in one transaction through
//! [`crate::pipeline`], like every other way in. A retry stores nothing twice: opt events are
//! merged by identity and dead letters keyed by route and the hash of their bytes. The routes
//! are handed to the composition root, which merges them into the HTTP server beside the query
//! API; the server knows nothing of what they mean.

mod committer;
pub mod metrics;
mod public_url;
mod routes;
pub mod verify;

use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;

pub use public_url::PublicUrl;
pub use verify::AuthTokens;

use crate::event::DecodeOptions;
use crate::pipeline::Target;
use crate::store::{IngestPath, Store};

/// Largest request body accepted (413 above). Event Streams batches stay under 64 kB and an
/// inbound message form under a few kB; the margin is for Twilio adding parameters.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The two routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /twilio/messaging`.
    Messaging,
    /// `POST /twilio/events`.
    Events,
}

impl Route {
    /// The route's path, also the `shard_id` its rows are stored under.
    pub fn path(self) -> &'static str {
        match self {
            Route::Messaging => "/twilio/messaging",
            Route::Events => "/twilio/events",
        }
    }

    /// The way in it records on opt events.
    pub fn ingest_path(self) -> IngestPath {
        match self {
            Route::Messaging => IngestPath::MessagingWebhook,
            Route::Events => IngestPath::EventsWebhook,
        }
    }

    /// Where its records are committed: stream `webhook`, shard the route's path.
    pub fn target(self, honor_revocations: bool) -> Target {
        Target {
            path: self.ingest_path(),
            stream: "webhook".into(),
            shard_id: self.path().into(),
            lease: None,
            honor_revocations,
            // A request's body is bounded (1 MiB) before anything is decoded.
            max_record_bytes: crate::pipeline::DEFAULT_MAX_RECORD_BYTES,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Messaging => "messaging",
            Route::Events => "events",
        }
    }
}

/// Who may call the routes, and how what they bring is read.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--twilio-auth-token-file`: the tokens signatures are checked with.
    pub tokens: AuthTokens,
    /// `--twilio-basic-auth-file`: `user:password` pairs an Event Streams sink URL may carry,
    /// accepted instead of a signature on `/twilio/events`.
    pub basic: BasicCredentials,
    /// `--public-url`: what Twilio calls.
    pub public_url: PublicUrl,
    /// How records are decoded (`--infer-keywords`, revocation rules).
    pub options: DecodeOptions,
    /// `--honor-revocations`.
    pub honor_revocations: bool,
}

/// Basic-auth credentials (`user:password`), compared in constant time.
#[derive(Clone, Default)]
pub struct BasicCredentials(Vec<Vec<u8>>);

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicCredentials({} pairs)", self.0.len())
    }
}

impl BasicCredentials {
    /// Parses `user:password` lines (blank lines and `#` comments skipped); the error names the
    /// line, never its content.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    pairs.push(line.as_bytes().to_vec());
                }
                _ => return Err(format!("line {} is not `user:password`", n + 1)),
            }
        }
        if pairs.is_empty() {
            return Err("holds no `user:password` line".into());
        }
        Ok(BasicCredentials(pairs))
    }

    /// Whether `user:password` is one of them (every pair compared, each in constant time).
    fn allows(&self, presented: &[u8]) -> bool {
        self.0
            .iter()
            .fold(false, |any, pair| verify::same(pair, presented) | any)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The running webhook way in: its routes, and its committers to wait for at shutdown.
pub struct Webhooks {
    /// `POST /twilio/messaging` and `POST /twilio/events`, for the composition root to merge.
    pub router: Router,
    /// Ends once `stop` is cancelled and every queued request is committed and answered.
    pub committers: tokio::task::JoinHandle<()>,
}

/// Starts the committers on `store` and builds the routes. `stop` is to be cancelled once the
/// HTTP server has stopped taking requests; the committers then drain the queue and end.
/// PostgreSQL gets `pg_committers` committers side by side; SQLite, one writer, gets one.
pub fn start(
    store: Arc<dyn Store>,
    settings: Config,
    pg_committers: usize,
    stop: CancellationToken,
) -> Webhooks {
    let workers = if store.shared() { pg_committers } else { 1 };
    let (queue, committers) = committer::start(
        committer::Committer {
            store,
            options: settings.options,
            honor_revocations: settings.honor_revocations,
        },
        workers,
        stop,
    );
    tracing::info!(public_url = %settings.public_url, committers = workers, "Twilio webhooks accepted at /twilio/messaging and /twilio/events.");
    let router = routes::router(Arc::new(routes::State { settings, queue }));
    Webhooks { router, committers }
}
