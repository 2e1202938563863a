//! The one SQL implementation of [`Store`], shared by SQLite and PostgreSQL.
//!
//! Both backends run the same statements through sqlx's `any` driver (plain types, `$N`
//! placeholders, standard `ON CONFLICT` upserts), so their semantics cannot drift apart; what
//! differs (connection set-up, the single-runner lock, leases) lives in `sqlite.rs` and
//! `postgres.rs`, and the DDL in `migrations/<backend>/`.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::model::*;
use super::query::{ts_in, ts_out};
use super::schema::Dialect;
use super::{Store, StoreError};
use crate::event::{Detection, OptEvent, OptOutType};

/// A store backed by a SQL database reached through sqlx's `any` driver.
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    /// SQLite only: the held lock that makes this process the only runner on the file.
    pub(super) runner_lock: std::sync::Mutex<Option<std::fs::File>>,
    /// SQLite only: the database file (for the lock file's name).
    pub(super) sqlite_path: Option<String>,
}

fn now() -> String {
    format_ts(chrono::Utc::now())
}

/// The commit path's statements for one dialect. Only the timestamp casts differ between
/// backends; they are spliced in once here (audited: a constant cast of a placeholder), not
/// formatted again for every record.
struct CommitSql {
    insert_opt_event: String,
    apply_status: String,
    insert_dead_letter: String,
    insert_test_event: String,
    write_checkpoint: String,
}

impl CommitSql {
    fn new(d: Dialect) -> Self {
        CommitSql {
            insert_opt_event: format!(
                "INSERT INTO opt_events (event_id, opt_out_type, inferred, account_sid, \
                 messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at, \
                 schema_version, stream_name, shard_id, sequence_number, recorded_at, detection, \
                 rule) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {}, $12, $13, $14, $15, \
                 {}, $17, $18) ON CONFLICT (event_id) DO NOTHING",
                ts_in(d, "$11"),
                ts_in(d, "$16")
            ),
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
                ts_in(d, "$7")
            ),
            insert_dead_letter: format!(
                "INSERT INTO dead_letters (stream_name, shard_id, sequence_number, partition_key, \
                 reason, data, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, {}) \
                 ON CONFLICT (stream_name, shard_id, sequence_number) DO NOTHING",
                ts_in(d, "$7")
            ),
            insert_test_event: format!(
                "INSERT INTO sink_test_events (test_id, account_sid, occurred_at, stream_name, \
                 shard_id, sequence_number, recorded_at) VALUES ($1, $2, {}, $4, $5, $6, {}) \
                 ON CONFLICT (test_id) DO NOTHING",
                ts_in(d, "$3"),
                ts_in(d, "$7")
            ),
            write_checkpoint: format!(
                "INSERT INTO checkpoints (stream_name, shard_id, sequence_number, finished, updated_at) \
                 VALUES ($1, $2, $3, $4, {}) ON CONFLICT (stream_name, shard_id) DO UPDATE SET \
                 sequence_number = COALESCE(excluded.sequence_number, checkpoints.sequence_number), \
                 finished = excluded.finished, updated_at = excluded.updated_at",
                ts_in(d, "$5")
            ),
        }
    }
}

