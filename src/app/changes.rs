//! `optout changes`: the change feed read from the store, page after page, optionally
//! following it as changes commit.

use futures_util::Stream;
use tokio_util::sync::CancellationToken;

use super::{AppError, store};
use crate::store::Change;
use crate::store::query::{Cursor, MAX_CHANGES_WAIT, PageRequest};

/// How to read the feed.
#[derive(Debug, Clone, Default)]
pub struct ChangesSettings {
    pub store_url: String,
    /// Start after this cursor (a `cursor` printed by an earlier run); from the start if none.
    pub since_cursor: Option<String>,
    /// Keep reading as changes commit, until `shutdown`; otherwise stop once caught up.
    pub follow: bool,
}

/// The changes after `settings.since_cursor`, one page at a time, each with the cursor to
/// resume after it. Following, each read waits up to 25 s for a change, holding no database
/// connection meanwhile, and the stream ends at `shutdown`.
pub async fn changes(
    settings: ChangesSettings,
    shutdown: CancellationToken,
) -> Result<
    impl Stream<Item = Result<(Vec<Change>, Option<String>), AppError>> + Send + 'static,
    AppError,
> {
    let cursor = settings
        .since_cursor
        .as_deref()
        .map(Cursor::decode)
        .transpose()?;
    let reader = store::open_reader(&settings.store_url, 1).await?;
    let follow = settings.follow;
    Ok(futures_util::stream::try_unfold(
        (reader, cursor, false),
        move |(reader, cursor, done)| {
            let shutdown = shutdown.clone();
            async move {
                if done || shutdown.is_cancelled() {
                    return Ok(None);
                }
                let req = PageRequest {
                    limit: crate::store::query::DEFAULT_LIMIT,
                    cursor: cursor.clone(),
                };
                let wait = if follow {
                    MAX_CHANGES_WAIT
                } else {
                    std::time::Duration::ZERO
                };
                let page = tokio::select! {
                    page = reader.changes_wait(&req, wait) => page?,
                    () = shutdown.cancelled() => return Ok(None),
                };
                let next = page
                    .next_cursor
                    .as_deref()
                    .map(Cursor::decode)
                    .transpose()?;
                let caught_up = page.items.is_empty() && !follow;
                let item = (page.items, page.next_cursor);
                Ok::<_, AppError>(Some((item, (reader, next.or(cursor), caught_up))))
            }
        },
    ))
}
