//! How far an opt-out reaches (`--revocation-scope`), as SQL the status queries and the change
//! feed's commit (`store/changes/answer.rs`) share.
//!
//! The live table (`opt_status`) keeps one answer per (account, scope, subscriber) and knows
//! nothing of the other scopes, and the mode is chosen when reading (and, for the change feed,
//! by the writer, from its next commit on). So under `account` and
//! `all` every status query starts from its scope's own answer (the live row, or the latest
//! own signal at an instant) and looks for one thing more: the latest opt-out of the same
//! subscriber in another scope of the group that was honoured when committed and is later
//! than that answer. The partial index `opt_events_reaching` (migrations 8 on SQLite, 6 on
//! PostgreSQL) holds exactly those opt-outs by (subscriber, account, time, id), so the look is
//! one short index range per row, and a page of 1,000 status rows costs 1,000 of them whatever
//! the size of the store.
//!
//! "Honoured when committed" is the event's `sets_status` flag: a Twilio STOP, a reassigned
//! number's opt-out and an inferred keyword STOP always take part in status; a phrase
//! revocation only when the process that stored it ran with `--honor-revocations` (or a
//! better copy of the message, Twilio's own STOP, came later). An unhonoured phrase revocation
//! therefore reaches no other scope, though the sender's check still blocks its own.

use crate::store::RevocationScope;

/// The columns of the key a reaching opt-out is looked for, as SQL expressions (e.g.
/// `s.account_sid`).
pub(in crate::store) struct KeyColumns<'a> {
    pub account: &'a str,
    pub scope: &'a str,
    pub subscriber: &'a str,
}

/// The SQL condition that the opt event aliased `g` (with its dot, e.g. `g.`) is an opt-out
/// that reaches the key `k` from another scope under `mode`; `None` in `scope` mode, where
/// nothing does. `count_phrases` also counts unhonoured phrase revocations (`--as-of
/// --honor-revocations` asks to read them as honoured).
pub(in crate::store) fn reaches(
    mode: RevocationScope,
    g: &str,
    k: &KeyColumns<'_>,
    count_phrases: bool,
) -> Option<String> {
    let group = match mode {
        RevocationScope::Scope => return None,
        RevocationScope::Account => format!(" AND {g}account_sid = {}", k.account),
        RevocationScope::All => String::new(),
    };
    let honoured = if count_phrases {
        format!("({g}sets_status OR {g}detection = 'phrase')")
    } else {
        format!("{g}sets_status")
    };
    Some(format!(
        "{g}subscriber = {}{group} AND {g}opt_out_type = 'STOP' AND {honoured} \
         AND NOT ({g}account_sid = {} AND {g}scope = {})",
        k.subscriber, k.account, k.scope
    ))
}

/// A scalar subquery: the event id of the latest opt-out that reaches key `k` under `mode` and
/// is later than (`after_time`, `after_id`), optionally at or before `at` (a bound time);
/// `CAST(NULL AS TEXT)` in `scope` mode.
pub(in crate::store) fn latest_reaching(
    mode: RevocationScope,
    k: &KeyColumns<'_>,
    after_time: &str,
    after_id: &str,
    at: Option<&str>,
    count_phrases: bool,
) -> String {
    let Some(cond) = reaches(mode, "g.", k, count_phrases) else {
        return "CAST(NULL AS TEXT)".into();
    };
    let at = at.map_or(String::new(), |at| format!(" AND g.occurred_at <= {at}"));
    format!(
        "(SELECT g.event_id FROM opt_events g WHERE {cond} AND (g.occurred_at > {after_time} \
         OR (g.occurred_at = {after_time} AND g.event_id > {after_id})){at} \
         ORDER BY g.occurred_at DESC, g.event_id DESC LIMIT 1)"
    )
}

/// The outer SELECT list of a status row whose own answer is in `x` (with raw time
/// `x.{time}`) and whose reaching opt-out, if any, is joined as `g`: the later of the two.
pub(super) fn effective_columns(dialect: crate::store::schema::Dialect, time: &str) -> String {
    format!(
        "x.account_sid, x.scope, x.messaging_service_sid, x.sender, x.subscriber, \
         CASE WHEN g.event_id IS NULL THEN x.status ELSE 'opted_out' END AS status, \
         {} AS changed_at, COALESCE(g.event_id, x.event_id) AS event_id, \
         g.account_sid AS origin_account_sid, g.scope AS origin_scope",
        dialect.ts_out(&format!("(COALESCE(g.occurred_at, x.{time}))"))
    )
}
