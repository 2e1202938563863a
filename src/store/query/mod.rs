//! The read side: bounded, keyset-paginated queries and streaming exports, on a pool of its
//! own.
//!
//! A [`Reader`] never shares a connection with the consumer's writes: on SQLite it holds
//! read-only connections to the same file (WAL lets them read while the writer commits), on
//! PostgreSQL a small pool of read-only sessions. So `/readyz` and a sender's lookup never wait
//! behind a commit, and a commit never waits behind an export.
//!
//! Every list is read in pages ordered by a unique key (keyset pagination): a page asks for the
//! rows whose key is greater than the last one returned, so rows written meanwhile cannot shift
//! a page boundary and no row is skipped or repeated. Exports are the same pages chained, which
//! keeps memory constant and never holds a connection (or a snapshot) for a whole export.
//!
//! Pages are bounded in bytes as well as rows. Whoever can write to the stream decides how
//! large a body or a raw record is (1 MiB by default, up to 10 MiB), so lists never carry one
//! whole: bodies and raw records are cut in the SQL itself ([`BODY_PREVIEW_CHARS`],
//! [`DATA_PREVIEW_BYTES`]) and the row says `truncated`; a page stops at [`PAGE_BYTES`] of JSON;
//! the whole value comes from a single-item fetch ([`items`]), streamed in chunks.

mod asof;
mod changes;
pub mod console;
pub mod items;
mod lists;
mod lookup;
mod lookup_wide;
mod retry;
mod revocations;
/// Shared with the change feed's commit (`store/changes/answer.rs`), which answers as reads do.
pub(in crate::store) mod scope;
mod sqlbuild;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::Stream;
use serde::Serialize;
use sqlx::AnyPool;

pub use asof::{AsOfFilter, HistoryFilter, HistoryRow};
pub use changes::{
    ChangePage, DELIVERY_STATES, Delivery, DeliveryFilter, MAX_WAIT as MAX_CHANGES_WAIT, feed_json,
};
pub use lists::{DeadLetterFilter, TestEventFilter};
pub use lookup::{LOOKUP_ROWS, Lookup, LookupFilter, LookupItem};
pub use retry::StoredDeadLetter;

use super::schema::Dialect;
use super::{Access, RevocationScope, StoreError, StoreUrl};

/// Rows per page when the caller names no limit.
pub const DEFAULT_LIMIT: u32 = 1_000;
/// The largest page a caller may ask for.
pub const MAX_LIMIT: u32 = 10_000;
/// Rows fetched per round trip by an export.
const EXPORT_PAGE: u32 = 1_000;
/// JSON bytes a page holds at most: the row that would cross it starts the next page (a page
/// always holds at least one row, and rows are bounded by the previews below). With the HTTP
/// server's in-flight bound this is what keeps the API's memory bounded whatever rows hold
/// (docs/operating.md, "Sizing").
pub const PAGE_BYTES: usize = 512 << 10;
/// Characters of a body a list carries; a longer one is cut and its row says `truncated`.
pub const BODY_PREVIEW_CHARS: u32 = 1_024;
/// Characters of a message SID a list carries (Twilio's are 34).
pub const MESSAGE_SID_PREVIEW_CHARS: u32 = 256;
/// Bytes of a dead letter's raw record a list carries.
pub const DATA_PREVIEW_BYTES: u32 = 1_024;
/// Values one list parameter (`account=AC1,AC2,…`) may hold: enough for any sender's accounts,
/// far below SQLite's 32,766 bound parameters.
pub const MAX_LIST_VALUES: usize = 100;

/// What can go wrong at the query boundary.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The caller's request cannot be answered as asked (a cursor from another list, a limit
    /// out of range); the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for QueryError {
    fn from(e: sqlx::Error) -> Self {
        QueryError::Store(e.into())
    }
}

/// One page of rows, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Which page to read: at most `limit` rows after `cursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl PageRequest {
    /// A request for `limit` rows (1 to [`MAX_LIMIT`]) after the cursor `cursor`, as a caller
    /// wrote them; a mistake is a [`QueryError::Invalid`] that says what to send instead.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, QueryError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QueryError::Invalid(format!(
                "limit: use 1 to {MAX_LIMIT} (got {limit})"
            )));
        }
        let cursor = cursor.map(Cursor::decode).transpose()?;
        Ok(PageRequest { limit, cursor })
    }
}

/// The key of the last row of a page, opaque to callers (URL-safe base64 of a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<String>);

