//! The backfill path behind `optout replay`: archived CloudEvents, one JSON per line, loaded
//! with the consumer's semantics at the speed of the decoder rather than of the transactions.
//!
//! Three stages overlap, so the slowest one sets the pace instead of their sum:
//! - a blocking thread reads the file (inflating gzip on the way) in large blocks and splits
//!   them into lines in place: no allocation per line, only one per block;
//! - the same thread decodes each block into a [`Batch`] while the previous one commits;
//! - the async side commits each block as one transaction (megabytes, not a thousand lines:
//!   the per-transaction `fsync`s and the round trips to SQLite's worker thread were what held
//!   the old path back).
//!
//! A block the database refuses for its data goes through [`commit_records`], which bisects
//! and dead-letters exactly as the consumer does; dedup by identity is the store's, as always.

use std::io::{self, Read};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::DecodeOptions;
use crate::pipeline::{
    Committed, DecodeCounts, RawRecord, RecordFormat, Target, commit_records, decode_into,
};
use crate::store::{Batch, CommitSummary, FailureKind, Store, StoreError};

/// Bytes of lines per transaction. Large enough that commits are rare (a 16 MiB block of the
/// Twilio mix is about 20,000 records), small enough that two blocks in flight stay modest.
pub const BLOCK_BYTES: usize = 16 << 20;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be read or inflated.
    #[error("reading {label}: {source}")]
    Read { label: String, source: io::Error },
    /// The store failed in a way no isolation helps with.
    #[error("storing {label}: {source}")]
    Store { label: String, source: StoreError },
}

/// One block of whole lines, owning its bytes; lines are ranges into it.
#[derive(Default)]
pub struct Block {
    bytes: Vec<u8>,
    /// `(start, end)` of each non-blank line in `bytes`, without its line ending.
    lines: Vec<(usize, usize)>,
    /// Every line's number, as text, one after the other (sequence numbers borrow from it).
    numbers: String,
    /// The end of each line's number in `numbers`.
    number_ends: Vec<usize>,
}

impl Block {
    /// Non-blank lines in the block.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the block holds no line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The block's lines as records: the line's number is its sequence number.
    pub fn records(&self) -> Vec<RawRecord<'_>> {
        let mut start = 0;
        self.lines
            .iter()
            .zip(&self.number_ends)
            .map(|(&(lo, hi), &end)| {
                let seq = &self.numbers[start..end];
                start = end;
                RawRecord {
                    sequence_number: seq,
                    partition_key: None,
                    data: &self.bytes[lo..hi],
                    format: RecordFormat::CloudEvent,
                }
            })
            .collect()
    }
}

/// Splits an input into [`Block`]s of whole lines, numbering lines from 1 (blank ones count).
pub struct LineBlocks<R> {
    src: R,
    block_bytes: usize,
    /// The start of a line that did not end in the previous block.
    carry: Vec<u8>,
    line_no: u64,
    eof: bool,
}

impl<R: Read> LineBlocks<R> {
    /// Blocks of about `block_bytes` (a longer line makes a longer block).
    pub fn new(src: R, block_bytes: usize) -> Self {
        LineBlocks {
            src,
            block_bytes: block_bytes.max(1),
            carry: Vec::new(),
            line_no: 0,
            eof: false,
        }
    }

    /// The next block with at least one line (blank lines are skipped), `None` at the end.
    pub fn next_block(&mut self) -> io::Result<Option<Block>> {
        loop {
            if self.eof && self.carry.is_empty() {
                return Ok(None);
            }
            let block = self.fill()?;
            if !block.is_empty() {
                return Ok(Some(block));
            }
        }
    }

    fn fill(&mut self) -> io::Result<Block> {
        let mut bytes = Vec::with_capacity(self.block_bytes + self.block_bytes / 8);
        bytes.append(&mut self.carry);
        // Read until the block is full and holds a line end (or the input ends).
        let mut scanned = 0;
        let split = loop {
            if !self.eof && bytes.len() < self.block_bytes {
                let want = (self.block_bytes - bytes.len()) as u64;
                if (&mut self.src).take(want).read_to_end(&mut bytes)? == 0 {
                    self.eof = true;
                }
                continue;
            }
            if self.eof {
                break bytes.len();
            }
            if let Some(i) = memchr::memrchr(b'\n', &bytes[scanned..]) {
                break scanned + i + 1;
            }
            // One line longer than the block: keep reading until it ends.
            scanned = bytes.len();
            let want = self.block_bytes as u64;
            if (&mut self.src).take(want).read_to_end(&mut bytes)? == 0 {
                self.eof = true;
            }
        };
        self.carry = bytes[split..].to_vec();
        bytes.truncate(split);
        Ok(self.split_lines(bytes))
    }

