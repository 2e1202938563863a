//! The one SQL implementation of [`Store`], shared by SQLite and PostgreSQL.
//!
//! Both backends run the same statements through sqlx's `any` driver (plain types, `$N`
//! placeholders, standard `ON CONFLICT` upserts), so their semantics cannot drift apart; what
//! differs (connection set-up, the single-runner lock, leases) lives in `sqlite.rs` and
//! `postgres.rs`, and the DDL in `migrations/<backend>/`.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::{Any, Row, Transaction};

use super::model::*;
use super::schema::Dialect;
use super::{Store, StoreError};
use crate::event::{Detection, OptEvent, OptOutType};

/// A store backed by a SQL database reached through sqlx's `any` driver.
pub(super) struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    /// SQLite only: the held locks that make this process the only runner on the file.
    pub(super) runner_lock: std::sync::Mutex<Option<super::sqlite_file::RunnerLock>>,
    /// SQLite only: the database file (for the lock file's name).
    pub(super) sqlite_path: Option<String>,
    /// SQLite only: the file opened, to notice it deleted or replaced.
    pub(super) file: Option<super::sqlite_file::FileIdentity>,
    /// SQLite only: the file was found deleted or replaced; nothing is written any more.
    pub(super) replaced: std::sync::atomic::AtomicBool,
    /// SQLite only: no truncating checkpoint before this instant (readers held the last one).
    pub(super) wal_backoff_until: std::sync::Mutex<Option<std::time::Instant>>,
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
    first_checkpoint: String,
    next_checkpoint: String,
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
                d.ts_in("$11"),
                d.ts_in("$16")
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
                d.ts_in("$7")
            ),
            insert_dead_letter: format!(
                "INSERT INTO dead_letters (stream_name, shard_id, sequence_number, partition_key, \
                 reason, data, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, {}) \
                 ON CONFLICT (stream_name, shard_id, sequence_number) DO NOTHING",
                d.ts_in("$7")
            ),
            insert_test_event: format!(
                "INSERT INTO sink_test_events (test_id, account_sid, occurred_at, stream_name, \
                 shard_id, sequence_number, recorded_at) VALUES ($1, $2, {}, $4, $5, $6, {}) \
                 ON CONFLICT (test_id) DO NOTHING",
                d.ts_in("$3"),
                d.ts_in("$7")
            ),
            // The checkpoint write is a compare-and-set on the checkpoint the writer read the
            // batch after: a first checkpoint only where the shard has none with a sequence
            // number yet, a later one only over the expected one. A row count of 0 refuses
            // the batch.
            first_checkpoint: format!(
                "INSERT INTO checkpoints (stream_name, shard_id, sequence_number, finished, updated_at) \
                 VALUES ($1, $2, $3, $4, {}) ON CONFLICT (stream_name, shard_id) DO UPDATE SET \
                 sequence_number = COALESCE(excluded.sequence_number, checkpoints.sequence_number), \
                 finished = excluded.finished, updated_at = excluded.updated_at \
                 WHERE checkpoints.sequence_number IS NULL",
                d.ts_in("$5")
            ),
            next_checkpoint: format!(
                "UPDATE checkpoints SET sequence_number = COALESCE($3, sequence_number), \
                 finished = $4, updated_at = {} \
                 WHERE stream_name = $1 AND shard_id = $2 AND sequence_number = $6",
                d.ts_in("$5")
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
            // A phrase revocation changes status only when honoured (docs/semantics.md, rule 9).
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

    /// Writes the checkpoint if the stored one is still `cp.previous`; otherwise refuses the
    /// batch (the caller rolls the transaction back).
    async fn write_checkpoint(
        d: Dialect,
        tx: &mut Transaction<'_, Any>,
        batch: &Batch,
        cp: &CheckpointUpdate,
        recorded_at: &str,
    ) -> Result<(), StoreError> {
        let sql = match cp.previous {
            None => commit_sql(d).first_checkpoint.as_str(),
            Some(_) => commit_sql(d).next_checkpoint.as_str(),
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&batch.stream)
            .bind(&batch.shard_id)
            .bind(&cp.sequence_number)
            .bind(cp.finished)
            .bind(recorded_at);
        if let Some(previous) = &cp.previous {
            q = q.bind(previous);
        }
        if q.execute(&mut **tx).await?.rows_affected() != 1 {
            return Err(StoreError::CheckpointMoved {
                shard_id: batch.shard_id.clone(),
                expected: cp.previous.clone().unwrap_or_else(|| "none".into()),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.dialect.name()
    }

    fn shared(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    async fn commit(&self, batch: &Batch) -> Result<CommitSummary, StoreError> {
        // Never into a file that is gone from its path: it would vanish at exit.
        self.check_file()?;
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
        checkpoint_rows(&self.pool, self.dialect, stream).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
        // Only now, with the connections gone (see `sqlite_file::identity_lock`).
        self.runner_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    async fn claim_single_runner(&self) -> Result<(), StoreError> {
        self.claim_runner_lock()
    }

    async fn upkeep(&self) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => self.sqlite_upkeep().await,
            Dialect::Postgres => Ok(()),
        }
    }
}

/// Every checkpoint of `stream`, read through `pool` (the writer's, or a
/// [`super::Reader`]'s for `optout shards`).
pub(super) async fn checkpoint_rows(
    pool: &AnyPool,
    dialect: Dialect,
    stream: &str,
) -> Result<Vec<Checkpoint>, StoreError> {
    // Audited: only the dialect's constant time format is spliced in.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT shard_id, sequence_number, CAST(finished AS INTEGER) AS finished, \
         {} AS updated_at FROM checkpoints WHERE stream_name = $1 ORDER BY shard_id",
        dialect.ts_out("updated_at")
    )))
    .bind(stream)
    .fetch_all(pool)
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
