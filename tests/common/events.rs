//! Store-level test values: opt events and the batches that commit them, for the tests that
//! talk to the store directly (no Kinesis, no JSON).

use chrono::{DateTime, TimeZone, Utc};
use optout::event::{Detection, OptEvent, OptOutType, TimeSource};
use optout::store::{Batch, Positioned};

/// 2026-03-01T12:00:00Z plus `secs`.
pub fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_772_366_400 + secs, 0).unwrap()
}

/// A Twilio-flagged opt event `id` of type `t` from `from` at `ts(at)`, for account `AC1` and
/// Messaging Service `MG1` (change the fields for other scopes).
pub fn opt_event(id: &str, t: OptOutType, from: &str, at: i64) -> OptEvent {
    OptEvent {
        event_id: id.into(),
        opt_out_type: t,
        inferred: false,
        detection: Detection::Twilio,
        rule: None,
        account_sid: "AC1".into(),
        messaging_service_sid: Some("MG1".into()),
        sender: "+15559870002".into(),
        subscriber: from.into(),
        body: Some(t.as_str().to_lowercase()),
        message_sid: Some(format!("SM{id}")),
        occurred_at: ts(at),
        time_source: TimeSource::Twilio,
        schema_version: Some(5),
    }
}

/// [`opt_event`] in Messaging Service `service`, or scoped to its sender when `None`.
pub fn scoped_event(
    id: &str,
    t: OptOutType,
    from: &str,
    service: Option<&str>,
    at: i64,
) -> OptEvent {
    let mut e = opt_event(id, t, from, at);
    e.messaging_service_sid = service.map(Into::into);
    e
}

/// `items` at sequence numbers `00001`, `00002`, … in order.
pub fn positioned<T>(items: Vec<T>) -> Vec<Positioned<T>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, value)| Positioned {
            sequence_number: format!("{:05}", i + 1),
            value,
        })
        .collect()
}

/// A batch of `events` on stream `s`, shard `shard`, with no checkpoint.
pub fn batch(shard: &str, events: Vec<OptEvent>) -> Batch {
    Batch {
        stream: "s".into(),
        shard_id: shard.into(),
        opt_events: positioned(events),
        ..Batch::default()
    }
}
