//! The delivery side of `optout run` and `optout serve`: the targets built from settings
//! (checked once: a mistake is one line and exit 2), told to the store's commit (which writes
//! their outbox items) and served by one dispatcher each until shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::AppError;
use crate::deliver::{
    self, Clock, ConsentConfig, ConsentMode, ConsentTarget, Credentials, DispatchSettings,
    HttpClient, NotifyConfig, NotifyTarget, Secret, SystemClock, Target, TwilioEnv,
};
use crate::store::Outbox;

/// Twilio's Consent API, as `--twilio-api-url` defaults.
pub const TWILIO_API_URL: &str = "https://accounts.twilio.com";

/// Where changes are delivered.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `--twilio-consent`.
    pub twilio_consent: ConsentMode,
    /// `--twilio-api-url`.
    pub twilio_api_url: String,
    /// `--twilio-credentials-file`: `ACCOUNT_SID API_KEY API_SECRET` or `ACCOUNT_SID TOKEN`
    /// per line.
    pub twilio_credentials_file: Option<PathBuf>,
    /// `TWILIO_ACCOUNT_SID`, `TWILIO_API_KEY`/`TWILIO_API_SECRET`, `TWILIO_AUTH_TOKEN`.
    pub twilio_env: TwilioEnv,
    /// `--notify-url`, in order.
    pub notify_urls: Vec<String>,
    /// `--notify-secret-file`, paired with the URLs by position.
    pub notify_secret_files: Vec<PathBuf>,
    /// `--delivery-hold-secs`: how long a claim lasts (a dead instance's items are taken
    /// over after this).
    pub hold: Duration,
    /// `--delivery-poll-ms`: the wait between claims once nothing is due.
    pub poll: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        let d = DispatchSettings::default();
        DeliverySettings {
            twilio_consent: ConsentMode::Off,
            twilio_api_url: TWILIO_API_URL.into(),
            twilio_credentials_file: None,
            twilio_env: TwilioEnv::default(),
            notify_urls: Vec::new(),
            notify_secret_files: Vec::new(),
            hold: d.hold,
            poll: d.poll,
        }
    }
}

impl DeliverySettings {
    /// Whether pushing revocations to Twilio makes them honoured here too (they are: a
    /// revocation pushed is a revocation acted on, so optout's own answer must agree).
    pub fn implies_honor_revocations(&self) -> bool {
        self.twilio_consent == ConsentMode::Revocations
    }

    /// The configured targets, every file read and every URL checked once; none when nothing
    /// is configured.
    pub(super) fn targets(&self, clock: Arc<dyn Clock>) -> Result<Vec<Arc<dyn Target>>, AppError> {
        let usage = |m: String| AppError::Usage(m);
        if self.notify_urls.len() != self.notify_secret_files.len() {
            return Err(usage(format!(
                "{} --notify-url but {} --notify-secret-file: give one secret file per URL, in \
                 the same order",
                self.notify_urls.len(),
                self.notify_secret_files.len()
            )));
        }
        let consent_on = self.twilio_consent != ConsentMode::Off;
        if !consent_on && self.twilio_credentials_file.is_some() {
            return Err(usage(
                "--twilio-credentials-file needs --twilio-consent revocations or all".into(),
            ));
        }
        if !consent_on && self.notify_urls.is_empty() {
            return Ok(Vec::new());
        }
        let client = HttpClient::new().map_err(usage)?;
        let mut targets: Vec<Arc<dyn Target>> = Vec::new();
        if consent_on {
            let api_url = parse_url("--twilio-api-url", &self.twilio_api_url)?;
            let credentials = self.credentials()?;
            targets.push(Arc::new(ConsentTarget::new(
                ConsentConfig {
                    mode: self.twilio_consent,
                    api_url,
                    credentials,
                },
                client.clone(),
                clock,
            )));
        }
        for (n, (url, secret_file)) in self
            .notify_urls
            .iter()
            .zip(&self.notify_secret_files)
            .enumerate()
        {
            let url = parse_url("--notify-url", url)?;
            let text = std::fs::read_to_string(secret_file).map_err(|e| {
                usage(format!(
                    "cannot read --notify-secret-file {}: {e}",
                    secret_file.display()
                ))
            })?;
            let secret = Secret::parse(&text).map_err(|e| {
                usage(format!(
                    "--notify-secret-file {}: {e}",
                    secret_file.display()
                ))
            })?;
            targets.push(Arc::new(NotifyTarget::new(
                NotifyConfig {
                    name: format!("notify:{}", n + 1),
                    url,
                    secret,
                },
                client.clone(),
            )));
        }
        Ok(targets)
    }

