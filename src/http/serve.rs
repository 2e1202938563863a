//! The accept loop: HTTP/1.1 with the limits a public-facing server needs, which
//! `axum::serve` does not set: a deadline for a request's headers (which also closes idle
//! keep-alive connections, so half-open clients cannot pile up), a send deadline (a client
//! that stops reading a response is dropped), bounded buffers per connection, and a cap on
//! open connections per listener, so that a flood on the API port cannot starve the probes
//! on theirs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Longest wait for a request's headers, counted from when the connection is ready for one
/// (so an idle keep-alive connection is closed after this long too).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a response may wait for the client to take bytes (an export nobody reads).
pub(super) const SEND_DEADLINE: Duration = Duration::from_secs(30);
/// hyper's read and write buffers per connection (its default is about 400 KiB): a request's
/// head (the API refuses queries over 8 KiB anyway), and what a response may queue before
/// hyper waits for the socket.
const MAX_BUF_BYTES: usize = 64 << 10;
/// How long shutdown waits for responses in flight (an export) before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// At most one WARN about refused connections per this long, with the count since the last.
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(10);

/// What one listener serves and how many connections it keeps open.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// `api` or `health`, for logs and `optout_http_connections_refused_total{listener}`.
    pub name: &'static str,
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
}

impl Listener {
    /// The query API's (and, without `--health-addr`, the probes'): 1,024 connections.
    pub const API: Listener = Listener {
        name: "api",
        max_connections: 1_024,
    };
    /// `--health-addr`: the kubelet and Prometheus need a handful.
    pub const HEALTH: Listener = Listener {
        name: "health",
        max_connections: 64,
    };
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets responses in flight
/// finish (up to [`SHUTDOWN_GRACE`]).
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Listener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // HTTP/1 only: detecting HTTP/2 would first wait, with no deadline, for a client's bytes.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_BYTES);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused = Refused::default();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "Cannot accept an HTTP connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.one(limits);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let io = TokioIo::new(super::deadline::SendDeadline::new(stream, SEND_DEADLINE));
        let conn = builder.serve_connection(io, service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error.");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP responses still in flight at shutdown were dropped.");
    }
    Ok(())
}

/// Connections refused for the cap: counted every time, logged at most once per
/// [`REFUSED_WARN_EVERY`] (a flood of reconnecting sockets made hundreds of WARN lines).
#[derive(Default)]
struct Refused {
    since_warn: u64,
    last_warn: Option<tokio::time::Instant>,
}

impl Refused {
    fn one(&mut self, limits: Listener) {
        super::metrics::connection_refused(limits.name);
        self.since_warn += 1;
        if self
            .last_warn
            .is_some_and(|t| t.elapsed() < REFUSED_WARN_EVERY)
        {
            return;
        }
        tracing::warn!(
            listener = limits.name,
            max = limits.max_connections,
            refused = self.since_warn,
            "Too many HTTP connections; closing new ones."
        );
        self.since_warn = 0;
        self.last_warn = Some(tokio::time::Instant::now());
    }
}
