//! Twilio's webhooks on the command line: the flags that turn the webhook routes on, shared by
//! `optout run --http-addr` and `optout serve`.

use std::path::PathBuf;

use clap::Args;

use crate::app::WebhookSettings;

/// Twilio's webhooks (`POST /twilio/messaging`, `POST /twilio/events`).
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Accept Twilio's webhooks (POST /twilio/messaging and /twilio/events) signed with one of
    /// these auth tokens: one per line (primary and secondary during a rotation), or
    /// `AC… TOKEN` to tie a token to one account; read at start. Without it those routes answer
    /// 404, and `serve` stays read-only.
    #[arg(long, env = "OPTOUT_TWILIO_AUTH_TOKEN_FILE", value_name = "PATH")]
    pub twilio_auth_token_file: Option<PathBuf>,
    /// The URL Twilio calls: scheme, host, port and any path prefix a proxy strips, e.g.
    /// https://optout.example.com behind a TLS-terminating proxy. Signatures are checked
    /// against it plus each request's path and query.
    #[arg(long, env = "OPTOUT_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// `user:password` lines an Event Streams sink URL may carry
    /// (https://user:password@host/twilio/events), accepted on /twilio/events in place of a
    /// signature.
    #[arg(long, env = "OPTOUT_TWILIO_BASIC_AUTH_FILE", value_name = "PATH")]
    pub twilio_basic_auth_file: Option<PathBuf>,
}

impl WebhookArgs {
    /// The application's webhook settings; it reads and checks the files.
    pub fn settings(&self) -> WebhookSettings {
        WebhookSettings {
            auth_token_file: self.twilio_auth_token_file.clone(),
            public_url: self.public_url.clone(),
            basic_auth_file: self.twilio_basic_auth_file.clone(),
        }
    }
}
