//! The lists the API and the CLI page through (status, events, dead letters, sink test events)
//! and the per-number lookup senders call before a send.

use async_trait::async_trait;
use base64::Engine as _;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sqlbuild::{Key, Select, key, page, time_key};
use super::{Listing, Page, PageRequest, QueryError, Reader};
use crate::event::{Detection, OptOutType};
use crate::store::model::{
    DeadLetterRow, EventFilter, EventRow, StatusFilter, StatusRow, TestEventRow, format_ts,
};

/// Status rows are unique by their primary key.
const STATUS_KEY: &[Key] = &[key("account_sid"), key("scope"), key("subscriber")];
/// Events are read in time order; the id breaks ties.
const EVENT_KEY: &[Key] = &[time_key("occurred_at"), key("event_id")];
const DEAD_LETTER_KEY: &[Key] = &[key("stream_name"), key("shard_id"), key("sequence_number")];
const TEST_EVENT_KEY: &[Key] = &[key("test_id")];

impl Reader {
    /// The SELECT list of a status row (`changed_at` from `column`).
    pub(super) fn status_columns(&self, changed_at: &str) -> String {
        format!(
            "account_sid, scope, messaging_service_sid, sender, subscriber, status, \
             {} AS changed_at, event_id",
            self.dialect.ts_out(changed_at)
        )
    }
}

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
        let mut q = Select::new(
            reader.dialect,
            format!(
                "SELECT {} FROM opt_status WHERE 1 = 1",
                reader.status_columns("changed_at")
            ),
        );
        q.eq("subscriber", self.subscriber.as_deref());
        q.eq("scope", self.scope.as_deref());
        q.any_of("account_sid", &self.accounts);
        q.keyset(STATUS_KEY, req.cursor.as_ref(), req.limit)?;
        let rows = q.fetch(&reader.pool).await?;
        let rows = rows.iter().map(status_row).collect::<Result<_, _>>()?;
        Ok(page(rows, req.limit, status_key))
    }
}

/// The SELECT list of an event row.
pub(super) fn event_columns(reader: &Reader) -> String {
    format!(
        "event_id, identity, opt_out_type, CAST(inferred AS INTEGER) AS inferred, detection, \
         rule, account_sid, messaging_service_sid, sender, subscriber, body, message_sid, \
         {} AS occurred_at, time_source, paths, schema_version, shard_id, sequence_number",
        reader.dialect.ts_out("occurred_at")
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
        let rows = q.fetch(&reader.pool).await?;
        let rows = rows.iter().map(event_row).collect::<Result<_, _>>()?;
        Ok(page(rows, req.limit, |e: &EventRow| {
            vec![e.occurred_at.clone(), e.event_id.clone()]
        }))
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
                "SELECT stream_name, shard_id, sequence_number, partition_key, reason, data, \
                 {} AS recorded_at FROM dead_letters WHERE 1 = 1",
                reader.dialect.ts_out("recorded_at")
            ),
        );
        q.keyset(DEAD_LETTER_KEY, req.cursor.as_ref(), req.limit)?;
        let mut keyed = Vec::new();
        for r in q.fetch(&reader.pool).await? {
            let data: Vec<u8> = r.try_get("data")?;
            let stream: String = r.try_get("stream_name")?;
            keyed.push((
                stream,
                DeadLetterRow {
                    shard_id: r.try_get("shard_id")?,
                    sequence_number: r.try_get("sequence_number")?,
                    partition_key: r.try_get("partition_key")?,
                    reason: r.try_get("reason")?,
                    data_base64: base64::engine::general_purpose::STANDARD.encode(data),
                    recorded_at: r.try_get("recorded_at")?,
                },
            ));
        }
        let p = page(keyed, req.limit, |(stream, d)| {
            vec![
                stream.clone(),
                d.shard_id.clone(),
                d.sequence_number.clone(),
            ]
        });
        Ok(Page {
            items: p.items.into_iter().map(|(_, d)| d).collect(),
            next_cursor: p.next_cursor,
        })
    }
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
        let mut rows = Vec::new();
        for r in q.fetch(&reader.pool).await? {
            rows.push(TestEventRow {
                test_id: r.try_get("test_id")?,
                account_sid: r.try_get("account_sid")?,
                occurred_at: r.try_get("occurred_at")?,
                shard_id: r.try_get("shard_id")?,
                sequence_number: r.try_get("sequence_number")?,
            });
        }
        Ok(page(rows, req.limit, |t: &TestEventRow| {
            vec![t.test_id.clone()]
        }))
    }
}

/// Which number a sender is about to text, and optionally where from.
#[derive(Debug, Clone, Default)]
pub struct LookupFilter {
    /// The number exactly as Twilio writes it in `data.from` (e.g. `+15551230001`).
    pub subscriber: String,
    /// The scope of the send (Messaging Service SID, or the sender number); any if `None`.
    pub scope: Option<String>,
    /// Any of these accounts (empty: all).
    pub accounts: Vec<String>,
}

/// The answer to "may I text this number?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lookup {
    pub subscriber: String,
    /// `opted_out` if any matching row is opted out, else `opted_in` if any row matches, else
    /// `no_opt_event_seen`: no STOP or START of this number was ever recorded in the scope.
    pub status: String,
    /// `false` exactly when `status` is `opted_out`.
    pub send_allowed: bool,
    /// The matching status rows, by account and scope (at most [`LOOKUP_ROWS`]).
    pub items: Vec<StatusRow>,
}

/// The most status rows one lookup returns (one number in more scopes than this is not a
/// sender's question).
pub const LOOKUP_ROWS: u32 = 1_000;

impl Reader {
    /// Whether a send to `f.subscriber` is allowed, with the rows that say so. One indexed
    /// read (the primary key when scope and account are given, else the subscriber index),
    /// prepared once per connection.
    pub async fn lookup(&self, f: &LookupFilter) -> Result<Lookup, QueryError> {
        let mut q = Select::new(
            self.dialect,
            format!(
                "SELECT {} FROM opt_status WHERE 1 = 1",
                self.status_columns("changed_at")
            ),
        );
        q.eq("subscriber", Some(&f.subscriber));
        q.eq("scope", f.scope.as_deref());
        q.any_of("account_sid", &f.accounts);
        q.keyset(STATUS_KEY, None, LOOKUP_ROWS - 1)?;
        let rows: Vec<StatusRow> = q
            .fetch(&self.pool)
            .await?
            .iter()
            .map(status_row)
            .collect::<Result<_, _>>()?;
        let status = if rows.iter().any(|r| r.status == "opted_out") {
            "opted_out"
        } else if rows.is_empty() {
            "no_opt_event_seen"
        } else {
            "opted_in"
        };
        Ok(Lookup {
            subscriber: f.subscriber.clone(),
            status: status.to_string(),
            send_allowed: status != "opted_out",
            items: rows,
        })
    }
}
