//! The one SQL implementation of [`Store`], shared by SQLite and PostgreSQL.
//!
//! Both backends run the same statements through sqlx's `any` driver (plain types, `$N`
//! placeholders, standard `ON CONFLICT` upserts), so their semantics cannot drift apart; what
//! differs (connection set-up, the single-runner lock, leases) lives in `sqlite.rs` and
//! `postgres.rs`, and the DDL in `migrations/<backend>/`.

use async_trait::async_trait;
use base64::Engine as _;
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::model::*;
use super::schema::Dialect;
use super::{Store, StoreError};
use crate::event::{OptEvent, OptOutType};

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

fn flag(b: bool) -> i64 {
    i64::from(b)
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
            let inserted = sqlx::query(
                "INSERT INTO opt_events (event_id, opt_out_type, inferred, account_sid, \
                 messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at, \
                 schema_version, stream_name, shard_id, sequence_number, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&ev.event_id)
            .bind(ev.opt_out_type.as_str())
            .bind(flag(ev.inferred))
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
            summary.status_changes += Self::apply_status(tx, ev).await?;
        }
        Ok(())
    }

    /// STOP → opted_out, START → opted_in, HELP → nothing. The latest event by
    /// `data.timestamp` wins, ties to the larger id, so arrival order does not matter.
    async fn apply_status(tx: &mut Transaction<'_, Any>, ev: &OptEvent) -> Result<u64, StoreError> {
        let status = match ev.opt_out_type {
            OptOutType::Stop => "opted_out",
            OptOutType::Start => "opted_in",
            OptOutType::Help => return Ok(0),
        };
        Ok(sqlx::query(
            "INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, \
             sender, status, changed_at, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (account_sid, scope, subscriber) DO UPDATE SET \
             messaging_service_sid = excluded.messaging_service_sid, sender = excluded.sender, \
             status = excluded.status, changed_at = excluded.changed_at, \
             event_id = excluded.event_id \
             WHERE excluded.changed_at > opt_status.changed_at \
             OR (excluded.changed_at = opt_status.changed_at \
                 AND excluded.event_id > opt_status.event_id)",
        )
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
        .rows_affected())
    }

    async fn insert_side_records(
        tx: &mut Transaction<'_, Any>,
        batch: &Batch,
        recorded_at: &str,
        summary: &mut CommitSummary,
    ) -> Result<(), StoreError> {
        for dl in &batch.dead_letters {
            summary.dead_letters += sqlx::query(
                "INSERT INTO dead_letters (stream_name, shard_id, sequence_number, partition_key, \
                 reason, data, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (stream_name, shard_id, sequence_number) DO NOTHING",
            )
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
            summary.test_events += sqlx::query(
                "INSERT INTO sink_test_events (test_id, account_sid, occurred_at, stream_name, \
                 shard_id, sequence_number, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (test_id) DO NOTHING",
            )
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
        tx: &mut Transaction<'_, Any>,
        batch: &Batch,
        cp: &CheckpointUpdate,
        recorded_at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (stream_name, shard_id, sequence_number, finished, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream_name, shard_id) DO UPDATE SET \
             sequence_number = COALESCE(excluded.sequence_number, checkpoints.sequence_number), \
             finished = excluded.finished, updated_at = excluded.updated_at",
        )
        .bind(&batch.stream)
        .bind(&batch.shard_id)
        .bind(&cp.sequence_number)
        .bind(flag(cp.finished))
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
        Self::insert_opt_events(&mut tx, batch, &recorded_at, &mut summary).await?;
        Self::insert_side_records(&mut tx, batch, &recorded_at, &mut summary).await?;
        if let Some(cp) = &batch.checkpoint {
            Self::write_checkpoint(&mut tx, batch, cp, &recorded_at).await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn checkpoints(&self, stream: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT shard_id, sequence_number, finished, updated_at FROM checkpoints \
             WHERE stream_name = $1 ORDER BY shard_id",
        )
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
        let mut q = Query::new(
            "SELECT account_sid, scope, messaging_service_sid, sender, subscriber, status, \
             changed_at, event_id FROM opt_status WHERE 1 = 1",
        );
        q.eq("subscriber", f.subscriber.as_deref());
        q.eq("scope", f.scope.as_deref());
        q.any_of("account_sid", &f.accounts);
        q.sql.push_str(" ORDER BY account_sid, scope, subscriber");
        let rows = q.fetch(&self.pool).await?;
        rows.iter().map(status_row).collect()
    }

    async fn events(&self, f: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        let mut q = Query::new(
            "SELECT event_id, opt_out_type, inferred, account_sid, messaging_service_sid, sender, \
             subscriber, body, message_sid, occurred_at, schema_version, shard_id, \
             sequence_number FROM opt_events WHERE 1 = 1",
        );
        let since = f.since.map(format_ts);
        q.cmp("occurred_at", ">=", since.as_deref());
        q.eq("opt_out_type", f.opt_out_type.map(OptOutType::as_str));
        q.eq("subscriber", f.subscriber.as_deref());
        q.sql.push_str(" ORDER BY occurred_at, event_id");
        let rows = q.fetch(&self.pool).await?;
        rows.iter().map(event_row).collect()
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetterRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT shard_id, sequence_number, partition_key, reason, data, recorded_at \
             FROM dead_letters ORDER BY recorded_at, stream_name, shard_id, sequence_number",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let data: Vec<u8> = r.try_get("data")?;
                Ok(DeadLetterRow {
                    shard_id: r.try_get("shard_id")?,
                    sequence_number: r.try_get("sequence_number")?,
                    partition_key: r.try_get("partition_key")?,
                    reason: r.try_get("reason")?,
                    data_base64: base64::engine::general_purpose::STANDARD.encode(data),
                    recorded_at: r.try_get("recorded_at")?,
                })
            })
            .collect()
    }

    async fn test_events(&self) -> Result<Vec<TestEventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT test_id, account_sid, occurred_at, shard_id, sequence_number \
             FROM sink_test_events ORDER BY recorded_at, test_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TestEventRow {
                    test_id: r.try_get("test_id")?,
                    account_sid: r.try_get("account_sid")?,
                    occurred_at: r.try_get("occurred_at")?,
                    shard_id: r.try_get("shard_id")?,
                    sequence_number: r.try_get("sequence_number")?,
                })
            })
            .collect()
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

