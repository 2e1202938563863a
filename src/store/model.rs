//! The values that cross the store boundary: what a batch writes and what queries return.

use serde::Serialize;

use crate::event::{Detection, OptEvent, OptOutType, TestEvent};

/// A value found at a position in a shard (or a line of a replayed file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positioned<T> {
    /// Kinesis sequence number, or the line number for `optout replay`.
    pub sequence_number: String,
    /// The decoded value.
    pub value: T,
}

/// A record that could not be shown irrelevant: kept whole, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Kinesis sequence number (or line number).
    pub sequence_number: String,
    /// Kinesis partition key, when there was one.
    pub partition_key: Option<String>,
    /// Why the record could not be decoded, for the operator.
    pub reason: String,
    /// The record's raw bytes, exactly as read.
    pub data: Vec<u8>,
}

/// Where a shard's reading stands after a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointUpdate {
    /// Last sequence number handled (opt, skipped or dead-lettered); `None` if none yet.
    pub sequence_number: Option<String>,
    /// The shard is closed and was read to its end: its children may now be read.
    pub finished: bool,
    /// The checkpoint the writer read the batch after, as it believes it is stored (`None`:
    /// none yet). The write is a compare-and-set: the commit lands only if the stored
    /// checkpoint is exactly this one, and otherwise fails with
    /// [`super::StoreError::CheckpointMoved`], changing nothing.
    pub previous: Option<String>,
}

/// A fencing token: proof that the writer holds a shard's lease (PostgreSQL, several workers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken {
    /// The worker that holds the lease.
    pub owner: String,
    /// Incremented at every change of owner, so a stale holder's token never matches.
    pub token: i64,
}

/// A lease a worker holds: the shard and the fencing token to present at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// Shard id.
    pub shard_id: String,
    /// Fencing token at the time it was taken or renewed.
    pub token: i64,
}

/// A lease row as stored (`optout shards`, balancing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Shard id.
    pub shard_id: String,
    /// Current owner, if any.
    pub owner: Option<String>,
    /// Fencing token.
    pub token: i64,
    /// Expiry, milliseconds since the Unix epoch (database clock).
    pub expires_at_ms: i64,
}

/// The ways a record can reach optout; an opt event records every one that brought it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IngestPath {
    /// An Event Streams Kinesis sink, read by `optout run`.
    #[default]
    Kinesis,
    /// An Event Streams webhook sink (`POST /twilio/events`).
    EventsWebhook,
    /// A Messaging Service's or number's inbound webhook (`POST /twilio/messaging`).
    MessagingWebhook,
    /// Archived CloudEvents loaded by `optout replay`.
    Replay,
}

impl IngestPath {
    /// Every path, in the order a stored `paths` list names them.
    pub const ALL: [IngestPath; 4] = [
        IngestPath::Kinesis,
        IngestPath::EventsWebhook,
        IngestPath::MessagingWebhook,
        IngestPath::Replay,
    ];

    /// The name stored in `paths` and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestPath::Kinesis => "kinesis",
            IngestPath::EventsWebhook => "events_webhook",
            IngestPath::MessagingWebhook => "messaging_webhook",
            IngestPath::Replay => "replay",
        }
    }

    /// Which path's copy of a message supplies the stored event's own fields (event id, body,
    /// where it was read) when several brought it (higher wins): the live Kinesis stream, then
    /// the Event Streams webhook (the same CloudEvent), then an archive, then the Messaging
    /// webhook, which has no CloudEvent and no event time.
    pub fn rank(self) -> u8 {
        match self {
            IngestPath::Kinesis => 4,
            IngestPath::EventsWebhook => 3,
            IngestPath::Replay => 2,
            IngestPath::MessagingWebhook => 1,
        }
    }

    /// One bit per path, for sets of paths.
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of paths as stored: their names in [`IngestPath::ALL`] order, comma-separated.
pub(crate) fn paths_text(bits: u8) -> String {
    let names: Vec<&str> = IngestPath::ALL
        .into_iter()
        .filter(|p| bits & p.bit() != 0)
        .map(IngestPath::as_str)
        .collect();
    names.join(",")
}

/// Reads a stored `paths` list (unknown names are ignored).
pub(crate) fn paths_bits(text: &str) -> u8 {
    text.split(',')
        .filter_map(|n| IngestPath::ALL.into_iter().find(|p| p.as_str() == n.trim()))
        .fold(0, |bits, p| bits | p.bit())
}

