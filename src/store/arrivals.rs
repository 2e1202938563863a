//! One opt event per message, whichever way it came: the rule that merges the copies of a
//! message brought by different paths (Kinesis, the Event Streams webhook, the Messaging
//! webhook, replay) into one stored event, and what that means for status.
//!
//! Each part of the stored event comes from the copy that ranks best for it, so the result is
//! the same whatever order the copies arrive in (docs/semantics.md, "One event per message"):
//! - **time**: Twilio's event time beats a receive time; between two of a kind, the earlier;
//! - **detection** (type, detection, rule): `twilio` > `reassigned` > `keyword` > `phrase`;
//! - **everything else** (event id, account, numbers, body, where it was read): the copy of
//!   the best path ([`IngestPath::rank`]), then the smaller event id; two copies of the same
//!   event by the same path keep the first one stored;
//! - **paths**: every path that brought it.
//!
//! Whether the event sets status is decided when it is first stored (a phrase revocation only
//! with `--honor-revocations`) and kept; a better detection that is not a phrase always may.

use chrono::{DateTime, Utc};

use super::model::IngestPath;
use crate::event::{Detection, OptEvent, OptOutType, TimeSource};

/// An opt event as stored, and as one arrival would store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub event_id: String,
    pub identity: String,
    pub opt_out_type: OptOutType,
    pub detection: Detection,
    pub rule: Option<String>,
    pub account_sid: String,
    pub messaging_service_sid: Option<String>,
    pub sender: String,
    pub subscriber: String,
    pub body: Option<String>,
    pub message_sid: Option<String>,
    /// To the microsecond, as stored.
    pub occurred_at: DateTime<Utc>,
    pub time_source: TimeSource,
    pub schema_version: Option<i64>,
    pub stream_name: String,
    pub shard_id: String,
    pub sequence_number: String,
    /// The paths that brought it, one bit each ([`IngestPath::bit`]).
    pub paths: u8,
    /// Whether it takes part in status.
    pub sets_status: bool,
}

/// Where an arrival was read, and how it was read.
pub(super) struct Provenance<'a> {
    pub path: IngestPath,
    pub stream: &'a str,
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    /// `--honor-revocations` was on for the batch.
    pub honor_revocations: bool,
}

impl Row {
    /// The row one arrival would store on its own.
    pub fn new(ev: &OptEvent, at: &Provenance<'_>) -> Row {
        let status_type = matches!(ev.opt_out_type, OptOutType::Stop | OptOutType::Start);
        Row {
            event_id: ev.event_id.clone(),
            identity: ev.identity().to_owned(),
            opt_out_type: ev.opt_out_type,
            detection: ev.detection,
            rule: ev.rule.clone(),
            account_sid: ev.account_sid.clone(),
            messaging_service_sid: ev.messaging_service_sid.clone(),
            sender: ev.sender.clone(),
            subscriber: ev.subscriber.clone(),
            body: ev.body.clone(),
            message_sid: ev.message_sid.clone(),
            occurred_at: micros(ev.occurred_at),
            time_source: ev.time_source,
            schema_version: ev.schema_version.map(i64::from),
            stream_name: at.stream.to_owned(),
            shard_id: at.shard_id.to_owned(),
            sequence_number: at.sequence_number.to_owned(),
            paths: at.path.bit(),
            sets_status: status_type && (ev.detection != Detection::Phrase || at.honor_revocations),
        }
    }

    /// Where the event applies: the Messaging Service when there is one, else the sender.
    pub fn scope(&self) -> &str {
        match self.messaging_service_sid.as_deref() {
            Some(sid) if !sid.is_empty() => sid,
            _ => &self.sender,
        }
    }

    /// The status key.
    pub fn key(&self) -> (&str, &str, &str) {
        (&self.account_sid, self.scope(), &self.subscriber)
    }

    /// Whether derived from the body rather than from Twilio.
    pub fn inferred(&self) -> bool {
        self.detection.is_inferred()
    }

    /// The best path among those that brought it: the one its own fields come from.
    fn best_path_rank(&self) -> u8 {
        IngestPath::ALL
            .into_iter()
            .filter(|p| self.paths & p.bit() != 0)
            .map(IngestPath::rank)
            .max()
            .unwrap_or(0)
    }

    /// What the status of its key depends on: changing any of it means status must be
    /// computed again from the events.
    pub fn status_inputs(&self) -> impl PartialEq + '_ {
        (
            self.key(),
            self.sets_status,
            self.opt_out_type,
            self.occurred_at,
            self.event_id.as_str(),
            self.messaging_service_sid.as_deref(),
            self.sender.as_str(),
        )
    }
}

