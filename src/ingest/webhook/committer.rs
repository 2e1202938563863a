//! Group commit: requests that arrive together commit in one transaction.
//!
//! Each request hands its records to a queue and waits for its own answer; a committer task
//! takes everything queued, commits it through the pipeline (one transaction per route, with
//! the pipeline's isolation of records the database refuses), and answers every request of the
//! group. While one group commits the next one gathers, so under load a transaction (and its
//! `fsync`) serves many requests, and alone a request waits for no timer. PostgreSQL gets a
//! few committers at once (its transactions run side by side); SQLite's single writer one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Route;
use crate::event::DecodeOptions;
use crate::pipeline::{RawRecord, RecordFormat, commit_records};
use crate::store::{FailureKind, Store, StoreError};

/// Most requests in one group.
const MAX_GROUP_REQUESTS: usize = 1_000;
/// Most bytes of records in one group (bodies are at most 1 MiB each).
const MAX_GROUP_BYTES: usize = 8 << 20;
/// How long a group is retried after transient failures before its requests get 503.
const RETRY_FOR: Duration = Duration::from_secs(3);

/// One record of a request, owned until committed.
pub(super) struct Record {
    /// SHA-256 of `data`, hex: a retry of the same record is the same record.
    pub sequence_number: String,
    pub data: Vec<u8>,
    pub format: RecordFormat,
}

/// One request's records, and where its answer goes.
pub(super) struct Job {
    pub route: Route,
    pub records: Vec<Record>,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// The sending side, for handlers.
#[derive(Clone)]
pub(super) struct Queue(mpsc::Sender<Job>);

impl Queue {
    /// Commits `records` of `route` with whatever else is queued; `Err` with the reason when
    /// they could not be stored (the request must get 503).
    pub async fn commit(&self, route: Route, records: Vec<Record>) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            route,
            records,
            reply,
        };
        if self.0.send(job).await.is_err() {
            return Err("shutting down".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the committer stopped".into()))
    }
}

/// Where the committers write, and how records are decoded.
pub(super) struct Committer {
    pub store: Arc<dyn Store>,
    pub options: DecodeOptions,
    pub honor_revocations: bool,
}

/// Starts `workers` committers; they stop once `stop` is cancelled and the queue is drained.
pub(super) fn start(
    committer: Committer,
    workers: usize,
    stop: CancellationToken,
) -> (Queue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4 * MAX_GROUP_REQUESTS);
    let rx = Arc::new(Mutex::new(rx));
    let committer = Arc::new(committer);
    let handles: Vec<_> = (0..workers.max(1))
        .map(|_| tokio::spawn(run(committer.clone(), rx.clone(), stop.clone())))
        .collect();
    let all = tokio::spawn(async move {
        for h in handles {
            let _ = h.await;
        }
    });
    (Queue(tx), all)
}

/// One committer: takes a group, commits it, answers it; again.
async fn run(c: Arc<Committer>, rx: Arc<Mutex<mpsc::Receiver<Job>>>, stop: CancellationToken) {
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let first = tokio::select! {
                job = rx.recv() => job,
                _ = stop.cancelled() => rx.try_recv().ok(),
            };
            let Some(first) = first else { return };
            let mut bytes = size(&first);
            let mut group = vec![first];
            while group.len() < MAX_GROUP_REQUESTS && bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += size(&job);
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        commit_group(&c, group).await;
    }
}

fn size(job: &Job) -> usize {
    job.records.iter().map(|r| r.data.len()).sum()
}

/// Commits a group, one transaction per route, and answers each request.
async fn commit_group(c: &Committer, group: Vec<Job>) {
    super::metrics::group_committed(group.len());
    let (messaging, events): (Vec<Job>, Vec<Job>) =
        group.into_iter().partition(|j| j.route == Route::Messaging);
    for jobs in [messaging, events] {
        let Some(route) = jobs.first().map(|j| j.route) else {
            continue;
        };
        let answer = {
            let records: Vec<RawRecord<'_>> = jobs
                .iter()
                .flat_map(|j| &j.records)
                .map(|r| RawRecord {
                    sequence_number: &r.sequence_number,
                    partition_key: None,
                    data: &r.data,
                    size: r.data.len(),
                    format: r.format,
                })
                .collect();
            commit_with_retries(c, route, &records).await
        };
        let answer = answer.map_err(|e| {
            warn!(route = route.path(), requests = jobs.len(), error = %e, "Webhook requests could not be stored; answering 503.");
            e.to_string()
        });
        for job in jobs {
            let _ = job.reply.send(answer.clone());
        }
    }
}

/// Commits `records` of `route`, retrying transient failures (a busy or restarting database)
/// for up to [`RETRY_FOR`]; the pipeline isolates records the database refuses. A retry after a
/// partial isolation stores nothing twice (identities, dead-letter keys).
async fn commit_with_retries(
    c: &Committer,
    route: Route,
    records: &[RawRecord<'_>],
) -> Result<(), StoreError> {
    let target = route.target(c.honor_revocations);
    let started = Instant::now();
    let mut wait = Duration::from_millis(20);
    loop {
        match commit_records(&*c.store, &target, records, None, c.options).await {
            Ok(_) => return Ok(()),
            Err(e)
                if e.kind() == FailureKind::Transient && started.elapsed() + wait < RETRY_FOR =>
            {
                super::metrics::commit_retried();
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}
