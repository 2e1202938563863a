//! `optout run`: the Kinesis way in, with the HTTP server (ways out, and the webhook way in when
//! an auth token file is given) beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kinesis_engine::{self as kinesis, Budget, ConsumerConfig, Handles, LeaseStore, RunStats};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::api_runtime::{ApiRuntime, join};
use super::deliver::{Delivery, DeliverySettings, system_clock};
use super::progress::Progress;
use super::serve::{PG_WEBHOOK_COMMITTERS, bind_http, finish_webhooks};
use super::settings::{
    AwsSettings, ConsumerSettings, DecodeSettings, HttpSettings, WebhookSettings,
};
use super::{AppError, aws, store, upkeep};
use crate::ingest::kinesis::{StoreLeases, StoreProcessor};
use crate::ingest::webhook;
use crate::store::StoreUrl;

/// Everything `optout run` needs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// `--store` URL (SQLite path or PostgreSQL URL).
    pub store_url: String,
    /// Where Kinesis is.
    pub aws: AwsSettings,
    /// How the stream is read.
    pub consumer: ConsumerSettings,
    /// How records are decoded.
    pub decode: DecodeSettings,
    /// Serve the HTTP API too.
    pub http: Option<HttpSettings>,
    /// The HTTP server's own worker threads (0: on the consumer's runtime); `api_runtime.rs`
    /// says why it has its own.
    pub http_threads: usize,
    /// Take Twilio's webhooks on that HTTP server too.
    pub webhooks: WebhookSettings,
    /// Deliver changes to Twilio's Consent API and signed webhooks.
    pub delivery: DeliverySettings,
    /// `--revocation-scope`: how far an opt-out reaches in the change feed and the deliveries
    /// this writer commits (the HTTP API's answers take theirs from `http`).
    pub revocation_scope: crate::store::RevocationScope,
}

/// The engine's configuration for these settings (the engine's defaults for the rest), and
/// the handles it reports into: a fresh health register and the in-flight budget.
fn engine_config(c: &ConsumerSettings) -> (ConsumerConfig, Handles) {
    let mut config = ConsumerConfig::new(c.stream.clone());
    let reading = &mut config.reading;
    reading.initial_position = c.initial_position;
    reading.poll_interval = c.poll_interval;
    reading.discovery_interval = c.discovery_interval;
    reading.exit_when_idle = c.exit_when_idle;
    reading.max_records_per_call = c.max_records_per_call;
    reading.consumer_name = c.consumer_name.clone();
    // This consumer's share of AWS's per-shard read limits: 5 calls and 2 MiB a second, shared
    // by every consumer polling the stream.
    reading.min_call_interval = reading.min_call_interval.div_f64(c.shard_read_share);
    let bytes_per_sec = c.shard_read_mib * c.shard_read_share * f64::from(1u32 << 20);
    reading.max_read_bytes_per_sec =
        (c.shard_read_mib > 0.0).then(|| (bytes_per_sec as u64).max(1));
    config.leasing.lease_duration = c.lease_duration;
    if let Some(id) = &c.worker_id {
        config.leasing.worker_id = id.clone();
    }
    config.restarts.stall_timeout = c.stall_timeout;
    config.restarts.failing_after = c.failing_after;
    config.metrics_prefix = crate::telemetry::METRICS_PREFIX.to_string();
    let handles = Handles {
        budget: Budget::from_mb(c.max_in_flight_mb),
        ..Handles::default()
    };
    (config, handles)
}

/// PostgreSQL connections for a stream: one per shard (each reader commits on its own) plus a
/// few for leases and queries, within reason. If the stream cannot be listed yet, a default;
/// the consumer reports the real problem when it starts.
async fn pool_size_for(client: &aws_sdk_kinesis::Client, stream: &str) -> u32 {
    match kinesis::list_shards(client, stream).await {
        Ok(shards) => (shards.len() as u32 + 4).clamp(4, 64),
        Err(_) => 16,
    }
}

