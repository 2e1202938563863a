//! The global in-flight budget: how many bytes of records may be held between fetch and commit,
//! across every shard reader of the process.
//!
//! Without it, memory grows with the stream: each polling reader holds one `GetRecords`
//! response (up to 10,000 records, the response body and the decoded batch at once)
//! until its batch commits, so a deep backlog on many shards costs shards × 14 MB, and a
//! container limit turns catch-up into a crash loop. With it, a reader reserves bytes *before*
//! each call or subscription event, sizes its `GetRecords` `Limit` to what it reserved, trims
//! the reservation to what the records really hold once the response is decoded, and gives it
//! all back once the batch is durable.
//!
//! Fairness: waiters are served strictly first come, first served, and a reservation is never
//! larger than the whole budget, so every reader gets at least one call's minimum in turn and
//! none starves, whatever the shard count. A reader's `Limit` follows its share of the budget
//! (the budget over the number of readers) and the bytes per record it has observed.
//!
//! A reservation can only be estimated before the records arrive: when a response holds more
//! than was reserved (records larger than observed so far), the difference is charged anyway
//! (the bytes are in memory already) and the next calls adapt. [`BudgetStats::peak`] shows it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Bytes a decoded record costs beyond its data, sequence number and partition key: its entry
/// in the batch and its views (the engine's and the pipeline's), or on fan-out the SDK's
/// `Record` (strings, blob, timestamp, encryption type); the larger, rounded up.
pub const RECORD_OVERHEAD: usize = 160;

/// While a `GetRecords` answer is read, the response body (base64 data, 4/3 of it, plus JSON
/// framing; the SDK collects it into one buffer, so briefly twice) and the decoded batch are
/// held at once: a call is reserved at this multiple of the records' held size, and trimmed to
/// the held size once decoded.
pub const CALL_PEAK_FACTOR: f64 = 2.5;

/// The bytes-per-record estimate before a reader has seen any record: generous (typical event
/// records are about 1 KB), so a first call on an unknown stream cannot overshoot its share by much.
pub const INITIAL_BYTES_PER_RECORD: usize = 4096;

/// What a record costs the budget once decoded.
pub fn record_cost(data: usize, sequence_number: usize, partition_key: usize) -> usize {
    data + sequence_number + partition_key + RECORD_OVERHEAD
}

/// The process-wide in-flight budget. Cheap to clone; clones share the same budget.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: u64,
    state: Mutex<State>,
    /// Where its gauge and wait counter go: the names of the first run it serves (the budget
    /// is made by the application, before the engine knows its metric prefix).
    metrics: OnceLock<Metrics>,
}

#[derive(Default)]
struct State {
    used: u64,
    peak: u64,
    readers: usize,
    waits: u64,
    overdraft: u64,
    next_id: u64,
    queue: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    amount: u64,
    grant: oneshot::Sender<()>,
}

/// A snapshot of the budget's accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    /// The budget, in bytes.
    pub capacity: u64,
    /// Bytes reserved right now.
    pub used: u64,
    /// The most bytes ever reserved at once.
    pub peak: u64,
    /// Readers sharing the budget right now.
    pub readers: usize,
    /// Reservations that had to wait for others to give bytes back.
    pub waits: u64,
    /// Bytes charged beyond a reservation because records were larger than estimated.
    pub overdraft: u64,
}

impl Default for Budget {
    /// The default budget: 64 MiB.
    fn default() -> Self {
        Budget::new(64 << 20)
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Budget").field(&self.stats()).finish()
    }
}

