//! What each command needs, in the application's own terms, filled by the CLI from flags and
//! the environment and checked here once (a mistake is an [`AppError::Usage`], exit 2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kinesis_engine::InitialPosition;
use tracing::info;

use super::AppError;
use crate::event::revocation::RuleSet;
use crate::event::{DecodeOptions, Revocations};
use crate::http::ApiAuth;
use crate::ingest::webhook::{self, AuthTokens, BasicCredentials, PublicUrl};
use crate::store::RevocationScope;

/// Where Kinesis is; credentials come from the AWS SDK's default chain.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// `--region` (else the SDK's chain: `AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// `--endpoint-url` (else AWS's, or `AWS_ENDPOINT_URL`), e.g. an emulator.
    pub endpoint_url: Option<String>,
}

/// How records are decoded and what phrase revocations do, for every way in.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    /// Default opt keywords in bodies of schema versions below 5 are opt events (inferred).
    pub infer_keywords: bool,
    /// A JSON rules file that adds to or replaces the built-in revocation phrases.
    pub revocation_rules: Option<PathBuf>,
    /// Phrase-detected revocations set `opted_out` (by default they are only recorded).
    pub honor_revocations: bool,
    /// Records (replayed lines) longer than this are dead letters holding their first bytes.
    pub max_record_bytes: usize,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        DecodeSettings {
            infer_keywords: false,
            revocation_rules: None,
            honor_revocations: false,
            max_record_bytes: crate::pipeline::DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

impl DecodeSettings {
    /// The decoder's options: the rules file loaded once (kept for the life of the process),
    /// or the built-in rules. A bad file is a usage error with one line that says what is wrong.
    pub(super) fn options(&self) -> Result<DecodeOptions, AppError> {
        let revocations = match &self.revocation_rules {
            None => Revocations::Builtin,
            Some(path) => {
                let set = RuleSet::load(path)
                    .map_err(|e| AppError::Usage(format!("invalid --revocation-rules: {e}")))?;
                Revocations::Custom(Box::leak(Box::new(set)))
            }
        };
        info!(
            rules = revocations.rules().map_or("off", |r| r.version()),
            honor_revocations = self.honor_revocations,
            "Revocation phrase detection on."
        );
        Ok(DecodeOptions {
            infer_keywords: self.infer_keywords,
            revocations,
        })
    }
}

/// Shortest bearer token accepted on an address other hosts can reach: a guessable token on
/// a reachable port guards nothing (`openssl rand -hex 32` makes 64 characters).
pub const MIN_TOKEN_CHARS: usize = 32;

/// Twilio's webhooks (`POST /twilio/messaging`, `POST /twilio/events`): on when an auth token
/// file is given.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// `--twilio-auth-token-file`: auth tokens, one per line, or `AC… TOKEN` for one account.
    pub auth_token_file: Option<PathBuf>,
    /// `--public-url`: the scheme, host, port (and path prefix) Twilio calls.
    pub public_url: Option<String>,
    /// `--twilio-basic-auth-file`: `user:password` lines an Event Streams sink URL may carry.
    pub basic_auth_file: Option<PathBuf>,
}

impl WebhookSettings {
    /// Whether the webhook routes are on.
    pub fn enabled(&self) -> bool {
        self.auth_token_file.is_some()
    }

