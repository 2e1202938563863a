//! The change feed and the outbox's items, read side.
//!
//! The feed is every change of a subscriber's answer in commit order, read after a cursor
//! (the last change's id). On SQLite one writer at a time makes id order commit order. On
//! PostgreSQL ids come from a sequence, and the writers of changes take turns from their first
//! change to their commit (`store/changes/`), so a change never becomes visible before one
//! with a smaller id: the visible changes are always a prefix of the feed, and a cursor never
//! passes a change that is still to come.
//!
//! A long-poll ([`Reader::changes_wait`]) holds no connection while it waits: it reads, lets
//! the connection go back to the pool, and reads again when a commit in this process wrote
//! changes or after [`POLL_INTERVAL`] (for commits of other processes), whichever comes first.

use std::time::Duration;

use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::sqlbuild::json_len;
use super::{Cursor, PAGE_BYTES, Page, PageRequest, QueryError, Reader};
use crate::store::Change;
use crate::store::schema::Dialect;

/// The longest a long-poll may wait, inside the HTTP server's response deadline.
pub const MAX_WAIT: Duration = Duration::from_secs(25);
/// How often a waiting long-poll reads again when no local commit woke it (changes committed
/// by other processes).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// One page of the feed. Unlike the other lists, `next_cursor` is always given once the feed
/// holds anything: it is where the next read starts, whether or not more changes follow yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangePage {
    #[serde(serialize_with = "feed_items")]
    pub items: Vec<Change>,
    pub next_cursor: Option<String>,
}

/// A change as the feed shows it: its `cursor` is the opaque text to resume after it (the
/// same kind as `next_cursor`), not the row id.
pub fn feed_json(c: &Change) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.insert(
            "cursor".into(),
            Cursor::of(vec![c.cursor.to_string()]).encode().into(),
        );
    }
    v
}

fn feed_items<S: serde::Serializer>(items: &[Change], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(feed_json))
}

fn feed_sql(d: Dialect) -> String {
    format!(
        "SELECT c.id AS change_id, c.account_sid, c.scope, c.messaging_service_sid, c.sender, \
         c.subscriber, c.status, CAST(c.send_allowed AS INTEGER) AS send_allowed, c.reason, \
         c.event_id, c.message_sid, c.opt_out_type, c.detection, c.rule, {} AS occurred_at, \
         c.origin_account_sid, c.origin_scope FROM changes c WHERE c.id > $1 ORDER BY c.id LIMIT $2",
        d.ts_out("c.occurred_at")
    )
}

/// The id a feed cursor stands for (0: from the start).
fn after_id(cursor: Option<&Cursor>) -> Result<i64, QueryError> {
    let Some(cursor) = cursor else {
        return Ok(0);
    };
    cursor.key(1)?[0].parse::<i64>().map_err(|_| {
        QueryError::Invalid(
            "cursor: not a cursor of the change feed; send back next_cursor unchanged".into(),
        )
    })
}

impl Reader {
    /// Up to `req.limit` changes after `req.cursor`, in commit order, at most
    /// [`PAGE_BYTES`] of JSON.
    pub async fn changes(&self, req: &PageRequest) -> Result<ChangePage, QueryError> {
        let after = after_id(req.cursor.as_ref())?;
        // Audited: built from constants and the dialect's casts.
        let rows = sqlx::query(sqlx::AssertSqlSafe(feed_sql(self.dialect)))
            .bind(after)
            .bind(i64::from(req.limit))
            .fetch_all(&self.pool)
            .await?;
        let mut items = Vec::new();
        let mut bytes = 0;
        for r in &rows {
            if bytes >= PAGE_BYTES && !items.is_empty() {
                break;
            }
            let change = crate::store::change_of(r)?;
            bytes += json_len(&change) + 16;
            items.push(change);
        }
        let last = items.last().map_or(after, |c: &Change| c.cursor);
        let next_cursor =
            (last > 0 || req.cursor.is_some()).then(|| Cursor::of(vec![last.to_string()]).encode());
        Ok(ChangePage { items, next_cursor })
    }

    /// Pending and failed outbox items per target that has any, with the oldest pending
    /// one's age (the console's health page; the dispatchers' metrics read the same).
    pub async fn backlog(&self) -> Result<Vec<crate::store::TargetBacklog>, QueryError> {
        Ok(crate::store::backlog::read(&self.pool, std::time::SystemTime::now()).await?)
    }

    /// How often a waiting long-poll reads again when no commit in this process woke it
    /// (default [`POLL_INTERVAL`]).
    pub fn set_feed_poll(&self, every: Duration) {
        let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
        self.feed_poll_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends every waiting long-poll of the change feed, now and from now on: each answers with
    /// what it has (no items), so a server shutting down is not held up to [`MAX_WAIT`] by
    /// them.
    pub fn end_waits(&self) {
        self.waits_end.cancel();
    }

    /// Connections of the read pool in use now (a waiting long-poll holds none).
    pub fn connections_in_use(&self) -> u32 {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        self.pool.size().saturating_sub(idle)
    }

    /// Like [`Self::changes`], but when none follow the cursor, waits up to `wait` (at most
    /// [`MAX_WAIT`]) for one, holding no connection meanwhile; not at all after
    /// [`Self::end_waits`].
    pub async fn changes_wait(
        &self,
        req: &PageRequest,
        wait: Duration,
    ) -> Result<ChangePage, QueryError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Registered before reading, so a commit between the read and the wait still wakes
            // this one.
            let woken = crate::store::changes_notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let page = self.changes(req).await?;
            let now = tokio::time::Instant::now();
            if !page.items.is_empty() || now >= deadline {
                return Ok(page);
            }
            let every = self.feed_poll_ms.load(std::sync::atomic::Ordering::Relaxed);
            let next = (now + Duration::from_millis(every)).min(deadline);
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep_until(next) => {}
                // Shutting down: answer now (nothing new), so the server can close.
                () = self.waits_end.cancelled() => return Ok(page),
            }
        }
    }
}

