//! Building the read side's SELECTs: optional filters, a keyset condition, and the few places
//! where the dialects' column types differ (PostgreSQL keeps times as `timestamptz`, SQLite as
//! fixed-width RFC 3339 text).

use sqlx::AnyPool;
use sqlx::any::AnyRow;

use super::{Cursor, Page, QueryError};
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

    /// `AND column IN (...)`, unless `values` is empty.
    pub fn any_of(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let marks: Vec<String> = values.iter().map(|v| self.arg(v)).collect();
        self.sql
            .push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
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
        // Audited: only column names, constant SQL and `$N` placeholders are spliced in;
        // every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.as_str()));
        for a in &self.args {
            q = q.bind(a);
        }
        q.fetch_all(pool).await
    }
}

/// The page made of `rows` (fetched with one row more than `limit`): the cursor is the key of
/// its last row when another page follows.
pub(super) fn page<T>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> Vec<String>) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| Cursor(key(r)).encode())
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}
