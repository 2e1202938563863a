//! A TCP proxy between `optout` and the emulator that a test can break: refuse every
//! connection and cut the open ones (the emulator is unreachable) or swallow requests without
//! answering, on new and open connections alike (a hung network), then heal. It injects
//! faults; the Kinesis API itself is the real emulator's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const UP: u8 = 0;
const DOWN: u8 = 1;
const BLACKHOLE: u8 = 2;

/// A fault-injecting proxy on a random 127.0.0.1 port.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`, to give `optout` as its endpoint.
    pub endpoint: String,
    mode: Arc<AtomicU8>,
    changed: watch::Sender<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Proxy {
        let target = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(AtomicU8::new(UP));
        let (changed, _) = watch::channel(UP);
        let (m, tx) = (mode.clone(), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                match m.load(Ordering::SeqCst) {
                    DOWN => drop(inbound), // connection reset: unreachable
                    mode => {
                        let (target, rx) = (target.clone(), tx.subscribe());
                        tokio::spawn(serve(inbound, target, mode, rx));
                    }
                }
            }
        });
        Proxy {
            endpoint,
            mode,
            changed,
            task,
        }
    }

    /// Every connection refused and every open one cut, until [`Proxy::heal`].
    pub fn cut(&self) {
        self.set(DOWN);
    }

    /// Connections accepted but never answered (a hung network), until [`Proxy::heal`].
    pub fn blackhole(&self) {
        self.set(BLACKHOLE);
    }

    /// Back to forwarding.
    pub fn heal(&self) {
        self.set(UP);
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        let _ = self.changed.send(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one connection until either side closes or the mode changes: cut, both sockets
/// close; black-holed, both stay open and silent (a hung network resets nothing, so a call in
/// flight hangs rather than fails) until the mode changes again.
async fn serve(mut inbound: TcpStream, target: String, mode: u8, mut rx: watch::Receiver<u8>) {
    if mode == BLACKHOLE {
        // Hold the socket, answer nothing, until the mode changes; then drop it.
        let _ = rx.changed().await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(&target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
        _ = async { while rx.changed().await.is_ok() { if *rx.borrow() != UP { break; } } } => {}
    }
    if *rx.borrow() == BLACKHOLE {
        let _ = rx.changed().await;
    }
}