    /// The webhook way in's configuration, files read and checked once; `None` when off. A
    /// mistake is one line that says what to fix, and never shows a secret.
    pub(super) fn load(
        &self,
        options: impl FnOnce() -> Result<DecodeOptions, AppError>,
        honor_revocations: bool,
    ) -> Result<Option<webhook::Config>, AppError> {
        let Some(path) = &self.auth_token_file else {
            if self.public_url.is_some() || self.basic_auth_file.is_some() {
                return Err(AppError::Usage(
                    "--public-url and --twilio-basic-auth-file need --twilio-auth-token-file, \
                     which turns the webhook routes on"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| AppError::Usage(format!("cannot read {flag} {}: {e}", path.display())))
        };
        let tokens = AuthTokens::parse(&read("--twilio-auth-token-file", path)?).map_err(|e| {
            AppError::Usage(format!("--twilio-auth-token-file {}: {e}", path.display()))
        })?;
        let Some(public_url) = &self.public_url else {
            return Err(AppError::Usage(
                "--twilio-auth-token-file needs --public-url: the URL Twilio calls, e.g. \
                 https://optout.example.com (Twilio signs that URL, so it is what signatures \
                 are checked against)"
                    .into(),
            ));
        };
        let public_url = PublicUrl::parse(public_url)
            .map_err(|e| AppError::Usage(format!("invalid --public-url: {e}")))?;
        let basic = match &self.basic_auth_file {
            None => BasicCredentials::default(),
            Some(p) => {
                BasicCredentials::parse(&read("--twilio-basic-auth-file", p)?).map_err(|e| {
                    AppError::Usage(format!("--twilio-basic-auth-file {}: {e}", p.display()))
                })?
            }
        };
        Ok(Some(webhook::Config {
            tokens,
            basic,
            public_url,
            options: options()?,
            honor_revocations,
        }))
    }
}

/// The HTTP server: where it listens and who may call it.
#[derive(Clone)]
pub struct HttpSettings {
    /// `--http-addr`.
    pub addr: SocketAddr,
    /// `--health-addr`: `/healthz`, `/readyz` and `/metrics` on a listener of their own
    /// (else on `addr`).
    pub health_addr: Option<SocketAddr>,
    /// `OPTOUT_HTTP_TOKEN` (one bearer token).
    pub token: Option<String>,
    /// `--http-token-file`: bearer tokens, one per line (several allow rotation).
    pub token_file: Option<PathBuf>,
    /// `/metrics` needs the token too.
    pub metrics_require_token: bool,
    /// `--revocation-scope`: how far an opt-out reaches in the API's answers.
    pub revocation_scope: RevocationScope,
    /// `--session-key-file`: the key the web console signs session cookies with (shared by
    /// every instance behind one address); a random key per process when `None`.
    pub session_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for HttpSettings {
    /// By hand, so that a token never reaches a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("addr", &self.addr)
            .field("health_addr", &self.health_addr)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_file", &self.token_file)
            .field("metrics_require_token", &self.metrics_require_token)
            .field("revocation_scope", &self.revocation_scope)
            .field("session_key_file", &self.session_key_file)
            .finish()
    }
}

impl HttpSettings {
    /// The API's access rule: tokens from the environment or the file, and a refusal to serve
    /// a non-loopback address without any.
    pub(super) fn auth(&self) -> Result<ApiAuth, AppError> {
        let mut tokens = Vec::new();
        if let Some(token) = &self.token {
            let token = token.trim();
            if token.is_empty() {
                return Err(AppError::Usage(
                    "OPTOUT_HTTP_TOKEN is empty: set a token, or unset it".into(),
                ));
            }
            tokens.push(token.to_string());
        }
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                AppError::Usage(format!(
                    "cannot read --http-token-file {}: {e}",
                    path.display()
                ))
            })?;
            let before = tokens.len();
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
            if tokens.len() == before {
                return Err(AppError::Usage(format!(
                    "--http-token-file {} holds no token: write one per line",
                    path.display()
                )));
            }
        }
        let addr = self.addr;
        if tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(AppError::Usage(format!(
                "--http-addr {addr} is reachable from other hosts but no token is set: set \
                 OPTOUT_HTTP_TOKEN or --http-token-file, or listen on 127.0.0.1"
            )));
        }
        if !addr.ip().is_loopback()
            && let Some(short) = tokens.iter().map(|t| t.chars().count()).min()
            && short < MIN_TOKEN_CHARS
        {
            // The length only: never the token.
            return Err(AppError::Usage(format!(
                "--http-addr {addr} is reachable from other hosts but a token is {short} \
                 characters: use at least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)"
            )));
        }
        if self.health_addr == Some(addr) {
            return Err(AppError::Usage(format!(
                "--health-addr {addr} is --http-addr too: give the probes a port of their own, \
                 or leave --health-addr out to serve them on the API's port"
            )));
        }
        if tokens.is_empty() && self.metrics_require_token {
            return Err(AppError::Usage(
                "--metrics-require-token needs a token: set OPTOUT_HTTP_TOKEN or --http-token-file"
                    .into(),
            ));
        }
        Ok(ApiAuth::new(tokens, self.metrics_require_token))
    }
}

