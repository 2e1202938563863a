//! Delivery targets on the command line, shared by `optout run` and `optout serve`: Twilio's
//! Consent API and signed webhooks to the customer's systems.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::app::DeliverySettings;
use crate::app::vocabulary::ConsentMode;

/// `--twilio-consent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsentArg {
    /// Push nothing.
    Off,
    /// Push what Twilio did not block: phrase-detected revocations, and under
    /// --revocation-scope account|all the opt-outs that reached another scope; implies
    /// --honor-revocations.
    Revocations,
    /// Push every opt-out and opt-in (except reassigned-number opt-outs, which Twilio made).
    All,
}

/// Where changes are delivered.
#[derive(Debug, Clone, Args)]
pub struct DeliveryArgs {
    /// Push opt-outs to Twilio's Consent Management API so Twilio blocks later messages:
    /// credentials from TWILIO_ACCOUNT_SID with TWILIO_API_KEY/TWILIO_API_SECRET (or
    /// TWILIO_AUTH_TOKEN), or --twilio-credentials-file.
    #[arg(long, env = "OPTOUT_TWILIO_CONSENT", value_enum, default_value_t = ConsentArg::Off)]
    pub twilio_consent: ConsentArg,
    /// Twilio credentials, one account a line: `ACCOUNT_SID API_KEY API_SECRET` or
    /// `ACCOUNT_SID AUTH_TOKEN` (instead of the TWILIO_* variables; read at start).
    #[arg(long, env = "OPTOUT_TWILIO_CREDENTIALS_FILE", value_name = "PATH")]
    pub twilio_credentials_file: Option<PathBuf>,
    /// The Consent API's base URL (tests point it at a fake).
    #[arg(long, env = "OPTOUT_TWILIO_API_URL", value_name = "URL", default_value = crate::app::TWILIO_API_URL)]
    pub twilio_api_url: String,
    /// POST each change, signed per Standard Webhooks, to this URL (repeatable; pair each with
    /// a --notify-secret-file, in the same order).
    #[arg(
        long,
        value_name = "URL",
        env = "OPTOUT_NOTIFY_URL",
        value_delimiter = ','
    )]
    pub notify_url: Vec<String>,
    /// A file holding the Standard Webhooks secret (`whsec_<base64>`) of the --notify-url in
    /// the same position.
    #[arg(
        long,
        value_name = "PATH",
        env = "OPTOUT_NOTIFY_SECRET_FILE",
        value_delimiter = ','
    )]
    pub notify_secret_file: Vec<PathBuf>,
    /// How long a dispatcher holds the items it claimed: another instance takes over a dead
    /// one's items after this.
    #[arg(long, env = "OPTOUT_DELIVERY_HOLD_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub delivery_hold_secs: u64,
    /// How often a dispatcher with nothing due looks again, in milliseconds.
    #[arg(long, env = "OPTOUT_DELIVERY_POLL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub delivery_poll_ms: u64,
}

impl DeliveryArgs {
    /// The application's delivery settings, with Twilio's variables from the environment;
    /// it reads and checks the files.
    pub fn settings(&self) -> DeliverySettings {
        DeliverySettings {
            twilio_consent: match self.twilio_consent {
                ConsentArg::Off => ConsentMode::Off,
                ConsentArg::Revocations => ConsentMode::Revocations,
                ConsentArg::All => ConsentMode::All,
            },
            twilio_api_url: self.twilio_api_url.clone(),
            twilio_credentials_file: self.twilio_credentials_file.clone(),
            twilio_env: crate::app::vocabulary::TwilioEnv::from_process(),
            notify_urls: self.notify_url.clone(),
            notify_secret_files: self.notify_secret_file.clone(),
            hold: std::time::Duration::from_secs(self.delivery_hold_secs),
            poll: std::time::Duration::from_millis(self.delivery_poll_ms),
        }
    }
}
