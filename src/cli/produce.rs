//! `optout produce`: write a realistic synthetic Twilio mix to a stream (the work is in
//! `app::produce`).
//!
//! For demos, load tests and the quick start: mostly delivery receipts and ordinary messages,
//! a few opt keywords (mixed case, `data` sometimes a JSON string), optionally a sink test
//! event and re-sent duplicates (Twilio delivers at least once).

use clap::Args;

use super::{Cli, CliError};
use crate::app::{self, ProduceSettings};

/// `optout produce` flags.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Stream to write to.
    #[arg(long, env = "OPTOUT_STREAM")]
    pub stream: String,
    /// Create the stream first (if it does not exist) and wait until it is active.
    #[arg(long)]
    pub create: bool,
    /// Shards of the stream created by --create.
    #[arg(long, default_value_t = 4, requires = "create", value_parser = clap::value_parser!(i32).range(1..=500))]
    pub shards: i32,
    /// Records to write.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Records per second at most (default: as fast as the stream takes them).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Seed of the generator: the same seed writes the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of opt keywords (STOP/START/HELP…) in the mix, 0 to 1.
    #[arg(long, default_value_t = 0.02, value_parser = parse_ratio)]
    pub opt_ratio: f64,
    /// Share of opt events written a second time (at-least-once delivery), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    pub duplicate_ratio: f64,
    /// Also write one sink test event (as Twilio does when you test the sink) first.
    #[arg(long)]
    pub test_event: bool,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a ratio between 0 and 1")),
    }
}

/// Writes the records and prints a per-kind summary.
pub async fn produce(cli: &Cli, args: &ProduceArgs) -> Result<(), CliError> {
    let settings = ProduceSettings {
        stream: args.stream.clone(),
        create_shards: args.create.then_some(args.shards),
        count: args.count,
        rate: args.rate,
        seed: args.seed,
        opt_ratio: args.opt_ratio,
        duplicate_ratio: args.duplicate_ratio,
        test_event: args.test_event,
    };
    let done = app::produce(&cli.aws(), &settings).await?;
    println!(
        "wrote {} records to stream `{}` in {:.1}s:",
        done.sent,
        args.stream,
        done.elapsed.as_secs_f64()
    );
    for (kind, n) in &done.written {
        println!("  {kind:<30} {n:>8}");
    }
    Ok(())
}
