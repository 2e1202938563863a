//! optout turns Twilio Event Streams on AWS Kinesis into an exactly-once record of who opted
//! out (STOP), opted back in (START) or asked for help (HELP), with each subscriber's current
//! opt status.
//!
//! The stages, each a module that knows only its own room:
//! - [`kinesis`]: a general Kinesis consumer engine (shards and lineage, polling, backoff,
//!   checkpoints); knows nothing of Twilio.
//! - [`event`]: one record's bytes → opt event, sink test event, skip or dead letter; pure.
//! - [`store`]: the [`store::Store`] trait, one SQL implementation for SQLite and PostgreSQL.
//! - [`pipeline`]: wires them: decode each batch, commit its effects with the checkpoint.
//! - [`cli`], [`output`], [`http`], [`telemetry`]: the binary's surface.
//! - [`synth`]: realistic synthetic Twilio traffic for `optout produce` and benchmarks.

pub mod cli;
pub mod event;
pub mod http;
pub mod kinesis;
pub mod output;
pub mod pipeline;
pub mod store;
pub mod synth;
pub mod telemetry;