/// Runs the consumer until `shutdown` (or idle, with `exit_when_idle`): opens and locks the
/// store, serves HTTP if asked, and reads the stream, committing every batch with its
/// checkpoint. The store is closed cleanly whatever the outcome. How far behind the stream it
/// is goes to `progress` about twice a second.
pub async fn run(
    settings: RunSettings,
    shutdown: CancellationToken,
    progress: Arc<dyn Progress>,
) -> Result<RunStats, AppError> {
    settings.consumer.check()?;
    StoreUrl::parse(&settings.store_url)?; // a typo in --store fails before any AWS call
    let auth = settings.http.as_ref().map(HttpSettings::auth).transpose()?;
    let public_url = settings.webhooks.public_url.as_deref();
    let console = settings
        .http
        .as_ref()
        .map(|h| h.console(public_url))
        .transpose()?
        .unwrap_or_default();
    let decode = settings.decode.options()?;
    // Pushing revocations to Twilio is honouring them: optout's own answer must agree.
    let honor = settings.decode.honor_revocations || settings.delivery.implies_honor_revocations();
    let targets = settings.delivery.targets(system_clock())?;
    if settings.webhooks.enabled() && settings.http.is_none() {
        return Err(AppError::Usage(
            "--twilio-auth-token-file needs --http-addr: the webhooks are served by the HTTP \
             server"
                .into(),
        ));
    }
    let hooks = settings.webhooks.load(|| Ok(decode), honor)?;
    let client = aws::kinesis_client(&settings.aws, true).await?;
    let (engine, handles) = engine_config(&settings.consumer);
    let mut pool_size = pool_size_for(&client, &engine.reading.stream).await;
    if hooks.is_some() {
        pool_size += PG_WEBHOOK_COMMITTERS as u32;
    }
    // One connection per dispatcher and one for the backlog gauges.
    if !targets.is_empty() {
        pool_size += targets.len() as u32 + 1;
    }
    let store = store::open(&settings.store_url, pool_size).await?;
    store.claim_single_runner().await?;
    store.set_revocation_scope(settings.revocation_scope);
    // Before the first commit, so that every change from now on gets its outbox items.
    let delivery = Delivery::start(targets, store.clone(), &settings.delivery);
    let leases: Option<Arc<dyn LeaseStore>> = store
        .shared()
        .then(|| Arc::new(StoreLeases(store.clone())) as Arc<dyn LeaseStore>);
    let ready = Arc::new(AtomicBool::new(false));
    // The engine reports into a fresh health register that the readiness probe shares.
    let live = Some(crate::console::Live {
        health: handles.health.clone(),
        failing_after: engine.restarts.failing_after,
        budget: Some(handles.budget.clone()),
        retry: Some(super::retry::console_retry(
            store.clone(),
            DecodeSettings {
                honor_revocations: honor,
                ..settings.decode.clone()
            },
            shutdown.clone(),
        )),
    });
    let stop_hooks = CancellationToken::new();
    let hooks = hooks.map(|config| {
        webhook::start(
            store.clone(),
            config,
            PG_WEBHOOK_COMMITTERS,
            stop_hooks.clone(),
        )
    });
    let (ingest, committers) = match hooks {
        Some(h) => (Some(h.router), Some(h.committers)),
        None => (None, None),
    };
    let server = match (&settings.http, auth) {
        (Some(http), Some(auth)) => {
            let runtime = ApiRuntime::new(settings.http_threads)?;
            let (url, http, r) = (settings.store_url.clone(), http.clone(), ready.clone());
            let bound = runtime
                .spawn(async move { bind_http(&url, &http, auth, r, live, console, ingest).await });
            match join(bound).await {
                Ok(http) => {
                    let serving = runtime.spawn(http.serve(shutdown.clone()));
                    Some((runtime, serving))
                }
                Err(e) => {
                    if let Some(d) = delivery {
                        d.finish().await;
                    }
                    finish_webhooks(stop_hooks, committers, &store).await;
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let processor = Arc::new(
        StoreProcessor::new(store.clone(), decode)
            .honor_revocations(honor)
            .max_record_bytes(settings.decode.max_record_bytes),
    );
    info!(stream = %engine.reading.stream, store = store.backend(), infer_keywords = decode.infer_keywords, "Starting consumer.");
    ready.store(true, Ordering::Relaxed);
    let upkeep = upkeep::spawn(store.clone(), shutdown.clone(), Some(ready.clone()));
    let reporter = report_lag(handles.health.clone(), progress.clone(), shutdown.clone());
    let result = kinesis::run(client, engine, handles, processor, leases, shutdown.clone()).await;
    shutdown.cancel();
    let _ = reporter.await;
    progress.finish();
    let lost_store = upkeep.await.ok().flatten();
    if let Some((_runtime, serving)) = server {
        let _ = serving.await;
    }
    if let Some(d) = delivery {
        d.finish().await;
    }
    finish_webhooks(stop_hooks, committers, &store).await;
    if let Some(e) = lost_store {
        return Err(AppError::Store(e));
    }
    Ok(result?)
}

/// Reports the engine's lag to `progress` twice a second until `stop`.
fn report_lag(
    health: kinesis_engine::Health,
    progress: Arc<dyn Progress>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => progress.catch_up(health.millis_behind_latest()),
            }
        }
    })
}
