//! optout turns Twilio Event Streams on AWS Kinesis into an exactly-once record of who opted
//! out (STOP), opted back in (START) or asked for help (HELP), with each subscriber's current
//! opt status.
//!
//! The stages, each a module that knows only its own room (imports run downhill, as listed):
//! - [`cli`]: parses flags into settings, calls [`app`], prints with [`output`].
//! - [`app`]: the composition root. Opens the store, starts the HTTP server, runs the engine,
//!   and holds the two adapters between engine and store: [`app::Pipeline`] (the engine's
//!   `Processor`: batches and checkpoints) and [`app::StoreLeases`] (its `LeaseStore`).
//! - [`kinesis`]: a general Kinesis consumer engine (shards and lineage, leases, polling and
//!   enhanced fan-out, backoff, checkpoints); imports neither [`event`] nor [`store`]. It
//!   reaches its storage only through two traits, [`kinesis::Processor`] (commit a batch with
//!   its checkpoint; read checkpoints) and [`kinesis::LeaseStore`] (several workers).
//! - [`pipeline`]: raw records → [`event`] → one [`store`] commit, isolating records the
//!   database refuses; shared by the consumer and `optout replay`.
//! - [`replay`]: the backfill path: archived files (plain or gzip) read, decoded and committed
//!   block by block, each stage overlapping the next.
//! - [`event`]: one record's bytes → opt event, sink test event, skip or dead letter; pure.
//! - [`store`]: the [`store::Store`] trait, one SQL implementation for SQLite and PostgreSQL,
//!   and its read side ([`store::Reader`]: pages, exports, point in time); imports nothing of
//!   the engine.
//! - [`http`], [`telemetry`]: the query API, health and metrics.
//! - [`synth`]: realistic synthetic Twilio traffic for `optout produce` and benchmarks.

pub mod app;
pub mod cli;
pub mod event;
pub mod http;
pub mod kinesis;
pub mod output;
pub mod pipeline;
pub mod replay;
pub mod store;
pub mod synth;
pub mod telemetry;
