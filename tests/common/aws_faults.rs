//! An HTTP proxy in front of the real emulator that answers a share of Kinesis calls the way
//! AWS fails: its real error codes and bodies (`ProvisionedThroughputExceededException`,
//! `LimitExceededException`, `KMSThrottlingException`, `ExpiredIteratorException`, 500
//! `InternalFailure`), slow answers, and connections cut mid-body. Neither emulator throttles
//! or fails like this, and the SDK parses these answers for real, so the engine's error
//! classification is tested end to end. It also times every `GetRecords` call it forwards,
//! and can enforce AWS's read limit of bytes per shard ([`AwsFaults::limit_read_bytes`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// One way to fail a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 400 `ProvisionedThroughputExceededException` (GetRecords over the shard's limit).
    Throughput,
    /// 400 `LimitExceededException` (ListShards, SubscribeToShard over their limits).
    Limit,
    /// 400 `KMSThrottlingException` (KMS throttled the decryption of an encrypted stream).
    KmsThrottling,
    /// 400 `ExpiredIteratorException`.
    ExpiredIterator,
    /// 500 `InternalFailure`.
    Internal,
    /// The real answer, two seconds late.
    Slow,
    /// The real answer's headers and half its body, then the connection is closed.
    CutMidBody,
}

impl Fault {
    fn error(self) -> Option<(StatusCode, &'static str, &'static str)> {
        Some(match self {
            Fault::Throughput => (
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "Rate exceeded for shard shardId-000000000000 in stream s under account 123456789012.",
            ),
            Fault::Limit => (
                StatusCode::BAD_REQUEST,
                "LimitExceededException",
                "Rate exceeded for stream s under account 123456789012.",
            ),
            Fault::KmsThrottling => (
                StatusCode::BAD_REQUEST,
                "KMSThrottlingException",
                "The request was denied due to request throttling.",
            ),
            Fault::ExpiredIterator => (
                StatusCode::BAD_REQUEST,
                "ExpiredIteratorException",
                "Iterator expired. The iterator was created at time ... while right now it is ...",
            ),
            Fault::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "The request processing has failed because of an unknown error.",
            ),
            Fault::Slow | Fault::CutMidBody => return None,
        })
    }
}

/// How one operation fails.
#[derive(Debug, Clone, Default)]
pub struct OpFaults {
    /// The faults, drawn at random for each failing call.
    pub kinds: Vec<Fault>,
    /// Share of the operation's calls that fail (0.0 to 1.0).
    pub share: f64,
    /// The first this many calls fail whatever the share (so a rare operation is covered).
    pub first: u64,
}

/// Which faults each operation gets: operation (`GetRecords`, `ListShards`,
/// `SubscribeToShard`…) → its faults.
pub type Plan = HashMap<&'static str, OpFaults>;

/// The record data one shard's answered `GetRecords` calls brought.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    /// Bytes of record data, every answer.
    pub bytes: u64,
    /// Bytes of the last answer.
    pub last_bytes: u64,
    /// Arrival of the first answered call.
    pub first: Instant,
    /// Arrival of the last answered call.
    pub last: Instant,
}

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Faults injected, by kind.
    pub injected: HashMap<Fault, u64>,
    /// Calls per operation (forwarded or not).
    pub calls: HashMap<String, u64>,
    /// Arrival time of every `GetRecords` call, by the shard its iterator belongs to.
    pub get_records_at: HashMap<String, Vec<Instant>>,
    /// Records passed on in `GetRecords` answers.
    pub records_served: u64,
    /// Record data passed on in `GetRecords` answers, by shard (under a read limit).
    pub bytes_served: HashMap<String, Served>,
    /// `GetRecords` calls refused for coming before their shard's bytes were paid for.
    pub read_limit_throttles: u64,
}

struct Inner {
    upstream: String,
    client: Client<HttpConnector, Body>,
    plan: Mutex<Plan>,
    seen: Mutex<Seen>,
    rng: Mutex<fastrand::Rng>,
    /// Shard id of every iterator handed out, so GetRecords calls can be told apart by shard.
    iterators: Mutex<HashMap<String, String>>,
    /// Once this many records were served, every further `GetRecords` fails (500).
    record_budget: Mutex<Option<u64>>,
    /// AWS's read limit per shard, bytes of record data a second, when enforced.
    read_limit: Mutex<Option<u64>>,
    /// When each shard may be read again under that limit.
    shard_free_at: Mutex<HashMap<String, Instant>>,
}

