//! The seed corpus: every fixture plus synthetic records.

use super::*;

// ---------------------------------------------------------------------------------------------
// The corpus and the mutator.

/// Every fixture (sorted by name, so a seed replays) and synthetic records of several seeds.
pub(crate) fn corpus() -> (Vec<Vec<u8>>, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("fixture dir entry").path())
        .collect();
    paths.sort();
    let mut records: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    let fixtures = records.len();
    for seed in 1..=5 {
        let mut synth = Synth::new(MixOptions {
            seed,
            opt_ratio: 0.3,
            subscribers: 50,
        });
        records.push(synth.test_event());
        records.extend((0..60).map(|_| synth.next_record().1));
    }
    (records, fixtures)
}
