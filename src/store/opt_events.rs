//! The opt-event part of a commit: insert each event under its identity, merge a copy of a
//! message already stored (`arrivals.rs`), and keep each subscriber's status.
//!
//! Status per (account, scope, subscriber) is the latest event that sets status, by
//! (`occurred_at`, event id). A new event applies it with one conditional upsert; a merge that
//! moved an event (Twilio's time replacing a receive time, a better detection) computes it again
//! from the events of the key, since the event it moved may no longer be the latest.

use std::sync::LazyLock;

use sqlx::{Any, Row as _, Transaction};

use super::StoreError;
use super::arrivals::{Provenance, Row, merge};
use super::changes::Key as AnswerKey;
use super::model::{Batch, CommitSummary, Positioned, format_ts, paths_bits, paths_text};
use super::schema::Dialect;
use crate::event::{Detection, OptOutType, TimeSource};

/// The opt-event statements of one dialect; only the timestamp casts and the row lock differ.
struct Sql {
    insert: String,
    select_stored: String,
    update_stored: String,
    update_paths: String,
    apply_status: String,
    latest_for_key: String,
    current_status: String,
    put_status: String,
    delete_status: String,
}

const COLUMNS: &str = "event_id, identity, opt_out_type, inferred, detection, rule, account_sid, \
     messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at, \
     time_source, schema_version, stream_name, shard_id, sequence_number, paths, sets_status";

