//! The status part of a commit: each (account, scope, subscriber)'s status row is the latest
//! event that sets status, by (`occurred_at`, event id). A new event applies it with one
//! conditional upsert; a merge that moved an event (Twilio's time replacing a receive time, a
//! better detection) computes it again from the events of the key, since the event it moved
//! may no longer be the latest.

use sqlx::{Any, Row as _, Transaction};

use super::StoreError;
use super::arrivals::Row;
use super::model::format_ts;
use super::schema::{Dialect, PerDialect, Statements, audited as query};
use crate::event::OptOutType;

/// The conditional upsert of a status row: a newer event (by time, then id) wins, whatever
/// commits first.
pub(super) const APPLY_STATUS_CONFLICT: &str = "ON CONFLICT (account_sid, scope, subscriber) DO UPDATE SET \
     messaging_service_sid = excluded.messaging_service_sid, sender = excluded.sender, \
     status = excluded.status, changed_at = excluded.changed_at, \
     event_id = excluded.event_id \
     WHERE excluded.changed_at > opt_status.changed_at \
     OR (excluded.changed_at = opt_status.changed_at \
     AND excluded.event_id > opt_status.event_id)";

/// The status statements of one dialect; only the timestamp casts and the row lock differ.
struct Sql {
    apply_status: String,
    latest_for_key: String,
    current_status: String,
    put_status: String,
    delete_status: String,
}

impl Statements for Sql {
    fn build(d: Dialect) -> Self {
        Sql {
            apply_status: format!(
                "INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, \
                 sender, status, changed_at, event_id) VALUES ($1, $2, $3, $4, $5, $6, {}, $8) \
                 {APPLY_STATUS_CONFLICT}",
                d.ts_in("$7")
            ),
            latest_for_key: format!(
                "SELECT messaging_service_sid, sender, opt_out_type, {} AS occurred_at, event_id \
                 FROM opt_events WHERE account_sid = $1 AND scope = $2 AND subscriber = $3 \
                 AND sets_status ORDER BY occurred_at DESC, event_id DESC LIMIT 1",
                d.ts_out("occurred_at")
            ),
            current_status: format!(
                "SELECT messaging_service_sid, sender, status, {} AS changed_at, event_id \
                 FROM opt_status WHERE account_sid = $1 AND scope = $2 AND subscriber = $3{}",
                d.ts_out("changed_at"),
                d.for_update()
            ),
            put_status: format!(
                "INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, \
                 sender, status, changed_at, event_id) VALUES ($1, $2, $3, $4, $5, $6, {}, $8) \
                 ON CONFLICT (account_sid, scope, subscriber) DO UPDATE SET \
                 messaging_service_sid = excluded.messaging_service_sid, sender = excluded.sender, \
                 status = excluded.status, changed_at = excluded.changed_at, \
                 event_id = excluded.event_id",
                d.ts_in("$7")
            ),
            delete_status: "DELETE FROM opt_status WHERE account_sid = $1 AND scope = $2 \
                            AND subscriber = $3"
                .into(),
        }
    }
}

/// The statements of `d`, built on first use.
fn sql(d: Dialect) -> &'static Sql {
    static SQL: PerDialect<Sql> = PerDialect::new();
    SQL.get(d)
}

/// Brings the status of `key` up to date with this batch's new and moved events.
///
/// When a moved event was the one that set the status, status is computed again from the
/// events, under the status row's lock (its time or type changed, so an older event may be the
/// latest now). Otherwise the newer-wins upsert suffices: events only ever become eligible to
/// win, and the upsert never lets an older event replace a newer one, whatever commits first.
pub(super) async fn settle(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    key: (&str, &str, &str),
    new_rows: &[&Row],
    moved: &[(&Row, &Row)],
) -> Result<u64, StoreError> {
    let moved_away: Vec<&str> = moved
        .iter()
        .filter(|(before, _)| before.key() == key)
        .map(|(before, _)| before.event_id.as_str())
        .collect();
    if !moved_away.is_empty()
        && let Some(current) = current_status(d, tx, key).await?
        && moved_away.contains(&current.4.as_str())
    {
        return recompute_status(d, tx, key, Some(current)).await;
    }
    let mut changes = 0;
    let candidates = new_rows
        .iter()
        .copied()
        .chain(moved.iter().map(|(_, after)| *after))
        .filter(|r| r.key() == key && r.sets_status);
    for row in candidates {
        changes += apply_status(d, tx, row).await?;
    }
    Ok(changes)
}