/// How early a call may come before its shard is paid for: the reader paces from when it
/// sends, the proxy from when calls arrive, and arrivals jitter on a busy machine.
const READ_LIMIT_GRACE: Duration = Duration::from_millis(100);

/// The proxy on a random 127.0.0.1 port.
pub struct AwsFaults {
    /// `http://127.0.0.1:PORT`, to give `optout` as its endpoint.
    pub endpoint: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AwsFaults {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AwsFaults {
    /// Starts forwarding to `upstream` (`http://127.0.0.1:PORT`) with `plan`; `seed` makes the
    /// draw of failing calls repeatable.
    pub async fn start(upstream: &str, plan: Plan, seed: u64) -> AwsFaults {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            plan: Mutex::new(plan),
            seen: Mutex::new(Seen::default()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            iterators: Mutex::new(HashMap::new()),
            record_budget: Mutex::new(None),
            read_limit: Mutex::new(None),
            shard_free_at: Mutex::new(HashMap::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AwsFaults {
            endpoint,
            inner,
            task,
        }
    }

    /// Stops injecting faults (the proxy keeps forwarding and counting).
    pub fn heal(&self) {
        self.inner.plan.lock().unwrap().clear();
        *self.inner.record_budget.lock().unwrap() = None;
    }

    /// Serves at most about `records` records: once that many were passed on, every further
    /// `GetRecords` fails with a 500 (retried forever by the consumer). What a consumer reads
    /// through the proxy is then bounded by counting: the budget plus one answer per call in
    /// flight, whatever the machine's speed.
    pub fn limit_records(&self, records: u64) {
        *self.inner.record_budget.lock().unwrap() = Some(records);
    }

    /// Enforces AWS's read limit: `bytes_per_sec` of record data per shard. An answer of `n`
    /// bytes leaves its shard unreadable for `n / bytes_per_sec` from its call (AWS: "if a
    /// call returns 10 MiB, subsequent calls made within the next 5 seconds throw
    /// ProvisionedThroughputExceededException"); a call before then is refused that way, and
    /// counted in [`Seen::read_limit_throttles`].
    pub fn limit_read_bytes(&self, bytes_per_sec: u64) {
        *self.inner.read_limit.lock().unwrap() = Some(bytes_per_sec);
    }

    /// What the proxy saw so far.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.inner.seen.lock().unwrap())
    }
}

/// The operation named by the `X-Amz-Target` header (`Kinesis_20131202.GetRecords`).
fn operation(req: &Request) -> String {
    req.headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown")
        .to_string()
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let op = operation(&req);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now = Instant::now();
    let shard = match op.as_str() {
        "GetRecords" => {
            iterator_of(&body).and_then(|it| inner.iterators.lock().unwrap().get(&it).cloned())
        }
        _ => None,
    };
    let spent = op == "GetRecords"
        && inner
            .record_budget
            .lock()
            .unwrap()
            .is_some_and(|budget| inner.seen.lock().unwrap().records_served >= budget);
    let read_limit = *inner.read_limit.lock().unwrap();
    let too_early = op == "GetRecords"
        && read_limit.is_some()
        && shard.as_ref().is_some_and(|s| {
            inner
                .shard_free_at
                .lock()
                .unwrap()
                .get(s)
                .is_some_and(|free| now + READ_LIMIT_GRACE < *free)
        });
    if too_early {
        inner.seen.lock().unwrap().read_limit_throttles += 1;
    }
    let fault = {
        let plan = inner.plan.lock().unwrap();
        let mut rng = inner.rng.lock().unwrap();
        let calls = inner
            .seen
            .lock()
            .unwrap()
            .calls
            .get(&op)
            .copied()
            .unwrap_or(0);
        match plan.get(op.as_str()) {
            _ if too_early => Some(Fault::Throughput),
            _ if spent => Some(Fault::Internal),
            Some(f) if !f.kinds.is_empty() && (calls < f.first || rng.f64() < f.share) => {
                Some(f.kinds[rng.usize(..f.kinds.len())])
            }
            _ => None,
        }
    };
    {
        let mut seen = inner.seen.lock().unwrap();
        *seen.calls.entry(op.clone()).or_default() += 1;
        if op == "GetRecords" {
            let key = shard.clone().unwrap_or_else(|| "unknown".into());
            seen.get_records_at.entry(key).or_default().push(now);
        }
        if let Some(f) = fault.filter(|_| !too_early) {
            *seen.injected.entry(f).or_default() += 1;
        }
    }
    if let Some((status, code, message)) = fault.and_then(Fault::error) {
        let body = format!(r#"{{"__type":"{code}","message":"{message}"}}"#);
        return Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
            .body(Body::from(body))
            .unwrap();
    }
    if fault == Some(Fault::Slow) {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let uri = format!(
        "{}{}",
        inner.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut forward = axum::http::Request::from_parts(parts, Body::from(body.clone()));
    *forward.uri_mut() = uri.parse().unwrap();
    forward.headers_mut().remove(header::HOST);
    let response = match inner.client.request(forward).await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("proxy: {e}")))
                .unwrap();
        }
    };
    let (parts, upstream_body) = response.into_parts();
    if op == "SubscribeToShard" {
        // An event stream: pass it through as it comes.
        return Response::from_parts(parts, Body::new(upstream_body));
    }
    let bytes = upstream_body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if op == "GetShardIterator"
        && let (Some(shard), Some(it)) = (shard_of(&body), iterator_in(&bytes))
    {
        inner.iterators.lock().unwrap().insert(it, shard);
    }
    if op == "GetRecords"
        && let (Some(rate), Some(shard)) = (read_limit, &shard)
    {
        let data = data_bytes_in(&bytes);
        let mut free_at = inner.shard_free_at.lock().unwrap();
        let free = free_at.entry(shard.clone()).or_insert(now);
        *free = (*free).max(now) + Duration::from_secs_f64(data as f64 / rate as f64);
        // Only answers with records: the idle polls after catching up say nothing of the rate.
        if data > 0 {
            let mut seen = inner.seen.lock().unwrap();
            let served = seen.bytes_served.entry(shard.clone()).or_insert(Served {
                bytes: 0,
                last_bytes: 0,
                first: now,
                last: now,
            });
            served.bytes += data;
            served.last_bytes = data;
            served.last = now;
        }
    }
    if op == "GetRecords" {
        inner.seen.lock().unwrap().records_served += records_in(&bytes);
        if let (Some(shard), Some(it)) = (shard, next_iterator_in(&bytes)) {
            inner.iterators.lock().unwrap().insert(it, shard);
        }
    }
    if fault == Some(Fault::CutMidBody) {
        // Promise the whole body, send half, then fail: the connection is closed mid-body.
        let mut parts = parts;
        parts.headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_str(&bytes.len().to_string()).unwrap(),
        );
        let half = bytes.slice(..bytes.len() / 2);
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut mid-body",
            )),
        ];
        return Response::from_parts(parts, Body::from_stream(futures_util::stream::iter(chunks)));
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn json_field(bytes: &Bytes, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get(key)?.as_str().map(str::to_string)
}

