//! What the web console reads beyond the API's lists: a number's timeline and the phrase
//! revocations newest first (people read the latest first; the API's lists run oldest first
//! for exports), the daily rollup behind the activity chart, dead letters per day and the
//! streams the store holds checkpoints for.
//!
//! Every query is bounded: keyset pages walking an index backwards, or a range of days of the
//! rollup (one row per day, scope, type and detection, however many events).

use serde::Serialize;
use sqlx::Row;

use super::sqlbuild::Select;
use super::{BODY_PREVIEW_CHARS, Cursor, MESSAGE_SID_PREVIEW_CHARS, Page, QueryError, Reader};
use crate::store::model::RevocationRow;

/// Days the activity chart may span at most: a year and a bit, ~400 bars.
pub const MAX_ACTIVITY_DAYS: i64 = 400;

/// What [`Reader::activity_counts`] sums by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKey {
    Day,
    Scope,
    Detection,
}

/// One event of a number's timeline, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineRow {
    /// `data.timestamp`.
    pub occurred_at: String,
    /// `STOP`, `START` or `HELP`.
    pub opt_out_type: String,
    /// `twilio`, `reassigned`, `keyword` or `phrase`.
    pub detection: String,
    pub rule: Option<String>,
    pub account_sid: String,
    pub scope: String,
    pub sender: String,
    /// Cut to [`BODY_PREVIEW_CHARS`]; `truncated` says so.
    pub body: Option<String>,
    pub truncated: bool,
    pub message_sid: Option<String>,
    pub inferred: bool,
    pub event_id: String,
}

/// Opt events, oldest first or newest first; the activity chart's rows per day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyCount {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub scope: String,
    /// `STOP`, `START` or `HELP`.
    pub opt_out_type: String,
    pub detection: String,
    pub events: i64,
}

/// `AND (occurred_at, event_id) < (cursor)` then newest first, `limit + 1` rows.
fn newest_first(
    q: &mut Select,
    reader: &Reader,
    time: &str,
    id: &str,
    cursor: Option<&Cursor>,
    limit: u32,
) -> Result<(), QueryError> {
    if let Some(cursor) = cursor {
        let values = cursor.key(2)?;
        if crate::store::parse_time(&values[0]).is_none() {
            return Err(QueryError::Invalid(
                "cursor: not a cursor from this list; send back next_cursor unchanged".into(),
            ));
        }
        let t = q.arg(&values[0]);
        let t = reader.dialect.ts_in(&t);
        let i = q.arg(&values[1]);
        q.sql.push_str(&format!(" AND ({time}, {id}) < ({t}, {i})"));
    }
    q.sql.push_str(&format!(
        " ORDER BY {time} DESC, {id} DESC LIMIT {}",
        u64::from(limit) + 1
    ));
    Ok(())
}

