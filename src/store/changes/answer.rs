//! One key answered again as the sender's check answers it (`query/lookup.rs` and, under
//! `--revocation-scope account|all`, `query/lookup_wide.rs`), inside the commit's
//! transaction: the key's latest STOP or START (any detection), its live status row, and in
//! the wider modes the latest honoured opt-out of the group that is later than the key's own
//! answer (`query/scope.rs`, shared with every status query so the two cannot drift apart).

use sqlx::{Any, Row as _, Transaction};

use super::Key;
use crate::store::RevocationScope;
use crate::store::StoreError;
use crate::store::outbox::Change;
use crate::store::query::scope::{KeyColumns, latest_reaching};
use crate::store::schema::Dialect;

/// What the sender's check answers for one key; only these make a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub status: String,
    pub send_allowed: bool,
    pub reason: String,
}

/// The answer and the event behind it, as the change feed shows it.
pub(super) struct Answered {
    pub answer: Answer,
    /// The causing event's identity (its message SID, else its event id): part of each
    /// outbox item's key.
    pub identity: String,
    pub change: Change,
}

/// The statement that answers one key under `mode`, built once per dialect and mode.
fn answer_sql(d: Dialect, mode: RevocationScope) -> &'static str {
    static SQL: std::sync::LazyLock<[[String; 3]; 2]> = std::sync::LazyLock::new(|| {
        [Dialect::Sqlite, Dialect::Postgres].map(|d| {
            [
                RevocationScope::Scope,
                RevocationScope::Account,
                RevocationScope::All,
            ]
            .map(|mode| answer_sql_for(d, mode))
        })
    });
    let m = match mode {
        RevocationScope::Scope => 0,
        RevocationScope::Account => 1,
        RevocationScope::All => 2,
    };
    &SQL[usize::from(d == Dialect::Postgres)][m]
}

/// The key's latest STOP or START and the live row (with the live row's event, for when that
/// row decides), the last answer recorded, and the opt-out of another scope that overrules
/// them under `mode` (`r`, all NULL in `scope` mode or when none does).
fn answer_sql_for(d: Dialect, mode: RevocationScope) -> String {
    let key = KeyColumns {
        account: "e.account_sid",
        scope: "e.scope",
        subscriber: "e.subscriber",
    };
    // Later than the key's own answer, as the sender's check compares them: the latest
    // signal's time, and the event that decides (the live row's when it says `opted_out`
    // over a later START).
    let reaching = latest_reaching(
        mode,
        &key,
        "e.occurred_at",
        "(CASE WHEN e.opt_out_type <> 'STOP' AND s.status = 'opted_out' THEN s.event_id \
         ELSE e.event_id END)",
        None,
        false,
    );
    // The reaching event's id is computed per row in the inner SELECT and joined by id after
    // it (as the status lists do), so each look is one short range of `opt_events_reaching`.
    format!(
        "SELECT x.identity, x.event_id, x.opt_out_type, x.detection, x.rule, x.message_sid, \
         x.messaging_service_sid, x.sender, {} AS occurred_at, x.live_status, \
         x.live_event_id, le.identity AS live_identity, \
         le.message_sid AS live_message_sid, le.opt_out_type AS live_type, \
         le.detection AS live_detection, {} AS live_occurred_at, h.status AS head_status, \
         CAST(h.send_allowed AS INTEGER) AS head_send_allowed, h.reason AS head_reason, \
         r.identity AS reach_identity, r.event_id AS reach_event_id, \
         r.account_sid AS reach_account_sid, r.scope AS reach_scope, \
         r.message_sid AS reach_message_sid, r.opt_out_type AS reach_type, \
         r.detection AS reach_detection, r.rule AS reach_rule, {} AS reach_occurred_at \
         FROM (SELECT e.*, s.status AS live_status, s.event_id AS live_event_id, \
         {reaching} AS via \
         FROM (SELECT * FROM opt_events WHERE account_sid = $1 AND scope = $2 \
         AND subscriber = $3 AND opt_out_type IN ('STOP', 'START') \
         ORDER BY occurred_at DESC, event_id DESC LIMIT 1) e \
         LEFT JOIN opt_status s ON s.account_sid = e.account_sid AND s.scope = e.scope \
         AND s.subscriber = e.subscriber) x \
         LEFT JOIN opt_events le ON le.event_id = x.live_event_id \
         LEFT JOIN change_heads h ON h.account_sid = x.account_sid AND h.scope = x.scope \
         AND h.subscriber = x.subscriber \
         LEFT JOIN opt_events r ON r.event_id = x.via",
        d.ts_out("x.occurred_at"),
        d.ts_out("le.occurred_at"),
        d.ts_out("r.occurred_at"),
    )
}

