//! Multi-row statements for the commit path: one `INSERT … VALUES (…), (…), …` per chunk of a
//! batch instead of one statement per row.
//!
//! Every statement is a round trip: to sqlx's worker thread on SQLite (a wake-up and a futex
//! each way), over the network on PostgreSQL. A batch of a thousand events used to cost two
//! thousand of them. Chunks are powers of two up to [`MAX_ROWS`], so a commit of any size runs
//! at most a few distinct statement texts, each built once per process and prepared once per
//! connection (sqlx caches prepared statements by their text); a row count of its own per
//! commit would prepare a new statement almost every time.
//!
//! SQLite's placeholders are anonymous (`?`): sqlx looks up every parameter's name as it
//! binds, and SQLite finds a name by scanning the statement's list of them, so `$N` costs
//! time quadratic in the parameters (measured: half of a replay's CPU at 256 rows of 22).
//!
//! PostgreSQL once stayed at one row a statement: an older sqlx did not set `TCP_NODELAY`, and
//! a bind message larger than one TCP segment waited on delayed ACKs. sqlx 0.9 sets it; 256
//! rows a statement now replay 200,000 Twilio records in 0.76× the wall time of one row a
//! statement (medians of 5 runs each, in one run).

use super::schema::Dialect;

/// The most rows one statement carries: under SQLite's limit of 32,766 bound parameters for
/// the widest row (22 values) with room to spare, and large enough that the
/// per-statement cost is spread over many rows.
pub(super) const MAX_ROWS: usize = 256;

/// How many distinct chunk sizes there are at most: 1, 2, 4, …, [`MAX_ROWS`].
#[cfg(test)]
const SIZES: usize = MAX_ROWS.trailing_zeros() as usize + 1;

/// The chunk sizes that cover `n` rows in order: `max` (a power of two) while at least that
/// many are left, then the binary digits of the rest, largest first (1,000 rows at 256: 256,
/// 256, 256, 128, 64, 32, 8).
fn chunks(mut n: usize, max: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= max {
            max
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        n -= size;
        Some(size)
    })
}

/// `rows` cut into the chunks [`chunks`] gives, in order.
pub(super) fn chunked<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    chunks(rows.len(), MAX_ROWS).map(move |size| {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        chunk
    })
}

/// One statement per chunk size, all built on construction.
pub(super) struct MultiRow {
    by_size: Vec<String>,
}

impl MultiRow {
    /// Builds the statements `head VALUES (row 1), (row 2), … tail` for every chunk size.
    ///
    /// Each row takes `width` placeholders, numbered on from the previous row's on
    /// PostgreSQL and anonymous on SQLite (bind the values row after row); `value(column,
    /// placeholder)` writes one value (a cast, say).
    pub fn new(
        d: Dialect,
        head: &str,
        tail: &str,
        width: usize,
        value: impl Fn(usize, &str) -> String,
    ) -> Self {
        let sizes = MAX_ROWS.trailing_zeros() as usize + 1;
        let by_size = (0..sizes)
            .map(|k| {
                let rows = 1usize << k;
                let mut sql = String::with_capacity(head.len() + tail.len() + rows * width * 8);
                sql.push_str(head);
                sql.push_str(" VALUES ");
                for row in 0..rows {
                    if row > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('(');
                    for column in 0..width {
                        if column > 0 {
                            sql.push_str(", ");
                        }
                        let placeholder = match d {
                            Dialect::Sqlite => "?".to_string(),
                            Dialect::Postgres => format!("${}", row * width + column + 1),
                        };
                        sql.push_str(&value(column, &placeholder));
                    }
                    sql.push(')');
                }
                sql.push(' ');
                sql.push_str(tail);
                sql
            })
            .collect();
        MultiRow { by_size }
    }

    /// The statement for a chunk of `rows` rows (a size [`chunks`] gives).
    ///
    /// # Panics
    /// If `rows` is not a power of two up to [`MAX_ROWS`].
    pub fn sql(&self, rows: usize) -> &str {
        assert!(
            rows.is_power_of_two() && rows <= 1 << (self.by_size.len() - 1),
            "chunk of {rows}"
        );
        &self.by_size[rows.trailing_zeros() as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_count_with_few_sizes() {
        for n in 0..2_000 {
            let sizes: Vec<usize> = chunks(n, MAX_ROWS).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= MAX_ROWS));
            // Never more than the full chunks and one of each smaller size.
            assert!(sizes.len() < n / MAX_ROWS + SIZES, "{n}: {sizes:?}");
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{n}: {sizes:?}");
        }
        assert_eq!(
            chunks(1_000, MAX_ROWS).collect::<Vec<_>>(),
            [256, 256, 256, 128, 64, 32, 8]
        );
        assert_eq!(chunks(3, 1).collect::<Vec<_>>(), [1, 1, 1]);
        let rows: Vec<usize> = (0..1_000).collect();
        let cut: Vec<&[usize]> = chunked(&rows).collect();
        assert_eq!(
            cut.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [256, 256, 256, 128, 64, 32, 8]
        );
        assert_eq!(cut.concat(), rows, "every row once, in order");
    }

    #[test]
    fn placeholders_run_on_row_after_row() {
        let m = MultiRow::new(
            Dialect::Postgres,
            "INSERT INTO t (a)",
            "RETURNING a",
            1,
            |_, p| p.to_string(),
        );
        assert_eq!(m.sql(1), "INSERT INTO t (a) VALUES ($1) RETURNING a");
        let m = MultiRow::new(
            Dialect::Sqlite,
            "INSERT INTO t (a, b)",
            "RETURNING a",
            2,
            |column, p| match column {
                0 => format!("CAST({p} AS x)"),
                _ => p.to_string(),
            },
        );
        assert_eq!(
            m.sql(2),
            "INSERT INTO t (a, b) VALUES (CAST(? AS x), ?), (CAST(? AS x), ?) RETURNING a"
        );
        assert_eq!(m.sql(MAX_ROWS).matches('(').count(), 2 * MAX_ROWS + 1);
    }
}