impl Reader {
    /// One page of `subscriber`'s events in every scope, newest first.
    pub async fn timeline(
        &self,
        subscriber: &str,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<TimelineRow>, QueryError> {
        super::check_text("subscriber", subscriber)?;
        let mut q = Select::new(
            self.dialect,
            format!(
                "SELECT {} AS occurred_at, e.opt_out_type, e.detection, e.rule, e.account_sid, \
                 e.scope, e.sender, substr(e.body, 1, {BODY_PREVIEW_CHARS}) AS body, \
                 CASE WHEN length(e.body) > {BODY_PREVIEW_CHARS} THEN 1 ELSE 0 END AS truncated, \
                 substr(e.message_sid, 1, {MESSAGE_SID_PREVIEW_CHARS}) AS message_sid, \
                 CAST(e.inferred AS INTEGER) AS inferred, e.event_id \
                 FROM opt_events e WHERE 1 = 1",
                self.dialect.ts_out("e.occurred_at")
            ),
        );
        q.eq("e.subscriber", Some(subscriber));
        newest_first(&mut q, self, "e.occurred_at", "e.event_id", cursor, limit)?;
        let row = |r: &sqlx::any::AnyRow| {
            Ok(TimelineRow {
                occurred_at: r.try_get("occurred_at")?,
                opt_out_type: r.try_get("opt_out_type")?,
                detection: r.try_get("detection")?,
                rule: r.try_get("rule")?,
                account_sid: r.try_get("account_sid")?,
                scope: r.try_get("scope")?,
                sender: r.try_get("sender")?,
                body: r.try_get("body")?,
                truncated: r.try_get::<i64, _>("truncated")? != 0,
                message_sid: r.try_get("message_sid")?,
                inferred: r.try_get::<i64, _>("inferred")? != 0,
                event_id: r.try_get("event_id")?,
            })
        };
        q.fetch_page(&self.pool, limit, row, |t: &TimelineRow| {
            vec![t.occurred_at.clone(), t.event_id.clone()]
        })
        .await
    }

    /// One page of the phrase revocations to act on (as `optout revocations` lists them),
    /// newest first.
    pub async fn recent_revocations(
        &self,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<RevocationRow>, QueryError> {
        let mut q = Select::new(self.dialect, super::revocations::select(self.dialect));
        newest_first(&mut q, self, "e.occurred_at", "e.event_id", cursor, limit)?;
        q.fetch_page(
            &self.pool,
            limit,
            super::revocations::row,
            |r: &RevocationRow| vec![r.revoked_at.clone(), r.event_id.clone()],
        )
        .await
    }

    /// Opt events per day (UTC) from `from` to `to` inclusive, by scope, type and detection,
    /// read from the rollup the commit keeps (`opt_events_by_day`): at most one row per day,
    /// scope, type and detection, never a scan of the events. At most
    /// [`MAX_ACTIVITY_DAYS`] days, and at most `max_rows` rows (the rest are left out; the
    /// caller says so).
    pub async fn daily_counts(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        max_rows: u32,
    ) -> Result<Vec<DailyCount>, QueryError> {
        let days = (to - from).num_days();
        if !(0..MAX_ACTIVITY_DAYS).contains(&days) {
            return Err(QueryError::Invalid(format!(
                "range: from must be on or before to, and at most {MAX_ACTIVITY_DAYS} days"
            )));
        }
        let rows = sqlx::query(
            "SELECT day, scope, opt_out_type, detection, CAST(SUM(events) AS BIGINT) AS events \
             FROM opt_events_by_day WHERE day >= $1 AND day <= $2 \
             GROUP BY day, scope, opt_out_type, detection HAVING SUM(events) > 0 \
             ORDER BY day, scope, opt_out_type, detection LIMIT $3",
        )
        .bind(from.format("%Y-%m-%d").to_string())
        .bind(to.format("%Y-%m-%d").to_string())
        .bind(i64::from(max_rows))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DailyCount {
                    day: r.try_get("day")?,
                    scope: r.try_get("scope")?,
                    opt_out_type: r.try_get("opt_out_type")?,
                    detection: r.try_get("detection")?,
                    events: r.try_get("events")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(QueryError::from)
    }

    /// Opt events from `from` to `to` inclusive (at most [`MAX_ACTIVITY_DAYS`] days), summed
    /// in the database by `by` and type: one row per key and type (`(key, type, events)`),
    /// however many scopes the rollup holds. With `scope`, that scope's events only.
    pub async fn activity_counts(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        by: ActivityKey,
        scope: Option<&str>,
    ) -> Result<Vec<(String, String, i64)>, QueryError> {
        let days = (to - from).num_days();
        if !(0..MAX_ACTIVITY_DAYS).contains(&days) {
            return Err(QueryError::Invalid(format!(
                "range: from must be on or before to, and at most {MAX_ACTIVITY_DAYS} days"
            )));
        }
        let column = match by {
            ActivityKey::Day => "day",
            ActivityKey::Scope => "scope",
            ActivityKey::Detection => "detection",
        };
        // Without a scope, the day and detection sums read the rollup that has none: a few
        // rows a day however many scopes there are.
        let table = if scope.is_none() && by != ActivityKey::Scope {
            "opt_events_by_day_all"
        } else {
            "opt_events_by_day"
        };
        let mut q = Select::new(
            self.dialect,
            format!(
                "SELECT {column} AS k, opt_out_type, CAST(SUM(events) AS BIGINT) AS n \
                 FROM {table} WHERE 1 = 1"
            ),
        );
        let (from, to) = (
            from.format("%Y-%m-%d").to_string(),
            to.format("%Y-%m-%d").to_string(),
        );
        let (a, b) = (q.arg(&from), q.arg(&to));
        q.sql.push_str(&format!(" AND day >= {a} AND day <= {b}"));
        if let Some(scope) = scope {
            super::check_text("scope", scope)?;
            q.eq("scope", Some(scope));
        }
        q.sql.push_str(&format!(
            " GROUP BY {column}, opt_out_type HAVING SUM(events) > 0 ORDER BY 1, 2"
        ));
        let rows = q.fetch(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("k")?, r.try_get("opt_out_type")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(QueryError::from)
    }

    /// Dead letters recorded per day (UTC) over the last `days` days, newest first.
    pub async fn dead_letters_per_day(&self, days: u32) -> Result<Vec<(String, i64)>, QueryError> {
        let since = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
        let since = crate::store::model::format_ts(since);
        let day = match self.dialect {
            super::Dialect::Sqlite => "substr(recorded_at, 1, 10)",
            super::Dialect::Postgres => "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        };
        let mut q = Select::new(
            self.dialect,
            format!("SELECT {day} AS day, COUNT(*) AS n FROM dead_letters WHERE 1 = 1"),
        );
        q.time_cmp("recorded_at", ">=", Some(&since));
        q.sql.push_str(&format!(" GROUP BY {day} ORDER BY 1 DESC"));
        let rows = q.fetch(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("day")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(QueryError::from)
    }

    /// The streams the store holds checkpoints or leases for (at most 100).
    pub async fn streams(&self) -> Result<Vec<String>, QueryError> {
        let rows = sqlx::query(
            "SELECT stream_name FROM checkpoints UNION SELECT stream_name FROM leases \
             ORDER BY 1 LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("stream_name"))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(QueryError::from)
    }
}
