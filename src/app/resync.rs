//! `optout deliveries --resync`: brings the change feed and the outbox in line with today's
//! state under the current `--revocation-scope`, after a switch of mode (commits follow a new
//! mode only for the keys they touch) or for a delivery target added since the changes were
//! written. The delivery flags are the writer's (the same environment), so the items written
//! are those the running dispatchers deliver.

use tracing::info;

use super::deliver::{DeliverySettings, system_clock};
use super::{AppError, store};
use crate::deliver;
use crate::store::{ResyncSummary, RevocationScope, StoreError};

/// What to resync.
#[derive(Debug, Clone)]
pub struct ResyncSettings {
    /// `--store` URL.
    pub store_url: String,
    /// The targets, as the writer configures them.
    pub delivery: DeliverySettings,
    /// `--revocation-scope`: the mode the writer runs under.
    pub revocation_scope: RevocationScope,
    /// `--target`: a target to enqueue every current answer for (one of `delivery`'s).
    pub new_target: Option<String>,
}

/// Answers every key the store has seen again under the mode and writes what differs; with a
/// new target, enqueues every current answer for it. Refuses (usage, exit 2) a target that is
/// not configured, and on SQLite a store another writer holds.
pub async fn resync(settings: ResyncSettings) -> Result<ResyncSummary, AppError> {
    let targets = deliver::outbox_targets(&settings.delivery.targets(system_clock())?);
    let new_target = match &settings.new_target {
        None => None,
        Some(name) => Some(
            targets
                .iter()
                .find(|t| &t.name == name)
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
                    AppError::Usage(format!(
                        "--target {name} is not a configured delivery target (configured: {}): \
                         give the same --twilio-consent and --notify-url flags as the writer",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                })?,
        ),
    };
    let store = store::open(&settings.store_url, 2).await?;
    if let Err(e) = store.claim_single_runner().await {
        store.close().await;
        return Err(match e {
            StoreError::Locked { path } => AppError::Usage(format!(
                "another optout writer is using {path}: on SQLite stop it, run --resync, and \
                 start it again"
            )),
            other => other.into(),
        });
    }
    store.set_outbox_targets(targets);
    store.set_revocation_scope(settings.revocation_scope);
    let done = store.resync(new_target.as_ref()).await;
    store.close().await;
    let summary = done?;
    info!(
        mode = ?settings.revocation_scope,
        keys = summary.keys,
        changes = summary.changes,
        outbox_items = summary.outbox_items,
        target_items = summary.target_items,
        "Resync done."
    );
    Ok(summary)
}
