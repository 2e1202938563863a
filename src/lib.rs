//! optout turns Twilio's opt-out signals into an exactly-once record of who opted out (STOP),
//! opted back in (START) or asked for help (HELP), with each subscriber's current opt status.
//!
//! **Data runs one way: ways in → pipeline → store → ways out**, wired by [`app`]. Nothing
//! imports upward: a way in knows the pipeline, the pipeline the decoder and the store, a way
//! out the store's read side; only the composition root knows them all. The rooms, top down:
//! - `main.rs` and [`cli`]: flags into settings, one [`app`] call per command, printing
//!   (`cli::output`).
//! - [`app`]: the composition root. Builds the ways in and out a command needs, opens the
//!   store, owns shutdown.
//! - Ways in, each handing raw records to [`pipeline`]: the Kinesis consumer engine (the
//!   `kinesis-engine` crate, general: it knows no Twilio and no SQL) through
//!   [`ingest::kinesis`], archived files through [`ingest::replay`], and Twilio's webhooks
//!   through [`ingest::webhook`].
//! - [`pipeline`]: raw records → [`event`] → one [`store`] commit with the source's
//!   position, isolating records the database refuses.
//! - [`event`]: one record's bytes → opt event, sink test event, skip or dead letter; pure.
//! - [`store`]: the write side ([`store::Store`]: commits with checkpoints, leases) and the
//!   read side ([`store::Reader`]: pages, exports, point in time), one SQL implementation for
//!   SQLite and PostgreSQL; it imports nothing of the engine, the app or HTTP.
//! - Ways out, each reading from the store: the query API (`api`), served by [`http`] with
//!   the probes and metrics.
//! - [`telemetry`]: logs and the metrics registry; [`synth`]: synthetic Twilio traffic for
//!   `optout produce` and benchmarks.
//!
//! The public modules are what the binary, the integration tests and the benchmarks use.

mod api;
pub mod app;
pub mod cli;
mod console;
pub mod deliver;
pub mod event;
pub mod http;
pub mod ingest;
pub mod pipeline;
pub mod store;
pub mod synth;
pub mod telemetry;
