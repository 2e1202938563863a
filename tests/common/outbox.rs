//! The delivery tests' side of the store: an in-memory [`Outbox`] with the claim rules the
//! store promises (due items only, per ordering key only the oldest unsettled one, one owner
//! at a time until its hold runs out, a settlement from a lost claim ignored), every
//! settlement kept; and a clock of the test's own that moves only when told or slept on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use optout::deliver::{Change, Clock, Item};
use optout::store::{Outbox, OutboxTarget, Settle, Settlement, StoreError, TargetBacklog};

/// One item's state.
#[derive(Debug, Clone)]
pub struct Row {
    pub item: Item,
    pub created: SystemTime,
    pub due: SystemTime,
    pub claim: Option<(String, SystemTime)>,
    /// `None` while pending; the final settle once delivered or failed.
    pub done: Option<Settle>,
    pub last_reason: Option<String>,
}

/// An outbox in memory.
#[derive(Default)]
pub struct MemoryOutbox {
    rows: Mutex<BTreeMap<i64, Row>>,
    targets: Mutex<Vec<OutboxTarget>>,
    /// Every settlement accepted, in order, with its owner.
    pub settled: Mutex<Vec<(String, Settlement)>>,
}

impl MemoryOutbox {
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryOutbox::default())
    }

    /// Adds an item of `change` for every target that wants it, as a commit does; the item
    /// keys are `{event_id}:{target}`.
    pub fn commit(&self, change: Change, now: SystemTime) {
        let targets = self.targets.lock().unwrap().clone();
        let mut rows = self.rows.lock().unwrap();
        for t in targets.iter().filter(|t| (t.wants)(&change)) {
            let id = rows.len() as i64 + 1;
            let item = Item {
                id,
                target: t.name.clone(),
                key: format!("{}:{}", change.event_id, t.name),
                ordering_key: format!(
                    "{}|{}|{}",
                    change.account_sid, change.scope, change.subscriber
                ),
                change: change.clone(),
                attempts: 0,
                created: now,
            };
            rows.insert(
                id,
                Row {
                    item,
                    created: now,
                    due: now,
                    claim: None,
                    done: None,
                    last_reason: None,
                },
            );
        }
    }

    /// Every row, by id.
    pub fn rows(&self) -> Vec<Row> {
        self.rows.lock().unwrap().values().cloned().collect()
    }

    /// When the earliest pending item due after `now` is due (items due already may be
    /// waiting behind an earlier one of their key).
    pub fn next_due(&self, now: SystemTime) -> Option<SystemTime> {
        let rows = self.rows.lock().unwrap();
        let pending = rows.values().filter(|r| r.done.is_none());
        pending.map(|r| r.due).filter(|due| *due > now).min()
    }

    /// Whether every item is delivered or failed.
    pub fn drained(&self) -> bool {
        self.rows.lock().unwrap().values().all(|r| r.done.is_some())
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    fn set_outbox_targets(&self, targets: Vec<OutboxTarget>) {
        *self.targets.lock().unwrap() = targets;
    }

    async fn claim(
        &self,
        target: &str,
        owner: &str,
        limit: usize,
        now: SystemTime,
        hold: Duration,
    ) -> Result<Vec<Item>, StoreError> {
        let mut rows = self.rows.lock().unwrap();
        let mut seen_keys = std::collections::HashSet::new();
        let mut claimed = Vec::new();
        for row in rows.values_mut() {
            if row.item.target != target || row.done.is_some() {
                continue;
            }
            // The oldest unsettled item of its key blocks the later ones, claimed or not.
            if !seen_keys.insert(row.item.ordering_key.clone()) {
                continue;
            }
            let held = matches!(&row.claim, Some((_, until)) if *until > now);
            if held || row.due > now || claimed.len() >= limit {
                continue;
            }
            row.claim = Some((owner.to_string(), now + hold));
            claimed.push(row.item.clone());
        }
        Ok(claimed)
    }

    async fn settle(&self, owner: &str, settlements: &[Settlement]) -> Result<(), StoreError> {
        let mut rows = self.rows.lock().unwrap();
        for s in settlements {
            let Some(row) = rows.get_mut(&s.id) else {
                continue;
            };
            if !matches!(&row.claim, Some((o, _)) if o == owner) || row.done.is_some() {
                continue; // taken over: ignored
            }
            row.claim = None;
            row.item.attempts = s.attempts;
            match &s.settle {
                Settle::RetryAt { at, reason } => {
                    row.due = *at;
                    row.last_reason = Some(reason.clone());
                }
                done => row.done = Some(done.clone()),
            }
            self.settled
                .lock()
                .unwrap()
                .push((owner.to_string(), s.clone()));
        }
        Ok(())
    }

    async fn backlog(&self, now: SystemTime) -> Result<Vec<TargetBacklog>, StoreError> {
        let rows = self.rows.lock().unwrap();
        let mut by: BTreeMap<String, TargetBacklog> = BTreeMap::new();
        for r in rows.values() {
            let b = by.entry(r.item.target.clone()).or_insert(TargetBacklog {
                target: r.item.target.clone(),
                pending: 0,
                failed: 0,
                oldest_pending_secs: None,
            });
            match &r.done {
                None => {
                    b.pending += 1;
                    let age = now.duration_since(r.created).unwrap_or_default().as_secs();
                    b.oldest_pending_secs = Some(b.oldest_pending_secs.unwrap_or(0).max(age));
                }
                Some(Settle::Failed { .. }) => b.failed += 1,
                Some(_) => {}
            }
        }
        Ok(by.into_values().collect())
    }
}