impl Budget {
    /// A budget of `capacity` bytes (at least 1).
    pub fn new(capacity: u64) -> Self {
        Budget {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                state: Mutex::new(State::default()),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// A budget of `mb` mebibytes.
    pub fn from_mb(mb: u64) -> Self {
        Budget::new(mb.saturating_mul(1 << 20))
    }

    /// The budget in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// The accounting so far.
    pub fn stats(&self) -> BudgetStats {
        let s = self.lock();
        BudgetStats {
            capacity: self.inner.capacity,
            used: s.used,
            peak: s.peak,
            readers: s.readers,
            waits: s.waits,
            overdraft: s.overdraft,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain counters behind, still consistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a reader for the length of the returned share (its `Drop` unregisters it).
    pub fn join(&self) -> Share {
        self.lock().readers += 1;
        Share {
            budget: self.clone(),
            bytes_per_record: INITIAL_BYTES_PER_RECORD as f64,
        }
    }

    /// Reserves `amount` bytes (at most the whole budget), waiting in line behind earlier
    /// reservations. Cancel-safe: dropping the future gives back anything granted.
    pub async fn reserve(&self, amount: u64) -> Reservation {
        let amount = amount.clamp(1, self.inner.capacity);
        let (id, granted) = {
            let mut s = self.lock();
            if s.queue.is_empty() && s.used + amount <= self.inner.capacity {
                s.charge(amount);
                drop(s);
                return self.granted(amount);
            }
            let (tx, rx) = oneshot::channel();
            s.next_id += 1;
            s.waits += 1;
            let id = s.next_id;
            s.queue.push_back(Waiter {
                id,
                amount,
                grant: tx,
            });
            (id, rx)
        };
        if let Some(m) = self.inner.metrics.get() {
            m.in_flight_wait();
        }
        let mut pending = Pending {
            budget: self,
            id,
            amount,
            done: false,
        };
        // The sender lives in the queue until granted; it is only dropped after a grant.
        let _ = granted.await;
        pending.done = true;
        self.granted(amount)
    }

    fn granted(&self, amount: u64) -> Reservation {
        self.publish();
        Reservation {
            budget: self.clone(),
            amount,
        }
    }

    fn release(&self, amount: u64) {
        if amount == 0 {
            return;
        }
        let mut s = self.lock();
        s.used = s.used.saturating_sub(amount);
        s.grant_waiters(self.inner.capacity);
        drop(s);
        self.publish();
    }

    fn publish(&self) {
        let used = self.lock().used;
        if let Some(m) = self.inner.metrics.get() {
            m.in_flight_bytes(used);
        }
    }

    /// Reports the budget's gauge and waits under `metrics` from now on (the first run's
    /// names win if several runs share the budget).
    pub(crate) fn report_to(&self, metrics: &Metrics) {
        let _ = self.inner.metrics.set(metrics.clone());
    }
}

impl State {
    fn charge(&mut self, amount: u64) {
        self.used += amount;
        self.peak = self.peak.max(self.used);
    }

    /// Grants waiters in order while the head fits; never lets a later one pass the head.
    fn grant_waiters(&mut self, capacity: u64) {
        while let Some(head) = self.queue.front() {
            if self.used + head.amount > capacity {
                break;
            }
            let w = self.queue.pop_front().expect("front exists");
            self.charge(w.amount);
            if w.grant.send(()).is_err() {
                // Its future was dropped between our check and now: Pending's Drop could not
                // find it in the queue, so give the bytes back here.
                self.used -= w.amount;
            }
        }
    }
}

/// A reservation still waiting in line; dropping it (cancellation) leaves the line.
struct Pending<'a> {
    budget: &'a Budget,
    id: u64,
    amount: u64,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.budget.lock();
        if let Some(pos) = s.queue.iter().position(|w| w.id == self.id) {
            s.queue.remove(pos);
        } else {
            // Granted after the future stopped being polled: give the bytes back.
            s.used = s.used.saturating_sub(self.amount);
        }
        // Leaving the head of the line may let the next waiter in.
        s.grant_waiters(self.budget.inner.capacity);
    }
}

/// Bytes held from the budget; given back when dropped.
#[must_use = "a reservation is given back when dropped"]
pub struct Reservation {
    budget: Budget,
    amount: u64,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// Sets the reservation to what the records in hand really cost: gives back the surplus,
    /// or charges the excess at once (the bytes are in memory already) and counts it as
    /// overdraft.
    pub fn settle(&mut self, actual: u64) {
        if actual < self.amount {
            let surplus = self.amount - actual;
            self.amount = actual;
            self.budget.release(surplus);
        } else if actual > self.amount {
            let excess = actual - self.amount;
            self.amount = actual;
            let mut s = self.budget.lock();
            s.charge(excess);
            s.overdraft += excess;
            drop(s);
            self.budget.publish();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.amount);
    }
}

/// One reader's part of the budget: its registration (for the fair share) and its observed
/// bytes per record (for sizing calls).
pub struct Share {
    budget: Budget,
    bytes_per_record: f64,
}

impl Share {
    /// The budget this share belongs to.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// This reader's fair part of the budget: the budget over the readers sharing it.
    pub fn fair_bytes(&self) -> u64 {
        let readers = self.budget.lock().readers.max(1) as u64;
        self.budget.capacity() / readers
    }

    /// The estimate of what one record costs once decoded.
    pub fn bytes_per_record(&self) -> f64 {
        self.bytes_per_record
    }

    /// The `Limit` of the next `GetRecords` call (at least 1, at most `max_records`) and the
    /// bytes to reserve for it: as many records as the reader's share holds once decoded, the
    /// reservation covering the call's peak (body and records at once), and never more than
    /// the whole budget.
    pub fn plan_call(&self, max_records: i32) -> (i32, u64) {
        let fair = self.fair_bytes() as f64;
        let limit = (fair / self.bytes_per_record).floor() as i64;
        let limit = limit.clamp(1, max_records.max(1) as i64) as i32;
        let bytes = (limit as f64 * self.bytes_per_record * CALL_PEAK_FACTOR).ceil() as u64;
        (limit, bytes.min(self.budget.capacity()))
    }

    /// The bytes to reserve before taking the next enhanced fan-out event, from the events
    /// seen so far: what `records` of the observed size cost.
    pub fn plan_event(&self, records: f64) -> u64 {
        let bytes = (records.max(1.0) * self.bytes_per_record).ceil() as u64;
        bytes.min(self.budget.capacity())
    }

    /// Learns from a decoded response: `records` records costing `bytes` in all. Grows at once
    /// (larger records must not overshoot twice) and shrinks gradually (one small response
    /// must not make the next call too large).
    pub fn observe(&mut self, records: usize, bytes: u64) {
        if records == 0 {
            return;
        }
        let seen = bytes as f64 / records as f64;
        self.bytes_per_record = if seen >= self.bytes_per_record {
            seen
        } else {
            (3.0 * self.bytes_per_record + seen) / 4.0
        };
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.readers = s.readers.saturating_sub(1);
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
