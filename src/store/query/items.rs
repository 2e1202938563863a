//! Single items, whole: one dead letter with every byte of its raw record, one opt event with
//! its whole body. Lists carry previews of those values (module above); these fetches are
//! where the rest is, and they are streamed: a JSON object whose small fields are read first,
//! then each large value read and written in chunks of [`CHUNK_BYTES`], one short query per
//! chunk. Memory stays that of a chunk however large the record (up to 10 MiB in Kinesis, and
//! any size in a replayed file).

use std::sync::Arc;

use base64::Engine as _;
use futures_util::Stream;
use sqlx::Row;

use super::{Cursor, QueryError, Reader};

/// Bytes of a raw record read per chunk: a multiple of 3, so that each chunk is whole base64
/// on its own. Texts are read a quarter as many characters at a time (a character may take
/// four bytes).
pub const CHUNK_BYTES: usize = 48 << 10;

/// A table's row, by its key columns and their values.
#[derive(Debug, Clone)]
struct RowKey {
    table: &'static str,
    columns: &'static [&'static str],
    values: Vec<String>,
}

impl RowKey {
    fn condition(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect();
        parts.join(" AND ")
    }
}

/// A large value of the row, written as the JSON field `name`.
#[derive(Debug, Clone, Copy)]
struct Large {
    name: &'static str,
    column: &'static str,
    /// Raw bytes, written as base64; else text (cut by characters, JSON-escaped).
    bytes: bool,
}

impl Large {
    /// Bytes (or characters) per chunk.
    fn step(self) -> usize {
        if self.bytes {
            CHUNK_BYTES
        } else {
            CHUNK_BYTES / 4
        }
    }
}

impl Reader {
    /// The dead letter with opaque id `id` (as lists give it), as JSON in chunks; `None` if
    /// there is none. An id not made by this API is [`QueryError::Invalid`].
    pub async fn dead_letter(
        self: Arc<Self>,
        id: &str,
    ) -> Result<Option<impl Stream<Item = Result<Vec<u8>, QueryError>> + Send + 'static>, QueryError>
    {
        let invalid = || QueryError::Invalid("id: not a dead letter id from this API".into());
        let key = Cursor::decode(id).map_err(|_| invalid())?;
        let values = key.key(3).map_err(|_| invalid())?.to_vec();
        for v in &values {
            super::check_text("id", v)?;
        }
        let key = RowKey {
            table: "dead_letters",
            columns: &["stream_name", "shard_id", "sequence_number"],
            values,
        };
        let head = format!(
            "SELECT shard_id, sequence_number, partition_key, reason, length(data) AS data_bytes, \
             {} AS recorded_at FROM dead_letters WHERE {}",
            self.dialect.ts_out("recorded_at"),
            key.condition()
        );
        let Some(r) = self.fetch_head(&head, &key).await? else {
            return Ok(None);
        };
        let data_bytes: i64 = r.try_get("data_bytes")?;
        let head = serde_json::json!({
            "id": id,
            "shard_id": r.try_get::<String, _>("shard_id")?,
            "sequence_number": r.try_get::<String, _>("sequence_number")?,
            "partition_key": r.try_get::<Option<String>, _>("partition_key")?,
            "reason": r.try_get::<String, _>("reason")?,
            "data_bytes": data_bytes,
            "truncated": false,
            "recorded_at": r.try_get::<String, _>("recorded_at")?,
        });
        let large = vec![(
            Large {
                name: "data_base64",
                column: "data",
                bytes: true,
            },
            data_bytes.max(0) as usize,
        )];
        Ok(Some(self.stream_item(head, key, large)))
    }

    /// The opt event `event_id`, whole (body and message SID uncut), as JSON in chunks;
    /// `None` if there is none.
    pub async fn event(
        self: Arc<Self>,
        event_id: &str,
    ) -> Result<Option<impl Stream<Item = Result<Vec<u8>, QueryError>> + Send + 'static>, QueryError>
    {
        super::check_text("event_id", event_id)?;
        let key = RowKey {
            table: "opt_events",
            columns: &["event_id"],
            values: vec![event_id.to_string()],
        };
        let head = format!(
            "SELECT event_id, opt_out_type, CAST(inferred AS INTEGER) AS inferred, detection, \
             rule, account_sid, messaging_service_sid, sender, subscriber, \
             length(message_sid) AS sid_chars, length(body) AS body_chars, {} AS occurred_at, \
             schema_version, shard_id, sequence_number FROM opt_events WHERE {}",
            self.dialect.ts_out("occurred_at"),
            key.condition()
        );
        let Some(r) = self.fetch_head(&head, &key).await? else {
            return Ok(None);
        };
        let sid_chars: Option<i64> = r.try_get("sid_chars")?;
        let body_chars: Option<i64> = r.try_get("body_chars")?;
        let head = serde_json::json!({
            "event_id": r.try_get::<String, _>("event_id")?,
            "opt_out_type": r.try_get::<String, _>("opt_out_type")?,
            "inferred": r.try_get::<i64, _>("inferred")? != 0,
            "detection": r.try_get::<String, _>("detection")?,
            "rule": r.try_get::<Option<String>, _>("rule")?,
            "account_sid": r.try_get::<String, _>("account_sid")?,
            "messaging_service_sid": r.try_get::<Option<String>, _>("messaging_service_sid")?,
            "sender": r.try_get::<String, _>("sender")?,
            "subscriber": r.try_get::<String, _>("subscriber")?,
            "truncated": false,
            "occurred_at": r.try_get::<String, _>("occurred_at")?,
            "schema_version": r.try_get::<Option<i64>, _>("schema_version")?,
            "shard_id": r.try_get::<String, _>("shard_id")?,
            "sequence_number": r.try_get::<String, _>("sequence_number")?,
            "message_sid": sid_chars.map(|_| ""),
            "body": body_chars.map(|_| ""),
        });
        let mut large = Vec::new();
        for (name, chars) in [("message_sid", sid_chars), ("body", body_chars)] {
            if let Some(n) = chars {
                let column = name;
                large.push((
                    Large {
                        name,
                        column,
                        bytes: false,
                    },
                    n.max(0) as usize,
                ));
            }
        }
        Ok(Some(self.stream_item(head, key, large)))
    }

