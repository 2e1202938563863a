//! The outbox's side of the store: the change feed's rows and, per delivery target, the
//! items to deliver. Written by [`super::Store::commit`] in the same transaction as the opt
//! event that causes them; claimed and settled by the dispatchers of `crate::deliver`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use sqlx::Row as _;

use super::StoreError;

/// One change of what optout answers for a subscriber in one scope, in commit order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the change feed: strictly increasing in commit order.
    pub cursor: i64,
    pub account_sid: String,
    /// Messaging Service SID or sender number.
    pub scope: String,
    pub messaging_service_sid: Option<String>,
    pub sender: String,
    pub subscriber: String,
    /// `opted_out` or `opted_in`.
    pub status: String,
    pub send_allowed: bool,
    /// `twilio_stop`, `keyword_stop`, `reassigned_number`, `phrase_revocation`, `opted_in`, or
    /// under `--revocation-scope account|all` `account_opt_out` / `all_accounts_opt_out`.
    pub reason: String,
    /// The opt event that caused the change.
    pub event_id: String,
    pub message_sid: Option<String>,
    /// `STOP` or `START` (HELP changes no answer).
    pub opt_out_type: String,
    /// `twilio`, `keyword`, `phrase` or `reassigned`.
    pub detection: String,
    /// The revocation rule, for a phrase detection.
    pub rule: Option<String>,
    /// `data.timestamp` of the event (UTC, RFC 3339).
    pub occurred_at: String,
    /// For `account_opt_out` and `all_accounts_opt_out` (`--revocation-scope account|all`):
    /// the account of the scope the opt-out was sent in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_account_sid: Option<String>,
    /// … and that scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_scope: Option<String>,
}

/// One outbox item: a change to deliver to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Outbox row id.
    pub id: i64,
    /// The target's name (`twilio-consent`, `notify:<n>`).
    pub target: String,
    /// Stable across retries and copies: the Standard Webhooks `webhook-id`, the Consent
    /// API's `correlation_id`.
    pub key: String,
    /// Deliveries run in order per key (account, scope, subscriber).
    pub ordering_key: String,
    pub change: Change,
    /// Tries so far, this one not counted.
    pub attempts: u32,
    /// When the commit wrote it: retries give up by its age, however long the items before it
    /// on its key held it back.
    pub created: SystemTime,
}

/// A delivery target as the commit sees it: a name and which changes it takes. The store
/// knows no target; the composition root builds these from `crate::deliver`'s targets.
#[derive(Clone)]
pub struct OutboxTarget {
    pub name: String,
    pub wants: Arc<dyn Fn(&Change) -> bool + Send + Sync>,
}

impl std::fmt::Debug for OutboxTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxTarget")
            .field("name", &self.name)
            .finish()
    }
}

/// What a dispatcher made of one claimed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    /// Due again at `at`.
    RetryAt {
        at: SystemTime,
        reason: String,
    },
    /// Given up: visible in `optout deliveries`; later items of its key go on.
    Failed {
        reason: String,
    },
}

/// One settled item; `attempts` counts this try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub id: i64,
    pub attempts: u32,
    pub settle: Settle,
}

/// Pending work of one target, for metrics and alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetBacklog {
    pub target: String,
    pub pending: u64,
    pub failed: u64,
    /// Age of the oldest pending item.
    pub oldest_pending_secs: Option<u64>,
}

/// Claiming and settling outbox items. With several instances (PostgreSQL) each item is
/// claimed by one dispatcher at a time, and a claim not settled within `hold` (a dead
/// dispatcher) is taken over.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Which targets the next commits write items for (none: no outbox items, the change
    /// feed still fills).
    fn set_outbox_targets(&self, targets: Vec<OutboxTarget>);

    /// Claims up to `limit` due items of `target` for `owner` until `now + hold`: per ordering
    /// key only the oldest unsettled item, so a later change is never delivered before an
    /// earlier one.
    async fn claim(
        &self,
        target: &str,
        owner: &str,
        limit: usize,
        now: SystemTime,
        hold: Duration,
    ) -> Result<Vec<Item>, StoreError>;

    /// Records what became of claimed items; a settlement for a claim `owner` no longer holds
    /// is ignored (another dispatcher took it over).
    async fn settle(&self, owner: &str, settlements: &[Settlement]) -> Result<(), StoreError>;

    /// Pending and failed items per target.
    async fn backlog(&self, now: SystemTime) -> Result<Vec<TargetBacklog>, StoreError>;
}

/// What [`super::Store::resync`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ResyncSummary {
    /// Keys (account, scope, subscriber) answered again.
    pub keys: u64,
    /// Keys whose answer differed from the last one recorded: one change each.
    pub changes: u64,
    /// Outbox items written for those changes (every target that wants them).
    pub outbox_items: u64,
    /// Items of the current answers written for the new target (0 without one; an answer it
    /// already has is not written again).
    pub target_items: u64,
}

/// The change of a row that selects a change's columns (`outbox_sql::item_columns`, the
/// feed's, resync's): shared by every reader of the `changes` table.
pub(crate) fn change_of(r: &sqlx::any::AnyRow) -> Result<Change, sqlx::Error> {
    Ok(Change {
        cursor: r.try_get("change_id")?,
        account_sid: r.try_get("account_sid")?,
        scope: r.try_get("scope")?,
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: r.try_get("subscriber")?,
        status: r.try_get("status")?,
        send_allowed: r.try_get::<i64, _>("send_allowed")? != 0,
        reason: r.try_get("reason")?,
        event_id: r.try_get("event_id")?,
        message_sid: r.try_get("message_sid")?,
        opt_out_type: r.try_get("opt_out_type")?,
        detection: r.try_get("detection")?,
        rule: r.try_get("rule")?,
        occurred_at: r.try_get("occurred_at")?,
        origin_account_sid: r.try_get("origin_account_sid")?,
        origin_scope: r.try_get("origin_scope")?,
    })
}
