//! Building the read side's SELECTs: optional filters, a keyset condition, and the few places
//! where the dialects' column types differ (PostgreSQL keeps times as `timestamptz`, SQLite as
//! fixed-width RFC 3339 text).

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::AnyPool;
use sqlx::any::AnyRow;

use super::{Cursor, PAGE_BYTES, Page, QueryError};
use crate::store::schema::Dialect;

/// A column of a list's unique ordering key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    /// The column (qualified if the SELECT joins).
    pub column: &'static str,
    /// A time column: compared as a time on PostgreSQL.
    pub time: bool,
}

pub(super) const fn key(column: &'static str) -> Key {
    Key {
        column,
        time: false,
    }
}

pub(super) const fn time_key(column: &'static str) -> Key {
    Key { column, time: true }
}

/// A SELECT under construction, with numbered placeholders and their text values.
pub(super) struct Select {
    pub sql: String,
    args: Vec<String>,
    dialect: Dialect,
}

impl Select {
    /// Starts from `head`, which must end in a WHERE clause (`WHERE 1 = 1` if none).
    pub fn new(dialect: Dialect, head: String) -> Self {
        Select {
            sql: head,
            args: Vec::new(),
            dialect,
        }
    }

    /// Binds `value` and returns its placeholder.
    pub fn arg(&mut self, value: &str) -> String {
        self.args.push(value.to_string());
        format!("${}", self.args.len())
    }

    /// `AND column = value`, if a value is given.
    pub fn eq(&mut self, column: &str, value: Option<&str>) {
        if let Some(v) = value {
            let p = self.arg(v);
            self.sql.push_str(&format!(" AND {column} = {p}"));
        }
    }

    /// `AND column op time`, if a time is given.
    pub fn time_cmp(&mut self, column: &str, op: &str, value: Option<&str>) {
        if let Some(v) = value {
            let p = self.arg(v);
            let p = self.dialect.ts_in(&p);
            self.sql.push_str(&format!(" AND {column} {op} {p}"));
        }
    }

    /// `AND column IN (...)`, unless `values` is empty. Callers bound the number of values
    /// ([`super::MAX_LIST_VALUES`]); this is a second fence against a statement SQLite refuses.
    pub fn any_of(&mut self, column: &str, values: &[String]) -> Result<(), QueryError> {
        if values.len() > super::MAX_LIST_VALUES {
            return Err(QueryError::Invalid(format!(
                "{column}: at most {} values (got {})",
                super::MAX_LIST_VALUES,
                values.len()
            )));
        }
        if values.is_empty() {
            return Ok(());
        }
        let marks: Vec<String> = values.iter().map(|v| self.arg(v)).collect();
        self.sql
            .push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
        Ok(())
    }

    /// `AND (k1, k2, …) > (cursor…)`, then `ORDER BY k1, k2, … LIMIT limit + 1` (one row more
    /// than asked tells whether another page follows).
    pub fn keyset(
        &mut self,
        keys: &[Key],
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<(), QueryError> {
        self.after(keys, cursor)?;
        self.order_limit(keys, limit);
        Ok(())
    }

    /// `AND (k1, k2, …) > (cursor…)`, if a cursor is given.
    pub fn after(&mut self, keys: &[Key], cursor: Option<&Cursor>) -> Result<(), QueryError> {
        if let Some(cursor) = cursor {
            let values = cursor.key(keys.len())?;
            for (k, v) in keys.iter().zip(values) {
                check_key_value(*k, v)?;
            }
            let mut columns = Vec::with_capacity(keys.len());
            let mut marks = Vec::with_capacity(keys.len());
            for (k, v) in keys.iter().zip(values) {
                columns.push(k.column);
                let p = self.arg(v);
                marks.push(if k.time { self.dialect.ts_in(&p) } else { p });
            }
            self.sql.push_str(&format!(
                " AND ({}) > ({})",
                columns.join(", "),
                marks.join(", ")
            ));
        }
        Ok(())
    }

    /// `ORDER BY k1, k2, … LIMIT limit + 1`.
    pub fn order_limit(&mut self, keys: &[Key], limit: u32) {
        let order: Vec<&str> = keys.iter().map(|k| k.column).collect();
        self.sql.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            order.join(", "),
            u64::from(limit) + 1
        ));
    }

    /// Runs the SELECT.
    pub async fn fetch(&self, pool: &AnyPool) -> Result<Vec<AnyRow>, sqlx::Error> {
        self.query().fetch_all(pool).await
    }

    /// The SELECT with its values bound.
    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        // Audited: only column names, constant SQL and `$N` placeholders are spliced in;
        // every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.as_str()));
        for a in &self.args {
            q = q.bind(a.as_str());
        }
        q
    }

    /// Runs the SELECT (made with [`Self::keyset`] or [`Self::order_limit`] for `limit`) and
    /// makes a page of its rows, streamed and mapped one at a time: the page ends after
    /// `limit` rows or [`PAGE_BYTES`] of JSON, whichever comes first, and the cursor is the
    /// key of its last row when another row follows.
    pub async fn fetch_page<T: Serialize>(
        &self,
        pool: &AnyPool,
        limit: u32,
        map: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
        key: impl Fn(&T) -> Vec<String>,
    ) -> Result<Page<T>, QueryError> {
        let mut rows = self.query().fetch(pool);
        let mut items = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        while let Some(row) = rows.try_next().await? {
            if items.len() >= limit as usize || (bytes >= PAGE_BYTES && !items.is_empty()) {
                more = true;
                break;
            }
            let item = map(&row)?;
            bytes += json_len(&item);
            items.push(item);
        }
        let next_cursor = if more {
            items.last().map(|r| Cursor(key(r)).encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

/// The length of `value` as JSON, counted without building it.
pub(super) fn json_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Plain structs of strings and numbers: serialization cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A cursor's value for key column `k`: a time column takes only a time as this API writes
/// it, so that a forged cursor is a 400, not a cast the database refuses.
fn check_key_value(k: Key, value: &str) -> Result<(), QueryError> {
    super::check_text("cursor", value)?;
    if k.time && crate::store::parse_time(value).is_none() {
        return Err(QueryError::Invalid(
            "cursor: not a cursor from this API; send back next_cursor unchanged".into(),
        ));
    }
    Ok(())
}
