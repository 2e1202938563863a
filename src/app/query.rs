//! The query commands (`status`, `events`, `history`, `revocations`, `dead-letters`,
//! `test-events`): the store's read side, streamed a page at a time.

use futures_util::{Stream, TryStreamExt};

use super::{AppError, store};
use crate::store::RevocationScope;
use crate::store::query::Listing;

/// Every row of `listing` (up to `limit`), read from the store at `store_url` on a read-only
/// connection a page at a time, with status answered under `scope` (`--revocation-scope`):
/// memory stays that of one page however large the result, and a consumer that stops reading
/// (`| head`) stops the reads.
pub async fn export<L: Listing>(
    store_url: &str,
    scope: RevocationScope,
    listing: L,
    limit: Option<u64>,
) -> Result<impl Stream<Item = Result<Vec<L::Row>, AppError>> + Send + 'static, AppError> {
    let reader = store::open_reader(store_url, 1, scope).await?;
    Ok(reader.export(listing, None, limit).map_err(AppError::from))
}

/// The dead letter with opaque id `id` (a list's `id` field), whole: its JSON in chunks, every
/// byte of the raw record included, in constant memory; `None` if there is none.
pub async fn dead_letter(
    store_url: &str,
    id: &str,
) -> Result<Option<impl Stream<Item = Result<Vec<u8>, AppError>> + Send + 'static>, AppError> {
    let reader = store::open_reader(store_url, 1, RevocationScope::default()).await?;
    Ok(reader
        .dead_letter(id)
        .await?
        .map(|chunks| chunks.map_err(AppError::from)))
}
