//! The store on both backends (SQLite in a temporary file, PostgreSQL in a fresh database per
//! test), one module per guarantee:
//! - `semantics`: identity, status order, dead letters, test events, checkpoints, fencing;
//! - `guarantees`: atomicity under a failing write, order independence as a property;
//! - `checkpoints`: the checkpoint write as a compare-and-set, refused batches apply nothing;
//! - `paths`: one event per message across paths (Kinesis, webhooks, replay), as a property;
//! - `leases`: who holds which shard, expiry by the database clock, fencing tokens;
//! - `queries`: keyset pages under writes, point in time, history, the per-number lookup;
//! - `revocation_scope`: `--revocation-scope account|all` in every status query, as a property;
//! - `plans`: PostgreSQL walks the indexes a page needs (counted in its statistics);
//! - `migrations`: upgrades of databases holding rows;
//! - `feed_mode`: the change feed and the outbox under `--revocation-scope account|all`, and
//!   their resync after a switch of mode;
//! - `outbox`: the change feed exactly once, the outbox's claims and settlements, long-polls;
//! - `migrations_all`: every released schema version, with a row in every table, upgraded in
//!   one transaction (a failure leaves the old schema), on both backends;
//! - `access`: read-only queries, file modes, the runner lock, connection errors;
//! - `tls`: TLS to PostgreSQL and the store's secrets;
//! - `sqlite_file`: the SQLite file deleted or replaced under the store, hard links, modes,
//!   the write-ahead log under readers.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod access;
mod checkpoints;
mod feed_mode;
mod guarantees;
mod leases;
mod migrations;
mod migrations_all;
mod outbox;
mod paths;
mod plans;
mod queries;
mod revocation_scope;
mod semantics;
mod sqlite_file;
mod tls;
