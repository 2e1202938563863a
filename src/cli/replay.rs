//! `optout replay`: load archived CloudEvents (one JSON per line) with the consumer's semantics.
//!
//! For backfills, e.g. from a Firehose-to-S3 archive of the same stream. Each file becomes a
//! pseudo-shard named after it and the run (`FILE@RUN-TIME`), and each line's number its
//! sequence number, so dead letters point at the line and no two runs share a key; opt events
//! deduplicate by id against everything already stored. Records the database refuses are
//! isolated and dead-lettered exactly as the consumer does.

use std::io::BufRead;

use clap::Args;

use super::{Cli, CliError, open_store};
use crate::event::DecodeOptions;
use crate::pipeline::{Committed, RawRecord, Target, commit_records};

/// Lines per transaction.
const CHUNK_LINES: usize = 1000;

/// `optout replay` flags.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Files with one CloudEvent JSON per line; `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Treat default opt keywords in bodies of schema versions below 5 as opt events (marked inferred).
    #[arg(long)]
    pub infer_keywords: bool,
}

/// Replays every file, then prints one summary line per file.
pub async fn replay(cli: &Cli, args: &ReplayArgs) -> Result<(), CliError> {
    let options = DecodeOptions {
        infer_keywords: args.infer_keywords,
    };
    // Check and open every input first: a typo or a directory in the third name must not
    // leave a half-done backfill.
    let mut inputs = Vec::new();
    for name in &args.files {
        inputs.push((name.as_str(), open_input(name)?));
    }
    let store = open_store(&cli.store, 2).await?;
    // Every run has its own identity: dead letters are keyed by (stream, shard, line), so two
    // runs over stdin, or over two files of the same name, must not share keys.
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ").to_string();
    for (name, mut reader) in inputs {
        let label = if name == "-" { "stdin" } else { name };
        let target = Target {
            stream: "replay".into(),
            shard_id: format!("{label}@{run_id}"),
            lease: None,
        };
        let mut done = Committed::default();
        let mut line_no = 0u64;
        loop {
            let lines = read_chunk(&mut *reader, &mut line_no)
                .map_err(|e| CliError::Runtime(anyhow::anyhow!("reading {label}: {e}")))?;
            if lines.is_empty() {
                break;
            }
            let records: Vec<RawRecord<'_>> = lines
                .iter()
                .map(|(n, l)| RawRecord {
                    sequence_number: n,
                    partition_key: None,
                    data: l,
                })
                .collect();
            let c = commit_records(&*store, &target, &records, None, options)
                .await
                .map_err(|e| CliError::Runtime(e.into()))?;
            done.counts += c.counts;
            done.summary += c.summary;
        }
        let (counts, summary) = (done.counts, done.summary);
        println!(
            "{label}: {} lines, {} opt events ({} new, {} already stored), {} test events, {} skipped, {} dead letters stored (shard_id {})",
            counts.total(),
            counts.opt_events,
            summary.opt_events_new,
            summary.opt_events_duplicate,
            counts.test_events,
            counts.skipped(),
            summary.dead_letters,
            target.shard_id,
        );
    }
    store.close().await;
    Ok(())
}

/// Opens one input: `-` for stdin, else a readable regular file or a pipe (`<(zcat …)`).
fn open_input(name: &str) -> Result<Box<dyn BufRead + Send>, CliError> {
    if name == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let cannot = |e: &dyn std::fmt::Display| CliError::Usage(format!("cannot read {name}: {e}"));
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
    Ok(Box::new(std::io::BufReader::new(f)))
}

/// Reads up to [`CHUNK_LINES`] non-blank lines as `(line number, bytes without the newline)`.
fn read_chunk(
    reader: &mut dyn BufRead,
    line_no: &mut u64,
) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    while out.len() < CHUNK_LINES {
        let mut buf = Vec::new();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        *line_no += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push((line_no.to_string(), buf));
    }
    Ok(out)
}
