//! Point-in-time status ("was this number opted out when we sent on 3 March?") and one
//! number's audit trail, both computed from `opt_events` with the live table's rules: the
//! latest STOP or START by `data.timestamp` at or before the instant wins, ties go to the
//! larger event id, HELP changes nothing.
//!
//! A phrase-detected revocation changes the live status only when the consumer ran with
//! `--honor-revocations`, which the events do not record; these queries leave them out unless
//! told the same ([`AsOfFilter::honor_revocations`]).

use async_trait::async_trait;
use serde::Serialize;
use sqlx::Row;

use super::lists::{status_key, status_row};
use super::sqlbuild::{Key, Select, key, time_key};
use super::{BODY_PREVIEW_CHARS, Listing, Page, PageRequest, QueryError, Reader};
use crate::store::model::{StatusRow, format_ts};

/// The status every (account, scope, subscriber) had at an instant.
#[derive(Debug, Clone)]
pub struct AsOfFilter {
    /// The instant: events at or before it count.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Exact subscriber.
    pub subscriber: Option<String>,
    /// Exact scope.
    pub scope: Option<String>,
    /// Any of these accounts (empty: all).
    pub accounts: Vec<String>,
    /// Count phrase-detected revocations as STOPs, as `run --honor-revocations` does.
    pub honor_revocations: bool,
}

const AS_OF_KEY: &[Key] = &[key("account_sid"), key("scope"), key("subscriber")];

/// The condition that keeps the events which change status.
fn changes_status(alias: &str, honor_revocations: bool) -> String {
    let mut cond = format!("{alias}opt_out_type IN ('STOP', 'START')");
    if !honor_revocations {
        cond.push_str(&format!(" AND {alias}detection <> 'phrase'"));
    }
    cond
}

#[async_trait]
impl Listing for AsOfFilter {
    type Row = StatusRow;

    async fn page(
        &self,
        reader: &Reader,
        req: &PageRequest,
    ) -> Result<Page<StatusRow>, QueryError> {
        // The latest status-changing event per key, at or before the instant; the filters and
        // the keyset select whole keys, so they can narrow the inner scan.
        let mut q = Select::new(
            reader.dialect,
            format!(
                "SELECT account_sid, scope, messaging_service_sid, sender, subscriber, status, \
                 changed_at, event_id FROM (SELECT account_sid, scope, messaging_service_sid, \
                 sender, subscriber, CASE opt_out_type WHEN 'STOP' THEN 'opted_out' \
                 ELSE 'opted_in' END AS status, {} AS changed_at, event_id, ROW_NUMBER() OVER \
                 (PARTITION BY account_sid, scope, subscriber ORDER BY occurred_at DESC, \
                 event_id DESC) AS rn FROM opt_events WHERE {}",
                reader.dialect.ts_out("occurred_at"),
                changes_status("", self.honor_revocations)
            ),
        );
        let at = format_ts(self.at);
        q.time_cmp("occurred_at", "<=", Some(&at));
        q.eq("subscriber", self.subscriber.as_deref());
        q.eq("scope", self.scope.as_deref());
        q.any_of("account_sid", &self.accounts)?;
        q.after(AS_OF_KEY, req.cursor.as_ref())?;
        q.sql.push_str(") latest WHERE rn = 1");
        q.order_limit(AS_OF_KEY, req.limit);
        q.fetch_page(&reader.pool, req.limit, status_row, status_key)
            .await
    }
}

/// One number's audit trail.
#[derive(Debug, Clone)]
pub struct HistoryFilter {
    /// The number, exactly as Twilio writes it.
    pub subscriber: String,
    /// Only this scope.
    pub scope: Option<String>,
    /// Count phrase-detected revocations as STOPs (see [`AsOfFilter::honor_revocations`]).
    pub honor_revocations: bool,
}

/// One event of a number's history, and its status in that scope once the event applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    /// `data.timestamp`.
    pub occurred_at: String,
    /// `STOP`, `START` or `HELP`.
    pub opt_out_type: String,
    /// `twilio`, `keyword` or `phrase`.
    pub detection: String,
    pub account_sid: String,
    pub scope: String,
    pub messaging_service_sid: Option<String>,
    pub sender: String,
    pub subscriber: String,
    pub body: Option<String>,
    /// The body was cut to bound the list.
    pub truncated: bool,
    pub rule: Option<String>,
    pub inferred: bool,
    pub event_id: String,
    /// `opted_out` or `opted_in` after this event; `None` while no STOP or START was seen.
    pub status_after: Option<String>,
}

const HISTORY_KEY: &[Key] = &[time_key("e.occurred_at"), key("e.event_id")];

#[async_trait]
impl Listing for HistoryFilter {
    type Row = HistoryRow;

    async fn page(
        &self,
        reader: &Reader,
        req: &PageRequest,
    ) -> Result<Page<HistoryRow>, QueryError> {
        let mut q = Select::new(
            reader.dialect,
            format!(
                "SELECT {} AS occurred_at, e.opt_out_type, e.detection, e.account_sid, e.scope, \
                 e.messaging_service_sid, e.sender, e.subscriber, \
                 substr(e.body, 1, {BODY_PREVIEW_CHARS}) AS body, \
                 CASE WHEN length(e.body) > {BODY_PREVIEW_CHARS} THEN 1 ELSE 0 END AS truncated, \
                 e.rule, \
                 CAST(e.inferred AS INTEGER) AS inferred, e.event_id, \
                 (SELECT CASE l.opt_out_type WHEN 'STOP' THEN 'opted_out' ELSE 'opted_in' END \
                 FROM opt_events l WHERE l.account_sid = e.account_sid AND l.scope = e.scope \
                 AND l.subscriber = e.subscriber AND {} \
                 AND (l.occurred_at, l.event_id) <= (e.occurred_at, e.event_id) \
                 ORDER BY l.occurred_at DESC, l.event_id DESC LIMIT 1) AS status_after \
                 FROM opt_events e WHERE 1 = 1",
                reader.dialect.ts_out("e.occurred_at"),
                changes_status("l.", self.honor_revocations)
            ),
        );
        q.eq("e.subscriber", Some(&self.subscriber));
        q.eq("e.scope", self.scope.as_deref());
        q.keyset(HISTORY_KEY, req.cursor.as_ref(), req.limit)?;
        let row = |r: &sqlx::any::AnyRow| {
            Ok(HistoryRow {
                occurred_at: r.try_get("occurred_at")?,
                opt_out_type: r.try_get("opt_out_type")?,
                detection: r.try_get("detection")?,
                account_sid: r.try_get("account_sid")?,
                scope: r.try_get("scope")?,
                messaging_service_sid: r.try_get("messaging_service_sid")?,
                sender: r.try_get("sender")?,
                subscriber: r.try_get("subscriber")?,
                body: r.try_get("body")?,
                truncated: r.try_get::<i64, _>("truncated")? != 0,
                rule: r.try_get("rule")?,
                inferred: r.try_get::<i64, _>("inferred")? != 0,
                event_id: r.try_get("event_id")?,
                status_after: r.try_get("status_after")?,
            })
        };
        q.fetch_page(&reader.pool, req.limit, row, |h: &HistoryRow| {
            vec![h.occurred_at.clone(), h.event_id.clone()]
        })
        .await
    }
}