    /// The Consent API's credentials: the file if given (it may list several accounts),
    /// else the environment.
    fn credentials(&self) -> Result<Credentials, AppError> {
        match &self.twilio_credentials_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    AppError::Usage(format!(
                        "cannot read --twilio-credentials-file {}: {e}",
                        path.display()
                    ))
                })?;
                Credentials::parse_file(&text).map_err(|e| {
                    AppError::Usage(format!("--twilio-credentials-file {}: {e}", path.display()))
                })
            }
            None => Credentials::from_env(&self.twilio_env)
                .map_err(|e| AppError::Usage(format!("--twilio-consent: {e}"))),
        }
    }
}

/// An absolute http(s) URL, or one line that says what is wrong.
fn parse_url(flag: &str, text: &str) -> Result<axum::http::Uri, AppError> {
    let bad = |why: &str| AppError::Usage(format!("invalid {flag} `{text}`: {why}"));
    let uri: axum::http::Uri = text.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(bad("use an absolute http:// or https:// URL")),
    }
}

/// The running dispatchers.
pub(super) struct Delivery {
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl Delivery {
    /// Tells the store's commit which targets to write items for, then starts a dispatcher
    /// per target. Nothing when `targets` is empty.
    pub(super) fn start(
        targets: Vec<Arc<dyn Target>>,
        outbox: Arc<dyn Outbox>,
        settings: &DeliverySettings,
    ) -> Option<Delivery> {
        if targets.is_empty() {
            return None;
        }
        outbox.set_outbox_targets(deliver::outbox_targets(&targets));
        let names: Vec<&str> = targets.iter().map(|t| t.name()).collect();
        info!(targets = ?names, "Delivering changes.");
        let stop = CancellationToken::new();
        let dispatch = DispatchSettings {
            hold: settings.hold,
            poll: settings.poll,
            ..DispatchSettings::default()
        };
        let tasks = deliver::spawn(
            targets,
            outbox,
            Arc::new(SystemClock),
            dispatch,
            stop.clone(),
        );
        Some(Delivery { tasks, stop })
    }

    /// Stops the dispatchers once each has settled its batch in hand.
    pub(super) async fn finish(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The real clock, for the targets that time themselves (the Consent API's rate limit).
pub(super) fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DeliverySettings {
        DeliverySettings::default()
    }

    fn err(s: &DeliverySettings) -> String {
        match s.targets(system_clock()) {
            Err(AppError::Usage(m)) => m,
            Err(other) => panic!("not a usage error: {other}"),
            Ok(t) => panic!("accepted, {} targets", t.len()),
        }
    }

    #[test]
    fn nothing_configured_is_no_target() {
        assert!(settings().targets(system_clock()).unwrap().is_empty());
    }

    #[test]
    fn config_mistakes_are_one_line_usage_errors() {
        let mut s = settings();
        s.twilio_consent = ConsentMode::All;
        assert!(err(&s).contains("TWILIO_ACCOUNT_SID"));
        s.twilio_env = TwilioEnv {
            account_sid: Some("AC0123456789abcdef0123456789abcdef".into()),
            auth_token: Some("tok3n".into()),
            ..TwilioEnv::default()
        };
        s.twilio_api_url = "accounts.twilio.com".into();
        assert!(err(&s).contains("--twilio-api-url"));
        s.twilio_api_url = TWILIO_API_URL.into();
        assert_eq!(s.targets(system_clock()).unwrap().len(), 1);
        s.twilio_credentials_file = Some("/nonexistent/creds".into());
        assert!(err(&s).starts_with("cannot read --twilio-credentials-file"));

        let mut s = settings();
        s.notify_urls = vec!["https://example.com/hook".into()];
        assert!(err(&s).contains("one secret file per URL"));
        s.notify_secret_files = vec!["/nonexistent/secret".into()];
        assert!(err(&s).starts_with("cannot read --notify-secret-file"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "hunter2").unwrap();
        s.notify_secret_files = vec![file.clone()];
        let e = err(&s);
        assert!(e.contains("whsec_") && !e.contains("hunter2"), "{e}");
        std::fs::write(&file, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let targets = s.targets(system_clock()).unwrap();
        assert_eq!(targets[0].name(), "notify:1");
        s.notify_urls = vec!["ftp://example.com".into()];
        assert!(err(&s).contains("--notify-url"));
        assert!(!err(&s).contains('\n'));
    }

    #[test]
    fn revocations_mode_implies_honouring_them() {
        let mut s = settings();
        assert!(!s.implies_honor_revocations());
        s.twilio_consent = ConsentMode::Revocations;
        assert!(s.implies_honor_revocations());
        s.twilio_consent = ConsentMode::All;
        assert!(!s.implies_honor_revocations());
    }
}