/// One batch's effects, committed in a single transaction with the checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Which way in the batch came by; recorded on each of its opt events.
    pub path: IngestPath,
    /// Stream name (`replay` for files, `webhook` for webhook requests).
    pub stream: String,
    /// Shard id (or the replayed file's name).
    pub shard_id: String,
    /// Opt events found in the batch, in sequence order.
    pub opt_events: Vec<Positioned<OptEvent>>,
    /// Sink test events found in the batch.
    pub test_events: Vec<Positioned<TestEvent>>,
    /// Records that could not be decoded.
    pub dead_letters: Vec<DeadLetter>,
    /// The shard's new checkpoint; `None` when there is none to keep (replay).
    pub checkpoint: Option<CheckpointUpdate>,
    /// When set, the commit lands only if this lease is still held (fencing against a takeover).
    pub lease: Option<LeaseToken>,
    /// Phrase-detected revocations set `opted_out` (`--honor-revocations`); otherwise they are
    /// recorded and leave status alone.
    pub honor_revocations: bool,
    /// Sequence numbers of this shard's dead letters whose records the batch holds, decoded
    /// again (`optout dead-letters --retry`): deleted in the same transaction as the effects,
    /// so a retried record is either still a dead letter or stored, never both nor neither.
    pub retried: Vec<String>,
}

/// What a commit changed, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitSummary {
    /// Opt events stored for the first time.
    pub opt_events_new: u64,
    /// Opt events already stored (same identity): their paths added, nothing else unless …
    pub opt_events_duplicate: u64,
    /// … this copy ranked higher, and replaced the stored event's time, detection or fields
    /// (also counted in `opt_events_duplicate`).
    pub opt_events_updated: u64,
    /// Status rows inserted or changed.
    pub status_changes: u64,
    /// Dead letters stored (a re-read of the same record is not counted twice).
    pub dead_letters: u64,
    /// Sink test events stored for the first time.
    pub test_events: u64,
    /// Changes of a subscriber's answer written to the change feed.
    pub changes: u64,
    /// Outbox items written (one per change and target that wants it).
    pub outbox_items: u64,
    /// Dead letters removed because their records were retried and stored ([`Batch::retried`]).
    pub dead_letters_retried: u64,
}

impl std::ops::AddAssign for CommitSummary {
    fn add_assign(&mut self, o: Self) {
        self.opt_events_new += o.opt_events_new;
        self.opt_events_duplicate += o.opt_events_duplicate;
        self.opt_events_updated += o.opt_events_updated;
        self.status_changes += o.status_changes;
        self.dead_letters += o.dead_letters;
        self.test_events += o.test_events;
        self.changes += o.changes;
        self.outbox_items += o.outbox_items;
        self.dead_letters_retried += o.dead_letters_retried;
    }
}

/// A shard's stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Shard id.
    pub shard_id: String,
    /// Last sequence number handled, if any.
    pub sequence_number: Option<String>,
    /// Read to its end (closed shard).
    pub finished: bool,
    /// When the checkpoint was last written (UTC, RFC 3339).
    pub updated_at: String,
}

/// How far an opt-out reaches when status is read (`--revocation-scope`): a read-time
/// setting, so switching it needs no reprocessing of stored events.
///
/// In `account` and `all`, a scope's answer is the latest (by time, ties to the larger event
/// id) of its own STOP/START signals and the honoured opt-outs of the subscriber in the other
/// scopes of the group: the same account, or every account in the store. A START re-opts only
/// its own scope (docs/semantics.md, rule 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationScope {
    /// An opt-out applies to the scope (Messaging Service or sender) it was sent to.
    #[default]
    Scope,
    /// An opt-out applies to every scope of its account.
    Account,
    /// An opt-out applies to every scope of every account in the store (the FCC's
    /// "revoke-all" speaks of the sender, not of a Twilio account).
    All,
}

impl RevocationScope {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationScope::Scope => "scope",
            RevocationScope::Account => "account",
            RevocationScope::All => "all",
        }
    }

    /// Reads the flag's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scope" => Some(RevocationScope::Scope),
            "account" => Some(RevocationScope::Account),
            "all" => Some(RevocationScope::All),
            _ => None,
        }
    }
}

/// Which status rows to return.
#[derive(Debug, Clone, Default)]
pub struct StatusFilter {
    /// Exact subscriber (`data.from`), e.g. `+15551230001`.
    pub subscriber: Option<String>,
    /// Exact scope (Messaging Service SID or sender number).
    pub scope: Option<String>,
    /// Any of these accounts (empty: all).
    pub accounts: Vec<String>,
}

