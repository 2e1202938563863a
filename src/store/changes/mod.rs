//! The change feed's write side: after a commit's opt events and status, each (account, scope,
//! subscriber) it touched is answered again as the sender's check answers it under the
//! writer's `--revocation-scope` (`answer.rs`); under `account` and `all` every other key of
//! the touched keys' groups that optout has seen is answered again too (`group.rs`). When an
//! answer (status, `send_allowed`, reason) differs from the last one recorded, one `changes`
//! row and one outbox item per target that wants it are written, in the same transaction.
//! `resync.rs` does the same for every key at once, after the mode changed or for a new
//! target.
//!
//! The last answer per key is kept in `change_heads` rather than computed before the batch's
//! inserts: its row is locked (PostgreSQL) before the new answer is read, so two writers
//! touching one key take turns, and the second reads the first one's events. Comparing with a
//! "before" read at the start of each transaction would let two of them record the same
//! change twice, or a stale one last.
//!
//! No two writers wait on each other in a cycle (PostgreSQL): after its opt events and status
//! rows, a writer takes, in this order and never back, the group locks of its subscribers (in
//! lock-key order; `account` and `all` only), the `change_heads` rows of its keys (in key
//! order) and last the feed's lock, each held until its commit; a writer holding any of them
//! waits for no status or event row.

mod answer;
mod group;
mod resync;

pub(super) use resync::resync;

use std::sync::Arc;

use sha2::Digest;
use sqlx::{Any, Row as _, Transaction};

use super::outbox::{Change, OutboxTarget};
use super::schema::Dialect;
use super::{RevocationScope, StoreError};
use answer::{Answer, Answered, answer};

/// A status key: (account, scope, subscriber).
pub(super) type Key = (String, String, String);

/// Wakes long-polls of the change feed in this process when a commit wrote changes (other
/// processes' commits are found by polling).
pub(crate) static CHANGED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The changes a commit found, written by [`Found::write`] as its last statements.
#[derive(Default)]
pub(super) struct Found(Vec<(Key, Answered)>);

/// Answers every key in `keys` and in their groups under `mode` again (in key order, the lock
/// order), after the batch's events and status are written, and returns the keys whose answer
/// changed.
pub(super) async fn find(
    d: Dialect,
    mode: RevocationScope,
    tx: &mut Transaction<'_, Any>,
    mut keys: Vec<Key>,
) -> Result<Found, StoreError> {
    keys.sort();
    keys.dedup();
    if mode != RevocationScope::Scope {
        if d == Dialect::Postgres {
            group::lock_subscribers(tx, &keys).await?;
        }
        keys = group::expand(tx, mode, keys).await?;
    }
    answer_keys(d, mode, tx, keys).await
}

/// Answers each of `keys` (sorted, distinct) again under `mode`, locking its head first on
/// PostgreSQL, and returns those whose answer changed.
async fn answer_keys(
    d: Dialect,
    mode: RevocationScope,
    tx: &mut Transaction<'_, Any>,
    keys: Vec<Key>,
) -> Result<Found, StoreError> {
    let mut changed = Vec::new();
    for key in keys {
        // PostgreSQL: the head is locked first, so that the answer is read after any other
        // writer of the key has committed. SQLite, one writer at a time, reads it with the
        // answer (one statement fewer per key on the replay path).
        let locked = match d {
            Dialect::Postgres => Some(lock_head(d, tx, &key).await?),
            Dialect::Sqlite => None,
        };
        let Some((now, read)) = answer(d, mode, tx, &key).await? else {
            continue;
        };
        if locked.unwrap_or(read).as_ref() != Some(&now.answer) {
            changed.push((key, now));
        }
    }
    Ok(Found(changed))
}

impl Found {
    /// Writes each change, the key's new head and the outbox items of the targets that want
    /// it. Called last in the transaction: on PostgreSQL it takes the feed's lock, held until
    /// the commit, so nothing after it may wait for another writer (no lock cycle). Returns
    /// (changes, outbox items) written.
    pub(super) async fn write(
        mut self,
        d: Dialect,
        tx: &mut Transaction<'_, Any>,
        targets: &[OutboxTarget],
        recorded_at: &str,
    ) -> Result<(u64, u64), StoreError> {
        if self.0.is_empty() {
            return Ok((0, 0));
        }
        if d == Dialect::Postgres {
            // Writers of changes take turns from here to their commit, so ids are handed out
            // in commit order: a reader never sees a change while an earlier id is still to
            // come. (A reader bounded by `pg_snapshot_xmin` instead would wait for every
            // transaction open anywhere on the server, other databases included, and would
            // still miss a change whose writer got its transaction id before an older-id
            // writer did.)
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(FEED_LOCK)
                .execute(&mut **tx)
                .await?;
        }
        let mut items = 0;
        for (key, now) in &mut self.0 {
            let id = insert_change(d, tx, &now.change, recorded_at).await?;
            now.change.cursor = id;
            put_head(tx, key, &now.answer, id).await?;
            items += enqueue(tx, now, targets).await?;
        }
        Ok((self.0.len() as u64, items))
    }
}

/// The advisory lock that orders the writers of changes (an arbitrary constant: "optout.ch").
const FEED_LOCK: i64 = 0x6f70_746f_7574_2e63;

