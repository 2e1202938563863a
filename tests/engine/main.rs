//! The consumer engine (the `kinesis-engine` crate) on its own, in process: `kinesis::run`
//! against the in-process emulator with a recording processor and lease store that know
//! nothing of Twilio or SQL. One module per guarantee:
//! - `delivery`: each record delivered once and in order, resume after a stop, children after
//!   their parents, two engines sharing one lease store, the stall watchdog;
//! - `restarts`: a reader whose processor panics or fails is restarted from its checkpoint;
//! - `failover`: a commit whose answer is lost, commits lost underneath a running reader;
//! - `leases`: what engines sharing a lease store learn from each other's checkpoints;
//! - `shutdown`: cancelled with a batch in hand, which is committed, and nothing after it;
//! - `budget`: the in-flight memory budget's accounting;
//! - `emulators`: the harness against both emulators, and what each does that the engine
//!   copes with.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod budget;
mod delivery;
mod emulators;
mod failover;
mod leases;
mod restarts;
mod shutdown;