impl Cursor {
    /// The cursor text a caller sends back.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(&self.0).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads cursor text; anything not made by [`Cursor::encode`] is refused.
    pub fn decode(text: &str) -> Result<Self, QueryError> {
        let invalid = || {
            QueryError::Invalid(
                "cursor: not a cursor from this API; send back next_cursor unchanged".into(),
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| invalid())?;
        let key: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if key.is_empty() {
            return Err(invalid());
        }
        Ok(Cursor(key))
    }

    /// The key's values, checked to have the `arity` of the list they are used on.
    fn key(&self, arity: usize) -> Result<&[String], QueryError> {
        if self.0.len() != arity {
            return Err(QueryError::Invalid(
                "cursor: it belongs to another list; send it back to the list that gave it".into(),
            ));
        }
        Ok(&self.0)
    }

    /// A cursor over `values` (a row's key, or a single item's identity).
    pub(crate) fn of(values: Vec<String>) -> Self {
        Cursor(values)
    }
}

/// Refuses text no backend can take as a parameter (PostgreSQL text refuses U+0000), so that
/// a client's mistake is a 400 naming the parameter rather than the database's error.
pub fn check_text(name: &str, value: &str) -> Result<(), QueryError> {
    if value.contains('\0') {
        return Err(QueryError::Invalid(format!(
            "{name}: holds U+0000 (%00), which no stored value contains"
        )));
    }
    Ok(())
}

/// A query that can be read a page at a time: a filter and the rows it selects.
#[async_trait]
pub trait Listing: Clone + Send + Sync + 'static {
    /// The row type (the CLI's JSON fields).
    type Row: Serialize + Send + Sync + 'static;

    /// One page of rows, in key order.
    async fn page(&self, reader: &Reader, req: &PageRequest)
    -> Result<Page<Self::Row>, QueryError>;
}

/// The query side of a store, on connections of its own.
pub struct Reader {
    pool: AnyPool,
    /// One connection of its own for [`Reader::ping`], so that `/readyz` never queues behind
    /// the API's reads (a busy pool must not fail the kubelet's 3-second probe).
    probe: AnyPool,
    /// SQLite: the file the reader opened, to notice it deleted or replaced.
    file: Option<super::sqlite_file::FileIdentity>,
    dialect: Dialect,
    /// Export pages in flight at once: one fewer than the connections, so that however many
    /// exports run, one connection stays free for `/readyz`, lookups and single pages.
    exports: Arc<tokio::sync::Semaphore>,
    /// How far an opt-out reaches in every status this reader answers (status, point in
    /// time, history, the sender's check).
    revocation_scope: RevocationScope,
    /// How often a waiting long-poll of the change feed reads again (ms).
    feed_poll_ms: std::sync::atomic::AtomicU64,
    /// Cancelled when the server shuts down: waiting long-polls answer at once.
    waits_end: tokio_util::sync::CancellationToken,
}

/// How many export pages may be read at once over `connections` connections.
fn export_slots(connections: u32) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(
        connections.saturating_sub(1).max(1) as usize,
    ))
}

