//! A Kinesis emulator per test (each test
//! makes its own streams, see [`unique_stream`]) and the stream helpers tests use to arrange data
//! and assert on it.
//!
//! Two emulators, chosen with `OPTOUT_TEST_EMULATOR=ferrokinesis|kinesis-local` by [`from_env`]:
//! - ferrokinesis (default): in-process, served on its own thread over HTTP/1.1 and h2c on a
//!   random 127.0.0.1 port. Starts in microseconds and is fast.
//! - kinesis-local (npm, 0.6.2): a `node` child process on random ports, found through
//!   `KINESIS_LOCAL_DIR` or `node_modules/kinesis-local` in the crate root (install it with
//!   `scripts/install-kinesis-local.sh`). About 1 s to start and 200 MB of memory, a few hundred
//!   records/s: keep its data small. Killed (SIGTERM, then SIGKILL) when the [`Emulator`] drops.
//!
//! A test that spawns the `optout` binary passes it [`Emulator::env`]. Quirks the helpers absorb
//! (tests/engine/emulators.rs pins each emulator's behaviour):
//! - at the end of a closed shard ferrokinesis omits `NextShardIterator` only on the call *after*
//!   the last records; kinesis-local omits it on the last records' response, with `ChildShards`;
//! - ferrokinesis's ListShards needs StreamName (not StreamARN), so helpers use names;
//! - state delays are set to zero on both, but helpers still poll until the change is visible.
//!
//! One file although long: the two emulators' start-up and the stream helpers share the quirks
//! listed above.
//!
//! Synchronisation is by polling ([`poll`], [`wait_for`]) every 50 ms, never by fixed sleeps.

use std::future::Future;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Shard, ShardIteratorType, StreamStatus};
use ferrokinesis::store::StoreOptions;

/// Region every test client and child process uses.
pub const REGION: &str = "us-east-1";
/// Dummy credentials: both emulators accept any signature.
pub const ACCESS_KEY_ID: &str = "optout-test";
pub const SECRET_ACCESS_KEY: &str = "optout-test-secret";
/// Interval of every poll loop.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long helpers wait for a stream change (create, split, merge) to become visible.
pub const STREAM_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

const KINESIS_LOCAL_VERSION: &str = "0.6.2";
const KINESIS_LOCAL_START_TIMEOUT: Duration = Duration::from_secs(60);
const KINESIS_LOCAL_TERM_GRACE: Duration = Duration::from_secs(3);
const FERROKINESIS_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// PutRecords accepts at most 500 entries a call.
const PUT_RECORDS_CHUNK: usize = 500;
const PUT_RECORDS_ATTEMPTS: usize = 10;
/// Upper bound of GetRecords calls per shard in [`read_all`], against a loop that never ends.
const READ_ALL_MAX_CALLS: usize = 10_000;

/// Which emulator an [`Emulator`] runs, for tests that pin emulator-specific behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatorKind {
    Ferrokinesis,
    KinesisLocal,
}

/// A running Kinesis emulator; stopped when dropped.
pub struct Emulator {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    pub kind: EmulatorKind,
    _guard: Guard,
}

enum Guard {
    Ferrokinesis(Option<tokio::sync::oneshot::Sender<()>>),
    KinesisLocal(KinesisLocalProcess),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Ferrokinesis(stop) = self
            && let Some(stop) = stop.take()
        {
            let _ = stop.send(());
        }
    }
}

impl Emulator {
    /// An SDK client for this emulator (see [`client_for`]).
    pub async fn client(&self) -> Client {
        client_for(&self.endpoint)
    }

    /// Environment for a child process using the AWS SDK's default chain (the `optout` binary):
    /// endpoint, region and dummy credentials, with IMDS and the user's ~/.aws files shut out.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// [`Emulator::env`] with the endpoint set to `endpoint` (a proxy in front of it).
    pub fn env_via(&self, endpoint: &str) -> Vec<(String, String)> {
        let mut env = self.env();
        for (k, v) in &mut env {
            if k == "AWS_ENDPOINT_URL" {
                *v = endpoint.to_string();
            }
        }
        env
    }
}

/// An SDK client for `endpoint`: static dummy credentials, region us-east-1, nothing read from
/// the environment or ~/.aws, and retries disabled so every emulator error reaches the test as is.
pub fn client_for(endpoint: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "optout-tests",
        ))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// The emulator named by `OPTOUT_TEST_EMULATOR` (`ferrokinesis`, the default, or `kinesis-local`).