/// The status a STOP or START sets.
fn status_of(t: OptOutType) -> &'static str {
    match t {
        OptOutType::Stop => "opted_out",
        _ => "opted_in",
    }
}

/// A new event's status: it wins if it is the latest of its key by (`occurred_at`, event id),
/// so arrival order does not matter.
async fn apply_status(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    row: &Row,
) -> Result<u64, StoreError> {
    if row.opt_out_type == OptOutType::Help {
        return Ok(0);
    }
    Ok(bind_status(query(&sql(d).apply_status), row)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Binds the status row `row` sets, in `opt_status` column order: account, scope, subscriber,
/// service, sender, status, changed at, event id (one row of a multi-row upsert, or the whole).
pub(super) fn bind_status<'q>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    row: &'q Row,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let (account, scope, subscriber) = row.key();
    q.bind(account)
        .bind(scope)
        .bind(subscriber)
        .bind(&row.messaging_service_sid)
        .bind(&row.sender)
        .bind(status_of(row.opt_out_type))
        .bind(format_ts(row.occurred_at))
        .bind(&row.event_id)
}

/// A status row: service, sender, status, changed at, event id.
type Status = (Option<String>, String, String, String, String);

/// The status row of `key`, locked until the transaction ends (PostgreSQL).
async fn current_status(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    (account, scope, subscriber): (&str, &str, &str),
) -> Result<Option<Status>, StoreError> {
    let row = query(&sql(d).current_status)
        .bind(account)
        .bind(scope)
        .bind(subscriber)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row
        .map(|r| {
            Ok::<_, sqlx::Error>((
                r.try_get("messaging_service_sid")?,
                r.try_get("sender")?,
                r.try_get("status")?,
                r.try_get("changed_at")?,
                r.try_get("event_id")?,
            ))
        })
        .transpose()?)
}

/// Sets the status of `key` (currently `current`) to what its events say: the latest that
/// sets status, or none. Returns 1 if that changed the status row.
async fn recompute_status(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    key: (&str, &str, &str),
    current: Option<Status>,
) -> Result<u64, StoreError> {
    let (account, scope, subscriber) = key;
    let latest = query(&sql(d).latest_for_key)
        .bind(account)
        .bind(scope)
        .bind(subscriber)
        .fetch_optional(&mut **tx)
        .await?;
    let wanted: Option<Status> = latest
        .map(|r| {
            let t: String = r.try_get("opt_out_type")?;
            let status = OptOutType::parse(&t).map_or("opted_in", status_of);
            Ok::<_, sqlx::Error>((
                r.try_get("messaging_service_sid")?,
                r.try_get("sender")?,
                status.to_owned(),
                r.try_get("occurred_at")?,
                r.try_get("event_id")?,
            ))
        })
        .transpose()?;
    if current == wanted {
        return Ok(0);
    }
    match wanted {
        Some((service, sender, status, changed_at, event_id)) => {
            query(&sql(d).put_status)
                .bind(account)
                .bind(scope)
                .bind(subscriber)
                .bind(service)
                .bind(sender)
                .bind(status)
                .bind(changed_at)
                .bind(event_id)
                .execute(&mut **tx)
                .await?;
        }
        None => {
            query(&sql(d).delete_status)
                .bind(account)
                .bind(scope)
                .bind(subscriber)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(1)
}
