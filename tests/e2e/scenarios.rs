//! Decoding a mixed stream end to end, keyword inference, and arrival order.

use super::*;

/// The scenario's hand-made records and `filler_count` ordinary ones: `(records, dead-letter
/// payloads)`.
fn mixed_records(filler_count: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let dead = vec![
        b"not json at all".to_vec(),
        br#"{"specversion":"1.0","type":"com.twilio.messaging.inbound-message.received","id":"EZtrunc"#.to_vec(),
        // An opt event without `from`: cannot be attributed, must not vanish.
        serde_json::to_vec(&{
            let mut v: Value = serde_json::from_slice(&Inbound::new("EZnofrom00000000000000000000000000", "+15550000009").keyword("STOP").build())
            .unwrap();
            v["data"].as_object_mut().unwrap().remove("from");
            v
        })
        .unwrap(),
        Inbound::new("EZunknown0000000000000000000000000", "+15550000008").keyword("UNSUBSCRIBE").build(),
    ];
    let mut records = vec![
        fixture("inbound-stop-v5.json"),
        fixture("inbound-start-data-string.json"),
        fixture("inbound-plain-v5.json"),
        fixture("message-delivered.json"),
        fixture("sink-test-event.json"),
        // Out of order: the newer START arrives before the older STOP.
        Inbound::new("EZa1", "+15550000001")
            .service("MGtest")
            .body("Start")
            .opt_out_type("START")
            .at("2026-03-01T10:00:00.000Z")
            .build(),
        Inbound::new("EZa2", "+15550000001")
            .service("MGtest")
            .body("stop")
            .opt_out_type("STOP")
            .at("2026-03-01T09:00:00.000Z")
            .build(),
        // Duplicates (at-least-once delivery): the same event three times.
        Inbound::new("EZb1", "whatsapp:+447700900123")
            .to("+15559990000")
            .keyword("STOP")
            .at("2026-03-01T11:00:00Z")
            .version(6)
            .build(),
        Inbound::new("EZb1", "whatsapp:+447700900123")
            .to("+15559990000")
            .keyword("STOP")
            .at("2026-03-01T11:00:00Z")
            .version(6)
            .build(),
        Inbound::new("EZb1", "whatsapp:+447700900123")
            .to("+15559990000")
            .keyword("STOP")
            .at("2026-03-01T11:00:00Z")
            .version(6)
            .build(),
        // HELP: recorded, no status.
        Inbound::new("EZc1", "+15550000003")
            .service("MGtest")
            .body("help")
            .opt_out_type("HELP")
            .at("2026-03-01T11:30:00Z")
            .build(),
        // optOutType in another case.
        Inbound::new("EZd1", "+15550000004")
            .service("MGtest")
            .body("sToP")
            .opt_out_type("stop")
            .at("2026-03-01T11:45:00+01:00")
            .build(),
        // Schema v4 without optOutType: not an opt event unless --infer-keywords.
        Inbound::new("EZe1", "+15550000005")
            .service("MGtest")
            .body(" STOP ")
            .at("2026-03-01T12:00:00Z")
            .version(4)
            .build(),
        // v5 without optOutType: Twilio decided it is no keyword.
        Inbound::new("EZf1", "+15550000006")
            .service("MGtest")
            .body("Stop please")
            .at("2026-03-01T12:00:00Z")
            .build(),
    ];
    records.extend(dead.iter().cloned());
    records.extend(filler(11, filler_count));
    (records, dead)
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_stream_over_four_shards() {
    mixed_stream("mixed", 4, 400, |optout, stream| {
        optout.run_to_idle(stream, &[])
    })
    .await;
}

/// What a mixed-stream run leaves for the transport's own checks.
pub(super) struct Mixed {
    /// Kept so that an in-process emulator lives until the caller's checks end.
    pub _emu: emulator::Emulator,
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    pub logs: Vec<Value>,
}

/// The mixed stream (fixtures, out-of-order and duplicated opt events, other schema versions,
/// dead letters, a sink test event and `filler_count` ordinary records) written to a new
/// stream of `shards` shards and read by `run`: every table is checked exactly. Shared by the
/// transports, so that fan-out must give exactly what polling gives.
pub(super) async fn mixed_stream(
    prefix: &str,
    shards: i32,
    filler_count: usize,
    run: impl FnOnce(&Optout, &str) -> Vec<Value>,
) -> Mixed {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream(prefix);
    emulator::create_stream(&client, &stream, shards)
        .await
        .unwrap();
    let (records, dead) = mixed_records(filler_count);
    let placed = emulator::put_records(&client, &stream, &keyed(records.clone()))
        .await
        .unwrap();
    let shards_used: BTreeSet<_> = placed.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(
        shards_used.len(),
        shards as usize,
        "records should spread over all shards"
    );

    let optout = Optout::new(emu.env());
    let logs = run(&optout, &stream);
    assert_eq!(
        records_read(&logs),
        records.len() as u64,
        "every record read exactly once"
    );

    // " STOP " (v4) and "Stop please" (v5) arrive without optOutType: phrase revocations,
    // recorded with their rule, status untouched (not honoured by default).
    let phrases = optout.query(&["events", "--detection", "phrase"]);
    assert_eq!(
        ids(&phrases, "event_id"),
        ["EZe1", "EZf1"].iter().map(|s| s.to_string()).collect()
    );
    assert!(
        phrases
            .iter()
            .all(|e| e["rule"] == "builtin-2026.1:fcc-word")
    );
    let events = optout.query(&["events", "--detection", "twilio"]);
    assert_eq!(
        ids(&events, "event_id"),
        [
            STOP_FIXTURE_ID,
            START_FIXTURE_ID,
            "EZa1",
            "EZa2",
            "EZb1",
            "EZc1",
            "EZd1"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    assert_eq!(events.len(), 7, "duplicates stored once: {events:#?}");
    let d1 = events.iter().find(|e| e["event_id"] == "EZd1").unwrap();
    assert_eq!(d1["opt_out_type"], "STOP");
    assert_eq!(d1["occurred_at"], "2026-03-01T10:45:00.000000Z");
    assert_eq!(d1["inferred"], false);
    let stop = events
        .iter()
        .find(|e| e["event_id"] == STOP_FIXTURE_ID)
        .unwrap();
    assert_eq!(stop["account_sid"], ACCOUNT);
    assert_eq!(stop["subscriber"], "+15551230001");
    assert_eq!(stop["sender"], "+15559870002");
    assert_eq!(
        stop["messaging_service_sid"],
        "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c"
    );
    assert_eq!(stop["body"], "Stop");
    assert_eq!(stop["schema_version"], 5);
    assert!(stop["shard_id"].as_str().unwrap().starts_with("shardId-"));
    assert!(!stop["sequence_number"].as_str().unwrap().is_empty());

    assert_eq!(
        status_map(&optout.query(&["status"])),
        set([
            (
                "+15551230001",
                "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c",
                "opted_in",
                START_FIXTURE_ID
            ),
            ("+15550000001", "MGtest", "opted_in", "EZa1"),
            (
                "whatsapp:+447700900123",
                "+15559990000",
                "opted_out",
                "EZb1"
            ),
            ("+15550000004", "MGtest", "opted_out", "EZd1"),
        ])
    );

    let dead_rows = optout.query(&["dead-letters"]);
    let stored: BTreeSet<Vec<u8>> = dead_rows
        .iter()
        .map(|r| {
            base64::engine::general_purpose::STANDARD
                .decode(r["data_base64"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(
        stored,
        dead.iter().cloned().collect(),
        "raw bytes kept exactly"
    );
    let reasons: Vec<&str> = dead_rows
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    for needle in ["not JSON", "missing field", "unknown optOutType"] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no `{needle}` in {reasons:?}"
        );
    }
    assert!(
        dead_rows
            .iter()
            .all(|r| r["partition_key"].as_str().is_some_and(|k| k.len() == 32))
    );

    let tests = optout.query(&["test-events"]);
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0]["test_id"], "95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11");
    assert_eq!(tests[0]["account_sid"], ACCOUNT);
    assert!(
        logs.iter()
            .any(|l| l["test_id"] == "95001c1e-8a1c-4b5e-9a57-3f1f0e2c6d11"),
        "the test id is logged for the operator"
    );
    Mixed {
        _emu: emu,
        client,
        stream,
        logs,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn infer_keywords_marks_old_schema_bodies() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("infer");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let records = vec![
        Inbound::new("EZe1", "+15550000005")
            .service("MGtest")
            .body(" STOP ")
            .at("2026-03-01T12:00:00Z")
            .version(4)
            .build(),
        Inbound::new("EZe2", "+15550000005")
            .service("MGtest")
            .body("Stop please")
            .at("2026-03-01T12:01:00Z")
            .version(4)
            .build(),
        Inbound::new("EZe3", "+15550000006")
            .service("MGtest")
            .body("STOP")
            .at("2026-03-01T12:01:00Z")
            .build(),
    ];
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let optout = Optout::new(emu.env());
    optout.run_to_idle(&stream, &["--infer-keywords"]);
    // "Stop please" and a v5 "STOP" without optOutType are phrase revocations, not keywords.
    let phrases = optout.query(&["events", "--detection", "phrase"]);
    assert_eq!(phrases.len(), 2, "{phrases:#?}");
    let events = optout.query(&["events", "--detection", "keyword"]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_id"], "EZe1");
    assert_eq!(events[0]["inferred"], true);
    assert_eq!(events[0]["schema_version"], 4);
    assert_eq!(
        status_map(&optout.query(&["status"])),
        set([("+15550000005", "MGtest", "opted_out", "EZe1")])
    );
}

/// Arrival order under control: one partition key puts every record on one shard, in the order
/// written, newer events first. The status follows the timestamps, not the arrival order, and
/// a newer HELP changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn newer_events_arriving_first_do_not_lose_to_older_ones() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("arrival");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    let ev = |id: &str, from: &str, t: &str, at: &str| {
        Inbound::new(id, from)
            .service("MGo")
            .keyword(t)
            .at(at)
            .build()
    };
    let records = vec![
        ev("EZo1", "+15550000101", "START", "2026-03-01T10:00:00Z"),
        ev("EZo2", "+15550000101", "STOP", "2026-03-01T09:00:00Z"),
        ev("EZo3", "+15550000101", "HELP", "2026-03-01T11:00:00Z"),
        ev("EZo4", "+15550000102", "STOP", "2026-03-01T10:00:00Z"),
        ev("EZo5", "+15550000102", "START", "2026-03-01T09:00:00Z"),
    ];
    let one_key: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| ("one-key".to_string(), r.clone()))
        .collect();
    emulator::put_records(&client, &stream, &one_key)
        .await
        .unwrap();
    // The shard holds them in the order written.
    let stored: Vec<Vec<u8>> = emulator::read_all(&client, &stream)
        .await
        .into_iter()
        .map(|(_, _, data)| data)
        .collect();
    assert_eq!(stored, records, "arrival order is not the order written");
    let optout = Optout::new(emu.env());
    optout.run_to_idle(&stream, &[]);
    let status: BTreeSet<(String, String, String)> = optout
        .query(&["status"])
        .into_iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("subscriber"), s("status"), s("event_id"))
        })
        .collect();
    assert_eq!(
        status,
        BTreeSet::from([
            ("+15550000101".into(), "opted_in".into(), "EZo1".into()),
            ("+15550000102".into(), "opted_out".into(), "EZo4".into()),
        ])
    );
    assert_eq!(optout.query(&["events"]).len(), 5);
}
