//! Randomised tests that can be replayed. Each run draws a seed and prints it, or takes the one
//! in `PROPTEST_RNG_SEED` (proptest's own variable, so one setting replays proptest runs and
//! plain shuffles alike). Proptest runs also keep their failing cases under
//! `tests/proptest-regressions/`, which are tried first on the next run.

use proptest::test_runner::{Config, RngSeed};

/// The seed of `test`'s run: `PROPTEST_RNG_SEED` if set, else a fresh one; printed either way.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_RNG_SEED={v} is not a u64")),
        Err(_) => fastrand::u64(..),
    };
    eprintln!("{test}: seed {seed} (PROPTEST_RNG_SEED={seed} repeats this run)");
    seed
}

/// A proptest configuration for `test`: `cases` cases drawn from [`seed`], failures persisted
/// next to `source_file` (give `file!()`).
pub fn proptest_config(test: &str, cases: u32, source_file: &'static str) -> Config {
    Config {
        cases,
        source_file: Some(source_file),
        rng_seed: RngSeed::Fixed(seed(test)),
        ..Config::default()
    }
}
