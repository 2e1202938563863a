//! Splitting an input into blocks of whole lines, numbered from 1 (blank ones count), in
//! bounded memory whatever the input holds.
//!
//! A line longer than the largest record (`--max-record-bytes`) is not held: its first
//! [`OVERSIZED_HEAD_BYTES`] are kept, the rest is skipped up to the next newline as it streams
//! by, and the line becomes a dead letter saying how long it was. 1 MB of gzip that inflates
//! to one line of 1 GiB used to take 7 GB and stop the replay for good; it now costs one
//! chunk of memory and one dead letter, and the lines after it are stored.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::source::{Next, Source};
use crate::pipeline::{OVERSIZED_HEAD_BYTES, RawRecord, RecordFormat};

/// While interrupted replays wait for input, how often they look whether to stop.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// One block of whole lines, owning its bytes; lines are ranges into it.
#[derive(Default)]
pub struct Block {
    bytes: Vec<u8>,
    /// `(start, end, size)` of each non-blank line: its bytes in `bytes` (without the line
    /// ending), and its whole length (larger for an oversized line cut to its head).
    lines: Vec<(usize, usize, usize)>,
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
            .map(|(&(lo, hi, size), &end)| {
                let seq = &self.numbers[start..end];
                start = end;
                RawRecord {
                    sequence_number: seq,
                    partition_key: None,
                    data: &self.bytes[lo..hi],
                    size,
                    format: RecordFormat::CloudEvent,
                }
            })
            .collect()
    }

    /// Adds line `number`, whose bytes were just appended to `bytes` from `lo` on: all of
    /// them, or (`oversized`: its whole length) its head.
    fn push(&mut self, number: u64, lo: usize, oversized: Option<usize>) {
        use std::fmt::Write as _;
        let mut hi = self.bytes.len();
        while oversized.is_none() && hi > lo && self.bytes[hi - 1] == b'\r' {
            hi -= 1;
        }
        if oversized.is_none() && self.bytes[lo..hi].iter().all(u8::is_ascii_whitespace) {
            self.bytes.truncate(lo); // blank: numbered, not stored
            return;
        }
        self.lines.push((lo, hi, oversized.unwrap_or(hi - lo)));
        let _ = write!(self.numbers, "{number}");
        self.number_ends.push(self.numbers.len());
    }
}

/// Splits an input into [`Block`]s of whole lines.
pub struct LineBlocks {
    src: Source,
    block_bytes: usize,
    max_line: usize,
    /// The line not ended yet: its bytes (at most `max_line`), or, once it is longer, its head.
    partial: Vec<u8>,
    /// The line not ended yet is over `max_line`: its length so far.
    oversized: Option<usize>,
    line_no: u64,
    /// A block is handed on once its first line is this old (pipes, stdin).
    flush_after: Option<Duration>,
    stop: Option<CancellationToken>,
    /// A chunk read but not split yet (a block filled up part-way through it), and where.
    pending: Vec<u8>,
    pending_at: usize,
    ended: bool,
    /// The input failed (a truncated gzip, an I/O error) after the lines of the block handed
    /// on last: returned by the next call.
    failed: Option<io::Error>,
}

impl LineBlocks {
    /// Blocks of about `block_bytes` of `input`'s lines; a line over `max_line` bytes is
    /// handed on as its first bytes and its whole length (see the module).
    pub fn new(input: Box<dyn Read + Send>, block_bytes: usize, max_line: usize) -> Self {
        LineBlocks {
            src: Source::spawn(input),
            block_bytes: block_bytes.max(1),
            max_line: max_line.max(1),
            partial: Vec::new(),
            oversized: None,
            line_no: 0,
            flush_after: None,
            stop: None,
            pending: Vec::new(),
            pending_at: 0,
            ended: false,
            failed: None,
        }
    }

    /// Hands a block on once its first line has waited `after`, full or not: a pipe that
    /// trickles events commits them at that pace instead of when 16 MiB have come.
    pub fn flush_every(mut self, after: Duration) -> Self {
        self.flush_after = Some(after);
        self
    }

    /// Ends at the next block once `stop` is cancelled (within [`STOP_CHECK`] while the input
    /// is silent), handing on the whole lines read so far; a line not ended yet is dropped.
    pub fn stop_when(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The number of the last line read whole.
    pub fn last_line(&self) -> u64 {
        self.line_no
    }

    /// The next block with at least one line (blank lines are skipped), `None` at the end.
    ///
    /// When the input fails (a gzip cut short, a read error), the whole lines read before
    /// the failure are handed on first, and the error comes with the next call: what was read
    /// is kept whatever the block size or timing, and the line cut in the middle is dropped.
    pub fn next_block(&mut self) -> io::Result<Option<Block>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut block = Block {
            bytes: Vec::with_capacity(self.block_bytes.min(64 << 20) + (64 << 10)),
            ..Block::default()
        };
        let mut flush_at: Option<Instant> = None;
        if self.pending_at < self.pending.len() {
            let chunk = std::mem::take(&mut self.pending);
            self.feed(&chunk, self.pending_at, &mut block);
        }
        loop {
            if self.ended {
                return Ok((!block.is_empty()).then_some(block));
            }
            if block.bytes.len() >= self.block_bytes && !block.is_empty() {
                return Ok(Some(block));
            }
            if self
                .stop
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
            {
                self.ended = true;
                continue;
            }
            let check = self.stop.as_ref().map(|_| Instant::now() + STOP_CHECK);
            let wait = match (flush_at, check) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let next = match self.src.next(wait) {
                Ok(next) => next,
                Err(e) if block.is_empty() => return Err(e),
                Err(e) => {
                    self.failed = Some(e);
                    return Ok(Some(block));
                }
            };
            match next {
                Next::Data(chunk) => {
                    self.feed(&chunk, 0, &mut block);
                    if flush_at.is_none() && !block.is_empty() {
                        flush_at = self.flush_after.map(|after| Instant::now() + after);
                    }
                }
                Next::End => {
                    if !self.partial.is_empty() || self.oversized.is_some() {
                        self.end_line(&[], &mut block); // a last line without a line ending
                    }
                    self.ended = true;
                }
                Next::Wait => {
                    if flush_at.is_some_and(|t| t <= Instant::now()) && !block.is_empty() {
                        return Ok(Some(block));
                    }
                }
            }
        }
    }

