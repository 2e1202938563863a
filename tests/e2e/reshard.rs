//! Splits and merges, before the run and while it runs, each scenario once per transport
//! (GetRecords polling and enhanced fan-out).

use super::*;

/// How the consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    FanOut,
}

impl Transport {
    /// The `optout run` arguments that select it.
    fn args(self) -> &'static [&'static str] {
        match self {
            Transport::Polling => &[],
            Transport::FanOut => &["--consumer-name", "optout-reshard-test"],
        }
    }

    /// Asserts from the JSON logs that the run read with this transport.
    fn check(self, logs: &[Value]) {
        let fan_out = logs.iter().any(|l| l["fan_out"] == true);
        assert_eq!(fan_out, self == Transport::FanOut, "{self:?}: {logs:#?}");
        if fan_out {
            assert!(
                logs.iter().any(|l| l["consumer_arn"].is_string()),
                "{logs:#?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resharding_reads_parents_before_children() {
    parents_before_children(Transport::Polling).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resharding_reads_parents_before_children_with_fan_out() {
    parents_before_children(Transport::FanOut).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resharding_while_running_loses_nothing() {
    live_reshard(Transport::Polling).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resharding_while_running_loses_nothing_with_fan_out() {
    live_reshard(Transport::FanOut).await;
}

/// Split shard 0 and merge shards 1 and 2, with records before and after: every record is
/// read once, and each child only after its parents are read to the end.
async fn parents_before_children(transport: Transport) {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("reshard");
    emulator::create_stream(&client, &stream, 3).await.unwrap();
    let before: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            Inbound::new(&format!("EZp{i:02}"), &format!("+1555000{i:04}"))
                .service("MGx")
                .keyword("STOP")
                .build()
        })
        .collect();
    emulator::put_records(&client, &stream, &keyed(before.clone()))
        .await
        .unwrap();
    let (children, merged) = split_0_merge_1_2(&client, &stream).await;
    // Same subscribers opt back in, later: only children hold the START events.
    let after: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            Inbound::new(&format!("EZc{i:02}"), &format!("+1555000{i:04}"))
                .service("MGx")
                .keyword("START")
                .at("2026-03-01T11:00:00Z")
                .build()
        })
        .collect();
    emulator::put_records(&client, &stream, &keyed(after.clone()))
        .await
        .unwrap();

    let optout = Optout::new(emu.env());
    let logs = optout.run_to_idle(&stream, transport.args());
    transport.check(&logs);
    assert_eq!(records_read(&logs), 60, "every record read exactly once");
    assert_children_after_parents(&optout, &stream, &logs, &children, &merged).await;
    // `optout shards` shows the lineage and where each shard stands.
    let shards = optout.query(&["shards", "--stream", &stream]);
    assert_eq!(shards.len(), 6, "{shards:#?}");
    let row = |id: &str| shards.iter().find(|r| r["shard_id"] == id).unwrap().clone();
    for parent in [
        "shardId-000000000000",
        "shardId-000000000001",
        "shardId-000000000002",
    ] {
        assert_eq!(row(parent)["state"], "closed");
        assert_eq!(row(parent)["finished"], true);
    }
    assert_eq!(row(&children[0])["parent_shard_id"], "shardId-000000000000");
    assert_eq!(
        row(&merged)["adjacent_parent_shard_id"],
        "shardId-000000000002"
    );
    assert_eq!(row(&merged)["state"], "open");
    assert_eq!(row(&merged)["finished"], false);
    assert!(
        shards.iter().all(|r| r["owner"].is_null()),
        "SQLite holds no leases"
    );
    assert_eq!(optout.query(&["events"]).len(), 60);
    let status = optout.query(&["status"]);
    assert_eq!(status.len(), 30);
    assert!(
        status.iter().all(|r| r["status"] == "opted_in"),
        "{status:#?}"
    );
}

/// Resharding while the consumer runs: shard discovery finds the children. The parents still
/// hold a backlog when they close (small calls), so the children are found while their parents
/// are being read, and must wait for them.
async fn live_reshard(transport: Transport) {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("live-reshard");
    emulator::create_stream(&client, &stream, 3).await.unwrap();
    let optout = Optout::new(emu.env());
    let mut args = vec!["--max-records-per-call", "5"];
    args.extend(transport.args());
    let child = optout.spawn_run(&stream, &args);
    let stop = |i: usize| {
        Inbound::new(&format!("EZs{i:03}"), &format!("+1555100{i:04}"))
            .keyword("STOP")
            .build()
    };
    let first: Vec<_> = (0..20).map(stop).collect();
    emulator::put_records(&client, &stream, &keyed(first))
        .await
        .unwrap();
    let reader = crate::common::db::open_reader(&optout.store).await;
    let count = |n: usize| {
        let reader = reader.clone();
        async move {
            reader
                .all(&optout::store::EventFilter::default())
                .await
                .map(|e| e.len() >= n)
                .unwrap_or(false)
        }
    };
    emulator::wait_for("first 20 events", Duration::from_secs(60), || count(20))
        .await
        .unwrap();
    let backlog: Vec<_> = (20..320).map(stop).collect();
    emulator::put_records(&client, &stream, &keyed(backlog))
        .await
        .unwrap();
    let (children, merged) = split_0_merge_1_2(&client, &stream).await;
    let second: Vec<_> = (320..360).map(stop).collect();
    emulator::put_records(&client, &stream, &keyed(second))
        .await
        .unwrap();
    emulator::wait_for("all 360 events", Duration::from_secs(60), || count(360))
        .await
        .unwrap();
    // Graceful stop: SIGTERM → exit 0.
    let logs = child.terminate();
    transport.check(&logs);
    assert_eq!(records_read(&logs), 360);
    assert_eq!(optout.query(&["events"]).len(), 360);
    assert_children_after_parents(&optout, &stream, &logs, &children, &merged).await;
}
