//! Printing a listing as its pages come (constant memory, whatever the size of the result),
//! and the time flag's parser: shared by every command that prints rows from the store.

use futures_util::StreamExt;

use super::output::{Format, Printer, TableSpec};
use super::{Cli, CliError};
use crate::app;
use crate::app::vocabulary::{Listing, RevocationScope};

/// Parses an RFC 3339 time flag (`--as-of`, `--since`, …).
pub(super) fn parse_rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e}); e.g. 2026-03-01T00:00:00Z"))
}

/// Streams every row of `listing` (up to `limit`) to stdout in `format`. A closed pipe
/// (`| head`) ends the command quietly.
pub(super) async fn print<L: Listing>(
    cli: &Cli,
    listing: L,
    limit: Option<u64>,
    format: Format,
    table: TableSpec,
) -> Result<(), CliError> {
    print_in(
        cli,
        RevocationScope::default(),
        listing,
        limit,
        format,
        table,
    )
    .await
}

/// [`print`], with status answered under `scope` (`--revocation-scope`).
pub(super) async fn print_in<L: Listing>(
    cli: &Cli,
    scope: RevocationScope,
    listing: L,
    limit: Option<u64>,
    format: Format,
    table: TableSpec,
) -> Result<(), CliError> {
    let pages = app::export(&cli.store, scope, listing, limit).await?;
    let out = std::io::BufWriter::new(std::io::stdout());
    let mut printer = Printer::new(out, format, table);
    let mut pages = Box::pin(pages);
    let result = async {
        while let Some(page) = pages.next().await {
            printer.rows(&page?)?;
        }
        printer.finish()
    }
    .await;
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(CliError::Runtime(e)),
        Ok(()) => Ok(()),
    }
}

pub(super) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|c| {
                matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}
