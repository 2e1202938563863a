//! `optout replay`: the archive way in. Archived CloudEvents (one JSON per line, plain or
//! gzip) loaded with the consumer's semantics, several files at once.
//!
//! For backfills, e.g. from a Firehose-to-S3 archive of the same stream. Each file becomes a
//! pseudo-shard named after it and the run (`FILE@RUN-TIME`), and each line's number its
//! sequence number, so dead letters point at the line and no two runs share a key (a file
//! named twice in one run is `FILE#2@RUN-TIME` the second time); opt events deduplicate by id
//! against everything already stored. Records the database refuses are isolated and
//! dead-lettered exactly as the consumer does. Interrupted (SIGINT/SIGTERM), every file
//! commits the whole lines it has read and reports how far it got.

use std::io::Read;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::progress::{Counting, Progress};
use super::settings::DecodeSettings;
use super::{AppError, store, upkeep};
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
    /// `--revocation-scope`: how far an opt-out reaches in the changes the replay writes.
    pub revocation_scope: crate::store::RevocationScope,
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
    /// Stopped by a signal before the end of the file.
    pub interrupted: bool,
    /// The number of the last line committed (blank lines included): where a rerun of the
    /// rest would start.
    pub last_line: u64,
}

/// Replays every file (checking and opening all of them first), and reports per file, in the
/// order given: what it stored, or why it stopped (the other files go on). Once `stop` is
/// cancelled every file commits what it has read, and files not started are not read. Bytes
/// and lines read are reported to `progress` as they go.
pub async fn replay(
    settings: ReplaySettings,
    stop: CancellationToken,
    progress: Arc<dyn Progress>,
) -> Result<Vec<Result<ReplayedFile, AppError>>, AppError> {
    let options = settings.decode.options()?;
    // Check and open every input first: a typo or a directory in the third name must not
    // leave a half-done backfill.
    let mut inputs = Vec::new();
    let mut total_bytes = Some(0u64);
    for name in &settings.files {
        let (input, size) = open_input(name, &progress)?;
        total_bytes = total_bytes.zip(size).map(|(t, s)| t + s);
        inputs.push((name.as_str(), input));
    }
    progress.replay_started(total_bytes);
    let parallel = settings
        .parallel
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
        .min(inputs.len())
        .max(1);
    let store = store::open(&settings.store_url, parallel as u32 + 1).await?;
    store.set_revocation_scope(settings.revocation_scope);
    // The WAL folded back while readers page through the store, and a deleted file noticed.
    let upkeep_stop = tokio_util::sync::CancellationToken::new();
    let upkeep = upkeep::spawn(store.clone(), upkeep_stop.clone(), None);
    // Every run has its own identity: dead letters are keyed by (stream, shard, line), so two
    // runs over stdin, or over two files of the same name, must not share keys.
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ").to_string();
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for (name, input) in inputs {
        let label = if name == "-" { "stdin" } else { name }.to_string();
        // The same file twice in one run gets a key of its own, or its dead letters would be
        // taken for the first one's and not stored (the summary said 0 while the log said
        // otherwise).
        let n = seen.entry(label.clone()).or_default();
        *n += 1;
        let shard_id = match *n {
            1 => format!("{label}@{run_id}"),
            n => format!("{label}#{n}@{run_id}"),
        };
        let target = Target {
            path: IngestPath::Replay,
            stream: "replay".into(),
            shard_id,
            lease: None,
            honor_revocations: settings.decode.honor_revocations,
            max_record_bytes: settings.decode.max_record_bytes,
        };
        let (store, slots, stop) = (store.clone(), slots.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let shard_id = target.shard_id.clone();
            let done = replay_input(
                store,
                target,
                label.clone(),
                input,
                options,
                BLOCK_BYTES,
                stop,
            )
            .await;
            done.map(|r| ReplayedFile {
                label,
                shard_id,
                lines: r.done.counts.total(),
                opt_events: r.done.counts.opt_events,
                opt_events_new: r.done.summary.opt_events_new,
                opt_events_duplicate: r.done.summary.opt_events_duplicate,
                test_events: r.done.counts.test_events,
                skipped: r.done.counts.skipped(),
                dead_letters: r.done.summary.dead_letters,
                interrupted: r.interrupted,
                last_line: r.last_line,
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
    progress.finish();
    upkeep_stop.cancel();
    let lost_store = upkeep.await.ok().flatten();
    store.close().await;
    if let Some(e) = lost_store {
        return Err(AppError::Store(e));
    }
    Ok(replayed)
}

/// Opens one input: `-` for stdin, else a readable regular file or a pipe (`<(zcat …)`);
/// gzip is inflated on the way. Its size if it is a regular file; bytes read (as stored) and
/// lines (inflated) are reported to `progress`.
fn open_input(
    name: &str,
    progress: &Arc<dyn Progress>,
) -> Result<(Box<dyn Read + Send>, Option<u64>), AppError> {
    let cannot = |e: &dyn std::fmt::Display| AppError::Usage(format!("cannot read {name}: {e}"));
    let counted = |raw: Box<dyn Read + Send>| -> Result<Box<dyn Read + Send>, AppError> {
        let raw = Counting {
            inner: raw,
            progress: progress.clone(),
            lines: false,
        };
        let inflated = maybe_gzip(Box::new(raw)).map_err(|e| cannot(&e))?;
        Ok(Box::new(Counting {
            inner: inflated,
            progress: progress.clone(),
            lines: true,
        }))
    };
    if name == "-" {
        return Ok((counted(Box::new(std::io::stdin()))?, None));
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
    Ok((counted(Box::new(f))?, kind.is_file().then_some(meta.len())))
}