/// One outbox item as `optout deliveries` and `/v1/deliveries` list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub target: String,
    /// The idempotency key every try carries (`webhook-id`, `correlation_id`).
    pub key: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    /// When a pending item is due (UTC, RFC 3339).
    pub next_attempt_at: Option<String>,
    /// The dispatcher holding a pending item, and until when.
    pub claimed_by: Option<String>,
    pub claimed_until: Option<String>,
    /// Why the last try failed (a failed item: why it was given up).
    pub last_error: Option<String>,
    pub created_at: String,
    /// When it was delivered or given up.
    pub settled_at: Option<String>,
    /// The change it delivers (its position in the change feed).
    pub change_id: i64,
    pub account_sid: String,
    pub scope: String,
    pub subscriber: String,
    pub status: String,
    pub send_allowed: bool,
    pub reason: String,
    pub event_id: String,
}

/// `optout deliveries` / `/v1/deliveries`: outbox items in id order.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub target: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub state: Option<String>,
}

/// The states an outbox item can be in.
pub const DELIVERY_STATES: [&str; 3] = ["pending", "delivered", "failed"];

fn ms_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(crate::store::format_ts)
        .unwrap_or_default()
}

fn delivery(r: &AnyRow) -> Result<Delivery, sqlx::Error> {
    let state: String = r.try_get("state")?;
    let pending = state == "pending";
    let opt_time = |col: &str| -> Result<Option<String>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(col)?.map(ms_time))
    };
    Ok(Delivery {
        id: r.try_get("id")?,
        target: r.try_get("target")?,
        key: r.try_get("item_key")?,
        next_attempt_at: if pending {
            opt_time("next_attempt_ms")?
        } else {
            None
        },
        state,
        attempts: r.try_get("attempts")?,
        claimed_by: r.try_get("claimed_by")?,
        claimed_until: opt_time("claimed_until_ms")?,
        last_error: r.try_get("last_error")?,
        created_at: ms_time(r.try_get("created_ms")?),
        settled_at: opt_time("settled_ms")?,
        change_id: r.try_get("change_id")?,
        account_sid: r.try_get("account_sid")?,
        scope: r.try_get("scope")?,
        subscriber: r.try_get("subscriber")?,
        status: r.try_get("status")?,
        send_allowed: r.try_get::<i64, _>("send_allowed")? != 0,
        reason: r.try_get("reason")?,
        event_id: r.try_get("event_id")?,
    })
}

#[async_trait::async_trait]
impl super::Listing for DeliveryFilter {
    type Row = Delivery;

    async fn page(&self, reader: &Reader, req: &PageRequest) -> Result<Page<Delivery>, QueryError> {
        if let Some(state) = &self.state
            && !DELIVERY_STATES.contains(&state.as_str())
        {
            return Err(QueryError::Invalid(format!(
                "state: use pending, delivered or failed (got {state:?})"
            )));
        }
        if let Some(t) = &self.target {
            super::check_text("target", t)?;
        }
        let after = match &req.cursor {
            None => 0,
            Some(c) => c.key(1)?[0].parse::<i64>().map_err(|_| {
                QueryError::Invalid(
                    "cursor: not a cursor from this API; send back next_cursor unchanged".into(),
                )
            })?,
        };
        let mut sql = String::from(
            "SELECT o.id, o.target, o.item_key, o.state, o.attempts, o.next_attempt_ms, \
             o.claimed_by, o.claimed_until_ms, o.last_error, o.created_ms, o.settled_ms, \
             c.id AS change_id, c.account_sid, c.scope, c.subscriber, c.status, \
             CAST(c.send_allowed AS INTEGER) AS send_allowed, c.reason, c.event_id \
             FROM outbox o JOIN changes c ON c.id = o.change_id WHERE o.id > $1",
        );
        let mut n = 2;
        for (column, value) in [("o.target", &self.target), ("o.state", &self.state)] {
            if value.is_some() {
                sql.push_str(&format!(" AND {column} = ${n}"));
                n += 1;
            }
        }
        sql.push_str(&format!(" ORDER BY o.id LIMIT ${n}"));
        // Audited: only column names and placeholders are spliced in.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after);
        for value in [&self.target, &self.state].into_iter().flatten() {
            q = q.bind(value.as_str());
        }
        let rows = q
            .bind(i64::from(req.limit) + 1)
            .fetch_all(&reader.pool)
            .await?;
        let mut items: Vec<Delivery> = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for r in &rows {
            if items.len() >= req.limit as usize || (bytes >= PAGE_BYTES && !items.is_empty()) {
                more = true;
                break;
            }
            let d = delivery(r)?;
            bytes += json_len(&d);
            items.push(d);
        }
        let next_cursor = more
            .then(|| {
                items
                    .last()
                    .map(|d| Cursor::of(vec![d.id.to_string()]).encode())
            })
            .flatten();
        Ok(Page { items, next_cursor })
    }
}
