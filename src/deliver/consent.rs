//! Twilio's Consent Management API as a delivery target: `POST {api}/v1/Consents/Bulk`,
//! form-encoded with the parameter `Items` repeated once per item (each a JSON object), at
//! most 25 items a request, HTTP basic auth per account, and an answer that lists an
//! `error_code` per `correlation_id` (0: accepted). This is the shape of the `twilio-oai`
//! spec (`CreateBulkConsents`) and of Twilio's helper libraries.
//!
//! Pushing an opt-out there makes Twilio block that sender's later messages to the number:
//! this is how a phrase revocation ("stop texting me"), which Twilio does not block by
//! itself, is honoured where the messages are sent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::credentials::Credentials;
use super::http::{HttpClient, SendError, retry_after};
use super::metrics;
use super::rate::TokenBuckets;
use super::retry::RetryPolicy;
use super::{Change, Clock, Item, Outcome, Target};

/// The target's name in the outbox, metrics and `optout deliveries`.
pub const NAME: &str = "twilio-consent";
/// Most items Twilio takes in one request.
pub const MAX_ITEMS: usize = 25;
/// Twilio answers within this or not at all.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Requests a minute per account Twilio allows (then 429).
pub const REQUESTS_PER_MINUTE: u32 = 100;
/// The burst the bucket allows; the steady rate is what remains of the minute's allowance,
/// so that no sixty seconds ever see more than [`REQUESTS_PER_MINUTE`] from one process.
const BURST: u32 = 10;

/// Which changes are pushed (`--twilio-consent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentMode {
    /// Nothing.
    #[default]
    Off,
    /// The opt-outs Twilio did not block itself: phrase-detected revocations, and opt-outs
    /// that reached a scope from another one (`--revocation-scope account|all`).
    Revocations,
    /// Every opt-out and opt-in, except those Twilio made (reassigned numbers).
    All,
}

/// What the Consent API target needs.
#[derive(Debug, Clone)]
pub struct ConsentConfig {
    pub mode: ConsentMode,
    /// `--twilio-api-url`: `https://accounts.twilio.com`, or a test's fake.
    pub api_url: Uri,
    pub credentials: Credentials,
}

/// The Consent API target.
pub struct ConsentTarget {
    config: ConsentConfig,
    endpoint: Uri,
    client: HttpClient,
    buckets: TokenBuckets,
    clock: Arc<dyn Clock>,
}

impl ConsentTarget {
    /// A target for `config`, timing its rate limit on `clock`.
    pub fn new(config: ConsentConfig, client: HttpClient, clock: Arc<dyn Clock>) -> Self {
        let base = config.api_url.to_string();
        let endpoint = format!("{}/v1/Consents/Bulk", base.trim_end_matches('/'))
            .parse()
            .expect("a base URL plus a path is a URL");
        ConsentTarget {
            config,
            endpoint,
            client,
            buckets: TokenBuckets::new(REQUESTS_PER_MINUTE - BURST, BURST),
            clock,
        }
    }