pub async fn from_env() -> Emulator {
    match std::env::var("OPTOUT_TEST_EMULATOR").as_deref() {
        Err(_) | Ok("") | Ok("ferrokinesis") => ferrokinesis().await,
        Ok("kinesis-local") => kinesis_local()
            .await
            .expect("OPTOUT_TEST_EMULATOR=kinesis-local: cannot start kinesis-local"),
        Ok(other) => {
            panic!("OPTOUT_TEST_EMULATOR={other:?}: expected ferrokinesis or kinesis-local")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ferrokinesis, in process

/// Store options for tests: no state delays, room for many shards.
pub fn ferrokinesis_options() -> StoreOptions {
    StoreOptions {
        create_stream_ms: 0,
        delete_stream_ms: 0,
        update_stream_ms: 0,
        shard_limit: 1000,
        ..Default::default()
    }
}

/// ferrokinesis with [`ferrokinesis_options`] on a random 127.0.0.1 port.
pub async fn ferrokinesis() -> Emulator {
    ferrokinesis_with(ferrokinesis_options()).await
}

/// ferrokinesis with the given options (e.g. a short `iterator_ttl_seconds`).
///
/// It runs on a thread of its own with its own runtime, so a test that blocks its thread (a
/// synchronous `Command::output()` of the optout binary, say) cannot stall the emulator, whatever
/// the test's runtime flavour. `axum::serve` is hyper-util's auto builder with upgrades, the same
/// HTTP/1.1 + h2c (prior knowledge) serving as ferrokinesis's own `serve_plain_http`.
pub async fn ferrokinesis_with(options: StoreOptions) -> Emulator {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for ferrokinesis");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let endpoint = format!("http://{}", listener.local_addr().expect("local address"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ferrokinesis".into())
        .spawn(move || serve_ferrokinesis(listener, options, stop_rx))
        .expect("spawn the ferrokinesis thread");
    Emulator {
        endpoint,
        kind: EmulatorKind::Ferrokinesis,
        _guard: Guard::Ferrokinesis(Some(stop_tx)),
    }
}

/// Serves until `stop` fires (or its sender is dropped), then drains connections for at most
/// [`FERROKINESIS_DRAIN_TIMEOUT`]; dropping the runtime ends whatever is left (e.g. an open
/// SubscribeToShard stream).
fn serve_ferrokinesis(
    listener: StdTcpListener,
    options: StoreOptions,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("ferrokinesis runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let (app, _store) = ferrokinesis::create_app(options);
        let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
        let signal = {
            let stopping = stopping.clone();
            async move {
                let _ = stop.await;
                stopping.notify_one();
            }
        };
        let server = axum::serve(listener, app).with_graceful_shutdown(signal);
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            _ = &mut server => return,
            _ = stopping.notified() => {}
        }
        let _ = tokio::time::timeout(FERROKINESIS_DRAIN_TIMEOUT, server).await;
    });
}

// ---------------------------------------------------------------------------------------------
// kinesis-local, a node child process

/// A kinesis-local child process: SIGTERM then SIGKILL when dropped; its log file is removed.
struct KinesisLocalProcess {
    child: Mutex<Child>,
    log: PathBuf,
}

impl Drop for KinesisLocalProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        terminate(child, KINESIS_LOCAL_TERM_GRACE);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// SIGTERM, wait up to `grace` for the exit, then SIGKILL and reap.
fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if sent {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The kinesis-local package directory (the one holding main.js): `KINESIS_LOCAL_DIR`, else
/// `node_modules/kinesis-local` in the crate root.
pub fn kinesis_local_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("KINESIS_LOCAL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/kinesis-local"),
    };
    ensure!(
        dir.join("main.js").is_file(),
        "kinesis-local {KINESIS_LOCAL_VERSION} is not installed ({} has no main.js): run \
         scripts/install-kinesis-local.sh, or set KINESIS_LOCAL_DIR to the package directory",
        dir.display()
    );
    Ok(dir)
}

