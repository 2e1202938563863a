//! The opt-event part of a commit: insert each event under its identity, merge a copy of a
//! message already stored (`arrivals.rs`), and bring each touched subscriber's status up to
//! date (`status.rs`).

use sqlx::{Any, Row as _, Transaction};

use super::StoreError;
use super::arrivals::{Provenance, Row, merge};
use super::changes::Key as AnswerKey;
use super::model::{Batch, CommitSummary, Positioned, format_ts, paths_bits, paths_text};
use super::schema::{Dialect, PerDialect, Statements, audited as query};
use crate::event::{Detection, OptOutType, TimeSource};

/// The opt-event statements of one dialect; only the timestamp casts and the row lock differ.
struct Sql {
    select_stored: String,
    update_stored: String,
    update_paths: String,
}

pub(super) const COLUMNS: &str = "event_id, identity, opt_out_type, inferred, detection, rule, account_sid, \
     messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at, \
     time_source, schema_version, stream_name, shard_id, sequence_number, paths, sets_status";

impl Statements for Sql {
    fn build(d: Dialect) -> Self {
        Sql {
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
        }
    }
}

/// The statements of `d`, built on first use.
fn sql(d: Dialect) -> &'static Sql {
    static SQL: PerDialect<Sql> = PerDialect::new();
    SQL.get(d)
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
    // Every row is offered at once; the first of an identity in this order is the one stored
    // when it was new, and the others are copies of it, merged below as copies of a stored
    // event always are.
    let mut inserted = super::batched::insert_all(d, tx, &rows, recorded_at).await?;
    let mut new_rows: Vec<&Row> = Vec::new();
    let mut moved: Vec<(Row, Row)> = Vec::new();
    // Keys whose sender's-check answer may have changed: those of new STOP/START events and of
    // events a copy rewrote. A re-read or a copy that changes nothing adds none (no extra
    // round trip).
    let mut answer_keys: Vec<AnswerKey> = Vec::new();
    for row in &rows {
        if inserted.remove(&row.identity) {
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
    let (new_rows, moved) = final_rows(&new_rows, &moved);
    summary.status_changes += super::batched::statuses(d, tx, &new_rows, &moved).await?;
    Ok(answer_keys)
}

/// What status must follow after a batch, one entry per message: the final row of each message
/// new in the batch, and for each stored one that moved, its row as the batch found it and its
/// final row.
///
/// A message may come more than once in a batch; each later copy merges into the row the
/// earlier ones wrote, so `moved` can hold a message's intermediate rows. Status is written
/// only after the loop, so it still reflects the rows as the batch found them, and only a
/// message's final row may set it: an intermediate one (a receive time that a later copy moved
/// earlier, say) would win at a time the event no longer has. Borrowed, not cloned: this runs
/// on every commit, and most batches move nothing.
fn final_rows<'a>(
    new_rows: &[&'a Row],
    moved: &'a [(Row, Row)],
) -> (Vec<&'a Row>, Vec<(&'a Row, &'a Row)>) {
    use std::collections::{HashMap, HashSet};
    if moved.is_empty() {
        return (new_rows.to_vec(), Vec::new());
    }
    let mut last: HashMap<&str, &Row> = HashMap::new();
    for (_, after) in moved {
        last.insert(&after.identity, after);
    }
    let news = new_rows
        .iter()
        .map(|r| last.get(r.identity.as_str()).copied().unwrap_or(r))
        .collect();
    let new_ids: HashSet<&str> = new_rows.iter().map(|r| r.identity.as_str()).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stored_moves = Vec::new();
    for (before, _) in moved {
        let id = before.identity.as_str();
        if new_ids.contains(id) || !seen.insert(id) {
            continue;
        }
        let after = last[id];
        if after.status_inputs() != before.status_inputs() {
            stored_moves.push((before, after));
        }
    }
    (news, stored_moves)
}

fn owned_key(row: &Row) -> AnswerKey {
    let (account, scope, subscriber) = row.key();
    (account.into(), scope.into(), subscriber.into())
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

/// Rewrites the stored event of `row.identity` as `row` (its `recorded_at` stays the first).
async fn write(d: Dialect, tx: &mut Transaction<'_, Any>, row: &Row) -> Result<(), StoreError> {
    bind_row(query(&sql(d).update_stored), row)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Binds `$1`..`$21` in [`COLUMNS`] order.
pub(super) fn bind_row<'q>(
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