/// The statements of `d`, built on first use.
fn commit_sql(d: Dialect) -> &'static CommitSql {
    static SQLITE: LazyLock<CommitSql> = LazyLock::new(|| CommitSql::new(Dialect::Sqlite));
    static POSTGRES: LazyLock<CommitSql> = LazyLock::new(|| CommitSql::new(Dialect::Postgres));
    match d {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

impl SqlStore {
    /// The backend's dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Inserts the batch's opt events and applies their status changes.
    ///
    /// Rows are locked in one global order (events by id, then status rows by key), the same
    /// in every transaction, so concurrent commits from different shards wait for each other
    /// but never deadlock.
    async fn insert_opt_events(
        d: Dialect,
        tx: &mut Transaction<'_, Any>,
        batch: &Batch,
        recorded_at: &str,
        summary: &mut CommitSummary,
    ) -> Result<(), StoreError> {
        let mut by_id: Vec<&Positioned<OptEvent>> = batch.opt_events.iter().collect();
        by_id.sort_by(|a, b| a.value.event_id.cmp(&b.value.event_id));
        let mut new_events: Vec<&OptEvent> = Vec::new();
        for Positioned {
            sequence_number,
            value: ev,
        } in by_id
        {
            let inserted =
                sqlx::query(sqlx::AssertSqlSafe(commit_sql(d).insert_opt_event.as_str()))
                    .bind(&ev.event_id)
                    .bind(ev.opt_out_type.as_str())
                    .bind(ev.inferred)
                    .bind(&ev.account_sid)
                    .bind(&ev.messaging_service_sid)
                    .bind(&ev.sender)
                    .bind(&ev.subscriber)
                    .bind(ev.scope())
                    .bind(&ev.body)
                    .bind(&ev.message_sid)
                    .bind(format_ts(ev.occurred_at))
                    .bind(ev.schema_version.map(i64::from))
                    .bind(&batch.stream)
                    .bind(&batch.shard_id)
                    .bind(sequence_number)
                    .bind(recorded_at)
                    .bind(ev.detection.as_str())
                    .bind(&ev.rule)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                    == 1;
            if inserted {
                summary.opt_events_new += 1;
                new_events.push(ev);
            } else {
                summary.opt_events_duplicate += 1;
            }
        }
        new_events.sort_by(|a, b| {
            (&a.account_sid, a.scope(), &a.subscriber).cmp(&(
                &b.account_sid,
                b.scope(),
                &b.subscriber,
            ))
        });
        for ev in new_events {
            // A phrase revocation changes status only when honoured (README, semantics).
            if ev.detection == Detection::Phrase && !batch.honor_revocations {
                continue;
            }
            summary.status_changes += Self::apply_status(d, tx, ev).await?;
        }
        Ok(())
    }

    /// STOP → opted_out, START → opted_in, HELP → nothing. The latest event by
    /// `data.timestamp` wins, ties to the larger id, so arrival order does not matter.
    async fn apply_status(
        d: Dialect,
        tx: &mut Transaction<'_, Any>,
        ev: &OptEvent,
    ) -> Result<u64, StoreError> {
        let status = match ev.opt_out_type {
            OptOutType::Stop => "opted_out",
            OptOutType::Start => "opted_in",
            OptOutType::Help => return Ok(0),
        };
        Ok(
            sqlx::query(sqlx::AssertSqlSafe(commit_sql(d).apply_status.as_str()))
                .bind(&ev.account_sid)
                .bind(ev.scope())
                .bind(&ev.subscriber)
                .bind(&ev.messaging_service_sid)
                .bind(&ev.sender)
                .bind(status)
                .bind(format_ts(ev.occurred_at))
                .bind(&ev.event_id)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        )
    }

    async fn insert_side_records(
        d: Dialect,
        tx: &mut Transaction<'_, Any>,
        batch: &Batch,
        recorded_at: &str,
        summary: &mut CommitSummary,
    ) -> Result<(), StoreError> {
        for dl in &batch.dead_letters {
            summary.dead_letters += sqlx::query(sqlx::AssertSqlSafe(
                commit_sql(d).insert_dead_letter.as_str(),
            ))
            .bind(&batch.stream)
            .bind(&batch.shard_id)
            .bind(&dl.sequence_number)
            .bind(&dl.partition_key)
            .bind(&dl.reason)
            .bind(&dl.data)
            .bind(recorded_at)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        }
        for Positioned {
            sequence_number,
            value: t,
        } in &batch.test_events
        {
            summary.test_events += sqlx::query(sqlx::AssertSqlSafe(
                commit_sql(d).insert_test_event.as_str(),
            ))
            .bind(&t.test_id)
            .bind(&t.account_sid)
            .bind(t.occurred_at.map(format_ts))
            .bind(&batch.stream)
            .bind(&batch.shard_id)
            .bind(sequence_number)
            .bind(recorded_at)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        }
        Ok(())
    }

    async fn write_checkpoint(
        d: Dialect,
        tx: &mut Transaction<'_, Any>,
        batch: &Batch,
        cp: &CheckpointUpdate,
        recorded_at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(commit_sql(d).write_checkpoint.as_str()))
            .bind(&batch.stream)
            .bind(&batch.shard_id)
            .bind(&cp.sequence_number)
            .bind(cp.finished)
            .bind(recorded_at)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.dialect.name()
    }

    async fn commit(&self, batch: &Batch) -> Result<CommitSummary, StoreError> {
        let recorded_at = now();
        let mut summary = CommitSummary::default();
        let mut tx = self.pool.begin().await?;
        if let Some(lease) = &batch.lease {
            self.dialect
                .check_lease(&mut tx, &batch.stream, &batch.shard_id, lease)
                .await?;
        }
        let d = self.dialect;
        Self::insert_opt_events(d, &mut tx, batch, &recorded_at, &mut summary).await?;
        Self::insert_side_records(d, &mut tx, batch, &recorded_at, &mut summary).await?;
        if let Some(cp) = &batch.checkpoint {
            Self::write_checkpoint(d, &mut tx, batch, cp, &recorded_at).await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn checkpoints(&self, stream: &str) -> Result<Vec<Checkpoint>, StoreError> {
        // Audited: only the dialect's constant time format is spliced in.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT shard_id, sequence_number, CAST(finished AS INTEGER) AS finished, \
             {} AS updated_at FROM checkpoints WHERE stream_name = $1 ORDER BY shard_id",
            ts_out(self.dialect, "updated_at")
        )))
        .bind(stream)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    shard_id: r.try_get("shard_id")?,
                    sequence_number: r.try_get("sequence_number")?,
                    finished: r.try_get::<i64, _>("finished")? != 0,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn status(&self, f: &StatusFilter) -> Result<Vec<StatusRow>, StoreError> {
        super::query::read_all(&self.pool, self.dialect, f).await
    }

    async fn events(&self, f: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        super::query::read_all(&self.pool, self.dialect, f).await
    }

    async fn revocations(&self, f: &RevocationFilter) -> Result<Vec<RevocationRow>, StoreError> {
        // The latest STOP/START per (account, scope, subscriber) by data.timestamp, ties to the
        // larger event id (HELP ignored), is a phrase revocation: nothing later overrides it.
        let sql = format!(
            "SELECT e.account_sid, e.scope, e.messaging_service_sid, e.sender, e.subscriber, \
             {} AS occurred_at, e.rule, e.body, e.event_id, s.status FROM opt_events e \
             LEFT JOIN opt_status s ON s.account_sid = e.account_sid AND s.scope = e.scope \
             AND s.subscriber = e.subscriber \
             WHERE e.detection = 'phrase' AND e.opt_out_type = 'STOP' \
             AND NOT EXISTS (SELECT 1 FROM opt_events l WHERE l.account_sid = e.account_sid \
             AND l.scope = e.scope AND l.subscriber = e.subscriber \
             AND l.opt_out_type IN ('STOP', 'START') AND (l.occurred_at > e.occurred_at \
             OR (l.occurred_at = e.occurred_at AND l.event_id > e.event_id)))",
            ts_out(self.dialect, "e.occurred_at")
        );
        let mut q = Query::new(&sql);
        if let Some(since) = f.since.map(format_ts) {
            q.args.push(since);
            let p = ts_in(self.dialect, &format!("${}", q.args.len()));
            q.sql.push_str(&format!(" AND e.occurred_at >= {p}"));
        }
        q.sql.push_str(" ORDER BY e.occurred_at, e.event_id");
        let rows = q.fetch(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RevocationRow {
                    account_sid: r.try_get("account_sid")?,
                    scope: r.try_get("scope")?,
                    messaging_service_sid: r.try_get("messaging_service_sid")?,
                    sender: r.try_get("sender")?,
                    subscriber: r.try_get("subscriber")?,
                    revoked_at: r.try_get("occurred_at")?,
                    rule: r.try_get("rule")?,
                    body: r.try_get("body")?,
                    event_id: r.try_get("event_id")?,
                    status: r.try_get("status")?,
                })
            })
            .collect()
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetterRow>, StoreError> {
        super::query::read_all(&self.pool, self.dialect, &super::query::DeadLetterFilter).await
    }

    async fn test_events(&self) -> Result<Vec<TestEventRow>, StoreError> {
        super::query::read_all(&self.pool, self.dialect, &super::query::TestEventFilter).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn claim_single_runner(&self) -> Result<(), StoreError> {
        self.claim_runner_lock()
    }
}

/// A filtered SELECT built from optional conditions, with numbered placeholders.
struct Query {
    sql: String,
    args: Vec<String>,
}

impl Query {
    fn new(select: &str) -> Self {
        Query {
            sql: select.to_string(),
            args: Vec::new(),
        }
    }

    async fn fetch(&self, pool: &AnyPool) -> Result<Vec<AnyRow>, sqlx::Error> {
        // Audited: only column names and `$N` placeholders are spliced in; values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.as_str()));
        for a in &self.args {
            q = q.bind(a);
        }
        q.fetch_all(pool).await
    }
}