/// Which opt events to return.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Events that occurred at or after this instant.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this keyword class.
    pub opt_out_type: Option<OptOutType>,
    /// Exact subscriber.
    pub subscriber: Option<String>,
    /// Only events recognised this way.
    pub detection: Option<Detection>,
}

/// Which phrase revocations `optout revocations` lists.
#[derive(Debug, Clone, Default)]
pub struct RevocationFilter {
    /// Revocations that occurred at or after this instant.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// A subscriber whose latest signal is a phrase-detected revocation Twilio did not block: no
/// later START, no later Twilio or keyword STOP. The number to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationRow {
    pub account_sid: String,
    pub scope: String,
    pub messaging_service_sid: Option<String>,
    pub sender: String,
    pub subscriber: String,
    /// `data.timestamp` of the revocation.
    pub revoked_at: String,
    /// The rule that matched.
    pub rule: Option<String>,
    pub body: Option<String>,
    /// The body was cut to bound the list.
    pub truncated: bool,
    pub event_id: String,
    /// The current `opt_status` (`opted_out` if honoured, else Twilio's view), if any.
    pub status: Option<String>,
}

/// One subscriber's current opt status in one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRow {
    pub account_sid: String,
    pub scope: String,
    pub messaging_service_sid: Option<String>,
    pub sender: String,
    pub subscriber: String,
    /// `opted_out` or `opted_in`.
    pub status: String,
    /// `data.timestamp` of the event that set this status.
    pub changed_at: String,
    pub event_id: String,
    /// Under `--revocation-scope account|all`, when an opt-out in another scope set this
    /// status: that scope's account (else `None`).
    pub origin_account_sid: Option<String>,
    /// … and that scope.
    pub origin_scope: Option<String>,
}

/// One stored opt event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    /// The CloudEvent id (a Messaging-webhook-only event: its message SID).
    pub event_id: String,
    /// One event per message, whichever way it came: the message SID, else the event id.
    pub identity: String,
    /// `STOP`, `START` or `HELP`.
    pub opt_out_type: String,
    pub inferred: bool,
    /// `twilio`, `reassigned`, `keyword` or `phrase`.
    pub detection: String,
    /// The revocation rule that matched (phrase detections).
    pub rule: Option<String>,
    pub account_sid: String,
    pub messaging_service_sid: Option<String>,
    pub sender: String,
    pub subscriber: String,
    /// At most [`crate::store::query::BODY_PREVIEW_CHARS`] characters in a list.
    pub body: Option<String>,
    pub message_sid: Option<String>,
    /// The body or message SID was cut to bound the list; the single-item fetch has it whole.
    pub truncated: bool,
    pub occurred_at: String,
    /// `twilio` (Twilio's event time) or `received` (optout's receive time).
    pub time_source: String,
    /// The ways in that brought it, e.g. `kinesis,messaging_webhook`.
    pub paths: String,
    pub schema_version: Option<i64>,
    pub shard_id: String,
    pub sequence_number: String,
}

/// One stored dead letter; the raw bytes are base64 so any output format can carry them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterRow {
    /// Opaque: fetches this dead letter whole (`/v1/dead-letters/{id}`).
    pub id: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: Option<String>,
    pub reason: String,
    /// The raw record in a list: its first [`crate::store::query::DATA_PREVIEW_BYTES`] bytes.
    pub data_base64: String,
    /// The raw record's whole length.
    pub data_bytes: i64,
    /// `data_base64` holds only the first bytes of the record.
    pub truncated: bool,
    pub recorded_at: String,
}

/// One sink test event: the `test_id` to give Twilio's Validate call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestEventRow {
    pub test_id: String,
    pub account_sid: String,
    pub occurred_at: Option<String>,
    pub shard_id: String,
    pub sequence_number: String,
}

/// Reads a time a caller sent back (a cursor's key): RFC 3339 with a year from 0001 to 9999,
/// the range every backend stores (docs/semantics.md, rule 4).
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::Datelike;
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?.to_utc();
    (1..=9999).contains(&t.year()).then_some(t)
}

/// The one timestamp format stored: UTC, microseconds, `Z`. Fixed width, so text order is
/// time order in both backends.
pub fn format_ts(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The reason a STOP or START signal gives (the change feed's commit answers the same way).
pub(crate) fn signal_reason(opt_out_type: &str, detection: &str) -> &'static str {
    match (opt_out_type, detection) {
        ("START", _) => "opted_in",
        (_, "phrase") => "phrase_revocation",
        (_, "reassigned") => "reassigned_number",
        (_, "keyword") => "keyword_stop",
        _ => "twilio_stop",
    }
}

/// `t` in ms since the Unix epoch (0 before it).
pub(crate) fn ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