    /// Whether `change` is pushed, and if not, why.
    pub fn skip_reason(&self, change: &Change) -> Option<&'static str> {
        if change.subscriber.starts_with("whatsapp:") {
            return Some("whatsapp");
        }
        if change.reason == "reassigned_number" || change.detection == "reassigned" {
            return Some("reassigned");
        }
        // What Twilio did not block itself: a phrase revocation, and (under
        // `--revocation-scope account|all`) an opt-out that reached this scope from another
        // one, since Twilio blocks a STOP only where it was sent.
        let unblocked = change.detection == "phrase" || change.origin_scope.is_some();
        if self.config.mode == ConsentMode::Revocations
            && !(unblocked && change.status == "opted_out")
        {
            return Some("not_revocation");
        }
        if self.config.credentials.get(&change.account_sid).is_none() {
            return Some("no_credentials");
        }
        None
    }

    /// Sends one request for `items` (one account, at most 25); one outcome per item.
    async fn send(&self, account: &str, items: &[&Item]) -> Vec<Outcome> {
        let all = |o: Outcome| vec![o; items.len()];
        let Some(credential) = self.config.credentials.get(account) else {
            return all(Outcome::Failed {
                reason: "no credentials for this account".into(),
            });
        };
        loop {
            match self.buckets.take(account, self.clock.now()) {
                Ok(()) => break,
                Err(wait) => self.clock.sleep(wait).await,
            }
        }
        let body = form_body(items);
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", credential.username, credential.password));
        let headers = vec![
            (
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept", "application/json".to_string()),
            ("authorization", format!("Basic {basic}")),
            (
                "user-agent",
                concat!("optout/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ];
        let response = match self
            .client
            .post(&self.endpoint, headers, body, TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(e @ SendError::Timeout(_)) | Err(e @ SendError::Transport(_)) => {
                return all(Outcome::Retry {
                    after: None,
                    reason: e.to_string(),
                });
            }
            Err(e @ SendError::TooLarge) => {
                return all(Outcome::Retry {
                    after: None,
                    reason: e.to_string(),
                });
            }
        };
        let status = response.status;
        if status == StatusCode::TOO_MANY_REQUESTS {
            metrics::throttled(NAME);
            return all(Outcome::Retry {
                after: retry_after(&response.headers),
                reason: "429 Too Many Requests".into(),
            });
        }
        if !status.is_success() {
            let reason = format!("HTTP {}: {}", status.as_u16(), snippet(&response.body));
            if status.is_client_error() {
                // 401/403: credentials an operator can fix; 400: Twilio refused the request.
                // Retried on the schedule (bounded), so a fix in time loses nothing.
                warn!(
                    target_name = NAME,
                    status = status.as_u16(),
                    "Consent API refused a request."
                );
            }
            return all(Outcome::Retry {
                after: retry_after(&response.headers),
                reason,
            });
        }
        per_item(items, &response.body)
    }
}

/// A short, printable start of an error body (Twilio's carry a code and message, no number).
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.chars().filter(|c| !c.is_control()).collect()
}

/// The `correlation_id` of an item: 32 hex digits derived from its key, so every retry and
/// every copy carries the same one.
pub fn correlation_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// One item as the Consent API takes it.
pub fn consent_item(item: &Item) -> serde_json::Value {
    let c = &item.change;
    let opt_out = c.status == "opted_out";
    serde_json::json!({
        "contact_id": c.subscriber,
        "correlation_id": correlation_id(&item.key),
        "sender_id": c.messaging_service_sid.as_deref().unwrap_or(&c.sender),
        "status": if opt_out { "opt-out" } else { "opt-in" },
        "source": if opt_out { "opt-out-message" } else { "opt-in-message" },
        "date_of_consent": c.occurred_at,
    })
}

/// `Items=<json>&Items=<json>…`, as Twilio's helper libraries send it.
fn form_body(items: &[&Item]) -> Bytes {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for item in items {
        form.append_pair("Items", &consent_item(item).to_string());
    }
    Bytes::from(form.finish())
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    items: Vec<AnswerItem>,
}

#[derive(Deserialize)]
struct AnswerItem {
    correlation_id: String,
    error_code: i64,
    #[serde(default)]
    error_messages: Vec<String>,
}

/// Reads a 2xx answer: per item, its `error_code` (0: delivered; else failed, with the code
/// and messages recorded); an item the answer does not mention is tried again.
fn per_item(items: &[&Item], body: &[u8]) -> Vec<Outcome> {
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return vec![
                Outcome::Retry {
                    after: None,
                    reason: format!("unreadable answer: {e}"),
                };
                items.len()
            ];
        }
    };
    items
        .iter()
        .map(|item| {
            let id = correlation_id(&item.key);
            match answer.items.iter().find(|a| a.correlation_id == id) {
                Some(a) if a.error_code == 0 => Outcome::Delivered,
                Some(a) => Outcome::Failed {
                    reason: format!(
                        "error_code {}: {}",
                        a.error_code,
                        a.error_messages.join(", ")
                    ),
                },
                None => Outcome::Retry {
                    after: None,
                    reason: "the answer did not mention this item".into(),
                },
            }
        })
        .collect()
}

#[async_trait]
impl Target for ConsentTarget {
    fn name(&self) -> &str {
        NAME
    }

    fn max_batch(&self) -> usize {
        MAX_ITEMS
    }

    fn wants(&self, change: &Change) -> bool {
        if self.config.mode == ConsentMode::Off {
            return false;
        }
        match self.skip_reason(change) {
            None => true,
            Some(reason) => {
                metrics::skipped(NAME, reason);
                false
            }
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
            max_attempts: 10,
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }

    async fn deliver(&self, items: &[Item], _now: SystemTime) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        // Group by account (each has its credentials and its bucket), in claim order.
        let mut accounts: Vec<&str> = Vec::new();
        for item in items {
            if !accounts.contains(&item.change.account_sid.as_str()) {
                accounts.push(&item.change.account_sid);
            }
        }
        for account in accounts {
            let indexes: Vec<usize> = (0..items.len())
                .filter(|&i| items[i].change.account_sid == account)
                .collect();
            for chunk in indexes.chunks(MAX_ITEMS) {
                let batch: Vec<&Item> = chunk.iter().map(|&i| &items[i]).collect();
                for (i, outcome) in chunk.iter().zip(self.send(account, &batch).await) {
                    outcomes[*i] = Some(outcome);
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every item is in one account's batch"))
            .collect()
    }
}

#[cfg(test)]
#[path = "consent_tests.rs"]
pub(crate) mod tests;