fn status_row(r: &AnyRow) -> Result<StatusRow, StoreError> {
    Ok(StatusRow {
        account_sid: r.try_get("account_sid")?,
        scope: r.try_get("scope")?,
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: r.try_get("subscriber")?,
        status: r.try_get("status")?,
        changed_at: r.try_get("changed_at")?,
        event_id: r.try_get("event_id")?,
    })
}

fn event_row(r: &AnyRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        event_id: r.try_get("event_id")?,
        opt_out_type: r.try_get("opt_out_type")?,
        inferred: r.try_get::<i64, _>("inferred")? != 0,
        account_sid: r.try_get("account_sid")?,
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: r.try_get("subscriber")?,
        body: r.try_get("body")?,
        message_sid: r.try_get("message_sid")?,
        occurred_at: r.try_get("occurred_at")?,
        schema_version: r.try_get("schema_version")?,
        shard_id: r.try_get("shard_id")?,
        sequence_number: r.try_get("sequence_number")?,
    })
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

    fn cmp(&mut self, column: &str, op: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.args.push(v.to_string());
            self.sql
                .push_str(&format!(" AND {column} {op} ${}", self.args.len()));
        }
    }

    fn eq(&mut self, column: &str, value: Option<&str>) {
        self.cmp(column, "=", value);
    }

    fn any_of(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let mut marks = Vec::with_capacity(values.len());
        for v in values {
            self.args.push(v.clone());
            marks.push(format!("${}", self.args.len()));
        }
        self.sql
            .push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
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
