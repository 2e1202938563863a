//! The in-flight budget under enhanced fan-out, measured: a backlog of large records (62 MiB)
//! on 8 shards read with `SubscribeToShard` under `--max-in-flight-mb 8`. Every record is
//! stored once, and the process's peak RSS (`VmHWM`, read from outside as an orchestrator sees
//! it) stays under the budget, plus the overhead docs/performance.md gives (70 MiB for a
//! release build; more room for a debug build), plus what the budget does not count under
//! fan-out: each subscription's HTTP/2 receive window, filled by the server before the reader
//! takes an event (measured about 7 MiB per shard; docs/performance.md). The figure is printed.
//!
//! Measured on this machine (debug build, ferrokinesis): 119 to 164 MiB with fan-out under an
//! 8 MiB budget and 136 MiB under 1,024 MiB (the windows, not the budget, set the peak), where
//! polling peaks at 92 MiB under 8 MiB and 162 MiB under 1,024 MiB.

use crate::common::emulator;
use crate::common::optout::*;
use crate::common::records::*;

use std::time::Duration;

const SHARDS: i32 = 8;
const RECORDS: usize = 320;
/// Bytes of body per record: the backlog is about 64 MiB, eight times the budget.
const BODY: usize = 200 << 10;
const BUDGET_MB: u64 = 8;
/// The budget, a debug build's overhead (the release build's 70 MiB, with room for the
/// allocator and no inlining), and 12 MiB per subscription for its HTTP/2 windows.
const CEILING_MB: u64 = BUDGET_MB + 96 + 12 * SHARDS as u64;

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_stays_within_its_budget_by_peak_rss() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("fanout-budget");
    emulator::create_stream(&client, &stream, SHARDS)
        .await
        .unwrap();
    let pad = "x".repeat(BODY);
    let records: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| {
            Inbound::new(&format!("EZb{i:08}"), &format!("+1555300{:04}", i))
                .service("MGb")
                .body(&format!("STOP {pad}"))
                .opt_out_type("STOP")
                .at("2026-03-01T12:00:00Z")
                .build()
        })
        .collect();
    for chunk in records.chunks(4) {
        if let Err(e) = emulator::put_records(&client, &stream, &keyed(chunk.to_vec())).await {
            panic!("{e:#}");
        }
    }
    let o = Optout::new(emu.env());
    let budget = BUDGET_MB.to_string();
    let worker = o.spawn_run(
        &stream,
        &[
            "--consumer-name",
            "optout-budget-rss",
            "--max-in-flight-mb",
            &budget,
        ],
    );
    let pid = worker.child.id();
    let reader = crate::common::db::open_reader(&o.store).await;
    wait_for_events(&reader, RECORDS, Duration::from_secs(300)).await;
    // VmHWM is the high-water mark: read once the whole backlog is stored, it covers the drain.
    let peak = peak_rss(pid);
    let logs = worker.terminate();
    assert!(logs.iter().any(|l| l["fan_out"] == true), "no fan-out");
    assert_eq!(event_count(&reader).await, RECORDS);
    let peak_mb = peak as f64 / (1 << 20) as f64;
    eprintln!(
        "fan-out, {SHARDS} shards, {RECORDS} records of {} KiB ({} MiB): peak RSS {peak_mb:.0} MiB \
         under a {BUDGET_MB} MiB budget",
        BODY >> 10,
        (RECORDS * BODY) >> 20
    );
    assert!(
        peak < CEILING_MB << 20,
        "peak RSS {peak_mb:.0} MiB over {CEILING_MB} MiB with a {BUDGET_MB} MiB budget and {SHARDS} subscriptions"
    );
}