    /// The row's small fields, or `None` if no row has this key.
    async fn fetch_head(
        &self,
        sql: &str,
        key: &RowKey,
    ) -> Result<Option<sqlx::any::AnyRow>, QueryError> {
        // Audited: only constant SQL and `$N` placeholders are spliced in; values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for v in &key.values {
            q = q.bind(v.as_str());
        }
        Ok(q.fetch_optional(&self.pool).await?)
    }

    /// `head` (a JSON object) with each of `large` (and its length) appended as a string field,
    /// the strings read chunk by chunk.
    fn stream_item(
        self: Arc<Self>,
        head: serde_json::Value,
        key: RowKey,
        large: Vec<(Large, usize)>,
    ) -> impl Stream<Item = Result<Vec<u8>, QueryError>> + Send + 'static {
        // The head without its closing brace; a field given as "" in the head is moved to the
        // end, where its chunks follow.
        let mut head = head;
        if let Some(obj) = head.as_object_mut() {
            for (l, _) in &large {
                obj.remove(l.name);
            }
        }
        let mut text = head.to_string();
        text.pop();
        struct State {
            reader: Arc<Reader>,
            key: RowKey,
            large: Vec<(Large, usize)>,
            field: usize,
            offset: usize,
            opened: bool,
            pending: Option<Vec<u8>>,
        }
        let state = State {
            reader: self,
            key,
            large,
            field: 0,
            offset: 0,
            opened: false,
            pending: Some(text.into_bytes()),
        };
        futures_util::stream::try_unfold(state, |mut s| async move {
            if let Some(bytes) = s.pending.take() {
                return Ok(Some((bytes, s)));
            }
            let Some(&(large, len)) = s.large.get(s.field) else {
                if s.field == usize::MAX {
                    return Ok(None);
                }
                s.field = usize::MAX;
                return Ok(Some((b"}\n".to_vec(), s)));
            };
            let mut out = Vec::new();
            if !s.opened {
                out.extend_from_slice(format!(",\"{}\":\"", large.name).as_bytes());
                s.opened = true;
            }
            if s.offset < len {
                let chunk = s.reader.chunk(&s.key, large, s.offset).await?;
                if chunk.is_empty() {
                    // The value is shorter than its length said: it cannot be, but never loop.
                    s.offset = len;
                } else {
                    s.offset += large.step();
                    out.extend_from_slice(&chunk);
                }
            }
            if s.offset >= len {
                out.push(b'"');
                s.field += 1;
                s.offset = 0;
                s.opened = false;
            }
            Ok(Some((out, s)))
        })
    }

    /// The chunk of `large` from `offset` (0-based, in bytes or characters), as it goes in a
    /// JSON string: base64 for bytes, escaped text for text.
    async fn chunk(
        &self,
        key: &RowKey,
        large: Large,
        offset: usize,
    ) -> Result<Vec<u8>, QueryError> {
        // Audited: constant SQL, a column name and two integers spliced in; values are bound.
        let sql = format!(
            "SELECT substr({}, {}, {}) AS part FROM {} WHERE {}",
            large.column,
            offset + 1,
            large.step(),
            key.table,
            key.condition()
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in &key.values {
            q = q.bind(v.as_str());
        }
        let _slot = self
            .exports
            .acquire()
            .await
            .map_err(|_| QueryError::Invalid("the store's read side is closed".into()))?;
        let Some(row) = q.fetch_optional(&self.pool).await? else {
            return Ok(Vec::new());
        };
        if large.bytes {
            let part: Vec<u8> = row.try_get("part")?;
            Ok(base64::engine::general_purpose::STANDARD
                .encode(part)
                .into_bytes())
        } else {
            let part: String = row.try_get("part")?;
            let quoted = serde_json::to_string(&part).unwrap_or_default();
            Ok(quoted.as_bytes()[1..quoted.len() - 1].to_vec())
        }
    }
}