fn iterator_of(request: &Bytes) -> Option<String> {
    json_field(request, "ShardIterator")
}

fn shard_of(request: &Bytes) -> Option<String> {
    json_field(request, "ShardId")
}

fn iterator_in(response: &Bytes) -> Option<String> {
    json_field(response, "ShardIterator")
}

fn next_iterator_in(response: &Bytes) -> Option<String> {
    json_field(response, "NextShardIterator")
}

/// How many records a `GetRecords` answer holds.
fn records_in(response: &Bytes) -> u64 {
    let v: Option<serde_json::Value> = serde_json::from_slice(response).ok();
    v.as_ref()
        .and_then(|v| v.get("Records")?.as_array().map(Vec::len))
        .unwrap_or(0) as u64
}

/// The record data a `GetRecords` answer holds: its `Data` fields, base64-decoded.
fn data_bytes_in(response: &Bytes) -> u64 {
    let v: Option<serde_json::Value> = serde_json::from_slice(response).ok();
    let Some(records) = v
        .as_ref()
        .and_then(|v| v.get("Records")?.as_array().cloned())
    else {
        return 0;
    };
    records
        .iter()
        .filter_map(|r| r.get("Data")?.as_str())
        .map(|b64| {
            (b64.len() / 4 * 3 - b64.bytes().rev().take_while(|&c| c == b'=').count()) as u64
        })
        .sum()
}

/// The most `GetRecords` calls one shard received within any one second.
pub fn max_calls_per_second(times: &[Instant]) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
