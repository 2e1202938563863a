//! `optout replay`: load archived CloudEvents (one JSON per line) with the consumer's semantics.
//!
//! For backfills, e.g. from a Firehose-to-S3 archive of the same stream. Each file becomes a
//! pseudo-shard named after it and the run (`FILE@RUN-TIME`), and each line's number its
//! sequence number, so dead letters point at the line and no two runs share a key; opt events
//! deduplicate by id against everything already stored. Records the database refuses are
//! isolated and dead-lettered exactly as the consumer does.

use std::io::Read;
use std::sync::Arc;

use clap::Args;

use super::{Cli, CliError, open_store};
use crate::app::{BLOCK_BYTES, Committed, DecodeOptions, Target, maybe_gzip, replay_input};

/// `optout replay` flags.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Files with one CloudEvent JSON per line, plain or gzip (recognised by content); `-`
    /// reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Treat default opt keywords in bodies of schema versions below 5 as opt events (marked inferred).
    #[arg(long)]
    pub infer_keywords: bool,
    /// Files replayed at once (default: one per CPU, at most 4). Each file is read, inflated
    /// and decoded on its own thread; commits share the store.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: Option<u16>,
    #[command(flatten)]
    pub revocation: super::revocations::RevocationArgs,
}

/// Replays every file, then prints one summary line per file, in the order given.
pub async fn replay(cli: &Cli, args: &ReplayArgs) -> Result<(), CliError> {
    let options = DecodeOptions {
        infer_keywords: args.infer_keywords,
        revocations: args.revocation.revocations()?,
    };
    // Check and open every input first: a typo or a directory in the third name must not
    // leave a half-done backfill.
    let mut inputs = Vec::new();
    for name in &args.files {
        inputs.push((name.as_str(), open_input(name)?));
    }
    let parallel = match args.parallel {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
    }
    .min(inputs.len());
    let store = open_store(&cli.store, parallel as u32 + 1).await?;
    // Every run has its own identity: dead letters are keyed by (stream, shard, line), so two
    // runs over stdin, or over two files of the same name, must not share keys.
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ").to_string();
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for (name, input) in inputs {
        let label = if name == "-" { "stdin" } else { name }.to_string();
        let target = Target {
            stream: "replay".into(),
            shard_id: format!("{label}@{run_id}"),
            lease: None,
            honor_revocations: args.revocation.honor_revocations,
        };
        let (store, slots) = (store.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let shard_id = target.shard_id.clone();
            let done =
                replay_input(store, target, label.clone(), input, options, BLOCK_BYTES).await;
            (label, shard_id, done)
        }));
    }
    let mut failed = None;
    for task in tasks {
        let (label, shard_id, done) = task
            .await
            .map_err(|e| CliError::Runtime(anyhow::anyhow!("replay task failed: {e}")))?;
        match done {
            Ok(done) => print_summary(&label, &shard_id, &done),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    store.close().await;
    match failed {
        Some(e) => Err(CliError::Runtime(e.into())),
        None => Ok(()),
    }
}

fn print_summary(label: &str, shard_id: &str, done: &Committed) {
    let (counts, summary) = (done.counts, done.summary);
    println!(
        "{label}: {} lines, {} opt events ({} new, {} already stored), {} test events, {} skipped, {} dead letters stored (shard_id {shard_id})",
        counts.total(),
        counts.opt_events,
        summary.opt_events_new,
        summary.opt_events_duplicate,
        counts.test_events,
        counts.skipped(),
        summary.dead_letters,
    );
}

/// Opens one input: `-` for stdin, else a readable regular file or a pipe (`<(zcat …)`);
/// gzip is inflated on the way.
fn open_input(name: &str) -> Result<Box<dyn Read + Send>, CliError> {
    let cannot = |e: &dyn std::fmt::Display| CliError::Usage(format!("cannot read {name}: {e}"));
    if name == "-" {
        return maybe_gzip(Box::new(std::io::stdin())).map_err(|e| cannot(&e));
    }
    let meta = std::fs::metadata(name).map_err(|e| cannot(&e))?;
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if !(kind.is_file() || kind.is_fifo()) {
        let what = if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(cannot(&format!(
            "{what}; give files of one CloudEvent JSON per line"
        )));
    }
    let f = std::fs::File::open(name).map_err(|e| cannot(&e))?;
    maybe_gzip(Box::new(f)).map_err(|e| cannot(&e))
}
