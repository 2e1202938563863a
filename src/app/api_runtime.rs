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

/// A runtime of its own for the HTTP server; shut down, without waiting, when dropped (the
/// server's graceful shutdown has run by then).
pub(super) struct ApiRuntime(Option<Runtime>);

impl ApiRuntime {
    /// A runtime of `threads` worker threads named `optout-http`.
    pub(super) fn new(threads: usize) -> Result<Self, AppError> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
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
        self.0
            .as_ref()
            .expect("the runtime lives until dropped")
            .spawn(future)
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
