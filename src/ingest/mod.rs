//! The ways in. Each hands raw records to [`crate::pipeline`], which decodes them and commits
//! their effects with the source's position in one transaction, and learns from it what was
//! committed:
//! - [`kinesis`]: the Kinesis engine's `Processor` and `LeaseStore` over the store;
//! - [`replay`]: archived files (plain or gzip), block by block;
//! - [`webhook`]: Twilio's Messaging webhook and Event Streams webhook sink, over HTTP,
//!   committed in groups before each request is answered.

pub mod kinesis;
pub mod replay;
pub mod webhook;
