//! The lease store: the one trait through which the engine reads and changes leases. The
//! application implements it over its database; the engine's side is [`super::worker`].

use async_trait::async_trait;

use crate::ProcessError;

/// A lease this worker holds: the shard and the fencing token to present at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// Shard id.
    pub shard_id: String,
    /// Fencing token at the time it was taken or renewed.
    pub token: i64,
}

/// A lease as stored, for balancing (and for an application's listing of who reads what).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Shard id.
    pub shard_id: String,
    /// Current owner, if any.
    pub owner: Option<String>,
    /// Fencing token.
    pub token: i64,
    /// Expiry, milliseconds since the Unix epoch (database clock).
    pub expires_at_ms: i64,
}

/// Lease storage. Every method is one short transaction; times come from the database's clock
/// so that workers with skewed clocks agree on expiry.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Makes sure a (free) lease row exists for each shard; existing rows are left alone.
    async fn ensure_leases(&self, stream: &str, shard_ids: &[String]) -> Result<(), ProcessError>;

    /// Extends every lease `worker` still holds by `lease_ms` and returns them; a lease taken
    /// over by another worker is simply absent from the result.
    async fn renew(
        &self,
        stream: &str,
        worker: &str,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, ProcessError>;

    /// Takes up to `max` leases among `candidates` that are free or expired (their token
    /// grows), for `lease_ms`. Safe against races: two workers never both get one lease.
    async fn acquire(
        &self,
        stream: &str,
        worker: &str,
        candidates: &[String],
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<HeldLease>, ProcessError>;

    /// Takes one unexpired lease among `candidates` from `victim` (its token grows), if the
    /// victim still holds it. Returns the lease when taken.
    async fn steal(
        &self,
        stream: &str,
        worker: &str,
        victim: &str,
        shard_id: &str,
        lease_ms: i64,
    ) -> Result<Option<HeldLease>, ProcessError>;

    /// Gives up `worker`'s leases on these shards at once (graceful shutdown, finished shards),
    /// so others take over without waiting for expiry.
    async fn release(
        &self,
        stream: &str,
        worker: &str,
        shard_ids: &[String],
    ) -> Result<(), ProcessError>;

    /// Every lease of the stream, and the database's current time in ms since the epoch.
    async fn leases(&self, stream: &str) -> Result<(Vec<LeaseInfo>, i64), ProcessError>;
}
