//! `optout run`: the Kinesis way in, with the HTTP server (ways out) beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kinesis_engine::{self as kinesis, Budget, ConsumerConfig, LeaseStore, RunStats};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::serve::bind_http;
use super::settings::{AwsSettings, ConsumerSettings, DecodeSettings, HttpSettings};
use super::{AppError, aws, store, upkeep};
use crate::ingest::kinesis::{StoreLeases, StoreProcessor};
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
}

/// The engine's configuration for these settings.
fn engine_config(c: &ConsumerSettings) -> ConsumerConfig {
    let mut config = ConsumerConfig {
        initial_position: c.initial_position,
        poll_interval: c.poll_interval,
        discovery_interval: c.discovery_interval,
        exit_when_idle: c.exit_when_idle,
        lease_duration: c.lease_duration,
        max_records: c.max_records_per_call,
        budget: Budget::from_mb(c.max_in_flight_mb),
        stall_timeout: c.stall_timeout,
        consumer_name: c.consumer_name.clone(),
        failing_after: c.failing_after,
        ..ConsumerConfig::new(c.stream.clone())
    };
    if let Some(id) = &c.worker_id {
        config.worker_id = id.clone();
    }
    config
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
/// checkpoint. The store is closed cleanly whatever the outcome.
pub async fn run(settings: RunSettings, shutdown: CancellationToken) -> Result<RunStats, AppError> {
    settings.consumer.check()?;
    StoreUrl::parse(&settings.store_url)?; // a typo in --store fails before any AWS call
    let auth = settings.http.as_ref().map(HttpSettings::auth).transpose()?;
    let decode = settings.decode.options()?;
    let client = aws::kinesis_client(&settings.aws, true).await?;
    let mut engine = engine_config(&settings.consumer);
    let pool_size = pool_size_for(&client, &engine.stream).await;
    let store = store::open(&settings.store_url, pool_size).await?;
    store.claim_single_runner().await?;
    let leases: Option<Arc<dyn LeaseStore>> = store
        .shared()
        .then(|| Arc::new(StoreLeases(store.clone())) as Arc<dyn LeaseStore>);
    let ready = Arc::new(AtomicBool::new(false));
    // The engine reports into a fresh health register that the readiness probe shares.
    engine.health = kinesis::Health::default();
    let health = Some((engine.health.clone(), engine.failing_after));
    let server = match (&settings.http, auth) {
        (Some(http), Some(auth)) => {
            match bind_http(&settings.store_url, http, auth, ready.clone(), health).await {
                Ok(http) => Some(tokio::spawn(http.serve(shutdown.clone()))),
                Err(e) => {
                    store.close().await;
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let processor = Arc::new(
        StoreProcessor::new(store.clone(), decode)
            .honor_revocations(settings.decode.honor_revocations)
            .max_record_bytes(settings.decode.max_record_bytes),
    );
    info!(stream = %engine.stream, store = store.backend(), infer_keywords = decode.infer_keywords, "Starting consumer.");
    ready.store(true, Ordering::Relaxed);
    let upkeep = upkeep::spawn(store.clone(), shutdown.clone(), Some(ready.clone()));
    let result = kinesis::run(client, engine, processor, leases, shutdown.clone()).await;
    shutdown.cancel();
    let lost_store = upkeep.await.ok().flatten();
    if let Some(h) = server {
        let _ = h.await;
    }
    store.close().await;
    if let Some(e) = lost_store {
        return Err(AppError::Store(e));
    }
    Ok(result?)
}
