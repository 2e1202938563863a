//! A long-running, seeded, structure-aware fuzz test of the record decoder ([`classify`]).
//!
//! cargo-fuzz needs a nightly toolchain, so this is a plain test: it mutates a corpus (every
//! fixture in tests/fixtures plus a few hundred synthetic records) with byte-level and
//! JSON-aware mutations, and holds every input to these oracles, in both decoding modes:
//! - `classify` never panics (each input runs under `catch_unwind`; the first panicking input
//!   is reported in hex and base64, minimised, and fails the test);
//! - the outcome agrees with the slow `serde_json::Value` reference of tests/decode/reference.rs
//!   (dead letters by category, everything else field by field);
//! - opt events have a non-empty `event_id`, `account_sid`, `sender`, `subscriber` and scope,
//!   test events a non-empty `test_id` and `account_sid`, dead letters a known category;
//! - `infer_keywords` only turns "not an opt keyword" skips or phrase revocations into inferred
//!   keyword events (or their dead letters) and changes nothing else.
//!
//! Both modes run with revocation phrase detection on (the default). The reference matches the
//! rules without their prefilter, so any body the prefilter wrongly drops is a disagreement.
//!
//! `fuzz_smoke` runs 20,000 inputs from a fixed seed on every `cargo test`. The long run is
//! `scripts/fuzz.sh` (30 minutes by default, `FUZZ_SECONDS` to change it), or by hand:
//!
//! ```text
//! FUZZ_ITERATIONS=10000000 FUZZ_SEED=<seed> \
//!     cargo test --release --test decode -- fuzz:: --ignored --nocapture
//! ```
//!
//! `FUZZ_ITERATIONS` defaults to 10,000,000, `FUZZ_SECONDS` to no time limit, and `FUZZ_SEED`
//! (decimal or `0x` hex) to a random seed, printed at the start and the end: the same seed and
//!
//! Layout: `oracle` (what every input is checked against), `corpus` (the seeds), `mutator`
//! (the mutations and the input pool); this file runs them.

mod corpus;
mod mutator;
mod oracle;

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use base64::Engine as _;
use optout::event::{
    DecodeOptions, Detection, INBOUND_MESSAGE_TYPE, Outcome, REASSIGNED_NUMBER_TYPE, Revocations,
    Skip, TEST_EVENT_TYPE, classify,
};
use optout::synth::{MixOptions, Synth};

use mutator::*;
use oracle::*;

// ---------------------------------------------------------------------------------------------
// The run.

/// What a run saw.
struct Report {
    iterations: u64,
    seed: u64,
    elapsed: Duration,
    /// Per mode (infer off, on), per category.
    counts: [[u64; CATEGORY_NAMES.len()]; 2],
    corpus: (usize, usize),
    slowest: (Duration, usize),
}

impl Report {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        println!("fuzz_decoder summary");
        println!(
            "  iterations:   {} inputs (each classified in both modes)",
            self.iterations
        );
        println!("  seed:         {0} (FUZZ_SEED={0})", self.seed);
        println!("  elapsed:      {secs:.1} s");
        println!(
            "  rate:         {:.0} inputs/s",
            self.iterations as f64 / secs.max(1e-9)
        );
        println!(
            "  corpus:       {} fixtures + {} synthetic records",
            self.corpus.0, self.corpus.1
        );
        println!(
            "  slowest:      {:?} for one input of {} bytes (both modes, fast decoder only)",
            self.slowest.0, self.slowest.1
        );
        println!("  {:<26} {:>12} {:>12}", "outcome", "infer off", "infer on");
        for (i, name) in CATEGORY_NAMES.iter().enumerate() {
            println!(
                "  {name:<26} {:>12} {:>12}",
                self.counts[0][i], self.counts[1][i]
            );
        }
    }

    /// Categories no input reached in either mode.
    fn unreached(&self) -> Vec<&'static str> {
        CATEGORY_NAMES
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.counts[0][i] + self.counts[1][i] == 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