    fn split_lines(&mut self, bytes: Vec<u8>) -> Block {
        use std::fmt::Write as _;
        let mut block = Block {
            lines: Vec::with_capacity(bytes.len() / 512 + 1),
            number_ends: Vec::with_capacity(bytes.len() / 512 + 1),
            ..Block::default()
        };
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', &bytes).chain(
            // A last line without a line ending.
            (bytes.last().is_some_and(|&b| b != b'\n')).then_some(bytes.len()),
        );
        for end in ends {
            self.line_no += 1;
            let mut hi = end;
            while hi > start && matches!(bytes[hi - 1], b'\r' | b'\n') {
                hi -= 1;
            }
            let line = &bytes[start..hi];
            let lo = start;
            start = end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            block.lines.push((lo, hi));
            let _ = write!(block.numbers, "{}", self.line_no);
            block.number_ends.push(block.numbers.len());
        }
        block.bytes = bytes;
        block
    }
}

/// Opens an input that may be gzip (recognised by its magic bytes, whatever its name):
/// `MultiGzDecoder` because Firehose and `cat a.gz b.gz` both produce several gzip members.
pub fn maybe_gzip(mut src: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match src.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let gzip = head[..got] == [0x1f, 0x8b];
    let whole = io::Cursor::new(head[..got].to_vec()).chain(src);
    if gzip {
        let buffered = io::BufReader::with_capacity(1 << 20, whole);
        return Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)));
    }
    Ok(Box::new(whole))
}

/// What one decoded block carries to the committing side.
struct Decoded {
    block: Block,
    batch: Batch,
    counts: DecodeCounts,
}

/// Replays one input into `store` under `target`. Reading and decoding run on a blocking
/// thread, one block ahead of the commits.
pub async fn replay_input(
    store: Arc<dyn Store>,
    target: Target,
    label: String,
    input: Box<dyn Read + Send>,
    options: DecodeOptions,
    block_bytes: usize,
) -> Result<Committed, ReplayError> {
    // One block decoding while one commits, and one ready: memory stays at about three blocks.
    let (tx, mut rx) = mpsc::channel::<io::Result<Decoded>>(1);
    let producer_target = target.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let mut blocks = LineBlocks::new(input, block_bytes);
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
            let counts = decode_into(&mut batch, block.records(), options);
            let decoded = Decoded {
                block,
                batch,
                counts,
            };
            if tx.blocking_send(Ok(decoded)).is_err() {
                return; // the committing side stopped on an error
            }
        }
    });
    let mut done = Committed::default();
    let store_err = |source| ReplayError::Store {
        label: label.clone(),
        source,
    };
    while let Some(next) = rx.recv().await {
        let d = next.map_err(|source| ReplayError::Read {
            label: label.clone(),
            source,
        })?;
        done.commits += 1;
        match store.commit(&d.batch).await {
            Ok(summary) => add(&mut done, &d.batch, d.counts, summary),
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
    }
    drop(rx);
    let _ = producer.await;
    Ok(done)
}

fn add(done: &mut Committed, batch: &Batch, counts: DecodeCounts, summary: CommitSummary) {
    counts.emit();
    crate::pipeline::report(batch, &summary);
    done.counts += counts;
    done.summary += summary;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], block_bytes: usize) -> Vec<Vec<(String, String)>> {
        let mut blocks = LineBlocks::new(input, block_bytes);
        let mut out = Vec::new();
        while let Some(b) = blocks.next_block().unwrap() {
            out.push(
                b.records()
                    .iter()
                    .map(|r| {
                        (
                            r.sequence_number.to_string(),
                            String::from_utf8(r.data.to_vec()).unwrap(),
                        )
                    })
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn lines_are_numbered_across_blocks_and_blank_ones_skipped() {
        let input = b"a\r\n\n  \nbbbb\nccccccccccccc\nd";
        let all: Vec<_> = lines(input, 4).into_iter().flatten().collect();
        let want = [
            ("1", "a"),
            ("4", "bbbb"),
            ("5", "ccccccccccccc"),
            ("6", "d"),
        ];
        assert_eq!(
            all,
            want.map(|(n, l)| (n.to_string(), l.to_string())).to_vec()
        );
        // One block when it fits.
        assert_eq!(lines(input, 1 << 20).len(), 1);
        assert!(lines(b"", 4).is_empty());
        assert!(lines(b"\n\n", 4).is_empty());
    }

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
        let block = LineBlocks::new(&file[..], file.len() + 1)
            .next_block()
            .unwrap()
            .unwrap();
        let want = decode_into(&mut reference, block.records(), DecodeOptions::default());
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
        )
        .await
        .unwrap();
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
        )
        .await
        .unwrap();
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
