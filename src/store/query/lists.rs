//! The lists the API and the CLI page through: status, events, dead letters, sink test events.
//! Free text and raw bytes are cut in the SQL (see the module above), so no row is larger
//! than a few kilobytes whatever the stream carried.

use async_trait::async_trait;
use base64::Engine as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::scope;
use super::sqlbuild::{Key, Select, key, time_key};
use super::{
    BODY_PREVIEW_CHARS, Cursor, DATA_PREVIEW_BYTES, Listing, MESSAGE_SID_PREVIEW_CHARS, Page,
    PageRequest, QueryError, Reader,
};
use crate::event::{Detection, OptOutType};
use crate::store::model::{
    DeadLetterRow, EventFilter, EventRow, StatusFilter, StatusRow, TestEventRow, format_ts,
};

/// Status rows are unique by their primary key (`s`: the live table).
const STATUS_KEY_S: &[Key] = &[key("s.account_sid"), key("s.scope"), key("s.subscriber")];
/// Events are read in time order; the id breaks ties. The columns are qualified because the
/// SELECT list shows `occurred_at` as text under the same name (PostgreSQL's `to_char`): an
/// unqualified `ORDER BY occurred_at` would name that output column, so PostgreSQL sorted
/// every event by the text on every page (a full scan per page) instead of walking
/// `opt_events_by_time_id`.
const EVENT_KEY: &[Key] = &[
    time_key("opt_events.occurred_at"),
    key("opt_events.event_id"),
];
const DEAD_LETTER_KEY: &[Key] = &[key("stream_name"), key("shard_id"), key("sequence_number")];
const TEST_EVENT_KEY: &[Key] = &[key("test_id")];

pub(super) fn status_row(r: &AnyRow) -> Result<StatusRow, sqlx::Error> {
    Ok(StatusRow {
        account_sid: r.try_get("account_sid")?,
        scope: r.try_get("scope")?,
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: r.try_get("subscriber")?,
        status: r.try_get("status")?,
        changed_at: r.try_get("changed_at")?,
        event_id: r.try_get("event_id")?,
        origin_account_sid: r.try_get("origin_account_sid")?,
        origin_scope: r.try_get("origin_scope")?,
    })
}

pub(super) fn status_key(r: &StatusRow) -> Vec<String> {
    vec![r.account_sid.clone(), r.scope.clone(), r.subscriber.clone()]
}

#[async_trait]
impl Listing for StatusFilter {
    type Row = StatusRow;

    async fn page(
        &self,
        reader: &Reader,
        req: &PageRequest,
    ) -> Result<Page<StatusRow>, QueryError> {
        // The live rows of the page, each with the latest later opt-out that reaches it from
        // another scope (none in `scope` mode); see `scope.rs`.
        let via = scope::latest_reaching(
            reader.revocation_scope,
            &scope::KeyColumns {
                account: "s.account_sid",
                scope: "s.scope",
                subscriber: "s.subscriber",
            },
            "s.changed_at",
            "s.event_id",
            None,
            false,
        );
        let mut q = Select::new(
            reader.dialect,
            format!(
                "SELECT {} FROM (SELECT s.account_sid, s.scope, s.messaging_service_sid, \
                 s.sender, s.subscriber, s.status, s.changed_at, s.event_id, {via} AS via \
                 FROM opt_status s WHERE 1 = 1",
                scope::effective_columns(reader.dialect, "changed_at")
            ),
        );
        q.eq("s.subscriber", self.subscriber.as_deref());
        q.eq("s.scope", self.scope.as_deref());
        q.any_of("s.account_sid", &self.accounts)?;
        q.keyset(STATUS_KEY_S, req.cursor.as_ref(), req.limit)?;
        q.sql.push_str(
            ") x LEFT JOIN opt_events g ON g.event_id = x.via \
             ORDER BY x.account_sid, x.scope, x.subscriber",
        );
        q.fetch_page(&reader.pool, req.limit, status_row, status_key)
            .await
    }
}

/// The SELECT list of an event row, its free text cut to the previews.
pub(super) fn event_columns(reader: &Reader) -> String {
    format!(
        "event_id, identity, opt_out_type, CAST(inferred AS INTEGER) AS inferred, detection, \
         rule, account_sid, messaging_service_sid, sender, subscriber, {}, \
         {} AS occurred_at, time_source, paths, schema_version, shard_id, sequence_number",
        text_previews(""),
        reader.dialect.ts_out("occurred_at")
    )
}

/// `body` and `message_sid` (of table alias `alias`, e.g. `e.`) cut to their previews, and
/// `truncated`: whether either was cut.
pub(super) fn text_previews(alias: &str) -> String {
    format!(
        "substr({alias}body, 1, {BODY_PREVIEW_CHARS}) AS body, \
         substr({alias}message_sid, 1, {MESSAGE_SID_PREVIEW_CHARS}) AS message_sid, \
         CASE WHEN length({alias}body) > {BODY_PREVIEW_CHARS} \
         OR length({alias}message_sid) > {MESSAGE_SID_PREVIEW_CHARS} THEN 1 ELSE 0 END AS truncated"
    )
}

