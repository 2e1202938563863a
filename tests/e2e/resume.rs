//! Restarts: resume without re-reading, a `kill -9` mid-backlog, expired iterators.

use super::*;

use crate::common::effects;

#[tokio::test(flavor = "multi_thread")]
async fn resume_reads_nothing_twice_and_misses_nothing() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("resume");
    emulator::create_stream(&client, &stream, 2).await.unwrap();
    let first = vec![
        Inbound::new("EZr1", "+15550000001")
            .service("MGr")
            .keyword("STOP")
            .build(),
        b"garbage one".to_vec(),
    ];
    let mut first_all = first.clone();
    first_all.extend(filler(3, 100));
    emulator::put_records(&client, &stream, &keyed(first_all.clone()))
        .await
        .unwrap();
    let optout = Optout::new(emu.env());
    effects::install(&optout.store).await;
    let logs = optout.run_to_idle(&stream, &[]);
    assert_eq!(records_read(&logs), first_all.len() as u64);

    // More records, including an old opt event delivered again.
    let mut second = vec![
        first[0].clone(),
        Inbound::new("EZr2", "+15550000001")
            .service("MGr")
            .keyword("START")
            .at("2026-03-01T11:00:00Z")
            .build(),
        b"garbage two".to_vec(),
    ];
    second.extend(filler(4, 50));
    emulator::put_records(&client, &stream, &keyed(second.clone()))
        .await
        .unwrap();
    let logs = optout.run_to_idle(&stream, &[]);
    assert_eq!(
        records_read(&logs),
        second.len() as u64,
        "the second run reads exactly the new records"
    );
    assert_eq!(
        ids(&optout.query(&["events"]), "event_id"),
        ["EZr1", "EZr2"].map(String::from).into()
    );
    assert_eq!(optout.query(&["dead-letters"]).len(), 2);
    assert_eq!(
        status_map(&optout.query(&["status"])),
        set([("+15550000001", "MGr", "opted_in", "EZr2")])
    );
    // A third run finds nothing new.
    assert_eq!(records_read(&optout.run_to_idle(&stream, &[])), 0);
    // EZr1, delivered twice, changed its status once.
    let counted = effects::assert_exactly_once(&optout.store, 2).await;
    assert_eq!(counted.get("status"), Some(&2), "{counted:?}");
    assert_eq!(counted.get("dead_letter"), Some(&2), "{counted:?}");
}