/// The last answer recorded for `key`, its row locked until the transaction ends (PostgreSQL:
/// a key never answered gets an empty row, locked too; SQLite has one writer at a time).
async fn lock_head(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    (account, scope, subscriber): &Key,
) -> Result<Option<Answer>, StoreError> {
    let select = match d {
        Dialect::Sqlite => {
            "SELECT status, CAST(send_allowed AS INTEGER) AS send_allowed, reason \
             FROM change_heads WHERE account_sid = $1 AND scope = $2 AND subscriber = $3"
        }
        Dialect::Postgres => {
            "SELECT status, CAST(send_allowed AS INTEGER) AS send_allowed, reason \
             FROM change_heads WHERE account_sid = $1 AND scope = $2 AND subscriber = $3 \
             FOR UPDATE"
        }
    };
    for _ in 0..2 {
        let row = sqlx::query(select)
            .bind(account)
            .bind(scope)
            .bind(subscriber)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(r) = row {
            let status: Option<String> = r.try_get("status")?;
            return Ok(match status {
                Some(status) => Some(Answer {
                    status,
                    send_allowed: r.try_get::<Option<i64>, _>("send_allowed")? == Some(1),
                    reason: r
                        .try_get::<Option<String>, _>("reason")?
                        .unwrap_or_default(),
                }),
                None => None,
            });
        }
        if d == Dialect::Sqlite {
            // One writer at a time: nothing to lock; the head is written with the change.
            return Ok(None);
        }
        // A concurrent writer inserting the same key first: this waits for it, inserts
        // nothing, and the second SELECT locks its row.
        let inserted = sqlx::query(
            "INSERT INTO change_heads (account_sid, scope, subscriber) VALUES ($1, $2, $3) \
             ON CONFLICT (account_sid, scope, subscriber) DO NOTHING",
        )
        .bind(account)
        .bind(scope)
        .bind(subscriber)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
    }
    Err(StoreError::Schema(
        "change_heads: a row neither found nor inserted".into(),
    ))
}

async fn put_head(
    tx: &mut Transaction<'_, Any>,
    (account, scope, subscriber): &Key,
    a: &Answer,
    change_id: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO change_heads (account_sid, scope, subscriber, status, send_allowed, \
         reason, change_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (account_sid, scope, subscriber) DO UPDATE SET status = excluded.status, \
         send_allowed = excluded.send_allowed, reason = excluded.reason, \
         change_id = excluded.change_id",
    )
    .bind(account)
    .bind(scope)
    .bind(subscriber)
    .bind(&a.status)
    .bind(a.send_allowed)
    .bind(&a.reason)
    .bind(change_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_change(
    d: Dialect,
    tx: &mut Transaction<'_, Any>,
    c: &Change,
    recorded_at: &str,
) -> Result<i64, StoreError> {
    static SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        [Dialect::Sqlite, Dialect::Postgres].map(|d| {
            format!(
                "INSERT INTO changes (account_sid, scope, messaging_service_sid, sender, \
                 subscriber, status, send_allowed, reason, event_id, message_sid, opt_out_type, \
                 detection, rule, occurred_at, recorded_at, origin_account_sid, origin_scope) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, {}, {}, $16, \
                 $17) RETURNING id",
                d.ts_in("$14"),
                d.ts_in("$15")
            )
        })
    });
    let sql = &SQL[usize::from(d == Dialect::Postgres)];
    // Audited: built once from constants and the dialect's casts.
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(&c.account_sid)
        .bind(&c.scope)
        .bind(&c.messaging_service_sid)
        .bind(&c.sender)
        .bind(&c.subscriber)
        .bind(&c.status)
        .bind(c.send_allowed)
        .bind(&c.reason)
        .bind(&c.event_id)
        .bind(&c.message_sid)
        .bind(&c.opt_out_type)
        .bind(&c.detection)
        .bind(&c.rule)
        .bind(&c.occurred_at)
        .bind(recorded_at)
        .bind(&c.origin_account_sid)
        .bind(&c.origin_scope)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get("id")?)
}

/// One outbox item per target that wants the change; a key already there (the same change
/// from the same event) is not written again.
async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    a: &Answered,
    targets: &[OutboxTarget],
) -> Result<u64, StoreError> {
    let mut n = 0;
    let created_ms = super::model::ms(std::time::SystemTime::now());
    for t in targets.iter().filter(|t| (t.wants)(&a.change)) {
        n += sqlx::query(
            "INSERT INTO outbox (target, item_key, ordering_key, change_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target, item_key) DO NOTHING",
        )
        .bind(&t.name)
        .bind(item_key(&t.name, &a.identity, &a.change))
        .bind(ordering_key(&a.change))
        .bind(a.change.cursor)
        .bind(created_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(n)
}

/// Deliveries run in order per (account, scope, subscriber).
pub(super) fn ordering_key(c: &Change) -> String {
    format!("{}/{}/{}", c.account_sid, c.scope, c.subscriber)
}

/// 32 hex digits (the Consent API's `correlation_id` form), the same for every copy and retry
/// of one change to one target: the target, the causing event's identity, the key and the
/// new answer.
pub(super) fn item_key(target: &str, identity: &str, c: &Change) -> String {
    let mut h = sha2::Sha256::new();
    for part in [
        target,
        identity,
        &c.account_sid,
        &c.scope,
        &c.subscriber,
        &c.status,
        if c.send_allowed { "1" } else { "0" },
        &c.reason,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Which targets the commits write items for, shared by the store and its commits.
pub(super) type Targets = std::sync::RwLock<Arc<[OutboxTarget]>>;
