//! `optout replay`: load archived CloudEvents (one JSON per line) with the consumer's semantics.
//!
//! For backfills, e.g. from a Firehose-to-S3 archive of the same stream. Each file becomes a
//! pseudo-shard named after it and each line's number its sequence number, so dead letters
//! point at the line; opt events deduplicate by id against everything already stored.

use std::io::BufRead;

use clap::Args;

use super::{Cli, CliError, open_store};
use crate::event::DecodeOptions;
use crate::pipeline::{DecodeCounts, decode_into, report};
use crate::store::{Batch, CommitSummary};

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
    #[command(flatten)]
    pub revocation: super::revocations::RevocationArgs,
}

/// Replays every file, then prints one summary line per file.
pub async fn replay(cli: &Cli, args: &ReplayArgs) -> Result<(), CliError> {
    let options = DecodeOptions {
        infer_keywords: args.infer_keywords,
        revocations: args.revocation.revocations()?,
    };
    // Open every file first: a typo in the third name should not leave a half-done backfill.
    let mut inputs = Vec::new();
    for name in &args.files {
        let reader: Box<dyn BufRead + Send> = if name == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            let f = std::fs::File::open(name)
                .map_err(|e| CliError::Usage(format!("cannot read {name}: {e}")))?;
            Box::new(std::io::BufReader::new(f))
        };
        inputs.push((if name == "-" { "stdin" } else { name.as_str() }, reader));
    }
    let store = open_store(&cli.store, 2).await?;
    for (label, mut reader) in inputs {
        let mut counts = DecodeCounts::default();
        let mut summary = CommitSummary::default();
        let mut line_no = 0u64;
        loop {
            let lines = read_chunk(&mut reader, &mut line_no)
                .map_err(|e| CliError::Runtime(anyhow::anyhow!("reading {label}: {e}")))?;
            if lines.is_empty() {
                break;
            }
            let mut batch = Batch {
                stream: "replay".into(),
                shard_id: label.to_string(),
                honor_revocations: args.revocation.honor_revocations,
                ..Batch::default()
            };
            let records = lines.iter().map(|(n, l)| (n.as_str(), None, l.as_slice()));
            counts += decode_into(&mut batch, records, options);
            let s = store
                .commit(&batch)
                .await
                .map_err(|e| CliError::Runtime(e.into()))?;
            report(&batch, &s);
            summary += s;
        }
        println!(
            "{label}: {} lines, {} opt events ({} new, {} already stored), {} test events, {} skipped, {} dead letters",
            counts.total(),
            counts.opt_events,
            summary.opt_events_new,
            summary.opt_events_duplicate,
            counts.test_events,
            counts.skipped(),
            counts.dead_letters,
        );
    }
    Ok(())
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
