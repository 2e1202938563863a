//! What can go wrong at the store boundary, and what each failure means for the batch that met
//! it: transient (retry), caused by the data (isolate the record), a lost lease, a checkpoint
//! that moved underneath, or fatal.

/// What can go wrong at the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend we have, or is malformed; the user must fix the setting.
    /// `shown` is the URL as it may be shown (parsed, its password hidden), or empty when it
    /// could not be parsed: a value that is no URL may be a password put in the wrong place
    /// (the wrong key of a mounted Secret), so it is never echoed.
    #[error("invalid store URL{shown}: {reason}")]
    InvalidUrl { shown: String, reason: String },
    /// Another `optout run` holds this SQLite file.
    #[error(
        "another `optout run` is already using {path}; stop it first, or use PostgreSQL (`--store postgres://…`) to run several instances"
    )]
    Locked { path: String },
    /// The checkpoint write was refused because this worker no longer holds the shard's lease.
    #[error("lease on shard {shard_id} was lost (taken over by another worker); not committing")]
    LeaseLost { shard_id: String },
    /// The shard's stored checkpoint is not the one the batch was read after
    /// ([`super::CheckpointUpdate::previous`]): an earlier commit whose answer was lost had
    /// landed, or the database lost its last commits. Nothing of the batch was committed.
    #[error(
        "the stored checkpoint of shard {shard_id} is not the one this batch was read after ({expected}); nothing was committed"
    )]
    CheckpointMoved {
        shard_id: String,
        /// The sequence number expected, or `none`.
        expected: String,
    },
    /// The database failed; usually worth retrying (connection lost, busy, restarted).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed; the schema is not what this binary expects.
    #[error("migration {version} failed: {source}")]
    Migration { version: i64, source: sqlx::Error },
    /// Any other I/O problem (lock file).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A query command was pointed at a SQLite file that does not exist (it never creates one).
    #[error(
        "no optout database at {path}: check --store, or create it with `optout migrate` (or `optout run`)"
    )]
    NotFound { path: String },
    /// The database holds no optout schema, or an older one than this binary reads.
    #[error("{0}")]
    Schema(String),
    /// The database could not be reached or opened; the cause is the database's own words.
    #[error("{0}")]
    Connect(sqlx::Error),
    /// The SQLite file was deleted or replaced while this process had it open: anything
    /// written from then on would go to a file no path names, lost at exit.
    #[error(
        "the SQLite database {path} was {how} while optout had it open; nothing more is written \
         to it: restore the file (the consumer resumes from its checkpoints) and start again"
    )]
    Replaced { path: String, how: &'static str },
}

/// What a store failure means for the batch that met it: retry it, isolate the record the
/// database refuses, stop the shard, read the checkpoint again, or call an operator
/// (docs/ARCHITECTURE.md, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The database or the way to it failed (connection lost, timeout, serialization failure,
    /// restart, disk full): retry the same batch with backoff.
    Transient,
    /// The database refused a value in the batch (encoding, constraint, size limit): retrying
    /// the same rows fails the same way, so find the record and dead-letter it.
    Data,
    /// This worker's lease on the shard is gone: stop the shard.
    LeaseLost,
    /// The stored checkpoint is not where the writer thought: read it again and go on from
    /// there (nothing was committed).
    CheckpointMoved,
    /// Neither: a schema mismatch, a missing privilege, a bad setting. Needs an operator.
    Fatal,
}

impl StoreError {
    /// Classifies the failure (PostgreSQL by SQLSTATE class, SQLite by primary result code).
    pub fn kind(&self) -> FailureKind {
        match self {
            StoreError::Database(e) | StoreError::Migration { source: e, .. } => sqlx_kind(e),
            StoreError::LeaseLost { .. } => FailureKind::LeaseLost,
            StoreError::CheckpointMoved { .. } => FailureKind::CheckpointMoved,
            StoreError::Io(_) => FailureKind::Transient,
            StoreError::Connect(e) => match sqlx_kind(e) {
                FailureKind::Transient => FailureKind::Transient,
                _ => FailureKind::Fatal,
            },
            _ => FailureKind::Fatal,
        }
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == FailureKind::Transient
    }
}

/// See [`StoreError::kind`].
fn sqlx_kind(e: &sqlx::Error) -> FailureKind {
    use sqlx::Error as E;
    match e {
        E::Database(db) => match db.code() {
            Some(code) => db_code_kind(&code),
            None => FailureKind::Fatal,
        },
        E::Encode(_) => FailureKind::Data,
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => FailureKind::Transient,
        _ => FailureKind::Fatal,
    }
}

/// A database error code: a PostgreSQL SQLSTATE (always five characters, often all digits,
/// like `23514`) or a SQLite extended result code (a number below 10,000 whose low byte is the
/// primary code).
fn db_code_kind(code: &str) -> FailureKind {
    if code.len() < 5
        && let Ok(n) = code.parse::<u32>()
    {
        return match n & 0xff {
            // BUSY, LOCKED, IOERR, FULL, PROTOCOL
            5 | 6 | 10 | 13 | 15 => FailureKind::Transient,
            // TOOBIG, CONSTRAINT, MISMATCH (RANGE, a bind-index bug, is no data's fault)
            18..=20 => FailureKind::Data,
            _ => FailureKind::Fatal,
        };
    }
    match code.get(..2) {
        // connection exception, transaction rollback (serialization, deadlock), insufficient
        // resources, operator intervention (shutdown, restart), system error, lock not available
        Some("08" | "40" | "53" | "57" | "58") => FailureKind::Transient,
        _ if code == "55P03" => FailureKind::Transient,
        // Invalid transaction state, 25006 above all (read-only transaction): a failover whose
        // DNS still names the old writer, now a replica; and 3D000, the database does not exist
        // (yet, or any more: restored under another name, renamed back). Both pass once the
        // database is back, and every worker meets them at once: exiting would put the whole
        // fleet into CrashLoopBackOff, so the consumer retries with backoff and reports them.
        Some("25") => FailureKind::Transient,
        _ if code == "3D000" => FailureKind::Transient,
        // data exception (bad encoding, NUL, out of range), integrity constraint, program limit
        // exceeded (index row too large)
        Some("22" | "23" | "54") => FailureKind::Data,
        _ => FailureKind::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_database_codes() {
        use FailureKind::*;
        for (code, kind) in [
            // PostgreSQL SQLSTATEs
            ("08006", Transient), // connection failure
            ("40001", Transient), // serialization failure
            ("40P01", Transient), // deadlock
            ("53300", Transient), // too many connections
            ("57P01", Transient), // admin shutdown
            ("55P03", Transient), // lock not available
            ("22021", Data),      // invalid byte sequence (U+0000)
            ("23514", Data),      // check violation: all digits, still a SQLSTATE
            ("54000", Data),      // index row size exceeds the btree maximum
            ("42501", Fatal),     // insufficient privilege
            ("25006", Transient), // read-only transaction (a failover's old writer)
            ("25P02", Transient), // in failed transaction
            ("3D000", Transient), // database does not exist (yet, or any more)
            ("3F000", Fatal),     // schema does not exist
            // SQLite extended result codes
            ("5", Transient),   // BUSY
            ("517", Transient), // BUSY_SNAPSHOT
            ("1811", Data),     // CONSTRAINT_TRIGGER
            ("2067", Data),     // CONSTRAINT_UNIQUE
            ("18", Data),       // TOOBIG
            ("8", Fatal),       // READONLY
            ("26", Fatal),      // NOTADB
        ] {
            assert_eq!(db_code_kind(code), kind, "{code}");
        }
    }
}
