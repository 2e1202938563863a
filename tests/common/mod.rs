//! The one tree of integration-test helpers, declared by each test as `#[macro_use] mod common;`:
//!
//! - [`emulator`]: a Kinesis emulator per test (ferrokinesis in process, or kinesis-local) and
//!   the stream helpers (create, put, split, merge, read back, poll);
//! - [`db`]: a database of its own per test, on SQLite or PostgreSQL, and `both_backends!`;
//! - [`optout`]: the `optout` binary (one-shot runs, background workers, queries) and the
//!   structured state tests wait on (JSON log fields, `/metrics`, checkpoints, lineage);
//! - [`commits`]: what an in-process engine test's processor committed;
//! - [`events`]: store-level opt events and batches (`ts`, `opt_event`, `batch`);
//! - [`records`]: Twilio-shaped records (an [`records::Inbound`] builder, fixtures, filler, the
//!   steady opt-event stream whose final tables are known);
//! - [`proxy`] and [`aws_faults`]: the TCP fault proxy and the AWS-error-injecting HTTP proxy;
//! - [`twilio`]: Twilio's side of the webhooks: requests built as Twilio sends them and signed
//!   by Twilio's own helper library, and a plain HTTP client;
//! - [`webhooks`]: the webhook tests' messages, and the webhook way in served in process.
//!
//! Every test binary compiles the whole tree and uses part of it.
#![allow(dead_code, unused_imports, unused_macros)]

#[macro_use]
pub mod db;
pub mod aws_faults;
pub mod commits;
pub mod emulator;
pub mod events;
pub mod optout;
pub mod proxy;
pub mod records;
pub mod twilio;
pub mod webhooks;
