//! The numbers to act on: subscribers whose latest STOP or START signal is a phrase-detected
//! revocation that Twilio did not block (`optout revocations`).

use async_trait::async_trait;
use sqlx::Row;

use super::sqlbuild::{Key, Select, key, time_key};
use super::{BODY_PREVIEW_CHARS, Listing, Page, PageRequest, QueryError, Reader};
use crate::store::model::{RevocationFilter, RevocationRow, format_ts};
use crate::store::schema::Dialect;

/// Revocations are read in time order; the id breaks ties.
const REVOCATION_KEY: &[Key] = &[time_key("e.occurred_at"), key("e.event_id")];

#[async_trait]
impl Listing for RevocationFilter {
    type Row = RevocationRow;

    async fn page(
        &self,
        reader: &Reader,
        req: &PageRequest,
    ) -> Result<Page<RevocationRow>, QueryError> {
        let mut q = Select::new(reader.dialect, select(reader.dialect));
        let since = self.since.map(format_ts);
        q.time_cmp("e.occurred_at", ">=", since.as_deref());
        q.keyset(REVOCATION_KEY, req.cursor.as_ref(), req.limit)?;
        q.fetch_page(&reader.pool, req.limit, row, |r: &RevocationRow| {
            vec![r.revoked_at.clone(), r.event_id.clone()]
        })
        .await
    }
}

/// The phrase revocations nothing later overrides: the latest STOP/START per (account, scope,
/// subscriber) by data.timestamp, ties to the larger event id (HELP ignored), is a phrase
/// revocation. Shared by `optout revocations` (oldest first) and the console (newest first).
pub(super) fn select(d: Dialect) -> String {
    format!(
        "SELECT e.account_sid, e.scope, e.messaging_service_sid, e.sender, e.subscriber, \
         {} AS occurred_at, e.rule, substr(e.body, 1, {BODY_PREVIEW_CHARS}) AS body, \
         CASE WHEN length(e.body) > {BODY_PREVIEW_CHARS} THEN 1 ELSE 0 END AS truncated, \
         e.event_id, s.status FROM opt_events e \
         LEFT JOIN opt_status s ON s.account_sid = e.account_sid AND s.scope = e.scope \
         AND s.subscriber = e.subscriber \
         WHERE e.detection = 'phrase' AND e.opt_out_type = 'STOP' \
         AND NOT EXISTS (SELECT 1 FROM opt_events l WHERE l.account_sid = e.account_sid \
         AND l.scope = e.scope AND l.subscriber = e.subscriber \
         AND l.opt_out_type IN ('STOP', 'START') AND (l.occurred_at > e.occurred_at \
         OR (l.occurred_at = e.occurred_at AND l.event_id > e.event_id)))",
        d.ts_out("e.occurred_at")
    )
}

/// A row of [`select`].
pub(super) fn row(r: &sqlx::any::AnyRow) -> Result<RevocationRow, sqlx::Error> {
    Ok(RevocationRow {
        account_sid: r.try_get("account_sid")?,
        scope: r.try_get("scope")?,
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: r.try_get("subscriber")?,
        revoked_at: r.try_get("occurred_at")?,
        rule: r.try_get("rule")?,
        body: r.try_get("body")?,
        truncated: r.try_get::<i64, _>("truncated")? != 0,
        event_id: r.try_get("event_id")?,
        status: r.try_get("status")?,
    })
}
