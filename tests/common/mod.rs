//! The one tree of integration-test helpers, declared by each test as `#[macro_use] mod common;`:
//!
//! - [`emulator`]: a Kinesis emulator per test (ferrokinesis in process, or kinesis-local) and
//!   the stream helpers (create, put, split, merge, read back, poll);
//! - [`db`]: a database of its own per test, on SQLite or PostgreSQL, and `both_backends!`;
//! - [`optout`]: the `optout` binary (one-shot runs, background workers, queries) and the
//!   structured state tests wait on (JSON log fields, `/metrics`, checkpoints, lineage);
//! - [`memory`]: the in-process engine tests' processor and lease store, with every commit
//!   kept (duplicates included) and the failures of a database (lost answers, lost commits);
//! - [`events`]: store-level opt events and batches (`ts`, `opt_event`, `batch`);
//! - [`effects`]: every effect a commit applies, counted by triggers independently of the
//!   primary keys (so a duplicate shows), and a roll-back of a shard's last commits;
//! - [`seed`]: seeds of randomised tests, printed and taken from `PROPTEST_RNG_SEED`;
//! - [`records`]: Twilio-shaped records (an [`records::Inbound`] builder, fixtures, filler, the
//!   steady opt-event stream whose final tables are known);
//! - [`http`]: GETs, metrics, a background `optout serve` and its peak memory;
//! - [`proxy`] and [`aws_faults`]: the TCP fault proxy and the AWS-error-injecting HTTP proxy;
//! - [`pg_proxy`]: a PostgreSQL-aware proxy that loses the answer to a COMMIT that landed;
//! - [`twilio`]: Twilio's side of the webhooks: requests built as Twilio sends them and signed
//!   by Twilio's own helper library, and a plain HTTP client;
//! - [`webhooks`]: the webhook tests' messages, and the webhook way in served in process;
//! - [`outbox`]: an in-memory outbox with the store's claim rules, and a clock the test moves;
//! - [`consent_api`]: a fake of Twilio's Consent API that enforces its documented limits;
//! - [`webhook_receiver`]: a signed-webhook receiver, checked by the Standard Webhooks library.
//!
//! Every test binary compiles the whole tree and uses part of it.
#![allow(dead_code, unused_imports, unused_macros)]

#[macro_use]
pub mod db;
pub mod aws_faults;
pub mod consent_api;
pub mod effects;
pub mod emulator;
pub mod events;
pub mod http;
pub mod memory;
pub mod optout;
pub mod outbox;
pub mod pg_proxy;
pub mod proxy;
pub mod records;
pub mod seed;
pub mod twilio;
pub mod webhook_receiver;
pub mod webhooks;