impl Reader {
    /// Opens `connections` read-only connections to the store at `url`, checking that it holds
    /// this binary's schema. Never creates, migrates or writes.
    ///
    /// `sqlite::memory:` is private to its one connection, so a reader of it is a fresh,
    /// empty store (useful only in tests of the API's surface).
    pub async fn open(url: &str, connections: u32) -> Result<Self, QueryError> {
        let connections = connections.max(1);
        let (pool, probe, dialect, connections, file) = match StoreUrl::parse(url)? {
            StoreUrl::Sqlite(path) if path == ":memory:" => {
                let pool = super::sqlite::open_pool(&path, Access::ReadWrite).await?;
                (pool.clone(), pool, Dialect::Sqlite, 1, None)
            }
            StoreUrl::Sqlite(path) => {
                // Opened once as the query commands do (existence, schema, a clear error), then
                // widened to a pool of read-only connections.
                let checked = super::sqlite::open_pool(&path, Access::ReadOnly).await?;
                let file = super::sqlite_file::FileIdentity::of(&path);
                match sqlite_read_pool(&path, connections).await {
                    Ok(pool) => (pool, checked, Dialect::Sqlite, connections, file),
                    // An immutable read-only copy: the one connection that could open it.
                    Err(_) => (checked.clone(), checked, Dialect::Sqlite, 1, file),
                }
            }
            StoreUrl::Postgres(url) => (
                super::postgres::open_pool(&url, connections, Access::ReadOnly).await?,
                super::postgres::probe_pool(&url)?,
                Dialect::Postgres,
                connections,
                None,
            ),
        };
        Ok(Reader {
            pool,
            probe,
            file,
            dialect,
            exports: export_slots(connections),
            revocation_scope: RevocationScope::default(),
            feed_poll_ms: std::sync::atomic::AtomicU64::new(
                changes::POLL_INTERVAL.as_millis() as u64
            ),
            waits_end: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// This reader, answering status under `scope` (`--revocation-scope`). A read-time
    /// setting: stored events need no reprocessing, and readers in different modes may read
    /// one store side by side.
    pub fn with_revocation_scope(mut self, scope: RevocationScope) -> Self {
        self.revocation_scope = scope;
        self
    }

    /// How far an opt-out reaches in this reader's answers.
    pub fn revocation_scope(&self) -> RevocationScope {
        self.revocation_scope
    }

    /// Backend name for logs (`sqlite`, `postgres`).
    pub fn backend(&self) -> &'static str {
        self.dialect.name()
    }

    /// Cheap liveness probe (for `/readyz`), on a connection of its own: it answers however
    /// busy the API's reads are. On SQLite it also fails once the file was deleted or replaced.
    pub async fn ping(&self) -> Result<(), StoreError> {
        if let Some(file) = &self.file {
            file.check()?;
        }
        sqlx::query("SELECT 1").execute(&self.probe).await?;
        Ok(())
    }

    /// Where each shard of `stream` stands (its checkpoints) and who reads it (its leases,
    /// with the database's current time in ms since the epoch), for `optout shards`.
    pub async fn shard_states(
        &self,
        stream: &str,
    ) -> Result<(Vec<super::Checkpoint>, Vec<super::LeaseRow>, i64), QueryError> {
        let checkpoints = super::sql::checkpoint_rows(&self.pool, self.dialect, stream).await?;
        let (leases, now_ms) = super::lease::lease_rows(&self.pool, self.dialect, stream).await?;
        Ok((checkpoints, leases, now_ms))
    }

    /// Closes the read connections.
    pub async fn close(&self) {
        self.pool.close().await;
        self.probe.close().await;
    }

    /// One page of `listing`.
    pub async fn page<L: Listing>(
        &self,
        listing: &L,
        req: &PageRequest,
    ) -> Result<Page<L::Row>, QueryError> {
        listing.page(self, req).await
    }

    /// Every row of `listing`, read page by page into memory: for small results and tests;
    /// anything a user may make large goes through [`Self::export`].
    pub async fn all<L: Listing>(&self, listing: &L) -> Result<Vec<L::Row>, QueryError> {
        let mut all = Vec::new();
        let mut req = PageRequest {
            limit: MAX_LIMIT,
            cursor: None,
        };
        loop {
            let page = self.page(listing, &req).await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(next) => req.cursor = Some(Cursor::decode(&next)?),
                None => return Ok(all),
            }
        }
    }

    /// Every row of `listing` after `cursor`, up to `limit` rows if given, as a stream of
    /// pages: memory stays that of one page whatever the size of the export.
    pub fn export<L: Listing>(
        self: Arc<Self>,
        listing: L,
        cursor: Option<Cursor>,
        limit: Option<u64>,
    ) -> impl Stream<Item = Result<Vec<L::Row>, QueryError>> + Send + 'static {
        struct State<L> {
            reader: Arc<Reader>,
            listing: L,
            cursor: Option<Cursor>,
            left: Option<u64>,
            done: bool,
        }
        let state = State {
            reader: self,
            listing,
            cursor,
            left: limit,
            done: false,
        };
        futures_util::stream::try_unfold(state, |mut s| async move {
            if s.done || s.left == Some(0) {
                return Ok(None);
            }
            let limit = s
                .left
                .map_or(EXPORT_PAGE, |left| left.min(u64::from(EXPORT_PAGE)) as u32);
            let req = PageRequest {
                limit,
                cursor: s.cursor.take(),
            };
            let page = {
                let _slot =
                    s.reader.exports.acquire().await.map_err(|_| {
                        QueryError::Invalid("the store's read side is closed".into())
                    })?;
                s.listing.page(&s.reader, &req).await?
            };
            if let Some(left) = &mut s.left {
                *left -= page.items.len() as u64;
            }
            match page.next_cursor {
                Some(next) => s.cursor = Some(Cursor::decode(&next)?),
                None => s.done = true,
            }
            if page.items.is_empty() {
                return Ok(None);
            }
            Ok(Some((page.items, s)))
        })
    }
}

/// A pool of `connections` read-only connections to the SQLite file at `path`.
async fn sqlite_read_pool(path: &str, connections: u32) -> Result<AnyPool, sqlx::Error> {
    use sqlx::ConnectOptions;
    use sqlx::Executor;
    use std::str::FromStr;
    let options = sqlx::any::AnyConnectOptions::from_str(&format!("sqlite://{path}?mode=ro"))?
        .disable_statement_logging();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;")
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    // A WAL file in a directory we may not write opens but cannot be read this way.
    sqlx::query("SELECT count(*) FROM sqlite_master")
        .execute(&pool)
        .await?;
    Ok(pool)
}
