//! The bulk of a commit in few statements: a batch's new opt events inserted many rows to a
//! statement, and the status of the keys only new events touch applied many keys to a
//! statement (`multirow.rs` says why). Copies of stored messages and the keys they move stay
//! one row at a time in `opt_events.rs`: they are rare, and each needs a read first.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sqlx::{Any, Row as _, Transaction};

use super::StoreError;
use super::arrivals::Row;
use super::multirow::{MultiRow, chunked};
use super::opt_events::{COLUMNS, bind_row};
use super::schema::{Dialect, PerDialect, Statements, audited as query};
use super::status::{APPLY_STATUS_CONFLICT, bind_status, settle};

/// The multi-row statements of one dialect.
struct Sql {
    /// New events; returns the identities it stored.
    insert: MultiRow,
    /// Status from new events, one row per key.
    apply_status: MultiRow,
}

impl Statements for Sql {
    fn build(d: Dialect) -> Self {
        // Columns 13 (occurred_at) and 21 (recorded_at) of an event row are times; column 6
        // (changed_at) of a status row.
        let event_value = |column: usize, p: &str| match column {
            13 | 21 => d.ts_in(p),
            _ => p.to_string(),
        };
        let status_value = |column: usize, p: &str| match column {
            6 => d.ts_in(p),
            _ => p.to_string(),
        };
        Sql {
            insert: MultiRow::new(
                d,
                &format!("INSERT INTO opt_events ({COLUMNS}, recorded_at)"),
                "ON CONFLICT (identity) DO NOTHING RETURNING identity",
                22,
                event_value,
            ),
            apply_status: MultiRow::new(
                d,
                "INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, \
                 sender, status, changed_at, event_id)",
                APPLY_STATUS_CONFLICT,
                8,
                status_value,
            ),
        }
    }
}

/// The statements of `d`, built on first use.
fn sql(d: Dialect) -> &'static Sql {
    static SQL: PerDialect<Sql> = PerDialect::new();
    SQL.get(d)
}

/// A status key: account, scope, subscriber.
type Key<'a> = (&'a str, &'a str, &'a str);

/// Brings status up to date with the batch, in key order (the lock order); returns how many
/// status rows changed.
///
/// A key only new events touch needs just its latest new event applied with the newer-wins
/// upsert (the others could not win over it), so such keys go many to a statement. A key a
/// merge moved an event of goes through [`settle`] one row at a time; so does one whose latest new events share
/// their time, where the tie is the database's to break (its collation orders the ids).
pub(super) async fn statuses(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    new_rows: &[&Row],
    moved: &[(&Row, &Row)],
) -> Result<u64, StoreError> {
    let mut candidates: BTreeMap<Key<'_>, Vec<&Row>> = BTreeMap::new();
    for row in new_rows.iter().filter(|r| r.sets_status) {
        candidates.entry(row.key()).or_default().push(row);
    }
    let moved_keys: BTreeSet<Key<'_>> = moved
        .iter()
        .flat_map(|(before, after)| [before.key(), after.key()])
        .collect();
    let keys: BTreeSet<Key<'_>> = candidates
        .keys()
        .copied()
        .chain(moved_keys.iter().copied())
        .collect();
    let mut changes = 0;
    let mut run: Vec<&Row> = Vec::new();
    for key in keys {
        let latest = match candidates.get(&key) {
            Some(rows) if !moved_keys.contains(&key) => only_latest(rows),
            _ => None,
        };
        match latest {
            Some(row) => run.push(row),
            None => {
                changes += apply_statuses(d, tx, &run).await?;
                run.clear();
                changes += settle(d, tx, key, new_rows, moved).await?;
            }
        }
    }
    changes += apply_statuses(d, tx, &run).await?;
    Ok(changes)
}

/// The one row of `rows` with the latest time, unless several share it.
fn only_latest<'r>(rows: &[&'r Row]) -> Option<&'r Row> {
    let latest = rows.iter().map(|r| r.occurred_at).max()?;
    let mut at_latest = rows.iter().filter(|r| r.occurred_at == latest);
    let row = at_latest.next()?;
    at_latest.next().is_none().then_some(*row)
}

/// Applies each of `rows` (one per key, in key order, each setting status) with the
/// newer-wins upsert, many to a statement; returns how many status rows changed.
async fn apply_statuses(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    rows: &[&Row],
) -> Result<u64, StoreError> {
    let mut changes = 0;
    for chunk in chunked(rows) {
        let mut q = query(sql(d).apply_status.sql(chunk.len()));
        for row in chunk {
            q = bind_status(q, row);
        }
        changes += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(changes)
}

/// Inserts each of `rows` (in identity order, the lock order) whose identity is not stored
/// yet; returns the identities it stored.
pub(super) async fn insert_all(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    rows: &[Row],
    recorded_at: &str,
) -> Result<HashSet<String>, StoreError> {
    let mut inserted = HashSet::with_capacity(rows.len());
    for chunk in chunked(rows) {
        let mut q = query(sql(d).insert.sql(chunk.len()));
        for row in chunk {
            q = bind_row(q, row).bind(recorded_at);
        }
        for r in q.fetch_all(&mut **tx).await? {
            inserted.insert(r.try_get::<String, _>(0)?);
        }
    }
    Ok(inserted)
}
