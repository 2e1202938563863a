//! End to end: the `optout` binary against a real Kinesis emulator (ferrokinesis by default;
//! `OPTOUT_TEST_EMULATOR=kinesis-local` for the npm one) and a real store.
//!
//! Each scenario makes its own stream and store, writes Twilio-shaped records, runs the
//! consumer as a user would, and checks the exact contents of every table. One module per
//! guarantee or topic:
//! - `scenarios`: decoding a mixed stream, keyword inference, arrival order;
//! - `resume`: restarts, a `kill -9` mid-backlog, expired iterators;
//! - `reshard`: splits and merges, before and while running, on both transports;
//! - `positions`: `--initial-position`;
//! - `fanout`: enhanced fan-out (subscriptions ending, expiring, a deregistered consumer);
//! - `fanout_budget`: the in-flight budget under enhanced fan-out, by peak RSS;
//! - `workers`: several workers on PostgreSQL, `kill -9`s, takeover, split and merge;
//! - `fencing`: a paused worker cannot commit after its lease is taken;
//! - `failover`: PostgreSQL read-only, then missing, then back: the consumer waits it out;
//! - `lost_commits`: a COMMIT whose answer is lost, commits lost underneath a running reader;
//! - `shutdown`: SIGTERM while records arrive, a commit failing during shutdown, the second
//!   signal;
//! - `faults`: Kinesis unreachable, a hung network, AWS's error answers;
//! - `poison`: records no database can store, through the consumer and replay;
//! - `refusable`: years outside 0001-9999, and a flood of them, on both backends;
//! - `console_retry`: the console's dead-letter retry in the process that writes the store;
//! - `retry`: `dead-letters --retry` of a record the database refused, then fixed, and of
//!   an older decoder's dead letters, on both backends;
//! - `replay_files`: `--parallel` with two valid files, a truncated gzip;
//! - `replay_inputs`: a gzip bomb, a trickling FIFO, an interrupt, the same file twice;
//! - `readiness`: a shard that cannot commit shows in `/readyz` and `/metrics`;
//! - `lost_file`: the SQLite file deleted under `run` (exit 1) and under `serve` (unready);
//! - `honor`: `--honor-revocations` on `run`, `history`, `status --as-of` and over HTTP;
//! - `log_hygiene`: no phone number or body reaches the logs;
//! - `progress`: progress on a terminal (`replay`, `run --exit-when-idle`), none elsewhere;
//! - `cli`, `query_cli`, `http`: the commands and the HTTP API beside the consumer;
//! - `deliver`: `--twilio-consent revocations` against a fake Consent API, latency measured;
//! - `deliver_mode`: under `--revocation-scope account` the Consent push sends an opt-out per
//!   sender, and `deliveries --resync` catches up after a switch and for a new target;
//! - `webhooks`: Twilio's webhooks beside Kinesis (one event per message across paths), a
//!   `kill -9` during a burst; `webhook_settings`: their settings mistakes.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod cli;
mod console_retry;
mod deliver;
mod deliver_mode;
mod failover;
mod fanout;
mod fanout_budget;
mod faults;
mod fencing;
mod honor;
mod http;
mod log_hygiene;
mod lost_commits;
mod lost_file;
mod poison;
mod positions;
mod progress;
mod query_cli;
mod readiness;
mod refusable;
mod replay_files;
mod replay_inputs;
mod reshard;
mod resume;
mod retry;
mod scenarios;
mod shutdown;
mod webhook_settings;
mod webhooks;
mod workers;

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