impl HttpSettings {
    /// The web console's settings: the session key from `--session-key-file` (or a random
    /// one), and cookies always `Secure` when `public_url` (`--public-url`) is HTTPS.
    pub(super) fn console(
        &self,
        public_url: Option<&str>,
    ) -> Result<crate::console::ConsoleConfig, AppError> {
        let session_key = match &self.session_key_file {
            None => crate::console::SessionKey::random(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    AppError::Usage(format!(
                        "cannot read --session-key-file {}: {e}",
                        path.display()
                    ))
                })?;
                crate::console::SessionKey::from_text(&text).map_err(|e| {
                    AppError::Usage(format!("--session-key-file {}: {e}", path.display()))
                })?
            }
        };
        let https = match public_url {
            None => false,
            Some(url) => {
                PublicUrl::parse(url)
                    .map_err(|e| AppError::Usage(format!("invalid --public-url: {e}")))?;
                url.trim().to_ascii_lowercase().starts_with("https://")
            }
        };
        Ok(crate::console::ConsoleConfig { session_key, https })
    }
}

/// How the consumer reads the stream (`optout run`).
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The Kinesis stream of the Event Streams sink.
    pub stream: String,
    /// Where shards without a checkpoint start.
    pub initial_position: InitialPosition,
    /// Wait before polling a caught-up shard again.
    pub poll_interval: Duration,
    /// How often to look for new shards after a reshard.
    pub discovery_interval: Duration,
    /// Exit once every shard is finished or caught up with nothing new for this long.
    pub exit_when_idle: Option<Duration>,
    /// This worker's name in the lease table (default: host name and pid).
    pub worker_id: Option<String>,
    /// How long a lease lasts without renewal (PostgreSQL, several workers).
    pub lease_duration: Duration,
    /// Records asked for per `GetRecords` call.
    pub max_records_per_call: i32,
    /// Memory budget, in MiB, for records held between fetch and commit.
    pub max_in_flight_mb: u64,
    /// Record data all polling consumers of one shard may read, MiB a second (0: no limit).
    pub shard_read_mib: f64,
    /// This consumer's share (0.01 to 1) of each shard's read limits, bytes and calls.
    pub shard_read_share: f64,
    /// Restart a reader with no successful call for this long.
    pub stall_timeout: Duration,
    /// Read with enhanced fan-out as this registered stream consumer.
    pub consumer_name: Option<String>,
    /// A shard failing for this long makes `/readyz` answer 503.
    pub failing_after: Duration,
}

impl ConsumerSettings {
    /// The defaults `optout run` documents, for `stream`.
    pub fn new(stream: impl Into<String>) -> Self {
        ConsumerSettings {
            stream: stream.into(),
            initial_position: InitialPosition::TrimHorizon,
            poll_interval: Duration::from_millis(500),
            discovery_interval: Duration::from_secs(30),
            exit_when_idle: None,
            worker_id: None,
            lease_duration: Duration::from_secs(10),
            max_records_per_call: 10_000,
            max_in_flight_mb: 64,
            shard_read_mib: 2.0,
            shard_read_share: 1.0,
            stall_timeout: Duration::from_secs(120),
            consumer_name: None,
            failing_after: Duration::from_secs(60),
        }
    }

    /// Refuses settings no run can use, before any AWS call.
    pub(super) fn check(&self) -> Result<(), AppError> {
        if self.stream.trim().is_empty() {
            return Err(AppError::Usage(
                "--stream is empty: name the Kinesis stream to read".into(),
            ));
        }
        if self
            .worker_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(AppError::Usage(
                "--worker-id is empty: give each worker a name".into(),
            ));
        }
        if !(0.01..=1.0).contains(&self.shard_read_share) {
            return Err(AppError::Usage(format!(
                "--shard-read-share {} is not a share from 0.01 to 1",
                self.shard_read_share
            )));
        }
        if !(0.0..=1024.0).contains(&self.shard_read_mib) {
            return Err(AppError::Usage(format!(
                "--shard-read-mib {} is not a number of MiB from 0 to 1024",
                self.shard_read_mib
            )));
        }
        Ok(())
    }
}
