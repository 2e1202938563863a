//! `optout replay`: the archive way in. Archived CloudEvents (one JSON per line, plain or
//! gzip) loaded with the consumer's semantics, several files at once.
//!
//! For backfills, e.g. from a Firehose-to-S3 archive of the same stream. Each file becomes a
//! pseudo-shard named after it and the run (`FILE@RUN-TIME`), and each line's number its
//! sequence number, so dead letters point at the line and no two runs share a key; opt events
//! deduplicate by id against everything already stored. Records the database refuses are
//! isolated and dead-lettered exactly as the consumer does.

use std::io::Read;
use std::sync::Arc;

use super::settings::DecodeSettings;
use super::{AppError, store};
use crate::ingest::replay::{BLOCK_BYTES, maybe_gzip, replay_input};
use crate::pipeline::Target;
use crate::store::IngestPath;

/// Everything `optout replay` needs.
#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// `--store` URL.
    pub store_url: String,
    /// Files of one CloudEvent JSON per line, plain or gzip; `-` is stdin.
    pub files: Vec<String>,
    /// Files replayed at once (default: one per CPU, at most 4).
    pub parallel: Option<usize>,
    /// How records are decoded.
    pub decode: DecodeSettings,
}

/// What one replayed file stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedFile {
    /// The file as named (`stdin` for `-`).
    pub label: String,
    /// The pseudo-shard its dead letters are keyed under (`FILE@RUN-TIME`).
    pub shard_id: String,
    /// Non-blank lines read.
    pub lines: u64,
    /// Opt events found, and of those the ones stored for the first time and the ones
    /// already stored (by identity: the message SID, else the event id).
    pub opt_events: u64,
    pub opt_events_new: u64,
    pub opt_events_duplicate: u64,
    /// Sink test events found.
    pub test_events: u64,
    /// Lines skipped (other event types, messages that are no opt keyword).
    pub skipped: u64,
    /// Dead letters stored.
    pub dead_letters: u64,
}

/// Replays every file (checking and opening all of them first), and reports per file, in the
/// order given: what it stored, or why it stopped (the other files go on).
pub async fn replay(
    settings: ReplaySettings,
) -> Result<Vec<Result<ReplayedFile, AppError>>, AppError> {
    let options = settings.decode.options()?;
    // Check and open every input first: a typo or a directory in the third name must not
    // leave a half-done backfill.
    let mut inputs = Vec::new();
    for name in &settings.files {
        inputs.push((name.as_str(), open_input(name)?));
    }
    let parallel = settings
        .parallel
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
        .min(inputs.len())
        .max(1);
    let store = store::open(&settings.store_url, parallel as u32 + 1).await?;
    // Every run has its own identity: dead letters are keyed by (stream, shard, line), so two
    // runs over stdin, or over two files of the same name, must not share keys.
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ").to_string();
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for (name, input) in inputs {
        let label = if name == "-" { "stdin" } else { name }.to_string();
        let target = Target {
            path: IngestPath::Replay,
            stream: "replay".into(),
            shard_id: format!("{label}@{run_id}"),
            lease: None,
            honor_revocations: settings.decode.honor_revocations,
        };
        let (store, slots) = (store.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let shard_id = target.shard_id.clone();
            let done =
                replay_input(store, target, label.clone(), input, options, BLOCK_BYTES).await;
            done.map(|d| ReplayedFile {
                label,
                shard_id,
                lines: d.counts.total(),
                opt_events: d.counts.opt_events,
                opt_events_new: d.summary.opt_events_new,
                opt_events_duplicate: d.summary.opt_events_duplicate,
                test_events: d.counts.test_events,
                skipped: d.counts.skipped(),
                dead_letters: d.summary.dead_letters,
            })
        }));
    }
    let mut replayed = Vec::new();
    for task in tasks {
        replayed.push(match task.await {
            Ok(done) => done.map_err(|e| AppError::Replay(e.to_string())),
            Err(e) => Err(AppError::Replay(format!("replay task failed: {e}"))),
        });
    }
    store.close().await;
    Ok(replayed)
}

/// Opens one input: `-` for stdin, else a readable regular file or a pipe (`<(zcat …)`);
/// gzip is inflated on the way.
fn open_input(name: &str) -> Result<Box<dyn Read + Send>, AppError> {
    let cannot = |e: &dyn std::fmt::Display| AppError::Usage(format!("cannot read {name}: {e}"));
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
