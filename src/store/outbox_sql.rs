//! [`Outbox`] for the SQL store: claiming and settling outbox items on both backends.
//!
//! A claim takes, per ordering key, only the oldest pending item, and only once it is due and
//! unclaimed (or its claim has run out: a dead dispatcher's items are taken over after
//! `hold`). On PostgreSQL the rows are taken `FOR UPDATE SKIP LOCKED`, so several instances
//! claiming at once split the free items instead of queueing on each other; a claim's
//! `claimed_until_ms` outlives the claiming transaction. A settlement only lands while its
//! owner still holds the claim. Times are ms since the Unix epoch on the dispatcher's clock
//! (injectable in tests), never the database's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::StoreError;
use super::model::ms;
use super::outbox::{Item, Outbox, OutboxTarget, Settle, Settlement, TargetBacklog, change_of};
use super::schema::Dialect;
use super::sql::SqlStore;

/// The most items one claim takes, whatever `limit` says (bounds the statement's size).
const MAX_CLAIM: usize = 1_000;

/// The columns of an item and its change, over `outbox o JOIN changes c`.
pub(super) fn item_columns(d: Dialect) -> String {
    format!(
        "o.id, o.target, o.item_key, o.ordering_key, o.attempts, o.created_ms, \
         c.id AS change_id, \
         c.account_sid, c.scope, c.messaging_service_sid, c.sender, c.subscriber, c.status, \
         CAST(c.send_allowed AS INTEGER) AS send_allowed, c.reason, c.event_id, c.message_sid, \
         c.opt_out_type, c.detection, c.rule, {} AS occurred_at, c.origin_account_sid, \
         c.origin_scope",
        d.ts_out("c.occurred_at")
    )
}

fn item_of(r: &AnyRow) -> Result<Item, sqlx::Error> {
    Ok(Item {
        id: r.try_get("id")?,
        target: r.try_get("target")?,
        key: r.try_get("item_key")?,
        ordering_key: r.try_get("ordering_key")?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        created: SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(r.try_get::<i64, _>("created_ms")?).unwrap_or(0)),
        change: change_of(r)?,
    })
}

/// `$first, $first+1, …` for `n` values.
fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqlStore {
    /// The targets commits write items for now.
    pub(super) fn outbox_targets(&self) -> Arc<[OutboxTarget]> {
        self.outbox_targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl Outbox for SqlStore {
    fn set_outbox_targets(&self, targets: Vec<OutboxTarget>) {
        *self
            .outbox_targets
            .write()
            .unwrap_or_else(|p| p.into_inner()) = targets.into();
    }

    async fn claim(
        &self,
        target: &str,
        owner: &str,
        limit: usize,
        now: SystemTime,
        hold: Duration,
    ) -> Result<Vec<Item>, StoreError> {
        let limit = limit.clamp(1, MAX_CLAIM);
        let now_ms = ms(now);
        let until_ms = ms(now + hold);
        let mut tx = self.pool.begin().await?;
        // Audited: only the dialect's constant locking clause is spliced in.
        let free = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT o.id FROM outbox o WHERE o.target = $1 AND o.state = 'pending' \
             AND o.next_attempt_ms <= $2 \
             AND (o.claimed_until_ms IS NULL OR o.claimed_until_ms <= $2) \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.target = o.target \
             AND p.ordering_key = o.ordering_key AND p.state = 'pending' AND p.id < o.id) \
             ORDER BY o.id LIMIT $3{}",
            self.dialect.for_update_skip_locked()
        )))
        .bind(target)
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<i64> = free
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // Audited: only placeholders are spliced in.
        let mut update = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE outbox SET claimed_by = $1, claimed_until_ms = $2 WHERE id IN ({})",
            marks(3, ids.len())
        )))
        .bind(owner)
        .bind(until_ms);
        for id in &ids {
            update = update.bind(id);
        }
        update.execute(&mut *tx).await?;
        // Audited: only the dialect's casts and placeholders are spliced in.
        let mut select = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM outbox o JOIN changes c ON c.id = o.change_id \
             WHERE o.id IN ({}) ORDER BY o.id",
            item_columns(self.dialect),
            marks(1, ids.len())
        )));
        for id in &ids {
            select = select.bind(id);
        }
        let rows = select.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows.iter().map(item_of).collect::<Result<_, _>>()?)
    }

    async fn settle(&self, owner: &str, settlements: &[Settlement]) -> Result<(), StoreError> {
        if settlements.is_empty() {
            return Ok(());
        }
        let settled_ms = ms(SystemTime::now());
        let mut tx = self.pool.begin().await?;
        for s in settlements {
            let (state, next_ms, error) = match &s.settle {
                Settle::Delivered => ("delivered", None, None),
                Settle::RetryAt { at, reason } => ("pending", Some(ms(*at)), Some(reason)),
                Settle::Failed { reason } => ("failed", None, Some(reason)),
            };
            let settled = (state != "pending").then_some(settled_ms);
            // Only while `owner` holds the claim: a dispatcher whose claim ran out and was
            // taken over must not overwrite what the new owner does.
            sqlx::query(
                "UPDATE outbox SET state = $1, attempts = $2, \
                 next_attempt_ms = COALESCE($3, next_attempt_ms), last_error = $4, \
                 settled_ms = $5, claimed_by = NULL, claimed_until_ms = NULL \
                 WHERE id = $6 AND claimed_by = $7 AND state = 'pending'",
            )
            .bind(state)
            .bind(i64::from(s.attempts))
            .bind(next_ms)
            .bind(error)
            .bind(settled)
            .bind(s.id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn backlog(&self, now: SystemTime) -> Result<Vec<TargetBacklog>, StoreError> {
        let mut out = super::backlog::read(&self.pool, now).await?;
        // Configured targets with nothing pending or failed still report zeros.
        for t in self.outbox_targets().iter() {
            if !out.iter().any(|b| b.target == t.name) {
                out.push(TargetBacklog {
                    target: t.name.clone(),
                    pending: 0,
                    failed: 0,
                    oldest_pending_secs: None,
                });
            }
        }
        out.sort_by(|a, b| a.target.cmp(&b.target));
        Ok(out)
    }
}
