//! `optout replay` on hostile and slow inputs: a gzip bomb between good records, a FIFO that
//! trickles, an interrupt while a pipe is open, and the same file named twice.

use crate::common::emulator;
use crate::common::optout::*;
use crate::common::records::*;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

const GIB: usize = 1 << 30;

/// The stored opt events' ids.
fn event_ids(o: &Optout) -> Vec<String> {
    let mut ids: Vec<String> = o
        .query(&["events"])
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Waits for `child` to exit, sampling its peak RSS meanwhile; returns (status, peak RSS).
fn wait_sampling(
    child: &mut std::process::Child,
    limit: Duration,
) -> (std::process::ExitStatus, u64) {
    let deadline = Instant::now() + limit;
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        // The last sample before exit is as close to the peak as sampling gets.
        if let Some(rss) = try_peak_rss(child.id()) {
            peak = peak.max(rss);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 1 MB of gzip inflating to one line of 1 GiB, between good records: the line is a dead
/// letter with its first 64 KiB and the reason, every good record is stored, memory stays
/// small, and a rerun does the same (it used to take 7 GB and fail for good).
#[test]
fn a_gzip_bomb_is_one_dead_letter_and_the_replay_goes_on() {
    let o = Optout::new(vec![]);
    let file = o.db_path.with_file_name("bomb.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&file).unwrap(),
        flate2::Compression::fast(),
    );
    for i in 0..3 {
        gz.write_all(&opt_event(i)).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..GIB / zeros.len() {
        gz.write_all(&zeros).unwrap();
    }
    gz.write_all(b"\n").unwrap();
    for i in 3..6 {
        gz.write_all(&opt_event(i)).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    gz.finish().unwrap();
    eprintln!(
        "bomb: {} KiB of gzip",
        std::fs::metadata(&file).unwrap().len() >> 10
    );
    for run in 0..2 {
        let mut child = o
            .command(&["replay", file.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (status, peak) = wait_sampling(&mut child, Duration::from_secs(300));
        let mut summary = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut summary).unwrap();
        assert!(status.success(), "run {run}: {status} {summary}");
        eprintln!("run {run}: peak RSS {} MiB: {}", peak >> 20, summary.trim());
        assert!(peak < 256 << 20, "inflating the bomb took {peak} bytes");
    }
    assert_eq!(
        event_ids(&o).len(),
        6,
        "every good record, before and after"
    );
    let dead = o.query(&["dead-letters"]);
    assert_eq!(dead.len(), 2, "one per run: {dead:?}");
    for d in &dead {
        assert_eq!(d["sequence_number"], "4");
        assert_eq!(d["data_bytes"], 64 << 10);
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("oversized record: 1073741824 bytes"),
            "{reason}"
        );
    }
}

/// Events written into a FIFO are committed within a second or so, while the writer keeps it
/// open (it used to wait for 16 MiB or the end of the input).
#[test]
fn a_fifo_commits_as_it_trickles() {
    let o = Optout::new(vec![]);
    assert!(o.output(&["migrate"]).status.success());
    let fifo = o.db_path.with_file_name("events.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let child = o
        .command(&["replay", fifo.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    for i in 0..3 {
        writer
            .write_all(&[opt_event(i), b"\n".to_vec()].concat())
            .unwrap();
    }
    writer.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while event_ids(&o).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "nothing committed while the FIFO is open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    writer
        .write_all(&[opt_event(3), b"\n".to_vec()].concat())
        .unwrap();
    drop(writer);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(event_ids(&o).len(), 4);
}

/// SIGINT (or SIGTERM) while a pipe is still open: the lines read are committed, the summary
/// says where it stopped, and the exit is 1 (not everything is stored).
#[test]
fn an_interrupted_replay_commits_what_it_read_and_says_so() {
    for signal in ["-INT", "-TERM"] {
        let o = Optout::new(vec![]);
        assert!(o.output(&["migrate"]).status.success());
        let mut child = o
            .command(&["replay", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..5 {
            stdin
                .write_all(&[opt_event(i), b"\n".to_vec()].concat())
                .unwrap();
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        let (status, _) = wait_sampling(&mut child, Duration::from_secs(20));
        let mut summary = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut summary).unwrap();
        assert_eq!(status.code(), Some(1), "{signal}: {summary}");
        assert!(
            summary.contains("interrupted after line 5"),
            "{signal}: {summary}"
        );
        assert_eq!(
            event_ids(&o).len(),
            5,
            "{signal}: the lines read are stored"
        );
        drop(stdin);
    }
}

/// The same file twice in one replay: each keeps its dead letters, and each summary counts
/// them.
#[test]
fn the_same_file_twice_keeps_both_dead_letters() {
    let o = Optout::new(vec![]);
    let file = o.db_path.with_file_name("twice.jsonl");
    std::fs::write(&file, b"not json\n").unwrap();
    let name = file.to_str().unwrap();
    let out = o.output(&["replay", name, name]);
    assert!(out.status.success());
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        summary.matches("1 dead letters stored").count(),
        2,
        "{summary}"
    );
    let dead = o.query(&["dead-letters"]);
    assert_eq!(dead.len(), 2, "{dead:?}");
}

/// The consumer's records follow the same limit: one over `--max-record-bytes` is a dead
/// letter with its first bytes, the shard moves on.
#[tokio::test(flavor = "multi_thread")]
async fn the_consumer_dead_letters_records_over_the_limit() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("oversized");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let big = Inbound::new("EZbig", "+15550000001")
        .opt_out_type("STOP")
        .body(&"x".repeat(4_000))
        .build();
    let records = vec![opt_event(0), big, opt_event(1)];
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let o = Optout::new(emu.env());
    o.run_to_idle(&stream, &["--max-record-bytes", "2048"]);
    assert_eq!(event_ids(&o), ["EZw00000000", "EZw00000001"]);
    let dead = o.query(&["dead-letters"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("oversized record:"), "{reason}");
    assert!(reason.contains("2048-byte limit"), "{reason}");
}
