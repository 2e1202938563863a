//! Drives the real `optout` binary against an emulator and a private SQLite file, and reads the
//! structured state tests wait on: JSON log fields, `/metrics`, checkpoints and lineage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::records::{expected_status, keyed, opt_event};

/// One `optout` installation: the emulator's environment and a store of its own.
pub struct Optout {
    pub env: Vec<(String, String)>,
    pub store: String,
    pub db_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Workers' environment, for spawning several `optout run` on one store.
impl Clone for Optout {
    fn clone(&self) -> Self {
        Optout::with_store(self.env.clone(), &self.store)
    }
}

impl Optout {
    /// A fresh SQLite store next to the emulator `env`.
    pub fn new(env: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("optout.db");
        Optout {
            env,
            store: format!("sqlite://{}", db_path.display()),
            db_path,
            _dir: dir,
        }
    }

    /// An installation using the given store URL (e.g. a PostgreSQL database).
    pub fn with_store(env: Vec<(String, String)>, store: &str) -> Self {
        let mut o = Optout::new(env);
        o.store = store.to_string();
        o
    }

    /// `optout ARGS` with the emulator's environment, `--store` and JSON logs (at the default
    /// levels, unless the environment sets `RUST_LOG`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = bare_command(args);
        c.arg("--store")
            .arg(&self.store)
            .arg("--log-format")
            .arg("json")
            .env("RUST_LOG", "warn,optout=info,kinesis_engine=info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// What `optout ARGS` printed on stdout, asserting that it succeeded.
    pub fn stdout(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "optout {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs `optout ARGS` to completion.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("start optout")
    }

    /// `optout run --stream S --exit-when-idle 1 ARGS`, asserting exit 0; returns the JSON logs.
    pub fn run_to_idle(&self, stream: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["run", "--stream", stream, "--exit-when-idle", "1"];
        args.extend(test_defaults(extra));
        args.extend_from_slice(extra);
        let out = self.output(&args);
        let logs = json_lines(&out.stderr);
        assert!(
            out.status.success(),
            "optout run failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        logs
    }

    /// Starts `optout run` in the background (no idle exit); its logs go to a file, never to
    /// a pipe that could fill up and block it.
    pub fn spawn_run(&self, stream: &str, extra: &[&str]) -> Worker {
        let mut args = vec!["run", "--stream", stream];
        args.extend(test_defaults(extra));
        args.extend_from_slice(extra);
        self.spawn(&args)
    }

    /// Starts `optout ARGS` in the background (`serve`, say), logs to a file as for
    /// [`Optout::spawn_run`].
    pub fn spawn(&self, args: &[&str]) -> Worker {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .expect("start optout");
        Worker { child, log }
    }

    /// A query command's `--format json` rows.
    pub fn query(&self, args: &[&str]) -> Vec<Value> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--format", "json"]);
        let out = self.output(&all);
        assert!(
            out.status.success(),
            "optout {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_rows(&out.stdout)
    }

    /// The four tables, as sorted JSON lines without the wall-clock `recorded_at` column.
    pub fn tables(&self) -> [Vec<String>; 4] {
        let rows = |args: &[&str]| {
            let mut v: Vec<String> = self
                .query(args)
                .into_iter()
                .map(|mut r| {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("recorded_at");
                    }
                    r.to_string()
                })
                .collect();
            v.sort();
            v
        };
        [
            rows(&["status"]),
            rows(&["events"]),
            rows(&["dead-letters"]),
            rows(&["test-events"]),
        ]
    }
}

/// Quick polling and discovery for tests, unless the test sets them itself.
fn test_defaults(extra: &[&str]) -> Vec<&'static str> {
    let mut d = Vec::new();
    for (flag, value) in [
        ("--poll-interval-ms", "100"),
        ("--shard-discovery-secs", "1"),
    ] {
        if !extra.contains(&flag) {
            d.extend([flag, value]);
        }
    }
    d
}

/// A background `optout run`.
pub struct Worker {
    pub child: Child,
    log: tempfile::NamedTempFile,
}

/// A test that fails half-way must not leave its consumer running (polling a dead emulator,
/// holding database connections): dropping a worker kills it.
impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Worker {
    /// SIGKILL, no chance to clean up.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (e.g. "-TERM") and waits; returns the exit status and the JSON logs.
    pub fn signal_and_wait(mut self, signal: &str) -> (std::process::ExitStatus, Vec<Value>) {
        let pid = self.child.id().to_string();
        Command::new("kill").args([signal, &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        (status, self.logs())
    }

    /// SIGTERM, then asserts a clean exit 0; returns the JSON logs.
    pub fn terminate(self) -> Vec<Value> {
        let (status, logs) = self.signal_and_wait("-TERM");
        assert!(status.success(), "worker exit {status}: {logs:?}");
        logs
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the process wrote to stderr so far.
    pub fn raw_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log.path()).unwrap_or_default()).to_string()
    }

    /// The JSON log lines written so far.
    pub fn logs(&self) -> Vec<Value> {
        json_lines(&std::fs::read(self.log.path()).unwrap_or_default())
    }

    /// The shards for which a reader logged `event` (its `shard_event` field) so far, e.g.
    /// `caught_up`: the reader's iterator or subscription exists and met the tip.
    pub fn shards_with(&self, event: &str) -> BTreeSet<String> {
        let logs = self.logs();
        let lines = logs.iter().filter(|l| l["shard_event"] == event);
        lines
            .filter_map(|l| l["shard_id"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until readers of `n` shards have logged `event`.
    pub async fn wait_shard_event(&self, event: &str, n: usize) {
        super::emulator::wait_for(
            &format!("{event} on {n} shards"),
            Duration::from_secs(60),
            || async move { self.shards_with(event).len() >= n },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", self.raw_log()));
    }
}

/// The `optout` binary with a clean environment: none of the machine's `OPTOUT_*` settings,
/// PostgreSQL variables or `~/.pgpass` can change what a test sees, and logs at `warn`.
/// Callers add what the test sets.
pub fn bare_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_optout"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("OPTOUT_") || key.starts_with("PG") {
            c.env_remove(&*key);
        }
    }
    c.env("PGPASSFILE", "/nonexistent/pgpass")
        .env("RUST_LOG", "warn")
        .args(args);
    c
}

/// Runs `cmd`: its exit code, and stdout then stderr as one text.
pub fn output_of(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run optout");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A query command's JSON output: every line one JSON value, or the test fails.
pub fn json_rows(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Parses JSON log lines, ignoring anything else (a panic message, say).
pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `records` field of the consumer's final summary line (the one with `shards_finished`):
/// the records it made durable.
pub fn records_read(logs: &[Value]) -> u64 {
    logs.iter()
        .rev()
        .find(|l| l["shards_finished"].is_u64())
        .and_then(|l| l["records"].as_u64())
        .unwrap_or_else(|| panic!("no final log line in {logs:?}"))
}

/// Sequence numbers are decimal strings of up to 128 bits: compare by length, then text.
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a).cmp(&(b.len(), b))
}

/// The stored checkpoint of each shard (shard id → sequence number).
pub async fn checkpoint_map(
    reader: &optout::store::Reader,
    stream: &str,
) -> BTreeMap<String, String> {
    reader
        .shard_states(stream)
        .await
        .unwrap()
        .0
        .into_iter()
        .filter_map(|c| Some((c.shard_id, c.sequence_number?)))
        .collect()
}

/// How many of `records` (shard, sequence number, data) lie after the checkpoints `cps`:
/// exactly what a reader that resumes from them must read again, no more.
pub fn records_after(
    records: &[(String, String, Vec<u8>)],
    cps: &BTreeMap<String, String>,
    shards: Option<&BTreeSet<String>>,
) -> u64 {
    records
        .iter()
        .filter(|(shard, _, _)| shards.is_none_or(|s| s.contains(shard)))
        .filter(|(shard, seq, _)| {
            cps.get(shard)
                .is_none_or(|cp| seq_cmp(seq, cp) == std::cmp::Ordering::Greater)
        })
        .count() as u64
}

/// The reshard every lineage test uses: split shard 0, merge shards 1 and 2. Returns the two
/// children of the split and the child of the merge (see [`assert_children_after_parents`]).
pub async fn split_0_merge_1_2(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> ([String; 2], String) {
    let split = super::emulator::split_shard(client, stream, "shardId-000000000000")
        .await
        .unwrap();
    let merged = super::emulator::merge_shards(
        client,
        stream,
        "shardId-000000000001",
        "shardId-000000000002",
    )
    .await
    .unwrap();
    (split, merged)
}

/// Asserts that each child shard of a split (`split`: the two children of shard 0) and of a
/// merge (`merged`: the child of shards 1 and 2) started to be read only after each of its
/// parents' end commit, from structured data only: a parent's end is its `finished`
/// checkpoint's `updated_at` in the store; a child's start is the earliest reader-start line
/// (the one with a `start` field) for it in the JSON logs of one or several workers.
pub async fn assert_children_after_parents(
    optout: &Optout,
    stream: &str,
    logs: &[Value],
    split: &[String; 2],
    merged: &str,
) {
    use chrono::{DateTime, Utc};
    let store = optout::store::open(&optout.store, 1).await.unwrap();
    let ends: BTreeMap<String, DateTime<Utc>> = store
        .checkpoints(stream)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.finished)
        .map(|c| (c.shard_id, c.updated_at.parse().unwrap()))
        .collect();
    let started = |shard: &str| -> Option<DateTime<Utc>> {
        logs.iter()
            .filter(|l| l["shard_id"] == shard && !l["start"].is_null())
            .filter_map(|l| l["timestamp"].as_str()?.parse().ok())
            .min()
    };
    let lineage = [
        (split[0].as_str(), vec!["shardId-000000000000"]),
        (split[1].as_str(), vec!["shardId-000000000000"]),
        (merged, vec!["shardId-000000000001", "shardId-000000000002"]),
    ];
    for (child, parents) in lineage {
        let started = started(child).unwrap_or_else(|| panic!("child {child} never read"));
        for parent in parents {
            let ended = ends
                .get(parent)
                .unwrap_or_else(|| panic!("parent {parent} never finished"));
            assert!(
                *ended <= started,
                "{child} started at {started}, before {parent} ended at {ended}"
            );
        }
    }
    eprintln!("lineage: each of 3 children started after its parents' end commits");
}

pub fn check_tables(optout: &Optout, n: usize) {
    let events = optout.query(&["events"]);
    let ids: BTreeSet<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = (0..n).map(|i| format!("EZw{i:08}")).collect();
    let lost = want.difference(&ids).count();
    assert_eq!(lost, 0, "{lost} opt events lost");
    assert_eq!(ids, want);
    let status: BTreeMap<String, (String, String)> = optout
        .query(&["status"])
        .into_iter()
        .map(|r| {
            (
                r["subscriber"].as_str().unwrap().to_string(),
                (
                    r["status"].as_str().unwrap().to_string(),
                    r["event_id"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(status, expected_status(n));
    // The event id is the table's key: rows cannot show a duplicate. Tests that must see
    // one count effects (`effects::assert_exactly_once`).
    eprintln!(
        "checked: {n} opt events, lost 0, {} statuses right",
        status.len()
    );
}

pub async fn event_count(reader: &optout::store::Reader) -> usize {
    reader
        .all(&optout::store::EventFilter::default())
        .await
        .map(|e| e.len())
        .unwrap_or(0)
}

/// Waits (polling, bounded by `timeout`) until `store` holds at least `n` opt events.
pub async fn wait_for_events(reader: &optout::store::Reader, n: usize, timeout: Duration) {
    super::emulator::wait_for(&format!("{n} opt events"), timeout, || async move {
        event_count(reader).await >= n
    })
    .await
    .unwrap();
}

/// Writes events `from..to` in chunks of `chunk`, pausing `pause` between chunks.
pub async fn write(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    from: usize,
    to: usize,
    chunk: usize,
    pause: Duration,
) {
    let mut i = from;
    while i < to {
        let end = (i + chunk).min(to);
        let records: Vec<Vec<u8>> = (i..end).map(opt_event).collect();
        super::emulator::put_records(client, stream, &keyed(records))
            .await
            .unwrap();
        i = end;
        tokio::time::sleep(pause).await;
    }
}

pub use super::http::*;