/// A clock that moves only when slept on (by the sleep's length) or advanced: backoff, rate
/// limits and Retry-After are tested in virtual time, without waiting.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock at the real time now (so that signature timestamps look fresh to a checker).
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock {
            now: Mutex::new(SystemTime::now()),
        })
    }

    pub fn advance(&self, d: Duration) {
        *self.now.lock().unwrap() += d;
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap()
    }

    async fn sleep(&self, d: Duration) {
        self.advance(d);
        tokio::task::yield_now().await;
    }
}

/// A change of `subscriber` in `scope`, for event `event_id`.
pub fn change(event_id: &str, subscriber: &str, detection: &str, status: &str) -> Change {
    Change {
        cursor: 0,
        account_sid: super::twilio::ACCOUNT.into(),
        scope: "MG0123456789abcdef0123456789abcdef".into(),
        messaging_service_sid: Some("MG0123456789abcdef0123456789abcdef".into()),
        sender: "+15550001111".into(),
        subscriber: subscriber.into(),
        status: status.into(),
        send_allowed: status != "opted_out",
        reason: match (detection, status) {
            (_, "opted_in") => "opted_in",
            ("phrase", _) => "phrase_revocation",
            ("reassigned", _) => "reassigned_number",
            ("keyword", _) => "keyword_stop",
            _ => "twilio_stop",
        }
        .into(),
        event_id: event_id.into(),
        message_sid: Some(format!("SM{event_id}")),
        opt_out_type: if status == "opted_in" {
            "START"
        } else {
            "STOP"
        }
        .into(),
        detection: detection.into(),
        rule: (detection == "phrase").then(|| "stop-texting-me".into()),
        occurred_at: "2026-03-01T10:00:00Z".into(),
        origin_account_sid: None,
        origin_scope: None,
    }
}

/// Runs `dispatcher` round after round until the outbox is drained, moving `clock` to the
/// next due item whenever nothing is due; panics after `rounds` rounds.
pub async fn drain(
    dispatcher: &optout::deliver::Dispatcher,
    outbox: &MemoryOutbox,
    clock: &ManualClock,
    rounds: usize,
) {
    for _ in 0..rounds {
        if outbox.drained() {
            return;
        }
        if dispatcher.tick().await.unwrap() == 0 {
            let now = clock.now();
            match outbox.next_due(now) {
                Some(due) => clock.advance(due.duration_since(now).unwrap()),
                None => clock.advance(Duration::from_millis(100)),
            }
        }
    }
    let pending: Vec<_> = outbox
        .rows()
        .into_iter()
        .filter(|r| r.done.is_none())
        .collect();
    panic!(
        "not drained after {rounds} rounds: {} pending, the first {:?}",
        pending.len(),
        pending.first()
    );
}
