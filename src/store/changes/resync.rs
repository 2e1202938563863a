//! `optout deliveries --resync`: every key optout has seen, answered again under the store's
//! current `--revocation-scope` as a commit would answer it. A key whose answer differs from
//! its head gets its change and outbox items (after a switch of mode, say); and for a new
//! target, the current answer of every key is enqueued once, under the same item key a commit
//! would have given it, so running it again writes nothing twice.
//!
//! Keys are taken in key order, a page per transaction, each page under the same locks as a
//! commit (group locks, then heads, then the feed's lock), so writers may go on meanwhile.

use sqlx::{AnyPool, Row as _};

use super::{Key, answer::Answered, answer_keys, enqueue, group};
use crate::store::outbox::{OutboxTarget, ResyncSummary};
use crate::store::schema::Dialect;
use crate::store::{RevocationScope, StoreError};

/// Keys per transaction: bounds how long a page holds its locks.
const PAGE_KEYS: i64 = 500;

/// Answers every seen key again under `mode`, writing what differs for `targets`, and
/// enqueues every current answer for `new_target`.
pub(in crate::store) async fn resync(
    pool: &AnyPool,
    d: Dialect,
    mode: RevocationScope,
    targets: &[OutboxTarget],
    new_target: Option<&OutboxTarget>,
    recorded_at: &str,
) -> Result<ResyncSummary, StoreError> {
    let mut sum = ResyncSummary::default();
    let mut after: Option<Key> = None;
    loop {
        let keys = next_keys(pool, after.as_ref()).await?;
        let Some(last) = keys.last().cloned() else {
            return Ok(sum);
        };
        sum.keys += keys.len() as u64;
        let mut tx = pool.begin().await?;
        if d == Dialect::Postgres && mode != RevocationScope::Scope {
            group::lock_subscribers(&mut tx, &keys).await?;
        }
        let found = answer_keys(d, mode, &mut tx, keys.clone()).await?;
        let (changes, items) = found.write(d, &mut tx, targets, recorded_at).await?;
        sum.changes += changes;
        sum.outbox_items += items;
        if let Some(t) = new_target {
            for key in &keys {
                if let Some(head) = head_of(d, &mut tx, key).await? {
                    sum.target_items += enqueue(&mut tx, &head, std::slice::from_ref(t)).await?;
                }
            }
        }
        tx.commit().await?;
        if changes > 0 {
            super::CHANGED.notify_waiters();
        }
        tracing::info!(
            keys = sum.keys,
            changes = sum.changes,
            target_items = sum.target_items,
            "Resync: a page of keys answered again."
        );
        after = Some(last);
    }
}

/// The next page of keys optout has seen (a live status row or a recorded answer), after
/// `after` in key order.
async fn next_keys(pool: &AnyPool, after: Option<&Key>) -> Result<Vec<Key>, StoreError> {
    let page = |table: &str| match after {
        None => format!(
            "SELECT * FROM (SELECT account_sid, scope, subscriber FROM {table} \
             ORDER BY account_sid, scope, subscriber LIMIT {PAGE_KEYS}) {table}_page"
        ),
        Some(_) => format!(
            "SELECT * FROM (SELECT account_sid, scope, subscriber FROM {table} \
             WHERE (account_sid, scope, subscriber) > ($1, $2, $3) \
             ORDER BY account_sid, scope, subscriber LIMIT {PAGE_KEYS}) {table}_page"
        ),
    };
    // Audited: table names and the page size are constants.
    let sql = format!(
        "{} UNION {} ORDER BY account_sid, scope, subscriber LIMIT {PAGE_KEYS}",
        page("opt_status"),
        page("change_heads")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some((account, scope, subscriber)) = after {
        q = q.bind(account).bind(scope).bind(subscriber);
    }
    q.fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("account_sid")?,
                r.try_get("scope")?,
                r.try_get("subscriber")?,
            ))
        })
        .collect()
}

/// The change recorded as `key`'s current answer, with its event's identity (what a commit
/// keyed its items with); `None` for a key never answered.
async fn head_of(
    d: Dialect,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    (account, scope, subscriber): &Key,
) -> Result<Option<Answered>, StoreError> {
    // Audited: the dialect's constant time format only.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT c.id AS change_id, c.account_sid, c.scope, c.messaging_service_sid, c.sender, \
         c.subscriber, c.status, CAST(c.send_allowed AS INTEGER) AS send_allowed, c.reason, \
         c.event_id, c.message_sid, c.opt_out_type, c.detection, c.rule, {} AS occurred_at, \
         c.origin_account_sid, c.origin_scope, e.identity FROM change_heads h \
         JOIN changes c ON c.id = h.change_id LEFT JOIN opt_events e ON e.event_id = c.event_id \
         WHERE h.account_sid = $1 AND h.scope = $2 AND h.subscriber = $3",
        d.ts_out("c.occurred_at")
    )))
    .bind(account)
    .bind(scope)
    .bind(subscriber)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let change = crate::store::outbox::change_of(&r)?;
    let identity = r
        .try_get::<Option<String>, _>("identity")?
        .unwrap_or_else(|| change.event_id.clone());
    Ok(Some(Answered {
        answer: super::Answer {
            status: change.status.clone(),
            send_allowed: change.send_allowed,
            reason: change.reason.clone(),
        },
        identity,
        change,
    }))
}
