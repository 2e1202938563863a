//! The sender's check: "may I text this number?", answered conservatively.
//!
//! The live status table follows the consumer's setting: a phrase revocation ("stop texting
//! me") changes it only under `--honor-revocations`. A sender must not read that as consent:
//! under the FCC rule, "stop" and "opt out" revoke consent whatever Twilio did with them. So
//! the check reads the events themselves: per (account, scope), the latest STOP or START by
//! `data.timestamp` (ties to the larger event id), whatever its detection. If that latest
//! signal is any opt-out (a Twilio STOP, an inferred keyword, a phrase revocation, honoured or
//! not), or the live row says `opted_out`, sending is not allowed, and the answer names why:
//! the reason, the event and the rule.
//!
//! Without a scope a number may have many scopes: they come in pages, never cut in silence,
//! and the overall answer covers every scope, not only the page.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sqlbuild::{Key, Select, key};
use super::{PageRequest, QueryError, Reader};
use crate::store::RevocationScope;
use crate::store::model::signal_reason;

/// Which number a sender is about to text, and optionally where from.
#[derive(Debug, Clone, Default)]
pub struct LookupFilter {
    /// The number exactly as Twilio writes it in `data.from` (e.g. `+15551230001`).
    pub subscriber: String,
    /// The scope of the send (Messaging Service SID, or the sender number); any if `None`.
    pub scope: Option<String>,
    /// Any of these accounts (empty: all).
    pub accounts: Vec<String>,
}

/// The answer to "may I text this number?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lookup {
    pub subscriber: String,
    /// `opted_out` if the latest signal of any matching scope is an opt-out, else `opted_in`
    /// if any scope has a signal, else `no_opt_event_seen`.
    pub status: String,
    /// `false` exactly when `status` is `opted_out`, over every matching scope (not only the
    /// scopes of this page).
    pub send_allowed: bool,
    /// Why: `twilio_stop`, `keyword_stop`, `reassigned_number` or `phrase_revocation` (of the latest opt-out among
    /// the scopes), `opted_in`, or `no_opt_event_seen`.
    pub reason: String,
    /// The event behind `reason` (none for `no_opt_event_seen`).
    pub event_id: Option<String>,
    /// The revocation rule that matched, for `phrase_revocation`.
    pub rule: Option<String>,
    /// For `account_opt_out` and `all_accounts_opt_out` (`--revocation-scope account|all`):
    /// the account of the scope the opt-out was sent in.
    pub origin_account_sid: Option<String>,
    /// … and that scope.
    pub origin_scope: Option<String>,
    /// One row per (account, scope), by account and scope.
    pub items: Vec<LookupItem>,
    /// More scopes follow: send this back as `cursor`. `send_allowed` already covers them.
    pub next_cursor: Option<String>,
}

/// One scope of a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookupItem {
    pub account_sid: String,
    pub scope: String,
    pub messaging_service_sid: Option<String>,
    pub sender: String,
    pub subscriber: String,
    /// `opted_out` or `opted_in`: the conservative status in this scope.
    pub status: String,
    pub send_allowed: bool,
    /// `twilio_stop`, `keyword_stop`, `reassigned_number`, `phrase_revocation`, `opted_in`, or
    /// under `--revocation-scope account|all` `account_opt_out` / `all_accounts_opt_out` (an
    /// honoured opt-out in another scope, later than this scope's own signals).
    pub reason: String,
    /// The latest STOP or START signal in this scope (or the event of the live row).
    pub event_id: String,
    /// The revocation rule, for a phrase revocation.
    pub rule: Option<String>,
    /// `data.timestamp` of that signal.
    pub changed_at: String,
    /// The live table's status (`None` when only unhonoured phrase revocations were seen).
    pub live_status: Option<String>,
    /// For `account_opt_out` and `all_accounts_opt_out`: the account of the scope the opt-out
    /// was sent in.
    pub origin_account_sid: Option<String>,
    /// … and that scope.
    pub origin_scope: Option<String>,
}

/// Scopes per lookup page when the caller names no limit.
pub const LOOKUP_ROWS: u32 = 1_000;

/// The key of a lookup's rows, inside the per-scope SELECT and outside it.
pub(super) const SCOPE_KEY: &[Key] = &[key("account_sid"), key("scope")];
pub(super) const SCOPE_ORDER: &[Key] = &[key("l.account_sid"), key("l.scope")];

/// Per (account, scope) of one number, the latest STOP or START event and the live row.
pub(super) fn latest_signals(reader: &Reader, f: &LookupFilter) -> Result<Select, QueryError> {
    let mut q = Select::new(
        reader.dialect,
        format!(
            "SELECT l.account_sid, l.scope, l.messaging_service_sid, l.sender, l.subscriber, \
             l.opt_out_type, l.detection, l.rule, l.event_id, {} AS changed_at, \
             s.status AS live_status, s.event_id AS live_event_id FROM (SELECT account_sid, \
             scope, messaging_service_sid, sender, subscriber, opt_out_type, detection, rule, \
             event_id, occurred_at, ROW_NUMBER() OVER (PARTITION BY account_sid, scope ORDER BY \
             occurred_at DESC, event_id DESC) AS rn FROM opt_events \
             WHERE opt_out_type IN ('STOP', 'START')",
            reader.dialect.ts_out("l.occurred_at")
        ),
    );
    q.eq("subscriber", Some(&f.subscriber));
    q.eq("scope", f.scope.as_deref());
    q.any_of("account_sid", &f.accounts)?;
    Ok(q)
}