/// Fuzzes `iterations` inputs from `seed`, none longer than `max_input`, stopping early once
/// `budget` has passed; panics with a full report on the first failure.
fn run(
    iterations: u64,
    budget: Option<Duration>,
    seed: u64,
    max_input: usize,
    progress: bool,
) -> Report {
    install_panic_hook();
    let (corpus, fixtures) = corpus::corpus();
    let sizes = (fixtures, corpus.len() - fixtures);
    // Every corpus record must pass the oracles before it is mutated.
    for (i, record) in corpus.iter().enumerate() {
        if let Err(f) = guarded_check(record) {
            panic!(
                "corpus record {i} fails: {}\n{}",
                f.detail,
                describe_input("record", record)
            );
        }
    }
    let mut fuzzer = Fuzzer::new(seed, corpus, max_input);
    let mut counts = [[0u64; CATEGORY_NAMES.len()]; 2];
    let mut slowest = (Duration::ZERO, 0);
    let start = Instant::now();
    let mut last_progress = start;
    let mut done = iterations;
    for i in 0..iterations {
        if i % 1024 == 0 && budget.is_some_and(|b| start.elapsed() >= b) {
            done = i;
            break;
        }
        let input = fuzzer.next_input();
        match guarded_check(&input) {
            Ok(Checked { categories, fast }) => {
                counts[0][categories[0]] += 1;
                counts[1][categories[1]] += 1;
                if fast > slowest.0 {
                    slowest = (fast, input.len());
                }
                fuzzer.offer(input, categories[1]);
            }
            Err(failure) => fail(seed, i, &input, &failure),
        }
        if progress && i % 65_536 == 0 && last_progress.elapsed() >= Duration::from_secs(30) {
            last_progress = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "fuzz_decoder: {i} inputs, {secs:.0} s, {:.0} inputs/s",
                i as f64 / secs
            );
        }
    }
    Report {
        iterations: done,
        seed,
        elapsed: start.elapsed(),
        counts,
        corpus: sizes,
        slowest,
    }
}

fn fail(seed: u64, iteration: u64, input: &[u8], failure: &Failure) -> ! {
    let minimal = minimise(input, &failure.key);
    let minimal_detail = guarded_check(&minimal)
        .err()
        .map_or_else(String::new, |f| f.detail);
    panic!(
        "fuzz_decoder found a bug: {}\nseed {seed} (FUZZ_SEED={seed}), input #{iteration}\n{}\n{}\
         {}\nminimal input: {}",
        failure.key,
        failure.detail,
        describe_input("input", input),
        describe_input("minimal input", &minimal),
        minimal_detail,
    );
}

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let s = raw.trim().replace('_', "");
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={raw:?}: {e}")))
}

/// The long run: `scripts/fuzz.sh` (or `cargo test --release --test decode -- fuzz:: --ignored
/// --nocapture`). `FUZZ_SECONDS` bounds it by time as well as by `FUZZ_ITERATIONS`.
#[test]
#[ignore = "long-running; run in release with --ignored --nocapture"]
fn fuzz_decoder() {
    let iterations = env_u64("FUZZ_ITERATIONS").unwrap_or(10_000_000);
    let budget = env_u64("FUZZ_SECONDS").map(Duration::from_secs);
    let seed = env_u64("FUZZ_SEED").unwrap_or_else(|| fastrand::u64(..));
    println!(
        "fuzz_decoder: up to {iterations} inputs{} from seed {seed} (FUZZ_SEED={seed})",
        budget.map_or(String::new(), |b| format!(" or {} s", b.as_secs()))
    );
    let report = run(iterations, budget, seed, 256 << 10, true);
    report.print();
    println!("  result:       0 panics, 0 disagreements, 0 invariant violations");
    let unreached = report.unreached();
    assert!(
        report.iterations < 100_000 || unreached.is_empty(),
        "the mutations never reached {unreached:?}"
    );
}

/// A short run from a fixed seed on every `cargo test`, so the harness itself stays working.
#[test]
fn fuzz_smoke() {
    // Smaller inputs than the long run, to stay fast in debug builds.
    let report = run(20_000, None, 20_260_301, 32 << 10, false);
    report.print();
    let unreached = report.unreached();
    assert!(
        unreached.is_empty(),
        "the mutations never reached {unreached:?}"
    );
}
