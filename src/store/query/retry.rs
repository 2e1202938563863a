//! The dead letters `optout dead-letters --retry` decodes again: which ones (by stored reason
//! and time, in key order) and each one's raw record whole.
//!
//! Candidates are listed a page of keys at a time and each record is read alone, so memory is
//! that of one record however many dead letters there are; keyset pages stay correct while the
//! retry deletes the rows it stores.

use sqlx::Row;

use super::{Cursor, QueryError, Reader};

/// A dead letter as stored, with every byte of its record: what a retry decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// Opaque id, as lists give it.
    pub id: String,
    /// The stream it was read from (`replay` for files, `webhook` for webhook requests).
    pub stream: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: Option<String>,
    /// Why it was dead-lettered when it was recorded.
    pub reason: String,
    /// The raw record, exactly as stored.
    pub data: Vec<u8>,
    /// When it was recorded (UTC, RFC 3339).
    pub recorded_at: String,
}

impl Reader {
    /// The dead letter with opaque id `id`, whole; `None` if there is none (any more).
    pub async fn dead_letter_record(
        &self,
        id: &str,
    ) -> Result<Option<StoredDeadLetter>, QueryError> {
        let invalid = || QueryError::Invalid("id: not a dead letter id from this API".into());
        let key = Cursor::decode(id).map_err(|_| invalid())?;
        let [stream, shard, seq] = key.key(3).map_err(|_| invalid())? else {
            return Err(invalid());
        };
        // Audited: only the dialect's constant time format is spliced in; values are bound.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT partition_key, reason, data, {} AS recorded_at FROM dead_letters \
             WHERE stream_name = $1 AND shard_id = $2 AND sequence_number = $3",
            self.dialect.ts_out("recorded_at")
        )))
        .bind(stream.as_str())
        .bind(shard.as_str())
        .bind(seq.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(StoredDeadLetter {
            id: id.to_string(),
            stream: stream.clone(),
            shard_id: shard.clone(),
            sequence_number: seq.clone(),
            partition_key: r.try_get("partition_key")?,
            reason: r.try_get("reason")?,
            data: r.try_get("data")?,
            recorded_at: r.try_get("recorded_at")?,
        }))
    }
}
