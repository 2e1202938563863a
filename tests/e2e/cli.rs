//! CLI mistakes, the single-runner lock on a SQLite file, and replay.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn cli_mistakes_exit_2_with_one_useful_line() {
    let emu = emulator::ferrokinesis().await;
    let optout = Optout::new(emu.env());
    let cases: &[(&[&str], &str)] = &[
        (&["run"], "--stream"),
        (
            &["run", "--stream", "s", "--initial-position", "sideways"],
            "trim-horizon",
        ),
        (
            &[
                "run",
                "--stream",
                "s",
                "--initial-position",
                "at-timestamp=yesterday",
            ],
            "RFC 3339",
        ),
        (
            &["run", "--stream", "s", "--poll-interval-ms", "0"],
            "poll-interval-ms",
        ),
        (&["events", "--since", "last week"], "RFC 3339"),
        (&["events", "--type", "stahp"], "stop"),
        (&["status", "--format", "xml"], "table"),
        (
            &["produce", "--stream", "s", "--opt-ratio", "2"],
            "between 0 and 1",
        ),
        (&["frobnicate"], "frobnicate"),
        (&["run", "--stream", "no-such-stream-here"], "not found"),
    ];
    for (args, needle) in cases {
        let out = optout.output(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "optout {args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
        assert_eq!(lines.len(), 1, "optout {args:?}: not one line: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(
            lines[0].contains(needle),
            "optout {args:?}: `{needle}` not in: {stderr}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_optout"))
        .args(["status", "--store", "mysql://root:hunter2@db/optout"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sqlite://") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_sqlite_file_refuses_to_start() {
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("lock");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let optout = Optout::new(emu.env());
    let mut first = optout.spawn_run(&stream, &[]);
    let store = optout::store::open(&optout.store, 1).await.unwrap();
    let s = &store;
    let st = &stream;
    // The first runner holds the lock once it has read the (empty) shard.
    emulator::put_records(&client, &stream, &keyed(filler(1, 3)))
        .await
        .unwrap();
    emulator::wait_for(
        "the first runner to checkpoint",
        Duration::from_secs(30),
        || async move {
            s.checkpoints(st)
                .await
                .map(|c| !c.is_empty())
                .unwrap_or(false)
        },
    )
    .await
    .unwrap();
    let out = optout.output(&["run", "--stream", &stream, "--exit-when-idle", "1"]);
    first.kill_9();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another `optout run` is already using"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_uses_the_same_semantics_and_dedup() {
    let emu = emulator::ferrokinesis().await;
    let optout = Optout::new(emu.env());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.jsonl");
    let mut lines = vec![
        fixture("inbound-stop-v5.json"),
        fixture("inbound-start-data-string.json"),
        fixture("message-delivered.json"),
        b"{broken".to_vec(),
        fixture("inbound-stop-v5.json"),
    ];
    lines.push(Vec::new()); // blank lines are ignored
    let text: Vec<u8> = lines.join(&b'\n');
    std::fs::write(&file, &text).unwrap();
    let path = file.to_str().unwrap();
    let out = optout.output(&["replay", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("3 opt events (2 new, 1 already stored)"),
        "{summary}"
    );
    assert!(summary.contains("1 dead letters"), "{summary}");
    // Again, from stdin: everything is already stored.
    let mut child = optout
        .command(&["replay", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("(0 new, 3 already stored)"));
    assert_eq!(optout.query(&["events"]).len(), 2);
    let dead = optout.query(&["dead-letters"]);
    assert_eq!(
        dead.len(),
        2,
        "one per source: file line 4 and stdin line 4"
    );
    // Each replay run is a pseudo-shard of its own: `FILE@RUN-TIME`.
    assert!(dead.iter().any(|d| {
        d["shard_id"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("{path}@")))
            && d["sequence_number"] == "4"
    }));
    assert_eq!(
        status_map(&optout.query(&["status"])),
        set([(
            "+15551230001",
            "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c",
            "opted_in",
            START_FIXTURE_ID
        )])
    );
    let out = optout.output(&["replay", "/no/such/file.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
}
