//! The backfill path behind `optout replay`: archived CloudEvents, one JSON per line, loaded
//! with the consumer's semantics at the speed of the decoder rather than of the transactions.
//!
//! Three stages overlap, so the slowest one sets the pace instead of their sum:
//! - a thread reads the input (inflating gzip on the way) in chunks ([`source`]);
//! - a blocking thread splits them into blocks of whole lines ([`lines`]: oversized lines cut
//!   to their head as they stream by) and decodes each block into a [`Batch`] while the
//!   previous one commits;
//! - the async side commits each block as one transaction (megabytes, not a thousand lines:
//!   the per-transaction `fsync`s and the round trips to SQLite's worker thread were what held
//!   the old path back).
//!
//! A block is handed on when it is full (16 MiB), when its first line has waited a second
//! (pipes and stdin commit as they trickle), at the end of the input, or when the replay is
//! interrupted (SIGINT/SIGTERM: the whole lines read so far are committed, then it stops).
//!
//! A block the database refuses for its data goes through [`commit_records`], which bisects
//! and dead-letters exactly as the consumer does; dedup by event id is the store's, as always.

mod lines;
mod source;

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use lines::{Block, LineBlocks};
pub use source::maybe_gzip;

use crate::event::DecodeOptions;
use crate::pipeline::{Committed, DecodeCounts, Target, commit_records, decode_limited};
use crate::store::{Batch, CommitSummary, FailureKind, Store, StoreError};

/// Bytes of lines per transaction. Large enough that commits are rare (a 16 MiB block of the
/// Twilio mix is about 20,000 records), small enough that two blocks in flight stay modest.
pub const BLOCK_BYTES: usize = 16 << 20;
/// A block waits at most this long for more lines before it is committed.
pub const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be read or inflated (a gzip cut short, say). The whole lines read
    /// before the failure are stored, the line it cut is not: a rerun of the repaired file
    /// stores the rest (what is stored is skipped by identity).
    #[error(
        "reading {label}: {source}{hint}; {kept}",
        hint = if source.kind() == io::ErrorKind::UnexpectedEof { " (the input ends in the middle: a truncated gzip?)" } else { "" },
        kept = match last_line { 0 => "nothing of it is stored".to_string(), n => format!("lines 1 to {n} are stored, the rest is not") }
    )]
    Read {
        label: String,
        source: io::Error,
        /// The last line committed.
        last_line: u64,
    },
    /// The store failed in a way no isolation helps with.
    #[error("storing {label}: {source}")]
    Store { label: String, source: StoreError },
}

/// What [`replay_input`] stored, and how far it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// What the commits stored.
    pub done: Committed,
    /// Stopped by `stop` before the end of the input.
    pub interrupted: bool,
    /// The number of the last line committed (blank lines included).
    pub last_line: u64,
}

/// What one decoded block carries to the committing side.
struct Decoded {
    block: Block,
    batch: Batch,
    counts: DecodeCounts,
    /// The number of the block's last line.
    last_line: u64,
}

/// Replays one input into `store` under `target`, until its end or until `stop`. Reading
/// and decoding run on threads of their own, one block ahead of the commits.
pub async fn replay_input(
    store: Arc<dyn Store>,
    target: Target,
    label: String,
    input: Box<dyn Read + Send>,
    options: DecodeOptions,
    block_bytes: usize,
    stop: CancellationToken,
) -> Result<Replayed, ReplayError> {
    // One block decoding while one commits, and one ready: memory stays at about three blocks.
    let (tx, mut rx) = mpsc::channel::<io::Result<Decoded>>(1);
    let producer_target = target.clone();
    let max_record = target.max_record_bytes;
    let producer_stop = stop.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let mut blocks = LineBlocks::new(input, block_bytes, max_record)
            .flush_every(FLUSH_AFTER)
            .stop_when(producer_stop);
        loop {
            let block = match blocks.next_block() {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            let mut batch = Batch {
                path: producer_target.path,
                stream: producer_target.stream.clone(),
                shard_id: producer_target.shard_id.clone(),
                honor_revocations: producer_target.honor_revocations,
                ..Batch::default()
            };
            let counts = decode_limited(&mut batch, block.records(), options, max_record);
            let decoded = Decoded {
                last_line: blocks.last_line(),
                block,
                batch,
                counts,
            };
            if tx.blocking_send(Ok(decoded)).is_err() {
                return; // the committing side stopped on an error
            }
        }
    });
    let mut out = Replayed::default();
    let store_err = |source| ReplayError::Store {
        label: label.clone(),
        source,
    };
    // Every block decoded is committed, also after `stop`: the splitter ends at the next
    // block boundary, so this drains what is in hand and then the channel closes.
    while let Some(next) = rx.recv().await {
        let d = next.map_err(|source| ReplayError::Read {
            label: label.clone(),
            source,
            last_line: out.last_line,
        })?;
        let done = &mut out.done;
        done.commits += 1;
        match store.commit(&d.batch).await {
            Ok(summary) => add(done, &d.batch, d.counts, summary),
            Err(e) if e.kind() == FailureKind::Data => {
                // Same isolation as the consumer: bisect, dead-letter what the database refuses.
                let records = d.block.records();
                let c = commit_records(&*store, &target, &records, None, options)
                    .await
                    .map_err(store_err)?;
                done.counts += c.counts;
                done.summary += c.summary;
                done.unstorable += c.unstorable;
                done.commits += c.commits;
            }
            Err(e) => return Err(store_err(e)),
        }
        out.last_line = d.last_line;
    }
    drop(rx);
    let _ = producer.await;
    out.interrupted = stop.is_cancelled();
    Ok(out)
}

