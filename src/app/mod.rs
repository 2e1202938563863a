//! The composition root: builds the stages from settings and wires them together.
//!
//! The CLI parses flags into settings and calls in here; this module opens the store, decides
//! whether leases are needed, starts the HTTP server, and runs the consumer engine with the
//! adapters that connect it to the store ([`Pipeline`] for batches and checkpoints,
//! [`StoreLeases`] for leases). It is the only module that knows every stage, so that the
//! engine, the decoder and the store each stay ignorant of the others.

mod aws;
mod leases;
mod processor;
mod produce;
mod shards;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use tracing::info;

pub use crate::event::revocation::RuleSet;
pub use crate::event::{DecodeOptions, Detection, OptOutType, Revocations};
pub use crate::http::ApiAuth;
pub use crate::kinesis::KinesisError;
pub use crate::kinesis::{ConsumerConfig, InitialPosition, RunStats};
pub use crate::pipeline::{Committed, Target};
pub use crate::replay::{BLOCK_BYTES, maybe_gzip, replay_input};
pub use crate::store::query::{
    AsOfFilter, DeadLetterFilter, HistoryFilter, Listing, QueryError, TestEventFilter,
};
pub use crate::store::{
    EventFilter, Reader, RevocationFilter, StatusFilter, Store, StoreError, StoreUrl, redact,
};
pub use crate::telemetry::LogFormat;
pub use aws::kinesis_client;
pub use leases::StoreLeases;
pub use processor::Pipeline;
pub use produce::{ProduceSettings, Produced, produce};
pub use shards::{ShardRow, shard_table};
pub use store::{open_failed, open_reader, open_store, open_store_read_only};

use crate::kinesis::{self, LeaseStore, ProcessError};
use crate::store::{Dialect, FailureKind, SqlStore};

/// Why a command of the application failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting is wrong; the message says which and what to do.
    #[error("{0}")]
    Usage(String),
    /// The store could not be opened (or migrated): the cause, against the redacted URL.
    #[error("{0}")]
    Open(String),
    /// The store failed while in use.
    #[error("store: {0}")]
    Store(StoreError),
    /// A Kinesis call failed (outside the consumer engine).
    #[error("{0}")]
    Aws(String),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// The consumer engine stopped with an error.
    #[error(transparent)]
    Engine(#[from] KinesisError),
}

/// Everything `optout run` needs, already validated by the CLI's parser.
#[derive(Clone)]
pub struct RunSettings {
    /// `--store` URL (SQLite path or PostgreSQL URL).
    pub store_url: String,
    /// The engine's settings (stream, positions, intervals, leases, fan-out).
    pub engine: ConsumerConfig,
    /// How records are decoded (inferred keywords, revocation phrases).
    pub decode: DecodeOptions,
    /// Phrase-detected revocations change status.
    pub honor_revocations: bool,
    /// Serve the HTTP API here, with this authentication.
    pub http: Option<(SocketAddr, Arc<ApiAuth>)>,
}

/// What the engine sees of a store failure: retry, stop the shard, or give up on it. (Data
/// errors are resolved by the pipeline's isolation before they get here; one that still does
/// is fatal for the batch.)
pub fn engine_error(e: StoreError) -> ProcessError {
    let message = e.to_string();
    match e.kind() {
        FailureKind::Transient => ProcessError::Retry(message),
        FailureKind::LeaseLost => ProcessError::LostOwnership(message),
        FailureKind::Data | FailureKind::Fatal => ProcessError::Fatal(message),
    }
}

/// Opens the store for a consumer: with PostgreSQL, also its leases, so that several workers
/// can share the stream; with SQLite, no leases (one runner per file, held by a file lock).
pub async fn open_for_run(
    url: &str,
    max_connections: u32,
) -> Result<(Arc<SqlStore>, Option<Arc<dyn LeaseStore>>), AppError> {
    let open = crate::store::open_sql(url, max_connections).await;
    let store = open.map_err(|e| open_failed(url, e))?;
    let leases: Option<Arc<dyn LeaseStore>> = match store.dialect() {
        Dialect::Postgres => Some(Arc::new(StoreLeases(store.clone()))),
        Dialect::Sqlite => None,
    };
    Ok((store, leases))
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
pub async fn run(
    settings: RunSettings,
    client: aws_sdk_kinesis::Client,
    shutdown: CancellationToken,
) -> Result<RunStats, AppError> {
    let RunSettings {
        store_url,
        mut engine,
        decode,
        honor_revocations,
        http,
    } = settings;
    let pool_size = pool_size_for(&client, &engine.stream).await;
    let (store, leases) = open_for_run(&store_url, pool_size).await?;
    store.claim_single_runner().await?;
    let store: Arc<dyn Store> = store;
    let ready = Arc::new(AtomicBool::new(false));
    // The engine reports into a fresh health register that the readiness probe shares.
    engine.health = kinesis::Health::default();
    let health = Some((engine.health.clone(), engine.failing_after));
    let server = match http {
        Some((addr, auth)) => match bind_api(&store_url, addr, auth, ready.clone(), health).await {
            Ok((listener, state)) => Some(tokio::spawn(crate::http::serve_on(
                listener,
                state,
                shutdown.clone(),
            ))),
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        },
        None => None,
    };
    let pipeline =
        Arc::new(Pipeline::new(store.clone(), decode).honor_revocations(honor_revocations));
    info!(stream = %engine.stream, store = store.backend(), infer_keywords = decode.infer_keywords, "Starting consumer.");
    ready.store(true, Ordering::Relaxed);
    let result = kinesis::run(client, engine, pipeline, leases, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(h) = server {
        let _ = h.await;
    }
    store.close().await;
    Ok(result?)
}

/// Serves the query API, health and metrics on `addr` until `shutdown` (`optout serve`, a
/// query-only instance beside the consumer): read-only connections, never a write.
pub async fn serve(
    store_url: &str,
    addr: SocketAddr,
    auth: Arc<ApiAuth>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let ready = Arc::new(AtomicBool::new(true));
    let (listener, state) = bind_api(store_url, addr, auth, ready, None).await?;
    crate::http::serve_on(listener, state, shutdown)
        .await
        .map_err(AppError::Http)
}

/// The HTTP API's listener on `addr` and its state: queries on read connections of their own
/// (so they never wait behind a commit), readiness from `ready` and, beside a consumer, the
/// engine's shard `health` with its failing threshold.
async fn bind_api(
    store_url: &str,
    addr: SocketAddr,
    auth: Arc<ApiAuth>,
    ready: Arc<AtomicBool>,
    health: Option<(kinesis::Health, std::time::Duration)>,
) -> Result<(tokio::net::TcpListener, crate::http::AppState), AppError> {
    let reader = open_reader(store_url, 4).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Usage(format!("cannot listen on --http-addr {addr}: {e}")))?;
    let state = crate::http::AppState {
        reader,
        metrics: crate::telemetry::init_metrics(),
        ready,
        auth,
        health,
    };
    Ok((listener, state))
}
