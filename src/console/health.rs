//! `/console/health`: what the store knows (every stream's shards with their checkpoints,
//! lease owners and last commit times; dead letters per day; the outbox per delivery target)
//! and, when the consumer runs in this process, its live figures (how far behind the tip it
//! is, failing shards, in-flight memory).

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::session::Session;
use super::{Chrome, Console, query_failed, render};

/// Streams shown at most (a store holds one or two).
const MAX_STREAMS: usize = 10;
/// Days of dead letters shown.
const DEAD_LETTER_DAYS: u32 = 30;

/// One shard as the page shows it.
struct ShardView {
    shard_id: String,
    sequence_number: String,
    finished: bool,
    /// When its checkpoint was last written: the last commit from this shard.
    updated_at: String,
    owner: String,
    /// Seconds until the lease expires (negative: expired), if leased.
    lease_secs: Option<i64>,
}

struct StreamView {
    name: String,
    shards: Vec<ShardView>,
}

struct LiveView {
    /// How far behind the tip the furthest shard is, as its latest read said (`None` before).
    behind: Option<String>,
    failing: Vec<kinesis_engine::FailingShard>,
    failing_after_secs: u64,
    budget_used_mib: String,
    budget_peak_mib: String,
    budget_capacity_mib: String,
    readers: usize,
    waits: u64,
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    chrome: Chrome,
    backend: &'static str,
    streams: Vec<StreamView>,
    dead_letters: Vec<(String, i64)>,
    dead_letter_days: u32,
    /// Outbox items not yet delivered, per target (none before deliveries are configured).
    outbox: Vec<crate::store::TargetBacklog>,
    live: Option<LiveView>,
}

/// A lag as a person reads it: "0.4 s", "12 min 5 s", "3 h 2 min".
fn lag(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{:.1} s", ms as f64 / 1000.0),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

pub(super) async fn page(
    State(console): State<Console>,
    session: Option<axum::Extension<Session>>,
) -> Response {
    let reader = &console.reader;
    let names = match reader.streams().await {
        Ok(n) => n,
        Err(e) => return query_failed(e),
    };
    let mut streams = Vec::new();
    for name in names.into_iter().take(MAX_STREAMS) {
        let (checkpoints, leases, now_ms) = match reader.shard_states(&name).await {
            Ok(s) => s,
            Err(e) => return query_failed(e),
        };
        let mut shards: Vec<ShardView> = checkpoints
            .into_iter()
            .map(|c| {
                let lease = leases.iter().find(|l| l.shard_id == c.shard_id);
                ShardView {
                    sequence_number: c.sequence_number.unwrap_or_default(),
                    finished: c.finished,
                    updated_at: c.updated_at,
                    owner: lease.and_then(|l| l.owner.clone()).unwrap_or_default(),
                    lease_secs: lease
                        .filter(|l| l.owner.is_some())
                        .map(|l| (l.expires_at_ms - now_ms) / 1000),
                    shard_id: c.shard_id,
                }
            })
            .collect();
        // Leased shards without a checkpoint yet (just started) are shown too.
        for l in &leases {
            if !shards.iter().any(|s| s.shard_id == l.shard_id) {
                shards.push(ShardView {
                    shard_id: l.shard_id.clone(),
                    sequence_number: String::new(),
                    finished: false,
                    updated_at: String::new(),
                    owner: l.owner.clone().unwrap_or_default(),
                    lease_secs: l.owner.as_ref().map(|_| (l.expires_at_ms - now_ms) / 1000),
                });
            }
        }
        streams.push(StreamView { name, shards });
    }
    let dead_letters = match reader.dead_letters_per_day(DEAD_LETTER_DAYS).await {
        Ok(d) => d,
        Err(e) => return query_failed(e),
    };
    let outbox = match reader.backlog().await {
        Ok(b) => b,
        Err(e) => return query_failed(e),
    };
    let live = console.live.as_ref().map(|l| {
        let budget = l.budget.as_ref().map(|b| b.stats());
        LiveView {
            behind: l.health.millis_behind_latest().map(lag),
            failing: l.health.failing(std::time::Duration::ZERO),
            failing_after_secs: l.failing_after.as_secs(),
            budget_used_mib: budget.as_ref().map_or("-".into(), |b| mib(b.used)),
            budget_peak_mib: budget.as_ref().map_or("-".into(), |b| mib(b.peak)),
            budget_capacity_mib: budget.as_ref().map_or("-".into(), |b| mib(b.capacity)),
            readers: budget.as_ref().map_or(0, |b| b.readers),
            waits: budget.as_ref().map_or(0, |b| b.waits),
        }
    });
    render(HealthPage {
        chrome: super::pages::chrome("health", &session),
        backend: reader.backend(),
        streams,
        dead_letters,
        dead_letter_days: DEAD_LETTER_DAYS,
        outbox,
        live,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn lags_read_as_a_person_says_them() {
        assert_eq!(super::lag(0), "0.0 s");
        assert_eq!(super::lag(400), "0.4 s");
        assert_eq!(super::lag(725_000), "12 min 5 s");
        assert_eq!(super::lag(3 * 3_600_000 + 120_000), "3 h 2 min");
    }
}
