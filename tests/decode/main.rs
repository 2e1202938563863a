//! The decoder (`event::classify`) and what feeds it, one module per concern:
//! - `decoder`: every fixture's outcome, the JSON Schemas, cloudevents-sdk, agreement with
//!   the slow `reference` classifier;
//! - `revocations`: the revocation-phrase corpus, the prefilter's soundness, storage and
//!   replay;
//! - `synth`: the synthetic traffic generator;
//! - `fuzz`: the structure-aware fuzzer (`fuzz_smoke` on every run, `fuzz_decoder` by
//!   `scripts/fuzz.sh`).

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod decoder;
mod fuzz;
mod reference;
mod revocations;
mod synth;
