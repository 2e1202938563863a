//! End to end: the `optout` binary against a real Kinesis emulator (ferrokinesis by default;
//! `OPTOUT_TEST_EMULATOR=kinesis-local` for the npm one) and a SQLite store.
//!
//! Each scenario makes its own stream and store, writes Twilio-shaped records, runs the
//! consumer as a user would, and checks the exact contents of every table. One binary, one
//! module per topic:
//! - `scenarios`: decoding a mixed stream, keyword inference, arrival order;
//! - `resume`: restarts, a `kill -9` mid-backlog, expired iterators;
//! - `reshard`: splits and merges, before and while running, on both transports;
//! - `cli`: CLI mistakes, the single-runner lock, replay;
//! - `http`: the HTTP API;
//! - `positions`: `--initial-position`.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod cli;
mod http;
mod positions;
mod reshard;
mod resume;
mod scenarios;

use common::emulator;
use common::optout::*;
use common::records::*;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

const ACCOUNT: &str = "AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a";
const STOP_FIXTURE_ID: &str = "EZ7a1c3e5b9d2f4a6c8e0b1d3f5a7c9e1b";
const START_FIXTURE_ID: &str = "EZ0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a";

fn ids(rows: &[Value], field: &str) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_string())
        .collect()
}

fn status_map(rows: &[Value]) -> BTreeSet<(String, String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["subscriber"].as_str().unwrap().to_string(),
                r["scope"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["event_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn set<const N: usize>(
    items: [(&str, &str, &str, &str); N],
) -> BTreeSet<(String, String, String, String)> {
    items
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect()
}
