//! The HTTP server's own threads beside `optout run`'s consumer (`--http-threads`).
//!
//! On one runtime the two compete badly: the consumer works in long stretches without
//! yielding (the SDK deserializes an answer of up to 10 MB, the decoder reads thousands of
//! records at once), and under a closed loop of lookups the server's tasks crowd the
//! consumer's. Measured on 2 cores while draining a backlog: the drain fell to 0.46× its rate
//! alone on one runtime, 0.71× with the server on one thread of its own, for 9% fewer lookups
//! answered at saturation. The server's listeners and read pool are made on its threads too,
//! so their I/O is driven there.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

use super::AppError;

/// Where the HTTP server runs: a runtime of its own, or (with 0 threads) the caller's. A
/// runtime of its own is shut down, without waiting, when dropped (the server's graceful
/// shutdown has run by then).
pub(super) struct ApiRuntime(Option<Runtime>);

impl ApiRuntime {
    /// A runtime of `threads` worker threads named `optout-http`; with 0, the caller's.
    pub(super) fn new(threads: usize) -> Result<Self, AppError> {
        if threads == 0 {
            return Ok(ApiRuntime(None));
        }
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("optout-http")
            .enable_all()
            .build()
            .map_err(AppError::Http)?;
        Ok(ApiRuntime(Some(runtime)))
    }

    /// Runs `future` on the server's threads.
    pub(super) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(runtime) => runtime.spawn(future),
            None => tokio::spawn(future),
        }
    }
}

impl Drop for ApiRuntime {
    fn drop(&mut self) {
        // Dropping a runtime waits for its blocking threads, which an async context forbids.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The output of a task, or its panic carried on.
pub(super) async fn join<T>(handle: JoinHandle<T>) -> T {
    match handle.await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the HTTP server's task was cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_server_runs_on_threads_of_its_own_unless_told_0() {
        let own = ApiRuntime::new(2).unwrap();
        assert_eq!(
            join(own.spawn(async { thread_name() })).await.as_deref(),
            Some("optout-http")
        );
        let shared = ApiRuntime::new(0).unwrap();
        assert_ne!(
            join(shared.spawn(async { thread_name() })).await.as_deref(),
            Some("optout-http")
        );
        // Dropped inside an async context without a panic.
        drop(own);
    }

    #[tokio::test]
    #[should_panic(expected = "the server's task failed")]
    async fn a_panic_on_the_server_threads_is_carried_on() {
        let own = ApiRuntime::new(1).unwrap();
        join(own.spawn(async { panic!("the server's task failed") })).await
    }
}