pub(super) fn event_row(r: &AnyRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        event_id: r.try_get("event_id")?,
        identity: r.try_get("identity")?,
        opt_out_type: r.try_get("opt_out_type")?,
        inferred: r.try_get::<i64, _>("inferred")? != 0,
        detection: r.try_get("detection")?,
        rule: r.try_get("rule")?,
        account_sid: r.try_get("account_sid")?,
        messaging_service_sid: r.try_get("messaging_service_sid")?,
        sender: r.try_get("sender")?,
        subscriber: r.try_get("subscriber")?,
        body: r.try_get("body")?,
        message_sid: r.try_get("message_sid")?,
        truncated: r.try_get::<i64, _>("truncated")? != 0,
        occurred_at: r.try_get("occurred_at")?,
        time_source: r.try_get("time_source")?,
        paths: r.try_get("paths")?,
        schema_version: r.try_get("schema_version")?,
        shard_id: r.try_get("shard_id")?,
        sequence_number: r.try_get("sequence_number")?,
    })
}

#[async_trait]
impl Listing for EventFilter {
    type Row = EventRow;

    async fn page(&self, reader: &Reader, req: &PageRequest) -> Result<Page<EventRow>, QueryError> {
        let mut q = Select::new(
            reader.dialect,
            format!(
                "SELECT {} FROM opt_events WHERE 1 = 1",
                event_columns(reader)
            ),
        );
        let since = self.since.map(format_ts);
        q.time_cmp("occurred_at", ">=", since.as_deref());
        q.eq("opt_out_type", self.opt_out_type.map(OptOutType::as_str));
        q.eq("subscriber", self.subscriber.as_deref());
        q.eq("detection", self.detection.map(Detection::as_str));
        q.keyset(EVENT_KEY, req.cursor.as_ref(), req.limit)?;
        q.fetch_page(&reader.pool, req.limit, event_row, |e: &EventRow| {
            vec![e.occurred_at.clone(), e.event_id.clone()]
        })
        .await
    }
}

/// All dead letters, in primary-key order (stream, shard, sequence number).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadLetterFilter;

#[async_trait]
impl Listing for DeadLetterFilter {
    type Row = DeadLetterRow;

    async fn page(
        &self,
        reader: &Reader,
        req: &PageRequest,
    ) -> Result<Page<DeadLetterRow>, QueryError> {
        let mut q = Select::new(
            reader.dialect,
            format!(
                "SELECT stream_name, shard_id, sequence_number, partition_key, reason, \
                 substr(data, 1, {DATA_PREVIEW_BYTES}) AS data, length(data) AS data_bytes, \
                 {} AS recorded_at FROM dead_letters WHERE 1 = 1",
                reader.dialect.ts_out("recorded_at")
            ),
        );
        q.keyset(DEAD_LETTER_KEY, req.cursor.as_ref(), req.limit)?;
        let p = q
            .fetch_page(&reader.pool, req.limit, dead_letter_row, |(stream, d)| {
                vec![
                    stream.clone(),
                    d.shard_id.clone(),
                    d.sequence_number.clone(),
                ]
            })
            .await?;
        Ok(Page {
            items: p.items.into_iter().map(|(_, d)| d).collect(),
            next_cursor: p.next_cursor,
        })
    }
}

/// A dead letter's row (its raw bytes cut to the preview), with its stream for the key.
fn dead_letter_row(r: &AnyRow) -> Result<(String, DeadLetterRow), sqlx::Error> {
    let stream: String = r.try_get("stream_name")?;
    let shard_id: String = r.try_get("shard_id")?;
    let sequence_number: String = r.try_get("sequence_number")?;
    let data: Vec<u8> = r.try_get("data")?;
    let data_bytes: i64 = r.try_get("data_bytes")?;
    let row = DeadLetterRow {
        id: dead_letter_id(&stream, &shard_id, &sequence_number),
        truncated: data_bytes > data.len() as i64,
        data_bytes,
        data_base64: base64::engine::general_purpose::STANDARD.encode(data),
        shard_id,
        sequence_number,
        partition_key: r.try_get("partition_key")?,
        reason: r.try_get("reason")?,
        recorded_at: r.try_get("recorded_at")?,
    };
    Ok((stream, row))
}

/// The opaque id of the dead letter at (stream, shard, sequence number), for
/// `/v1/dead-letters/{id}`: the key, encoded as a cursor is.
pub fn dead_letter_id(stream: &str, shard_id: &str, sequence_number: &str) -> String {
    Cursor::of(vec![
        stream.to_string(),
        shard_id.to_string(),
        sequence_number.to_string(),
    ])
    .encode()
}

/// All sink test events, by test id.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestEventFilter;

#[async_trait]
impl Listing for TestEventFilter {
    type Row = TestEventRow;

    async fn page(
        &self,
        reader: &Reader,
        req: &PageRequest,
    ) -> Result<Page<TestEventRow>, QueryError> {
        let mut q = Select::new(
            reader.dialect,
            format!(
                "SELECT test_id, account_sid, {} AS occurred_at, shard_id, sequence_number \
                 FROM sink_test_events WHERE 1 = 1",
                reader.dialect.ts_out("occurred_at")
            ),
        );
        q.keyset(TEST_EVENT_KEY, req.cursor.as_ref(), req.limit)?;
        let row = |r: &AnyRow| {
            Ok(TestEventRow {
                test_id: r.try_get("test_id")?,
                account_sid: r.try_get("account_sid")?,
                occurred_at: r.try_get("occurred_at")?,
                shard_id: r.try_get("shard_id")?,
                sequence_number: r.try_get("sequence_number")?,
            })
        };
        q.fetch_page(&reader.pool, req.limit, row, |t: &TestEventRow| {
            vec![t.test_id.clone()]
        })
        .await
    }
}
