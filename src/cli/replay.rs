//! `optout replay`: load archived CloudEvents (one JSON per line) with the consumer's semantics
//! (the work is in `app::replay`).

use clap::Args;

use super::{Cli, CliError};
use crate::app::{self, ReplaySettings, ReplayedFile};

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
    #[command(flatten)]
    pub revocation_scope: super::RevocationScopeArg,
}

/// Replays every file, then prints one summary line per file, in the order given.
pub async fn replay(cli: &Cli, args: &ReplayArgs) -> Result<(), CliError> {
    let settings = ReplaySettings {
        store_url: cli.store.clone(),
        files: args.files.clone(),
        parallel: args.parallel.map(usize::from),
        decode: args.revocation.settings(args.infer_keywords),
        revocation_scope: args.revocation_scope.get(),
    };
    let mut failed = None;
    let mut interrupted = false;
    let progress = super::progress::for_replay(cli.quiet);
    for file in app::replay(settings, super::shutdown_on_signals(), progress).await? {
        match file {
            Ok(file) => {
                interrupted |= file.interrupted;
                print_summary(&file);
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e.into()),
        // Not all of the input is stored: a run-time stop, not a success.
        None if interrupted => Err(CliError::Runtime(anyhow::anyhow!(
            "interrupted: each file's summary says the last line committed; a rerun of the \
             same files stores the rest (events already stored are skipped by id)"
        ))),
        None => Ok(()),
    }
}

fn print_summary(f: &ReplayedFile) {
    let stopped = if f.interrupted {
        format!(" (interrupted after line {})", f.last_line)
    } else {
        String::new()
    };
    println!(
        "{}{stopped}: {} lines, {} opt events ({} new, {} already stored), {} test events, {} skipped, {} dead letters stored (shard_id {})",
        f.label,
        f.lines,
        f.opt_events,
        f.opt_events_new,
        f.opt_events_duplicate,
        f.test_events,
        f.skipped,
        f.dead_letters,
        f.shard_id,
    );
}
