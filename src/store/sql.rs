//! The one SQL implementation of [`Store`], shared by SQLite and PostgreSQL: the commit
//! transaction (opt events in `opt_events.rs`; the change feed and the outbox in `changes.rs`;
//! dead letters, test events and the checkpoint here).
//!
//! Both backends run the same statements through sqlx's `any` driver (plain types, `$N`
//! placeholders, standard `ON CONFLICT` upserts), so their semantics cannot drift apart; what
//! differs (connection set-up, the single-runner lock, leases) lives in `sqlite.rs` and
//! `postgres.rs`, and the DDL in `migrations/<backend>/`.

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::{Any, Row, Transaction};

use super::model::*;
use super::schema::{Dialect, PerDialect, Statements};
use super::{Store, StoreError};

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
    /// The delivery targets commits write outbox items for ([`super::Outbox`]).
    pub(super) outbox_targets: super::changes::Targets,
    /// How far an opt-out reaches in what commits write to the change feed and the outbox
    /// (`--revocation-scope`; [`Store::set_revocation_scope`]).
    pub(super) revocation_scope: std::sync::RwLock<super::RevocationScope>,
}

fn now() -> String {
    format_ts(chrono::Utc::now())
}

/// The commit path's statements for one dialect. Only the timestamp casts differ between
/// backends; they are spliced in once here (audited: a constant cast of a placeholder), not
/// formatted again for every record.
struct CommitSql {
    insert_dead_letter: String,
    insert_test_event: String,
    delete_retried: &'static str,
    first_checkpoint: String,
    next_checkpoint: String,
}

impl Statements for CommitSql {
    fn build(d: Dialect) -> Self {
        CommitSql {
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
            delete_retried: "DELETE FROM dead_letters \
                 WHERE stream_name = $1 AND shard_id = $2 AND sequence_number = $3",
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
    static SQL: PerDialect<CommitSql> = PerDialect::new();
    SQL.get(d)
}

impl SqlStore {
    /// The mode commits answer the change feed under now.
    fn revocation_scope(&self) -> super::RevocationScope {
        *self
            .revocation_scope
            .read()
            .unwrap_or_else(|p| p.into_inner())
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
        for sequence_number in &batch.retried {
            summary.dead_letters_retried += sqlx::query(commit_sql(d).delete_retried)
                .bind(&batch.stream)
                .bind(&batch.shard_id)
                .bind(sequence_number)
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
        let keys = super::opt_events::commit(d, &mut tx, batch, &recorded_at, &mut summary).await?;
        // Only batches whose STOP/START events are new or rewritten answer anything again.
        let found = match keys.is_empty() {
            true => super::changes::Found::default(),
            false => super::changes::find(d, self.revocation_scope(), &mut tx, keys).await?,
        };
        Self::insert_side_records(d, &mut tx, batch, &recorded_at, &mut summary).await?;
        if let Some(cp) = &batch.checkpoint {
            Self::write_checkpoint(d, &mut tx, batch, cp, &recorded_at).await?;
        }
        // Last: on PostgreSQL this takes the change feed's lock until the commit.
        let (changes, items) = found
            .write(d, &mut tx, &self.outbox_targets(), &recorded_at)
            .await?;
        summary.changes += changes;
        summary.outbox_items += items;
        tx.commit().await?;
        if summary.changes > 0 {
            super::changes::CHANGED.notify_waiters();
        }
        Ok(summary)
    }

    fn set_revocation_scope(&self, mode: super::RevocationScope) {
        *self
            .revocation_scope
            .write()
            .unwrap_or_else(|p| p.into_inner()) = mode;
    }

    async fn resync(
        &self,
        new_target: Option<&super::OutboxTarget>,
    ) -> Result<super::ResyncSummary, StoreError> {
        self.check_file()?;
        super::changes::resync(
            &self.pool,
            self.dialect,
            self.revocation_scope(),
            &self.outbox_targets(),
            new_target,
            &now(),
        )
        .await
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