    /// Adds the lines `chunk` ends (from `from` on) to `block` until the block is full, and
    /// keeps the rest: what follows as pending, what follows the last line ending as the start
    /// of the next line.
    fn feed(&mut self, chunk: &[u8], from: usize, block: &mut Block) {
        let mut start = from;
        for nl in memchr::memchr_iter(b'\n', &chunk[from..]) {
            let nl = from + nl;
            self.end_line(&chunk[start..nl], block);
            start = nl + 1;
            if block.bytes.len() >= self.block_bytes {
                self.pending = chunk.to_vec();
                self.pending_at = start;
                return;
            }
        }
        self.pending.clear();
        self.pending_at = 0;
        self.extend_partial(&chunk[start..]);
    }

    /// The line not ended yet gets `more`; past `max_line` only its head is kept.
    fn extend_partial(&mut self, more: &[u8]) {
        if let Some(len) = &mut self.oversized {
            *len += more.len();
            return;
        }
        let len = self.partial.len() + more.len();
        if len > self.max_line {
            let keep = OVERSIZED_HEAD_BYTES.saturating_sub(self.partial.len());
            self.partial
                .extend_from_slice(&more[..keep.min(more.len())]);
            self.partial.truncate(OVERSIZED_HEAD_BYTES);
            self.partial.shrink_to_fit();
            self.oversized = Some(len);
        } else {
            self.partial.extend_from_slice(more);
        }
    }

    /// The line not ended yet ends with `tail`: into the block, whole or as its head.
    fn end_line(&mut self, tail: &[u8], block: &mut Block) {
        self.line_no += 1;
        let lo = block.bytes.len();
        let oversized = match self.oversized.take() {
            Some(len) => {
                block.bytes.extend_from_slice(&self.partial);
                Some(len + tail.len())
            }
            None if self.partial.len() + tail.len() > self.max_line => {
                let size = self.partial.len() + tail.len();
                let keep = OVERSIZED_HEAD_BYTES.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&tail[..keep.min(tail.len())]);
                self.partial.truncate(OVERSIZED_HEAD_BYTES);
                block.bytes.extend_from_slice(&self.partial);
                Some(size)
            }
            None => {
                block.bytes.extend_from_slice(&self.partial);
                block.bytes.extend_from_slice(tail);
                None
            }
        };
        self.partial.clear();
        block.push(self.line_no, lo, oversized);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(
        input: &[u8],
        block_bytes: usize,
        max_line: usize,
    ) -> Vec<Vec<(String, String, usize)>> {
        let mut blocks = LineBlocks::new(
            Box::new(io::Cursor::new(input.to_vec())),
            block_bytes,
            max_line,
        );
        let mut out = Vec::new();
        while let Some(b) = blocks.next_block().unwrap() {
            out.push(
                b.records()
                    .iter()
                    .map(|r| {
                        (
                            r.sequence_number.to_string(),
                            String::from_utf8(r.data.to_vec()).unwrap(),
                            r.size,
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
        let all: Vec<_> = lines(input, 4, 1 << 20).into_iter().flatten().collect();
        let want = [
            ("1", "a", 1),
            ("4", "bbbb", 4),
            ("5", "ccccccccccccc", 13),
            ("6", "d", 1),
        ];
        assert_eq!(
            all,
            want.map(|(n, l, s)| (n.to_string(), l.to_string(), s))
                .to_vec()
        );
        // One block when it fits.
        assert_eq!(lines(input, 1 << 20, 1 << 20).len(), 1);
        assert!(lines(b"", 4, 1 << 20).is_empty());
        assert!(lines(b"\n\n", 4, 1 << 20).is_empty());
    }

    #[test]
    fn an_oversized_line_keeps_its_head_and_its_length_and_the_rest_go_on() {
        let long = "x".repeat(200_000);
        let input = format!("first\n{long}\nthird\n{long}");
        let all: Vec<_> = lines(input.as_bytes(), 1 << 20, 100_000)
            .into_iter()
            .flatten()
            .map(|(n, l, s)| (n, l.len(), s))
            .collect();
        let head = OVERSIZED_HEAD_BYTES;
        let want = [
            ("1", 5, 5),
            ("2", head, 200_000),
            ("3", 5, 5),
            ("4", head, 200_000),
        ];
        assert_eq!(all, want.map(|(n, l, s)| (n.to_string(), l, s)).to_vec());
    }
}
