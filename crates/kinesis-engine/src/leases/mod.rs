//! Leases: which worker reads which shard, when several workers share a stream.
//!
//! One lease per shard, with an owner, an expiry and a fencing token that grows at every change
//! of owner. Workers renew what they hold, take expired or free leases up to their fair share,
//! and steal at most one lease at a time from a worker holding more than its share. The store
//! refuses a checkpoint whose token is stale, so a worker that lost a lease cannot commit.
//!
//! Three parts, one file each:
//! - [`store`]: the [`LeaseStore`] trait, the application's side (one short transaction per
//!   call, times from the database's clock);
//! - [`worker`]: this worker's leases, [`WorkerLeases`]: renewal, its fair share, giving leases
//!   back; the coordinator's side;
//! - [`balance`]: the balancing rule, a pure function.

mod balance;
mod store;
mod worker;

pub use store::{HeldLease, LeaseInfo, LeaseStore};
pub(crate) use worker::WorkerLeases;
