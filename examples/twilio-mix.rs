//! Writes COUNT records of the synthetic Twilio mix, one CloudEvent JSON per line, to stdout:
//! the input of `scripts/bench-e2e.sh`'s replay benchmark (the shape of a Firehose archive).
//!
//!   cargo run --release --example twilio-mix -- 200000 3 > mix.jsonl

use std::io::{BufWriter, Write};

use optout::synth::{MixOptions, Synth};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut synth = Synth::new(MixOptions {
        seed,
        ..MixOptions::default()
    });
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    for _ in 0..count {
        out.write_all(&synth.next_record().1)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
