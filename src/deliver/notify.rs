//! The customer's own webhooks as a delivery target, signed per the Standard Webhooks spec:
//! `webhook-id` (the item's key: the same on every retry, so the receiver drops copies),
//! `webhook-timestamp` (unix seconds, new on every try) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64-decoded
//! `whsec_…` secret). One JSON payload per change; any 2xx is delivered, anything else is
//! tried again on a schedule that gives up after 24 hours.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::Uri;
use base64::Engine as _;
use futures_util::future::join_all;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::http::{HttpClient, retry_after};
use super::metrics;
use super::retry::RetryPolicy;
use super::{Change, Item, Outcome, Target};

/// No receiver gets longer than this to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Items sent at once (each its own request, to distinct subscribers).
const MAX_BATCH: usize = 16;

/// A Standard Webhooks signing secret (`whsec_<base64>`), never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Reads `whsec_<base64>` (whitespace around it ignored). The error never quotes it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some(b64) = text.strip_prefix("whsec_") else {
            return Err("the secret must be in the Standard Webhooks form whsec_<base64>".into());
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the secret after whsec_ is not valid base64".to_string())?;
        if key.len() < 24 {
            return Err(format!(
                "the secret is {} bytes: use at least 24 (e.g. `echo whsec_$(openssl rand -base64 32)`)",
                key.len()
            ));
        }
        Ok(Secret(key))
    }

    /// `v1,<signature>` of `body` sent as `id` at `timestamp`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let sig = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(sig)
        )
    }
}

/// One `--notify-url` with its secret.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// `notify:<n>`, n counting the URLs from 1 in the order given.
    pub name: String,
    pub url: Uri,
    pub secret: Secret,
}

/// A signed-webhook target.
pub struct NotifyTarget {
    config: NotifyConfig,
    client: HttpClient,
}

impl NotifyTarget {
    pub fn new(config: NotifyConfig, client: HttpClient) -> Self {
        NotifyTarget { config, client }
    }

    async fn send(&self, item: &Item, now: SystemTime) -> Outcome {
        let body = Bytes::from(payload(&item.change).to_string());
        let timestamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let signature = self.config.secret.sign(&item.key, timestamp, &body);
        let headers = vec![
            ("content-type", "application/json".to_string()),
            ("webhook-id", item.key.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
            (
                "user-agent",
                concat!("optout/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ];
        match self
            .client
            .post(&self.config.url, headers, body, TIMEOUT)
            .await
        {
            Ok(r) if r.status.is_success() => Outcome::Delivered,
            Ok(r) => {
                if r.status.as_u16() == 429 {
                    metrics::throttled(&self.config.name);
                }
                Outcome::Retry {
                    after: retry_after(&r.headers),
                    reason: format!("HTTP {}", r.status.as_u16()),
                }
            }
            Err(e) => Outcome::Retry {
                after: None,
                reason: e.to_string(),
            },
        }
    }
}

/// The JSON a receiver gets for one change, in the Standard Webhooks envelope
/// (`type`, `timestamp`, `data`).
pub fn payload(c: &Change) -> serde_json::Value {
    let mut body = json!({
        "type": "subscriber.changed",
        "timestamp": c.occurred_at,
        "data": {
            "cursor": c.cursor,
            "subscriber": c.subscriber,
            "scope": c.scope,
            "account_sid": c.account_sid,
            "messaging_service_sid": c.messaging_service_sid,
            "sender": c.sender,
            "status": c.status,
            "send_allowed": c.send_allowed,
            "reason": c.reason,
            "event_id": c.event_id,
            "message_sid": c.message_sid,
            "opt_out_type": c.opt_out_type,
            "detection": c.detection,
            "rule": c.rule,
            "occurred_at": c.occurred_at,
        }
    });
    // Where an opt-out that reached this scope was sent (`--revocation-scope account|all`);
    // absent otherwise, so a receiver written for `scope` mode reads the same bodies.
    if let (Some(account), Some(scope)) = (&c.origin_account_sid, &c.origin_scope) {
        body["data"]["origin_account_sid"] = json!(account);
        body["data"]["origin_scope"] = json!(scope);
    }
    body
}

#[async_trait]
impl Target for NotifyTarget {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// Every change: the customer's systems want to know of each.
    fn wants(&self, _change: &Change) -> bool {
        true
    }

    /// 5 s, doubling to 4 h, until the schedule has run for 24 hours (about 17 tries).
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(5),
            max_delay: Duration::from_secs(4 * 3600),
            max_attempts: u32::MAX,
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }

    /// One request per item, side by side: the claim hands out at most one item per ordering
    /// key, so these never race one subscriber's changes against each other.
    async fn deliver(&self, items: &[Item], now: SystemTime) -> Vec<Outcome> {
        join_all(items.iter().map(|item| self.send(item, now))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The reference implementations' test vector.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn the_origin_of_an_opt_out_from_another_scope_is_in_the_body_only_then() {
        let mut c = crate::deliver::consent::tests::change("+15551230000", "twilio", "opted_out");
        assert!(payload(&c)["data"].get("origin_scope").is_none());
        c.reason = "account_opt_out".into();
        c.origin_account_sid = Some(c.account_sid.clone());
        c.origin_scope = Some("MG2".into());
        let data = &payload(&c)["data"];
        assert_eq!(
            (&data["origin_scope"], &data["reason"]),
            (&json!("MG2"), &json!("account_opt_out"))
        );
    }

    #[test]
    fn a_secret_must_be_whsec_base64_of_enough_bytes() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_not base64!").is_err());
        assert!(
            Secret::parse("whsec_c2hvcnQ=")
                .unwrap_err()
                .contains("at least 24")
        );
        let s = Secret::parse("  whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