/// The stored event once `new`, another copy of the same message, has arrived.
pub(super) fn merge(stored: &Row, new: &Row) -> Row {
    let mut out = stored.clone();
    // Everything else: the best path's copy, then the smaller event id; else the first.
    let (path, new_path) = (stored.best_path_rank(), new.best_path_rank());
    if new_path > path || (new_path == path && new.event_id < stored.event_id) {
        out = Row {
            opt_out_type: out.opt_out_type,
            detection: out.detection,
            rule: out.rule,
            occurred_at: out.occurred_at,
            time_source: out.time_source,
            paths: out.paths,
            sets_status: out.sets_status,
            identity: out.identity,
            ..new.clone()
        };
    }
    // Time: Twilio's beats a receive time; then the earlier.
    let time_key = |r: &Row| {
        (
            r.time_source == TimeSource::Twilio,
            std::cmp::Reverse(r.occurred_at),
        )
    };
    if time_key(new) > time_key(stored) {
        out.occurred_at = new.occurred_at;
        out.time_source = new.time_source;
    }
    // Detection: Twilio's flag first, our guesses last; a total order, so ties are equal.
    let detection_key = |r: &Row| {
        (
            r.detection.rank(),
            std::cmp::Reverse(r.opt_out_type),
            r.rule.clone(),
        )
    };
    if detection_key(new) > detection_key(stored) {
        out.opt_out_type = new.opt_out_type;
        out.detection = new.detection;
        out.rule = new.rule.clone();
        // A phrase keeps the decision of its first storing (docs/semantics.md, rule 9).
        if new.detection != Detection::Phrase {
            out.sets_status = new.sets_status;
        }
    }
    out.paths = stored.paths | new.paths;
    out
}

/// A time as stored: to the microsecond.
pub(super) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{DurationRound, TimeDelta};
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: IngestPath, detection: Detection, time: TimeSource, at: i64, id: &str) -> Row {
        let ev = OptEvent {
            event_id: id.into(),
            opt_out_type: if detection == Detection::Phrase {
                OptOutType::Stop
            } else {
                OptOutType::Start
            },
            inferred: detection.is_inferred(),
            detection,
            rule: (detection == Detection::Phrase).then(|| "r".to_owned()),
            account_sid: "AC1".into(),
            messaging_service_sid: None,
            sender: "+2".into(),
            subscriber: "+1".into(),
            body: Some(format!("{id} body")),
            message_sid: Some("SM00000000000000000000000000000001".into()),
            occurred_at: DateTime::from_timestamp(1_772_366_400 + at, 0).unwrap(),
            time_source: time,
            schema_version: None,
        };
        let at = Provenance {
            path,
            stream: path.as_str(),
            shard_id: "s",
            sequence_number: id,
            honor_revocations: false,
        };
        Row::new(&ev, &at)
    }

    #[test]
    fn every_order_gives_the_same_event() {
        use Detection::{Keyword, Phrase, Twilio};
        use IngestPath::*;
        const SID: &str = "SM00000000000000000000000000000001";
        let (received, twilio) = (TimeSource::Received, TimeSource::Twilio);
        let copies = [
            row(MessagingWebhook, Twilio, received, 9, SID),
            row(Kinesis, Keyword, twilio, 5, "EZk"),
            row(EventsWebhook, Phrase, twilio, 5, "EZe"),
            row(Replay, Keyword, twilio, 5, "EZk"),
            row(MessagingWebhook, Twilio, received, 7, SID),
        ];
        let mut orders = vec![vec![0, 1, 2, 3, 4]];
        for seed in 0..200 {
            let mut o = vec![0, 1, 2, 3, 4];
            fastrand::Rng::with_seed(seed).shuffle(&mut o);
            orders.push(o);
        }
        let results: Vec<Row> = orders
            .iter()
            .map(|o| {
                o[1..]
                    .iter()
                    .fold(copies[o[0]].clone(), |acc, &i| merge(&acc, &copies[i]))
            })
            .collect();
        for r in &results {
            assert_eq!(r, &results[0]);
        }
        let r = &results[0];
        // Twilio's time, Twilio's flag (from the Messaging webhook), Kinesis's own fields.
        assert_eq!(
            (r.time_source, r.occurred_at),
            (TimeSource::Twilio, copies[1].occurred_at)
        );
        assert_eq!(
            (r.detection, r.opt_out_type, r.rule.as_deref()),
            (Twilio, OptOutType::Start, None)
        );
        assert_eq!(
            (r.event_id.as_str(), r.stream_name.as_str()),
            ("EZk", "kinesis")
        );
        assert_eq!(r.paths, 0b1111);
        assert!(r.sets_status);
    }

    #[test]
    fn receive_times_keep_the_earliest_and_phrases_their_first_decision() {
        use IngestPath::MessagingWebhook as M;
        let a = row(
            M,
            Detection::Phrase,
            TimeSource::Received,
            9,
            "SM00000000000000000000000000000001",
        );
        let mut b = row(
            M,
            Detection::Phrase,
            TimeSource::Received,
            7,
            "SM00000000000000000000000000000001",
        );
        b.sets_status = true; // stored later by a process with --honor-revocations
        let m = merge(&a, &b);
        assert_eq!(m.occurred_at, b.occurred_at);
        assert!(!m.sets_status, "the first storing decided");
        assert_eq!(merge(&m, &a), m);
    }
}
