//! `optout produce`: write a realistic synthetic Twilio mix to a stream.
//!
//! For demos, load tests and the quick start: mostly delivery receipts and ordinary messages,
//! a few opt keywords (mixed case, `data` sometimes a JSON string), optionally a sink test
//! event and re-sent duplicates (Twilio delivers at least once).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use clap::Args;
use tracing::warn;

use super::{Cli, CliError, kinesis_client};
use crate::kinesis::Backoff;
use crate::synth::{Kind, MixOptions, Synth};

/// Records per PutRecords call (the AWS maximum is 500).
const PUT_BATCH: usize = 500;

/// `optout produce` flags.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Stream to write to.
    #[arg(long, env = "OPTOUT_STREAM")]
    pub stream: String,
    /// Create the stream first (if it does not exist) and wait until it is active.
    #[arg(long)]
    pub create: bool,
    /// Shards of the stream created by --create.
    #[arg(long, default_value_t = 4, requires = "create", value_parser = clap::value_parser!(i32).range(1..=500))]
    pub shards: i32,
    /// Records to write.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Records per second at most (default: as fast as the stream takes them).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Seed of the generator: the same seed writes the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of opt keywords (STOP/START/HELP…) in the mix, 0 to 1.
    #[arg(long, default_value_t = 0.02, value_parser = parse_ratio)]
    pub opt_ratio: f64,
    /// Share of opt events written a second time (at-least-once delivery), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    pub duplicate_ratio: f64,
    /// Also write one sink test event (as Twilio does when you test the sink) first.
    #[arg(long)]
    pub test_event: bool,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a ratio between 0 and 1")),
    }
}

/// Writes the records and prints a per-kind summary.
pub async fn produce(cli: &Cli, args: &ProduceArgs) -> Result<(), CliError> {
    let client = kinesis_client(cli, false).await?;
    if args.create {
        create_stream(&client, &args.stream, args.shards).await?;
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
            sent += put(&client, &args.stream, std::mem::take(&mut pending)).await?;
            pace(args.rate, sent, started).await;
        }
    }
    if !pending.is_empty() {
        sent += put(&client, &args.stream, pending).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {sent} records to stream `{}` in {secs:.1}s:",
        args.stream
    );
    for (kind, n) in &written {
        println!("  {kind:<30} {n:>8}");
    }
    Ok(())
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
async fn put(client: &Client, stream: &str, records: Vec<Vec<u8>>) -> Result<u64, CliError> {
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

fn put_error<E: std::error::Error + Send + Sync + 'static>(stream: &str, e: E) -> CliError {
    let message = crate::kinesis::aws_message(&e);
    if message.contains("ResourceNotFound") {
        return CliError::Usage(format!(
            "stream `{stream}` not found: create it, or pass --create --shards N"
        ));
    }
    CliError::Runtime(anyhow::anyhow!(
        "PutRecords to `{stream}` failed: {message}"
    ))
}

/// Creates the stream unless it exists, then waits for ACTIVE.
async fn create_stream(client: &Client, stream: &str, shards: i32) -> Result<(), CliError> {
    let created = client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await;
    if let Err(e) = created {
        let message = crate::kinesis::aws_message(&e);
        if !message.contains("ResourceInUse") {
            return Err(CliError::Runtime(anyhow::anyhow!(
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
            .map_err(|e| {
                CliError::Runtime(anyhow::anyhow!(
                    "describing `{stream}`: {}",
                    crate::kinesis::aws_message(&e)
                ))
            })?;
        let status = summary
            .stream_description_summary()
            .map(|d| d.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::Runtime(anyhow::anyhow!(
                "stream `{stream}` not active after 120 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
