//! `optout produce`: a realistic synthetic Twilio mix written to a stream, for demos, load
//! tests and the quick start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use tracing::warn;

use kinesis_engine::{Backoff, aws_message};

use super::AppError;
use super::settings::AwsSettings;
use crate::synth::{Kind, MixOptions, Synth};

/// Records per PutRecords call (the AWS maximum is 500).
const PUT_BATCH: usize = 500;

/// What to write.
#[derive(Debug, Clone)]
pub struct ProduceSettings {
    /// Stream to write to.
    pub stream: String,
    /// Create the stream with this many shards first (if it does not exist).
    pub create_shards: Option<i32>,
    /// Records to write (duplicates and the test event come on top).
    pub count: u64,
    /// Records per second at most.
    pub rate: Option<u64>,
    /// Seed of the generator: the same seed writes the same records.
    pub seed: u64,
    /// Share of opt keywords in the mix.
    pub opt_ratio: f64,
    /// Share of opt events written a second time.
    pub duplicate_ratio: f64,
    /// Write one sink test event first.
    pub test_event: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Produced {
    /// Records accepted by Kinesis.
    pub sent: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Records written per kind.
    pub written: BTreeMap<&'static str, u64>,
}

/// Writes the records; returns what was written, per kind.
pub async fn produce(aws: &AwsSettings, args: &ProduceSettings) -> Result<Produced, AppError> {
    let client = &super::aws::kinesis_client(aws, false).await?;
    if let Some(shards) = args.create_shards {
        create_stream(client, &args.stream, shards).await?;
    }
    let mut synth = Synth::new(MixOptions {
        seed: args.seed,
        opt_ratio: args.opt_ratio,
        ..MixOptions::default()
    });
    let mut dup_rng = fastrand::Rng::with_seed(args.seed ^ 0x5eed);
    let mut written: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut pending: Vec<Vec<u8>> = Vec::with_capacity(PUT_BATCH);
    if args.test_event {
        pending.push(synth.test_event());
        *written.entry(Kind::TestEvent.as_str()).or_default() += 1;
    }
    let started = Instant::now();
    let mut sent = 0u64;
    let chunk = args
        .rate
        .map_or(PUT_BATCH, |r| (r as usize).clamp(1, PUT_BATCH));
    for _ in 0..args.count {
        let (kind, bytes) = synth.next_record();
        *written.entry(kind.as_str()).or_default() += 1;
        if kind == Kind::OptKeyword && dup_rng.f64() < args.duplicate_ratio {
            pending.push(bytes.clone());
            *written.entry("duplicate (resent opt event)").or_default() += 1;
        }
        pending.push(bytes);
        if pending.len() >= chunk {
            sent += put(client, &args.stream, std::mem::take(&mut pending)).await?;
            pace(args.rate, sent, started).await;
        }
    }
    if !pending.is_empty() {
        sent += put(client, &args.stream, pending).await?;
    }
    Ok(Produced {
        sent,
        elapsed: started.elapsed(),
        written,
    })
}

async fn pace(rate: Option<u64>, sent: u64, started: Instant) {
    if let Some(rate) = rate {
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// PutRecords with retries of the entries that failed (throttled shards); returns how many
/// records landed.
async fn put(client: &Client, stream: &str, records: Vec<Vec<u8>>) -> Result<u64, AppError> {
    let mut entries: Vec<PutRecordsRequestEntry> = records
        .into_iter()
        .map(|data| {
            let key = format!("{:032x}", fastrand::u128(..));
            PutRecordsRequestEntry::builder()
                .data(Blob::new(data))
                .partition_key(key)
                .build()
                .expect("data and partition key are set")
        })
        .collect();
    let total = entries.len() as u64;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    while !entries.is_empty() {
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries.clone()))
            .send()
            .await
            .map_err(|e| put_error(stream, e))?;
        if out.failed_record_count().unwrap_or(0) == 0 {
            break;
        }
        entries = entries
            .into_iter()
            .zip(out.records())
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(e, _)| e)
            .collect();
        warn!(
            failed = entries.len(),
            "Some records were not accepted; retrying them."
        );
        tokio::time::sleep(backoff.next_delay()).await;
    }
    Ok(total)
}

fn put_error<E: std::error::Error + Send + Sync + 'static>(stream: &str, e: E) -> AppError {
    let message = aws_message(&e);
    if message.contains("ResourceNotFound") {
        return AppError::Usage(format!(
            "stream `{stream}` not found: create it, or pass --create --shards N"
        ));
    }
    AppError::Aws(format!("PutRecords to `{stream}` failed: {message}"))
}

/// Creates the stream unless it exists, then waits for ACTIVE.
async fn create_stream(client: &Client, stream: &str, shards: i32) -> Result<(), AppError> {
    let created = client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await;
    if let Err(e) = created {
        let message = aws_message(&e);
        if !message.contains("ResourceInUse") {
            return Err(AppError::Aws(format!(
                "creating stream `{stream}` failed: {message}"
            )));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| AppError::Aws(format!("describing `{stream}`: {}", aws_message(&e))))?;
        let status = summary
            .stream_description_summary()
            .map(|d| d.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(AppError::Aws(format!(
                "stream `{stream}` not active after 120 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
