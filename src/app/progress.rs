//! How far long work has got, for whoever shows it: the application reports, the CLI draws
//! (a bar on a terminal, nothing otherwise). Reporting is a few atomic adds per chunk read,
//! so it costs nothing measurable when nobody draws.

use std::io::Read;
use std::sync::Arc;

/// Where `replay` and `run --exit-when-idle` report progress. Every method has an empty
/// default: a caller that shows nothing passes [`NoProgress`].
pub trait Progress: Send + Sync + 'static {
    /// A replay starts: its inputs hold `total_bytes` (`None`: a pipe or stdin among them).
    fn replay_started(&self, _total_bytes: Option<u64>) {}
    /// `bytes` more of the inputs were read (as stored: gzip counts compressed).
    fn replay_bytes(&self, _bytes: u64) {}
    /// `records` more lines were read (inflated).
    fn replay_records(&self, _records: u64) {}
    /// The consumer is `millis` behind the stream's tip on its furthest shard (`None`: no read
    /// has said yet). Called about twice a second while it runs.
    fn catch_up(&self, _millis_behind: Option<u64>) {}
    /// The work is over: clear what was drawn.
    fn finish(&self) {}
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// A reader that reports the bytes read through it (`lines`: counts newlines as records
/// instead).
pub(super) struct Counting<R> {
    pub inner: R,
    pub progress: Arc<dyn Progress>,
    pub lines: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.lines {
            let lines = memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            if lines > 0 {
                self.progress.replay_records(lines);
            }
        } else if n > 0 {
            self.progress.replay_bytes(n as u64);
        }
        Ok(n)
    }
}