fn add(done: &mut Committed, batch: &Batch, counts: DecodeCounts, summary: CommitSummary) {
    crate::pipeline::report(batch, &counts, &summary);
    done.counts += counts;
    done.summary += summary;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_and_gzip_store_what_one_decode_of_the_whole_file_finds() {
        use crate::synth::{MixOptions, Synth};
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut synth = Synth::new(MixOptions::default());
        let mut file = Vec::new();
        for i in 0..3000 {
            file.extend(synth.next_record().1);
            file.extend(if i % 500 == 0 {
                &b"\nnot json\n"[..]
            } else {
                b"\n"
            });
        }
        let mut reference = Batch::default();
        let block = LineBlocks::new(
            Box::new(io::Cursor::new(file.clone())),
            file.len() + 1,
            1 << 20,
        )
        .next_block()
        .unwrap()
        .unwrap();
        let want =
            crate::pipeline::decode_into(&mut reference, block.records(), DecodeOptions::default());
        assert_eq!(want.dead_letters, 6);
        assert!(want.opt_events > 0);

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = crate::store::open(&url, 2).await.unwrap();
        let target = |name: &str| Target {
            stream: "replay".into(),
            shard_id: name.into(),
            ..Target::default()
        };
        let plain = replay_input(
            store.clone(),
            target("plain"),
            "plain".into(),
            Box::new(io::Cursor::new(file.clone())),
            DecodeOptions::default(),
            64 << 10,
            CancellationToken::new(),
        )
        .await
        .unwrap()
        .done;
        assert_eq!(plain.counts, want);
        assert!(plain.commits > 10, "small blocks make many transactions");
        assert_eq!(plain.summary.opt_events_new, want.opt_events);
        assert_eq!(plain.summary.dead_letters, 6);

        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&file).unwrap();
        let input = maybe_gzip(Box::new(io::Cursor::new(gz.finish().unwrap()))).unwrap();
        let again = replay_input(
            store.clone(),
            target("gz"),
            "gz".into(),
            input,
            DecodeOptions::default(),
            BLOCK_BYTES,
            CancellationToken::new(),
        )
        .await
        .unwrap()
        .done;
        assert_eq!(again.counts, want);
        // Same events again: deduplicated by id; dead letters keyed by their own pseudo-shard.
        assert_eq!(again.summary.opt_events_new, 0);
        assert_eq!(again.summary.opt_events_duplicate, want.opt_events);
        assert_eq!(again.summary.dead_letters, 6);
        store.close().await;
    }

    #[test]
    fn gzip_is_recognised_by_its_magic_bytes() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut gz = Vec::new();
        for part in ["one\n", "two\n"] {
            // Two members, as concatenated archives have.
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part.as_bytes()).unwrap();
            gz.extend(e.finish().unwrap());
        }
        let mut out = String::new();
        maybe_gzip(Box::new(io::Cursor::new(gz)))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "one\ntwo\n");
        let mut plain = String::new();
        maybe_gzip(Box::new(io::Cursor::new(b"x".to_vec())))
            .unwrap()
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "x");
    }
}
