//! The `optout` binary: parse flags, start logging, hand over to the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = optout::cli::parse_args();
    optout::telemetry::init_logs_to(cli.log_format, optout::cli::LogWriter);
    match optout::cli::execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
