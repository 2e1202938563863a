//! Point-in-time status ("was this number opted out when we sent on 3 March?") and one
//! number's audit trail, both computed from `opt_events` with the live table's rules: the
//! latest STOP or START by `data.timestamp` at or before the instant wins, ties go to the
//! larger event id, HELP changes nothing.
//!
//! A phrase-detected revocation changes the live status only when the process that stored it
//! ran with `--honor-revocations`, which each event records (`sets_status`); these queries
//! follow that record, and count every phrase revocation when told to
//! ([`AsOfFilter::honor_revocations`]). Under `--revocation-scope account|all` the
//! opt-outs of the other scopes of the group count too, as the live answers do (`scope.rs`).

use async_trait::async_trait;
use serde::Serialize;
use sqlx::Row;

use super::lists::{status_key, status_row};
use super::scope;
use super::sqlbuild::{Key, Select, key, time_key};
use super::{BODY_PREVIEW_CHARS, Listing, Page, PageRequest, QueryError, Reader};
use crate::store::model::{RevocationScope, StatusRow, format_ts};

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
    /// Count every phrase-detected revocation as a STOP, also those stored without
    /// `--honor-revocations` (which count only as the sender's check's conservative answer).
    pub honor_revocations: bool,
}

const AS_OF_KEY: &[Key] = &[key("account_sid"), key("scope"), key("subscriber")];
const AS_OF_KEY_LATEST: &[Key] = &[
    key("latest.account_sid"),
    key("latest.scope"),
    key("latest.subscriber"),
];

/// The condition that keeps the events which change status: STOPs and STARTs honoured when
/// committed (`sets_status`, as the live table), and with `honor_revocations` every phrase
/// revocation too.
fn changes_status(alias: &str, honor_revocations: bool) -> String {
    if honor_revocations {
        format!(
            "{alias}opt_out_type IN ('STOP', 'START') \
             AND ({alias}sets_status OR {alias}detection = 'phrase')"
        )
    } else {
        format!("{alias}opt_out_type IN ('STOP', 'START') AND {alias}sets_status")
    }
}

/// The condition that keeps the events `l` that decide the status of event `e`'s key: its
/// own STOPs and STARTs, and under `account` or `all` the opt-outs that reach it from the
/// other scopes of the group (`scope.rs`).
fn status_inputs(mode: RevocationScope, honor_revocations: bool) -> String {
    let own = format!(
        "l.account_sid = e.account_sid AND l.scope = e.scope AND l.subscriber = e.subscriber \
         AND {}",
        changes_status("l.", honor_revocations)
    );
    let key = scope::KeyColumns {
        account: "e.account_sid",
        scope: "e.scope",
        subscriber: "e.subscriber",
    };
    match scope::reaches(mode, "l.", &key, honor_revocations) {
        None => own,
        Some(reach) => format!("l.subscriber = e.subscriber AND (({own}) OR ({reach}))"),
    }
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
        // the keyset select whole keys, so they can narrow the inner scan. Then, per key, the
        // latest later opt-out that reaches it from another scope by then (`scope.rs`).
        let at = format_ts(self.at);
        let mut q = Select::new(reader.dialect, String::new());
        let at_param = reader.dialect.ts_in(&q.arg(&at));
        let via = scope::latest_reaching(
            reader.revocation_scope,
            &scope::KeyColumns {
                account: "latest.account_sid",
                scope: "latest.scope",
                subscriber: "latest.subscriber",
            },
            "latest.occurred_at",
            "latest.event_id",
            Some(&at_param),
            self.honor_revocations,
        );
        q.sql = format!(
            "SELECT {} FROM (SELECT latest.*, {via} AS via FROM (SELECT account_sid, scope, \
             messaging_service_sid, sender, subscriber, CASE opt_out_type WHEN 'STOP' \
             THEN 'opted_out' ELSE 'opted_in' END AS status, occurred_at, event_id, \
             ROW_NUMBER() OVER (PARTITION BY account_sid, scope, subscriber ORDER BY \
             occurred_at DESC, event_id DESC) AS rn FROM opt_events WHERE {} \
             AND occurred_at <= {at_param}",
            scope::effective_columns(reader.dialect, "occurred_at"),
            changes_status("", self.honor_revocations)
        );
        q.eq("subscriber", self.subscriber.as_deref());
        q.eq("scope", self.scope.as_deref());
        q.any_of("account_sid", &self.accounts)?;
        q.after(AS_OF_KEY, req.cursor.as_ref())?;
        q.sql.push_str(") latest WHERE rn = 1");
        q.order_limit(AS_OF_KEY_LATEST, req.limit);
        q.sql.push_str(
            ") x LEFT JOIN opt_events g ON g.event_id = x.via \
             ORDER BY x.account_sid, x.scope, x.subscriber",
        );
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
                 FROM opt_events l WHERE {} \
                 AND (l.occurred_at, l.event_id) <= (e.occurred_at, e.event_id) \
                 ORDER BY l.occurred_at DESC, l.event_id DESC LIMIT 1) AS status_after \
                 FROM opt_events e WHERE 1 = 1",
                reader.dialect.ts_out("e.occurred_at"),
                status_inputs(reader.revocation_scope, self.honor_revocations)
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