/// Starts kinesis-local on random free ports and waits until it answers ListStreams.
/// A start that loses its ports to another process is retried with new ones.
pub async fn kinesis_local() -> anyhow::Result<Emulator> {
    let dir = kinesis_local_dir()?;
    let mut last_error = None;
    for _attempt in 0..3 {
        match start_kinesis_local(&dir).await {
            Ok(emulator) => return Ok(emulator),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.expect("at least one attempt"))
}

async fn start_kinesis_local(dir: &Path) -> anyhow::Result<Emulator> {
    let [plain, tls] = free_ports()?;
    let log = std::env::temp_dir().join(format!(
        "optout-kinesis-local-{}-{plain}.log",
        std::process::id()
    ));
    let child = spawn_kinesis_local(dir, plain, tls, &log)?;
    let process = KinesisLocalProcess {
        child: Mutex::new(child),
        log,
    };
    let endpoint = format!("http://127.0.0.1:{plain}");
    wait_until_answering(&process, &endpoint).await?;
    Ok(Emulator {
        endpoint,
        kind: EmulatorKind::KinesisLocal,
        _guard: Guard::KinesisLocal(process),
    })
}

/// Two distinct ports free on all interfaces (kinesis-local binds 0.0.0.0 / ::).
fn free_ports() -> anyhow::Result<[u16; 2]> {
    let a = StdTcpListener::bind("0.0.0.0:0").context("pick a free port")?;
    let b = StdTcpListener::bind("0.0.0.0:0").context("pick a free port")?;
    Ok([a.local_addr()?.port(), b.local_addr()?.port()])
}

fn spawn_kinesis_local(dir: &Path, plain: u16, tls: u16, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone()?;
    let mut command = Command::new("node");
    command
        .arg(dir.join("main.js"))
        .current_dir(std::env::temp_dir())
        .env("KINESIS_MOCK_PLAIN_PORT", plain.to_string())
        .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
        .env("KINESIS_MOCK_CERT_PATH", dir.join("server.json"))
        .env("LOAD_DATA_IF_EXISTS", "false")
        .env("SHOULD_PERSIST_DATA", "false")
        .env("SHARD_LIMIT", "1000")
        .env("LOG_LEVEL", "WARN")
        .envs(KINESIS_LOCAL_DURATIONS.iter().map(|name| (*name, "0ms")))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    command.spawn().with_context(|| {
        "cannot run `node` for kinesis-local: install Node.js 20 (Debian: apt-get install nodejs)"
    })
}

/// Every state delay kinesis-local 0.6.2 knows (all 500 ms by default).
const KINESIS_LOCAL_DURATIONS: &[&str] = &[
    "CREATE_STREAM_DURATION",
    "DELETE_STREAM_DURATION",
    "REGISTER_STREAM_CONSUMER_DURATION",
    "DEREGISTER_STREAM_CONSUMER_DURATION",
    "START_STREAM_ENCRYPTION_DURATION",
    "STOP_STREAM_ENCRYPTION_DURATION",
    "MERGE_SHARDS_DURATION",
    "SPLIT_SHARD_DURATION",
    "UPDATE_SHARD_COUNT_DURATION",
    "UPDATE_STREAM_MODE_DURATION",
];

/// Polls ListStreams until it succeeds; fails at once, with the log's tail, if node exits.
async fn wait_until_answering(process: &KinesisLocalProcess, endpoint: &str) -> anyhow::Result<()> {
    let client = &client_for(endpoint);
    poll(
        "kinesis-local to answer",
        KINESIS_LOCAL_START_TIMEOUT,
        || async move {
            let exited = process.child.lock().expect("child lock").try_wait()?;
            if let Some(status) = exited {
                bail!(
                    "kinesis-local exited during startup ({status}); its log {}:\n{}",
                    process.log.display(),
                    log_tail(&process.log)
                );
            }
            Ok(client.list_streams().send().await.ok().map(|_| ()))
        },
    )
    .await
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Polling

/// Calls `f` every [`POLL_INTERVAL`] until it yields `Some(value)` (returned) or an error
/// (returned at once); fails after `timeout` naming `what` was awaited.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls the condition `f` every 50 ms until it holds; fails after `timeout`.
///
/// Capture references so the closure can hand them to each new future:
/// `let c = &client; wait_for("3 rows", timeout, || async move { count(c).await == 3 })`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(what, timeout, || {
        let condition = f();
        async move { Ok(condition.await.then_some(())) }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Streams

/// A stream name no other test (nor another test process on the same emulator) uses.
pub fn unique_stream(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// A new stream named after `prefix` (unique per call) with `shards` shards, active.
pub async fn new_stream(client: &Client, prefix: &str, shards: i32) -> String {
    let name = unique_stream(prefix);
    create_stream(client, &name, shards)
        .await
        .unwrap_or_else(|e| panic!("create stream {name}: {e:#}"));
    name
}

/// Creates a provisioned stream with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) -> anyhow::Result<()> {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .with_context(|| format!("CreateStream {name}"))?;
    wait_active(client, name).await
}

/// Waits until DescribeStreamSummary says ACTIVE.
pub async fn wait_active(client: &Client, stream: &str) -> anyhow::Result<()> {
    poll(
        &format!("stream {stream} to be ACTIVE"),
        STREAM_CHANGE_TIMEOUT,
        || async move {
            let summary = client
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await
                .with_context(|| format!("DescribeStreamSummary {stream}"))?;
            let status = summary
                .stream_description_summary()
                .map(|s| s.stream_status().clone());
            Ok((status == Some(StreamStatus::Active)).then_some(()))
        },
    )
    .await
}

/// The stream's ARN (for RegisterStreamConsumer and ARN-addressed calls).
pub async fn stream_arn(client: &Client, stream: &str) -> anyhow::Result<String> {
    let summary = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .with_context(|| format!("DescribeStreamSummary {stream}"))?;
    let summary = summary
        .stream_description_summary()
        .context("DescribeStreamSummary without a summary")?;
    Ok(summary.stream_arn().to_string())
}

/// Puts `records` (partition key, data) with PutRecords in chunks of 500, retrying failed
/// entries; returns each record's (shard id, sequence number), in input order.
pub async fn put_records(
    client: &Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> anyhow::Result<Vec<(String, String)>> {
    let entries = records
        .iter()
        .map(|(key, data)| entry(key, data, None))
        .collect::<anyhow::Result<Vec<_>>>()?;
    put_entries(client, stream, entries).await
}

/// Puts `records` (partition key, data) into the open shard `shard_id`, routing each with the
/// shard's starting hash key as ExplicitHashKey; returns (shard id, sequence number) per record.
pub async fn put_to_shard(
    client: &Client,
    stream: &str,
    shard_id: &str,
    records: &[(String, Vec<u8>)],
) -> anyhow::Result<Vec<(String, String)>> {
    let shards = list_shards(client, stream).await;
    let shard = shards
        .iter()
        .find(|s| s.shard_id() == shard_id)
        .with_context(|| format!("no shard {shard_id} in {stream}"))?;
    ensure!(!is_closed(shard), "shard {shard_id} of {stream} is closed");
    let hash_key = shard
        .hash_key_range()
        .context("shard without a hash key range")?
        .starting_hash_key();
    let entries = records
        .iter()
        .map(|(key, data)| entry(key, data, Some(hash_key)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let placed = put_entries(client, stream, entries).await?;
    if let Some((other, _)) = placed.iter().find(|(s, _)| s != shard_id) {
        bail!("ExplicitHashKey {hash_key} routed a record to {other}, not {shard_id}");
    }
    Ok(placed)
}

fn entry(key: &str, data: &[u8], hash_key: Option<&str>) -> anyhow::Result<PutRecordsRequestEntry> {
    Ok(PutRecordsRequestEntry::builder()
        .partition_key(key)
        .data(Blob::new(data))
        .set_explicit_hash_key(hash_key.map(str::to_string))
        .build()?)
}

async fn put_entries(
    client: &Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut placed = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(PUT_RECORDS_CHUNK) {
        placed.extend(put_chunk(client, stream, chunk).await?);
    }
    Ok(placed)
}

/// One PutRecords chunk, re-sending the failed entries (in order) until all are placed.
async fn put_chunk(
    client: &Client,
    stream: &str,
    chunk: &[PutRecordsRequestEntry],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut placed: Vec<Option<(String, String)>> = vec![None; chunk.len()];
    for attempt in 1..=PUT_RECORDS_ATTEMPTS {
        let pending: Vec<usize> = (0..chunk.len()).filter(|&i| placed[i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        if attempt > 1 {
            tokio::time::sleep(POLL_INTERVAL * attempt as u32).await; // back-off, not a sync point
        }
        let output = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(pending.iter().map(|&i| chunk[i].clone()).collect()))
            .send()
            .await
            .with_context(|| format!("PutRecords to {stream}"))?;
        for (&i, result) in pending.iter().zip(output.records()) {
            if let (Some(shard), Some(seq)) = (result.shard_id(), result.sequence_number()) {
                placed[i] = Some((shard.to_string(), seq.to_string()));
            }
        }
    }
    placed
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("PutRecords to {stream}: entries still failing"))
}

/// Every shard of the stream, open and closed, with lineage (ListShards, all pages).
pub async fn list_shards(client: &Client, stream: &str) -> Vec<Shard> {
    try_list_shards(client, stream)
        .await
        .unwrap_or_else(|e| panic!("ListShards {stream}: {e:#}"))
}

async fn try_list_shards(client: &Client, stream: &str) -> anyhow::Result<Vec<Shard>> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // StreamName and NextToken are mutually exclusive.
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await?;
        shards.extend(page.shards().iter().cloned());
        next_token = page.next_token().map(str::to_string);
        if next_token.is_none() {
            return Ok(shards);
        }
    }
}

/// A shard is closed once its sequence number range has an end.
pub fn is_closed(shard: &Shard) -> bool {
    shard
        .sequence_number_range()
        .and_then(|r| r.ending_sequence_number())
        .is_some()
}

/// Splits the open shard `shard_id` at the midpoint of its hash key range, waits until both
/// children are listed and the stream is ACTIVE; returns the children (lower range first).
pub async fn split_shard(
    client: &Client,
    stream: &str,
    shard_id: &str,
) -> anyhow::Result<[String; 2]> {
    let shards = try_list_shards(client, stream).await?;
    let shard = shards
        .iter()
        .find(|s| s.shard_id() == shard_id)
        .with_context(|| format!("no shard {shard_id} in {stream}"))?;
    let range = shard
        .hash_key_range()
        .context("shard without a hash key range")?;
    let start: u128 = range.starting_hash_key().parse()?;
    let end: u128 = range.ending_hash_key().parse()?;
    ensure!(
        end > start,
        "shard {shard_id} covers one hash key: cannot split"
    );
    let midpoint = start + (end - start) / 2 + 1;
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard_id)
        .new_starting_hash_key(midpoint.to_string())
        .send()
        .await
        .with_context(|| format!("SplitShard {stream} {shard_id}"))?;
    let mut children = wait_children(client, stream, shard_id, None, 2).await?;
    children.sort_by_key(starting_hash_key);
    Ok([children[0].shard_id().into(), children[1].shard_id().into()])
}

/// Merges the adjacent open shards `a` and `b`, waits until the child is listed and the stream
/// is ACTIVE; returns the child's id.
pub async fn merge_shards(
    client: &Client,
    stream: &str,
    a: &str,
    b: &str,
) -> anyhow::Result<String> {
    client
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(a)
        .adjacent_shard_to_merge(b)
        .send()
        .await
        .with_context(|| format!("MergeShards {stream} {a} {b}"))?;
    let children = wait_children(client, stream, a, Some(b), 1).await?;
    Ok(children[0].shard_id().to_string())
}

/// Polls until `count` shards have `parent` (and `adjacent` as adjacent parent) and the stream
/// is ACTIVE again.
async fn wait_children(
    client: &Client,
    stream: &str,
    parent: &str,
    adjacent: Option<&str>,
    count: usize,
) -> anyhow::Result<Vec<Shard>> {
    let what = format!("{count} children of {parent} in {stream}");
    let children = poll(&what, STREAM_CHANGE_TIMEOUT, || async move {
        let children: Vec<Shard> = try_list_shards(client, stream)
            .await?
            .into_iter()
            .filter(|s| {
                s.parent_shard_id() == Some(parent) && s.adjacent_parent_shard_id() == adjacent
            })
            .collect();
        Ok((children.len() == count).then_some(children))
    })
    .await?;
    wait_active(client, stream).await?;
    Ok(children)
}

fn starting_hash_key(shard: &Shard) -> u128 {
    shard
        .hash_key_range()
        .and_then(|r| r.starting_hash_key().parse().ok())
        .unwrap_or(0)
}

/// Every record of every shard (open and closed), read from TRIM_HORIZON until the shard ends
/// (no NextShardIterator) or the reader is caught up (an empty batch, MillisBehindLatest 0).
/// Returns (shard id, sequence number, data), shard by shard in ListShards order.
pub async fn read_all(client: &Client, stream: &str) -> Vec<(String, String, Vec<u8>)> {
    let mut all = Vec::new();
    for shard in list_shards(client, stream).await {
        let records = read_shard(client, stream, shard.shard_id())
            .await
            .unwrap_or_else(|e| panic!("reading {stream} {}: {e:#}", shard.shard_id()));
        all.extend(records);
    }
    all
}

/// One shard's records from TRIM_HORIZON to its end or until caught up.
pub async fn read_shard(
    client: &Client,
    stream: &str,
    shard_id: &str,
) -> anyhow::Result<Vec<(String, String, Vec<u8>)>> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await?
        .shard_iterator()
        .map(str::to_string);
    let mut records = Vec::new();
    for _ in 0..READ_ALL_MAX_CALLS {
        let Some(current) = iterator else {
            return Ok(records);
        };
        let output = client.get_records().shard_iterator(current).send().await?;
        let caught_up =
            output.records().is_empty() && output.millis_behind_latest().unwrap_or(0) == 0;
        records.extend(output.records().iter().map(|r| {
            let data = r.data().as_ref().to_vec();
            (shard_id.to_string(), r.sequence_number().to_string(), data)
        }));
        if caught_up {
            return Ok(records);
        }
        iterator = output.next_shard_iterator().map(str::to_string);
    }
    bail!("{shard_id} of {stream} neither ended nor caught up after {READ_ALL_MAX_CALLS} calls")
}
