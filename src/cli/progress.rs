//! Progress on a terminal for long work: `replay` (bytes and records read, records/s, ETA)
//! and `run --exit-when-idle` (how far behind the stream, how fast it catches up), drawn on
//! stderr by `indicatif` from what the application reports ([`Progress`]).
//!
//! Nothing is drawn when stderr is not a terminal or with `--quiet`. Logs keep going to
//! stderr as they are: each log line is written with the bar suspended (cleared, then drawn
//! again below it), so neither garbles the other.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::app::{NoProgress, Progress};

/// The bar on screen now, if any: log lines are written around it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn active() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether to draw: stderr is a terminal and `--quiet` was not given.
fn drawing(quiet: bool) -> bool {
    use std::io::IsTerminal;
    !quiet && std::io::stderr().is_terminal()
}

/// A new bar on stderr, made the one log lines are written around.
fn new_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.enable_steady_tick(Duration::from_millis(250));
    *active() = Some(bar.clone());
    bar
}

fn clear(bar: &ProgressBar) {
    bar.finish_and_clear();
    *active() = None;
}

/// What `optout replay` reports to: a bar on a terminal, else nothing.
pub fn for_replay(quiet: bool) -> Arc<dyn Progress> {
    if !drawing(quiet) {
        return Arc::new(NoProgress);
    }
    let bar = new_bar();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    bar.set_message("opening the inputs");
    Arc::new(ReplayBar {
        bar,
        records: AtomicU64::new(0),
        started: Instant::now(),
    })
}

/// What `optout run` reports to: a line on a terminal with `--exit-when-idle` (a catch-up
/// that ends), else nothing.
pub fn for_run(quiet: bool, exit_when_idle: bool) -> Arc<dyn Progress> {
    if !exit_when_idle || !drawing(quiet) {
        return Arc::new(NoProgress);
    }
    let bar = new_bar();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    bar.set_message("catching up: waiting for the first read");
    Arc::new(CatchUpLine {
        bar,
        last: Mutex::new(None),
    })
}

struct ReplayBar {
    bar: ProgressBar,
    records: AtomicU64,
    started: Instant,
}

impl Progress for ReplayBar {
    fn replay_started(&self, total_bytes: Option<u64>) {
        let template = match total_bytes {
            Some(total) => {
                self.bar.set_length(total);
                "{bar:30} {bytes}/{total_bytes} ({binary_bytes_per_sec}), {msg}, ETA {eta}"
            }
            // A pipe or stdin: no end to measure against.
            None => "{spinner} {bytes} ({binary_bytes_per_sec}), {msg}",
        };
        self.bar
            .set_style(ProgressStyle::with_template(template).expect("a valid template"));
        self.replay_records(0);
    }

    fn replay_bytes(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn replay_records(&self, records: u64) {
        let done = self.records.fetch_add(records, Ordering::Relaxed) + records;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "{done} records read ({:.0} records/s)",
            done as f64 / secs
        ));
    }

    fn finish(&self) {
        clear(&self.bar);
    }
}

/// The lag line: how far behind the tip, and how fast that shrinks.
struct CatchUpLine {
    bar: ProgressBar,
    /// The previous report: when, and how far behind.
    last: Mutex<Option<(Instant, u64)>>,
}

impl Progress for CatchUpLine {
    fn catch_up(&self, millis_behind: Option<u64>) {
        let Some(behind) = millis_behind else {
            return;
        };
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // Seconds of stream caught up per second of wall clock (negative: falling behind).
        let speed = last.map(|(at, before)| {
            let secs = now.duration_since(at).as_secs_f64().max(0.001);
            (before as f64 - behind as f64) / 1000.0 / secs
        });
        *last = Some((now, behind));
        let speed = speed.map_or(String::new(), |s| format!(", catching up {s:.1} s/s"));
        self.bar.set_message(format!(
            "behind the stream's tip: {:.1} s{speed}",
            behind as f64 / 1000.0
        ));
    }

    fn finish(&self) {
        clear(&self.bar);
    }
}

/// The log writer: each line goes to stderr with the active bar, if any, suspended around it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// One log line, written whole when the formatter is done with it.
pub struct LogLine(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::with_capacity(256))
    }
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        let write = || {
            let _ = std::io::stderr().lock().write_all(&line);
        };
        // Cloned out of the lock: suspend runs `write` with the bar's own lock held.
        let bar = active().clone();
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}