impl Sql {
    fn new(d: Dialect) -> Self {
        Sql {
            insert: format!(
                "INSERT INTO opt_events ({COLUMNS}, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, \
                 $7, $8, $9, $10, $11, $12, $13, {}, $15, $16, $17, $18, $19, $20, $21, {}) \
                 ON CONFLICT (identity) DO NOTHING",
                d.ts_in("$14"),
                d.ts_in("$22")
            ),
            select_stored: format!(
                "SELECT event_id, identity, opt_out_type, detection, rule, account_sid, \
                 messaging_service_sid, sender, subscriber, body, message_sid, {} AS occurred_at, \
                 time_source, schema_version, stream_name, shard_id, sequence_number, paths, \
                 CAST(sets_status AS INTEGER) AS sets_status FROM opt_events \
                 WHERE identity = $1{}",
                d.ts_out("occurred_at"),
                d.for_update()
            ),
            update_stored: format!(
                "UPDATE opt_events SET event_id = $1, opt_out_type = $3, inferred = $4, \
                 detection = $5, rule = $6, account_sid = $7, messaging_service_sid = $8, \
                 sender = $9, subscriber = $10, scope = $11, body = $12, message_sid = $13, \
                 occurred_at = {}, time_source = $15, schema_version = $16, stream_name = $17, \
                 shard_id = $18, sequence_number = $19, paths = $20, sets_status = $21 \
                 WHERE identity = $2",
                d.ts_in("$14")
            ),
            update_paths: "UPDATE opt_events SET paths = $1 WHERE identity = $2".into(),
            apply_status: format!(
                "INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, \
                 sender, status, changed_at, event_id) VALUES ($1, $2, $3, $4, $5, $6, {}, $8) \
                 ON CONFLICT (account_sid, scope, subscriber) DO UPDATE SET \
                 messaging_service_sid = excluded.messaging_service_sid, sender = excluded.sender, \
                 status = excluded.status, changed_at = excluded.changed_at, \
                 event_id = excluded.event_id \
                 WHERE excluded.changed_at > opt_status.changed_at \
                 OR (excluded.changed_at = opt_status.changed_at \
                 AND excluded.event_id > opt_status.event_id)",
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
    static SQLITE: LazyLock<Sql> = LazyLock::new(|| Sql::new(Dialect::Sqlite));
    static POSTGRES: LazyLock<Sql> = LazyLock::new(|| Sql::new(Dialect::Postgres));
    match d {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

fn query(text: &'static str) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    // Audited: every statement is built once from constants and the dialect's casts.
    sqlx::query(sqlx::AssertSqlSafe(text))
}

/// Inserts the batch's opt events (merging copies of messages already stored) and keeps
/// status.
///
/// Rows are locked in one global order (events by identity, then status rows by key), the
/// same in every transaction, so concurrent commits wait for each other but never deadlock.
pub(super) async fn commit(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    batch: &Batch,
    recorded_at: &str,
    summary: &mut CommitSummary,
) -> Result<Vec<AnswerKey>, StoreError> {
    let mut rows: Vec<Row> = batch
        .opt_events
        .iter()
        .map(
            |Positioned {
                 sequence_number,
                 value,
             }| Row::new(value, &provenance(batch, sequence_number)),
        )
        .collect();
    rows.sort_by(|a, b| a.identity.cmp(&b.identity));
    let mut new_rows: Vec<&Row> = Vec::new();
    let mut moved: Vec<(Row, Row)> = Vec::new();
    // Keys whose sender's-check answer may have changed: those of new STOP/START events and of
    // events a copy rewrote. A re-read or a copy that changes nothing adds none (no extra
    // round trip).
    let mut answer_keys: Vec<AnswerKey> = Vec::new();
    for row in &rows {
        if insert(d, tx, row, recorded_at).await? {
            summary.opt_events_new += 1;
            new_rows.push(row);
            if row.opt_out_type != OptOutType::Help {
                answer_keys.push(owned_key(row));
            }
            continue;
        }
        summary.opt_events_duplicate += 1;
        let stored = stored(d, tx, &row.identity).await?;
        let merged = merge(&stored, row);
        if merged == stored {
            continue;
        }
        let only_paths = Row {
            paths: stored.paths,
            ..merged.clone()
        } == stored;
        if only_paths {
            query(&sql(d).update_paths)
                .bind(paths_text(merged.paths))
                .bind(&merged.identity)
                .execute(&mut **tx)
                .await?;
            continue;
        }
        summary.opt_events_updated += 1;
        write(d, tx, &merged).await?;
        if stored.opt_out_type != OptOutType::Help || merged.opt_out_type != OptOutType::Help {
            answer_keys.push(owned_key(&stored));
            answer_keys.push(owned_key(&merged));
        }
        if merged.status_inputs() != stored.status_inputs() {
            moved.push((stored, merged));
        }
    }
    // Status, one key at a time in key order (the lock order).
    let mut touched: Vec<(&str, &str, &str)> = new_rows.iter().map(|r| r.key()).collect();
    for (before, after) in &moved {
        touched.push(before.key());
        touched.push(after.key());
    }
    touched.sort();
    touched.dedup();
    for key in touched {
        summary.status_changes += settle(d, tx, key, &new_rows, &moved).await?;
    }
    Ok(answer_keys)
}

fn owned_key(row: &Row) -> AnswerKey {
    let (account, scope, subscriber) = row.key();
    (account.into(), scope.into(), subscriber.into())
}

/// Brings the status of `key` up to date with this batch's new and moved events.
///
/// When a moved event was the one that set the status, status is computed again from the
/// events, under the status row's lock (its time or type changed, so an older event may be the
/// latest now). Otherwise the newer-wins upsert suffices: events only ever become eligible to
/// win, and the upsert never lets an older event replace a newer one, whatever commits first.
async fn settle(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    key: (&str, &str, &str),
    new_rows: &[&Row],
    moved: &[(Row, Row)],
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
        .chain(moved.iter().map(|(_, after)| after))
        .filter(|r| r.key() == key && r.sets_status);
    for row in candidates {
        changes += apply_status(d, tx, row).await?;
    }
    Ok(changes)
}

fn provenance<'a>(batch: &'a Batch, sequence_number: &'a str) -> Provenance<'a> {
    Provenance {
        path: batch.path,
        stream: &batch.stream,
        shard_id: &batch.shard_id,
        sequence_number,
        honor_revocations: batch.honor_revocations,
    }
}

/// Inserts `row` unless its identity is stored; whether it was.
async fn insert(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    row: &Row,
    recorded_at: &str,
) -> Result<bool, StoreError> {
    let q = bind_row(query(&sql(d).insert), row).bind(recorded_at);
    Ok(q.execute(&mut **tx).await?.rows_affected() == 1)
}

/// Rewrites the stored event of `row.identity` as `row` (its `recorded_at` stays the first).
async fn write(d: Dialect, tx: &mut Transaction<'_, Any>, row: &Row) -> Result<(), StoreError> {
    bind_row(query(&sql(d).update_stored), row)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Binds `$1`..`$21` in [`COLUMNS`] order.
fn bind_row<'q>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    row: &'q Row,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    q.bind(&row.event_id)
        .bind(&row.identity)
        .bind(row.opt_out_type.as_str())
        .bind(row.inferred())
        .bind(row.detection.as_str())
        .bind(&row.rule)
        .bind(&row.account_sid)
        .bind(&row.messaging_service_sid)
        .bind(&row.sender)
        .bind(&row.subscriber)
        .bind(row.scope().to_owned())
        .bind(&row.body)
        .bind(&row.message_sid)
        .bind(format_ts(row.occurred_at))
        .bind(row.time_source.as_str())
        .bind(row.schema_version)
        .bind(&row.stream_name)
        .bind(&row.shard_id)
        .bind(&row.sequence_number)
        .bind(paths_text(row.paths))
        .bind(row.sets_status)
}

/// The stored event of `identity`, locked until the transaction ends (PostgreSQL).
async fn stored(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    identity: &str,
) -> Result<Row, StoreError> {
    let r = query(&sql(d).select_stored)
        .bind(identity)
        .fetch_one(&mut **tx)
        .await?;
    let bad = |what: &str| StoreError::Schema(format!("stored opt event {identity}: bad {what}"));
    let text: String = r.try_get("opt_out_type")?;
    let opt_out_type = OptOutType::parse(&text).ok_or_else(|| bad("opt_out_type"))?;
    let text: String = r.try_get("detection")?;
    let detection = Detection::parse(&text).ok_or_else(|| bad("detection"))?;
    let text: String = r.try_get("time_source")?;
    let time_source = TimeSource::parse(&text).ok_or_else(|| bad("time_source"))?;
    let text: String = r.try_get("occurred_at")?;
    let occurred_at = text.parse().map_err(|_| bad("occurred_at"))?;
    Ok(Row {
        event_id: r.try_get("event_id")?,
        identity: r.try_get("identity")?,
        opt_out_type,
        detection,
        rule: r.try_get("rule")?,
        account_sid: r.try_get("account_sid")?,
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: r.try_get("subscriber")?,
        body: r.try_get("body")?,
        message_sid: r.try_get("message_sid")?,
        occurred_at,
        time_source,
        schema_version: r.try_get("schema_version")?,
        stream_name: r.try_get("stream_name")?,
        shard_id: r.try_get("shard_id")?,
        sequence_number: r.try_get("sequence_number")?,
        paths: paths_bits(&r.try_get::<String, _>("paths")?),
        sets_status: r.try_get::<i64, _>("sets_status")? != 0,
    })
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
    let (account, scope, subscriber) = row.key();
    Ok(query(&sql(d).apply_status)
        .bind(account)
        .bind(scope)
        .bind(subscriber)
        .bind(&row.messaging_service_sid)
        .bind(&row.sender)
        .bind(status_of(row.opt_out_type))
        .bind(format_ts(row.occurred_at))
        .bind(&row.event_id)
        .execute(&mut **tx)
        .await?
        .rows_affected())
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
