//! A PostgreSQL-aware TCP proxy between `optout` and the database that loses the answer to a
//! COMMIT: it forwards the COMMIT of a transaction that wrote a checkpoint, waits until the
//! server has answered it (so the transaction surely landed), swallows that answer and closes
//! the connection. The client sees its commit fail although it is durable, as when a network
//! or a failover drops the connection at that moment.
//!
//! It reads the frontend protocol (PostgreSQL 14+, "Message Flow" and "Message Formats"):
//! after the startup packet every message is a type byte and a big-endian length that counts
//! itself. A statement is recognised at Parse (`P`: name, then SQL), its use at Bind (`B`:
//! portal, then statement name), so prepared statements reused on a connection are followed
//! too; transactions begin and end with simple queries (`Q`: `BEGIN`, `COMMIT`), as sqlx sends
//! them. The server's answer ends with ReadyForQuery (`Z`); its CommandComplete (`C`) tag says
//! whether the transaction committed. TLS is not spoken: the proxy answers `N` to a TLS or
//! GSS request, so clients use `sslmode=disable` or `prefer`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy on a random 127.0.0.1 port.
pub struct PgProxy {
    /// The database URL through the proxy.
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Checkpoint-writing COMMITs still to lose the answer of.
    to_drop: AtomicUsize,
    /// COMMITs whose answer was lost after the server committed.
    dropped: AtomicUsize,
    /// Transactions committed through the proxy (answers relayed).
    commits: AtomicUsize,
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PgProxy {
    /// Starts proxying to the server of `url` (`postgres://user@host:port/db`); returns the
    /// proxy, whose [`PgProxy::url`] reaches the same database.
    pub async fn start(url: &str) -> PgProxy {
        let parsed = url::Url::parse(url).unwrap();
        let upstream = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut through = parsed.clone();
        through.set_host(Some("127.0.0.1")).unwrap();
        through.set_port(Some(port)).unwrap();
        through.query_pairs_mut().append_pair("sslmode", "disable");
        let state = Arc::new(State::default());
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (upstream, s) = (upstream.clone(), s.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = serve(client, server, s).await;
                    }
                });
            }
        });
        PgProxy {
            url: through.to_string(),
            state,
            task,
        }
    }

    /// Loses the answer of the next `n` COMMITs of transactions that wrote a checkpoint.
    pub fn drop_next_commits(&self, n: usize) {
        self.state.to_drop.store(n, Ordering::SeqCst);
    }

    /// COMMITs that landed but whose answer was lost so far.
    pub fn dropped(&self) -> usize {
        self.state.dropped.load(Ordering::SeqCst)
    }

    /// Transactions committed and answered through the proxy so far.
    pub fn commits(&self) -> usize {
        self.state.commits.load(Ordering::SeqCst)
    }
}

const SSL_REQUEST: u32 = 80877103;
const GSS_REQUEST: u32 = 80877104;

/// One client connection: the startup packet (refusing TLS), then message by message.
async fn serve(
    mut client: TcpStream,
    mut server: TcpStream,
    state: Arc<State>,
) -> std::io::Result<()> {
    let startup = loop {
        let mut head = [0u8; 8];
        client.read_exact(&mut head).await?;
        let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
        let code = u32::from_be_bytes(head[4..].try_into().unwrap());
        if code == SSL_REQUEST || code == GSS_REQUEST {
            client.write_all(b"N").await?;
            continue;
        }
        let mut packet = head.to_vec();
        packet.resize(len.max(8), 0);
        client.read_exact(&mut packet[8..]).await?;
        break packet;
    };
    server.write_all(&startup).await?;
    let mut conn = Connection::default();
    let (mut from_client, mut from_server) = (Vec::new(), vec![0u8; 64 << 10]);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        tokio::select! {
            n = client.read(&mut chunk) => {
                let n = n?;
                if n == 0 { return Ok(()); }
                from_client.extend_from_slice(&chunk[..n]);
                while let Some(message) = take_message(&mut from_client) {
                    let drop_answer = conn.sees(&message, &state);
                    server.write_all(&message).await?;
                    if drop_answer {
                        if swallow_answer(&mut server).await? {
                            state.dropped.fetch_add(1, Ordering::SeqCst);
                        }
                        return Ok(()); // both sockets close: the client never hears back
                    }
                }
            }
            n = server.read(&mut from_server) => {
                let n = n?;
                if n == 0 { return Ok(()); }
                client.write_all(&from_server[..n]).await?;
            }
        }
    }
}

/// What the proxy knows of one connection's statements and transaction.
#[derive(Default)]
struct Connection {
    /// Prepared statement name → it writes a checkpoint.
    statements: HashMap<Vec<u8>, bool>,
    /// The current transaction wrote a checkpoint.
    wrote_checkpoint: bool,
}

impl Connection {
    /// Follows one client message; true when it is a COMMIT whose answer is to be lost.
    fn sees(&mut self, message: &[u8], state: &State) -> bool {
        let body = &message[5..];
        match message[0] {
            b'P' => {
                let (name, rest) = cstring(body);
                let (sql, _) = cstring(rest);
                let sql = String::from_utf8_lossy(sql).to_ascii_uppercase();
                let writes = sql.contains("CHECKPOINTS")
                    && (sql.trim_start().starts_with("INSERT")
                        || sql.trim_start().starts_with("UPDATE"));
                self.statements.insert(name.to_vec(), writes);
            }
            b'B' => {
                let (_portal, rest) = cstring(body);
                let (name, _) = cstring(rest);
                if self.statements.get(name).copied().unwrap_or(false) {
                    self.wrote_checkpoint = true;
                }
            }
            b'Q' => {
                let (sql, _) = cstring(body);
                let sql = String::from_utf8_lossy(sql).trim().to_ascii_uppercase();
                let sql = sql.trim_end_matches(';');
                if sql.starts_with("BEGIN") || sql.starts_with("START TRANSACTION") {
                    self.wrote_checkpoint = false;
                } else if sql == "COMMIT" || sql == "END" {
                    let wrote = std::mem::take(&mut self.wrote_checkpoint);
                    let armed = |n: usize| n.checked_sub(1);
                    if wrote
                        && (state.to_drop)
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, armed)
                            .is_ok()
                    {
                        return true;
                    }
                    state.commits.fetch_add(1, Ordering::SeqCst);
                }
            }
            _ => {}
        }
        false
    }
}

/// Reads the server's answer to a COMMIT up to ReadyForQuery without passing it on; true if
/// its CommandComplete tag says the transaction committed.
async fn swallow_answer(server: &mut TcpStream) -> std::io::Result<bool> {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 8 << 10];
    let mut committed = false;
    loop {
        let n = server.read(&mut chunk).await?;
        if n == 0 {
            return Ok(committed);
        }
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(message) = take_message(&mut buffer) {
            match message[0] {
                b'C' => committed = cstring(&message[5..]).0 == b"COMMIT",
                b'Z' => return Ok(committed),
                _ => {}
            }
        }
    }
}

/// Takes one whole typed message (type byte, length, body) off the front of `buffer`.
fn take_message(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    if buffer.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes(buffer[1..5].try_into().unwrap()) as usize;
    if buffer.len() < 1 + len {
        return None;
    }
    Some(buffer.drain(..1 + len).collect())
}

/// A NUL-terminated string and what follows it.
fn cstring(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}
