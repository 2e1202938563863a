//! Load for `scripts/bench-webhooks.sh`: signed Messaging webhook requests (a distinct inbound
//! STOP each, Advanced Opt-Out's `OptOutType` set) from many keep-alive clients, as fast as the
//! server answers; prints requests/s and latency percentiles as one JSON line.
//!
//! Every request is built and signed before the clock starts, so the generator only writes
//! bytes and reads answers while it measures (it shares the machine with the server).
//!
//!   cargo run --release --example webhook-load -- --addr 127.0.0.1:9464 \
//!       --public-url https://optout.example.com --token TOKEN --requests 60000 --clients 64

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use optout::ingest::webhook::verify::{Algorithm, signature, signed_text};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Parser)]
struct Args {
    /// Where optout listens.
    #[arg(long)]
    addr: String,
    /// optout's --public-url: what the requests are signed for.
    #[arg(long)]
    public_url: String,
    /// The auth token to sign with.
    #[arg(long)]
    token: String,
    /// Requests measured.
    #[arg(long, default_value_t = 60_000)]
    requests: usize,
    /// Requests sent first, unmeasured (connections opened, caches warm).
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// Keep-alive connections, each sending its next request when the last is answered.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// First message number (distinct runs on one store use distinct numbers).
    #[arg(long, default_value_t = 0)]
    first: u64,
}

/// The wire bytes of a signed Messaging webhook request for message `n`.
fn request(args: &Args, n: u64) -> Vec<u8> {
    let sid = format!("SM{n:032x}");
    let from = format!("+1555{:07}", n % 10_000_000);
    let params: Vec<(String, String)> = [
        ("ToCountry", "US"),
        ("SmsMessageSid", &sid),
        ("NumMedia", "0"),
        ("SmsSid", &sid),
        ("SmsStatus", "received"),
        ("Body", "STOP"),
        ("OptOutType", "STOP"),
        ("To", "+15559870002"),
        ("MessagingServiceSid", "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c"),
        ("NumSegments", "1"),
        ("MessageSid", &sid),
        ("AccountSid", "AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a"),
        ("From", &from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let url = format!("{}/twilio/messaging", args.public_url);
    let sig = signature(
        Algorithm::HmacSha1,
        args.token.as_bytes(),
        &signed_text(&url, &params),
    );
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "POST /twilio/messaging HTTP/1.1\r\nHost: {}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\nContent-Length: \
         {}\r\n\r\n{body}",
        args.addr,
        body.len()
    )
    .into_bytes()
}

/// Form encoding of the few characters these values hold.
fn encode(v: &str) -> String {
    v.replace('+', "%2B").replace(' ', "+")
}

/// Sends requests `next..` until they run out, on one connection; latencies in µs.
async fn client(
    addr: String,
    requests: Arc<Vec<Vec<u8>>>,
    next: Arc<AtomicUsize>,
) -> std::io::Result<(Vec<u32>, usize)> {
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    let mut line = String::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(r) = requests.get(i) else {
            return Ok((latencies, errors));
        };
        let t = Instant::now();
        stream.get_mut().write_all(r).await?;
        let (mut status, mut length) = (0, 0usize);
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if status == 0 {
                status = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            } else if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        if status != 200 {
            errors += 1;
        }
    }
}

/// Runs `requests` through `clients` connections; (latencies, errors, elapsed).
async fn run(args: &Args, requests: Vec<Vec<u8>>) -> (Vec<u32>, usize, Duration) {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| tokio::spawn(client(args.addr.clone(), requests.clone(), next.clone())))
        .collect();
    let (mut all, mut errors) = (Vec::with_capacity(requests.len()), 0);
    for t in tasks {
        let (l, e) = t.await.expect("client task").expect("client connection");
        all.extend(l);
        errors += e;
    }
    (all, errors, start.elapsed())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let total = (args.warmup + args.requests) as u64;
    let all: Vec<Vec<u8>> = (args.first..args.first + total)
        .map(|n| request(&args, n))
        .collect();
    let (warmup, measured) = all.split_at(args.warmup);
    run(&args, warmup.to_vec()).await;
    let (mut latencies, errors, elapsed) = run(&args, measured.to_vec()).await;
    latencies.sort_unstable();
    let rps = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{{\"requests\": {}, \"clients\": {}, \"non_200\": {errors}, \"seconds\": {:.2}, \
         \"requests_per_sec\": {rps:.0}, \"p50_ms\": {:.2}, \"p90_ms\": {:.2}, \"p99_ms\": {:.2}, \
         \"max_ms\": {:.2}}}",
        latencies.len(),
        args.clients,
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}