/// `kill -9` in the middle of a backlog, restart: the same tables as an uninterrupted run.
#[tokio::test(flavor = "multi_thread")]
async fn crash_mid_backlog_then_restart_gives_the_same_tables() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("crash");
    emulator::create_stream(&client, &stream, 4).await.unwrap();
    let n = match emu.kind {
        emulator::EmulatorKind::Ferrokinesis => 20_000,
        emulator::EmulatorKind::KinesisLocal => 1_500,
    };
    let mut synth = optout::synth::Synth::new(optout::synth::MixOptions {
        seed: 99,
        opt_ratio: 0.1,
        subscribers: 50,
    });
    let mut records: Vec<Vec<u8>> = vec![synth.test_event()];
    records.extend((0..n).map(|_| synth.next_record().1));
    records.extend((0..20).map(|i| format!("broken record {i}").into_bytes()));
    fastrand::Rng::with_seed(5).shuffle(&mut records);
    emulator::put_records(&client, &stream, &keyed(records.clone()))
        .await
        .unwrap();

    let reference = Optout::new(emu.env());
    reference.run_to_idle(&stream, &[]);
    let expected = reference.tables();
    assert!(
        expected[1].len() > 100,
        "the scenario should hold many opt events"
    );

    // The run to kill reads through a proxy that serves at most a quarter of the stream (and
    // then fails every GetRecords): with calls of 50 records on 4 shards it can have read at
    // most a quarter plus 200 records, so the kill lands mid-backlog by counting, however fast
    // or slow the machine, and what it never read holds hundreds of opt events.
    let total = records.len() as u64;
    let proxy = crate::common::aws_faults::AwsFaults::start(
        &emu.endpoint,
        crate::common::aws_faults::Plan::new(),
        5,
    )
    .await;
    proxy.limit_records(total / 4);
    let crashed = Optout::new(emu.env_via(&proxy.endpoint));
    effects::install(&crashed.store).await;
    let mut child = crashed.spawn_run(&stream, &["--max-records-per-call", "50"]);
    let reader = crate::common::db::open_reader(&crashed.store).await;
    let s = &reader;
    emulator::wait_for(
        "a first committed opt event",
        Duration::from_secs(60),
        || async move {
            s.all(&optout::store::EventFilter::default())
                .await
                .is_ok_and(|e| !e.is_empty())
        },
    )
    .await
    .unwrap();
    child.kill_9();
    let served = proxy.seen(|s| s.records_served);
    assert!(
        served <= total / 4 + 4 * 50,
        "{served} of {total} records served"
    );
    let partial = s
        .all(&optout::store::EventFilter::default())
        .await
        .unwrap()
        .len();
    assert!(
        0 < partial && partial < expected[1].len(),
        "the kill must land mid-backlog: {partial} of {} opt events stored",
        expected[1].len()
    );
    // The restart resumes exactly at the checkpoints: it makes durable the records after
    // them and none before (a reader that ignored them would read everything again).
    let cps = checkpoint_map(&reader, &stream).await;
    let all = emulator::read_all(&client, &stream).await;
    // The restart reads straight from the emulator.
    let restarted = Optout::with_store(emu.env(), &crashed.store);
    let resumed = records_read(&restarted.run_to_idle(&stream, &[]));
    assert_eq!(
        resumed,
        records_after(&all, &cps, None),
        "records read after the restart"
    );
    let after = restarted.tables();
    assert_eq!(after[0], expected[0], "status differs after a crash");
    assert_eq!(after[1], expected[1], "events differ after a crash");
    assert_eq!(after[2], expected[2], "dead letters differ after a crash");
    assert_eq!(after[3], expected[3], "test events differ after a crash");
    let counted = effects::assert_exactly_once(&crashed.store, expected[1].len()).await;
    assert_eq!(counted.get("dead_letter"), Some(&expected[2].len()));
    assert_eq!(counted.get("test_event"), Some(&expected[3].len()));
    eprintln!(
        "killed with {partial} of {} opt events stored",
        expected[1].len()
    );
}

/// Iterators expire after 5 minutes on AWS; here after 1 s, and the consumer idles longer than
/// that between polls: every poll meets `ExpiredIteratorException` and must renew from its
/// checkpoint, without losing or re-reading records.
#[tokio::test(flavor = "multi_thread")]
async fn expired_iterators_are_renewed_from_the_checkpoint() {
    let emu = emulator::ferrokinesis_with(ferrokinesis::store::StoreOptions {
        iterator_ttl_seconds: 1,
        ..emulator::ferrokinesis_options()
    })
    .await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("expiry");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let o = Optout::new(emu.env());
    effects::install(&o.store).await;
    let worker = o.spawn_run(&stream, &["--poll-interval-ms", "1500"]);
    write(&client, &stream, 0, 40, 20, Duration::from_millis(10)).await;
    let reader = crate::common::db::open_reader(&o.store).await;
    let s = &reader;
    let w = &worker;
    if let Err(e) = emulator::wait_for("40 events", Duration::from_secs(30), || async move {
        event_count(s).await >= 40
    })
    .await
    {
        panic!("{e}: {}", w.raw_log());
    }
    let w = &worker;
    emulator::wait_for(
        "an expired iterator",
        Duration::from_secs(30),
        || async move {
            w.logs()
                .iter()
                .any(|l| l["shard_event"] == "iterator_expired")
        },
    )
    .await
    .unwrap();
    write(&client, &stream, 40, 80, 20, Duration::from_millis(10)).await;
    wait_for_events(s, 80, Duration::from_secs(30)).await;
    let logs = worker.terminate();
    assert_eq!(records_read(&logs), 80, "nothing read twice");
    check_tables(&o, 80);
    effects::assert_exactly_once(&o.store, 80).await;
}