/// The reason an opt-out from another scope gives (as the sender's check names it).
fn group_reason(mode: RevocationScope) -> &'static str {
    match mode {
        RevocationScope::All => "all_accounts_opt_out",
        _ => "account_opt_out",
    }
}

/// What the sender's check answers for `key` under `mode` now (`None`: the key has no STOP
/// or START of its own), and the last answer recorded.
pub(super) async fn answer(
    d: Dialect,
    mode: RevocationScope,
    tx: &mut Transaction<'_, Any>,
    key: &Key,
) -> Result<Option<(Answered, Option<Answer>)>, StoreError> {
    let (account, scope, subscriber) = key;
    // Audited: built once from constants and the dialect's casts.
    let Some(r) = sqlx::query(sqlx::AssertSqlSafe(answer_sql(d, mode)))
        .bind(account)
        .bind(scope)
        .bind(subscriber)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let kind: String = r.try_get("opt_out_type")?;
    let detection: String = r.try_get("detection")?;
    let live_status: Option<String> = r.try_get("live_status")?;
    let mut reason = crate::store::model::signal_reason(&kind, &detection).to_string();
    let mut identity: String = r.try_get("identity")?;
    let mut change = Change {
        cursor: 0,
        account_sid: account.clone(),
        scope: scope.clone(),
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: subscriber.clone(),
        status: String::new(),
        send_allowed: false,
        reason: String::new(),
        event_id: r.try_get("event_id")?,
        message_sid: r.try_get("message_sid")?,
        opt_out_type: kind.clone(),
        detection,
        rule: r.try_get("rule")?,
        occurred_at: r.try_get("occurred_at")?,
        origin_account_sid: None,
        origin_scope: None,
    };
    // As the sender's check does: a live `opted_out` row counts whatever the latest signal.
    if kind != "STOP" && live_status.as_deref() == Some("opted_out") {
        reason = "twilio_stop".into();
        change.event_id = r.try_get("live_event_id")?;
        change.rule = None;
        if let Some(live_identity) = r.try_get::<Option<String>, _>("live_identity")? {
            identity = live_identity;
            change.message_sid = r.try_get("live_message_sid")?;
            change.opt_out_type = r.try_get::<Option<String>, _>("live_type")?.unwrap_or(kind);
            change.detection = r
                .try_get::<Option<String>, _>("live_detection")?
                .unwrap_or_default();
            if let Some(at) = r.try_get::<Option<String>, _>("live_occurred_at")? {
                change.occurred_at = at;
            }
        }
    }
    // A later honoured opt-out of the group overrules both: the key keeps its own service
    // and sender (where the push applies it), the event and origin are the opt-out's.
    if let Some(event_id) = r.try_get::<Option<String>, _>("reach_event_id")? {
        reason = group_reason(mode).into();
        identity = r
            .try_get::<Option<String>, _>("reach_identity")?
            .unwrap_or_else(|| event_id.clone());
        change.event_id = event_id;
        change.message_sid = r.try_get("reach_message_sid")?;
        change.opt_out_type = r
            .try_get::<Option<String>, _>("reach_type")?
            .unwrap_or_else(|| "STOP".into());
        change.detection = r
            .try_get::<Option<String>, _>("reach_detection")?
            .unwrap_or_default();
        change.rule = r.try_get("reach_rule")?;
        if let Some(at) = r.try_get::<Option<String>, _>("reach_occurred_at")? {
            change.occurred_at = at;
        }
        change.origin_account_sid = r.try_get("reach_account_sid")?;
        change.origin_scope = r.try_get("reach_scope")?;
    }
    let send_allowed = reason == "opted_in";
    let status = if send_allowed {
        "opted_in"
    } else {
        "opted_out"
    };
    change.status = status.into();
    change.send_allowed = send_allowed;
    change.reason = reason.clone();
    let head = match r.try_get::<Option<String>, _>("head_status")? {
        Some(status) => Some(Answer {
            status,
            send_allowed: r.try_get::<Option<i64>, _>("head_send_allowed")? == Some(1),
            reason: r
                .try_get::<Option<String>, _>("head_reason")?
                .unwrap_or_default(),
        }),
        None => None,
    };
    let answered = Answered {
        answer: Answer {
            status: status.into(),
            send_allowed,
            reason,
        },
        identity,
        change,
    };
    Ok(Some((answered, head)))
}