/// Closes [`latest_signals`]' inner SELECT and joins the live rows.
pub(super) fn join_live(q: &mut Select) {
    q.sql.push_str(
        ") l LEFT JOIN opt_status s ON s.account_sid = l.account_sid AND s.scope = l.scope \
         AND s.subscriber = l.subscriber WHERE l.rn = 1",
    );
}

pub(super) fn item(r: &AnyRow) -> Result<LookupItem, sqlx::Error> {
    let kind: String = r.try_get("opt_out_type")?;
    let detection: String = r.try_get("detection")?;
    let live_status: Option<String> = r.try_get("live_status")?;
    let (mut reason, mut event_id, mut rule) = (
        signal_reason(&kind, &detection).to_string(),
        r.try_get::<String, _>("event_id")?,
        r.try_get("rule")?,
    );
    // The live row follows from the same events, so it says `opted_out` only when the latest
    // signal is a STOP; a row written otherwise (by hand, by another tool) still counts: an
    // opt-out anywhere is an opt-out here.
    if kind != "STOP" && live_status.as_deref() == Some("opted_out") {
        reason = "twilio_stop".into();
        event_id = r.try_get("live_event_id")?;
        rule = None;
    }
    let opted_out = reason != "opted_in";
    Ok(LookupItem {
        account_sid: r.try_get("account_sid")?,
        scope: r.try_get("scope")?,
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: r.try_get("subscriber")?,
        status: if opted_out { "opted_out" } else { "opted_in" }.into(),
        send_allowed: !opted_out,
        reason,
        event_id,
        rule,
        changed_at: r.try_get("changed_at")?,
        live_status,
        origin_account_sid: None,
        origin_scope: None,
    })
}

impl Reader {
    /// Whether a send to `f.subscriber` is allowed, with the first page of its scopes.
    pub async fn lookup(&self, f: &LookupFilter) -> Result<Lookup, QueryError> {
        let req = PageRequest {
            limit: LOOKUP_ROWS,
            cursor: None,
        };
        self.lookup_page(f, &req).await
    }

    /// Whether a send to `f.subscriber` is allowed (over every matching scope), with the page
    /// of scopes `req` asks for. One indexed read (by subscriber) when the page holds every
    /// scope; a second, for the overall answer, when more scopes follow.
    pub async fn lookup_page(
        &self,
        f: &LookupFilter,
        req: &PageRequest,
    ) -> Result<Lookup, QueryError> {
        super::check_text("subscriber", &f.subscriber)?;
        let reach = self.reaching_opt_outs(f).await?;
        let mut page = self.signal_page(f, req, &reach).await?;
        let whole = page.next_cursor.is_none() && req.cursor.is_none();
        if whole && page.items.is_empty() {
            page.items = self.unseen_scope_items(f, &reach).await?;
        }
        let first_out = |items: &[LookupItem]| items.iter().find(|i| !i.send_allowed).cloned();
        // The overall answer: from this page if it is the whole list, else from every scope.
        let (out, any) = if whole {
            (first_out(&page.items), !page.items.is_empty())
        } else if self.revocation_scope == RevocationScope::Scope {
            let mut all = latest_signals(self, f)?;
            join_live(&mut all);
            all.sql.push_str(
                " ORDER BY CASE WHEN l.opt_out_type = 'STOP' OR s.status = 'opted_out' \
                 THEN 0 ELSE 1 END, l.account_sid, l.scope LIMIT 1",
            );
            let rows = all.fetch(&self.pool).await?;
            let first = rows.first().map(item).transpose()?;
            let any = first.is_some();
            (first.filter(|i| !i.send_allowed), any)
        } else {
            self.first_out_of_all_pages(f, &reach).await?
        };
        // Under `all`, a number with no signal where the caller looks (a scope never seen, an
        // account filter) is still out if it opted out anywhere.
        let out = match (out, any, reach.first()) {
            (None, false, Some(r)) if self.revocation_scope == RevocationScope::All => {
                Some(r.item_for(self.revocation_scope, None))
            }
            (out, ..) => out,
        };
        let (status, reason, event_id, rule) = match (&out, any) {
            (Some(i), _) => (
                "opted_out",
                i.reason.clone(),
                Some(i.event_id.clone()),
                i.rule.clone(),
            ),
            (None, true) => {
                let latest = page
                    .items
                    .iter()
                    .max_by(|a, b| a.changed_at.cmp(&b.changed_at));
                (
                    "opted_in",
                    "opted_in".to_string(),
                    latest.map(|i| i.event_id.clone()),
                    None,
                )
            }
            (None, false) => (
                "no_opt_event_seen",
                "no_opt_event_seen".to_string(),
                None,
                None,
            ),
        };
        Ok(Lookup {
            subscriber: f.subscriber.clone(),
            status: status.into(),
            send_allowed: out.is_none(),
            reason,
            event_id,
            rule,
            origin_account_sid: out.as_ref().and_then(|i| i.origin_account_sid.clone()),
            origin_scope: out.as_ref().and_then(|i| i.origin_scope.clone()),
            items: page.items,
            next_cursor: page.next_cursor,
        })
    }
}
