//! HTTP from the tests' side: a free port, plain GETs that wait on nothing but the answer, a
//! metric's value, and a background `optout serve` with its peak memory read from `/proc`.
//! Re-exported by [`super::optout`], where most tests take it from.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::optout::{bare_command, json_lines};

/// The value of one exposition line, e.g. `optout_retries_total{kind="throttled"}` (the whole
/// series, labels included, up to the space before the value); 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// A free 127.0.0.1 port, for `--http-addr`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET; returns (status code, body), or (0, "") if nothing listens yet.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_get_with(addr, path, &[]).await
}

/// [`http_get`] with extra request headers, e.g. `("Accept", "application/x-ndjson")`.
pub async fn http_get_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A plain HTTP/1.0 form POST of `form` with extra request headers; returns (status code,
/// response head, body), or (0, "", "") if nothing listens.
pub async fn http_post_form(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new(), String::new());
    };
    let mut request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        form.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(form);
    if s.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new(), String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_string(), body.to_string())
}

/// A background `optout serve` on a free loopback port, reading `store`, killed on drop.
pub struct Served {
    pub child: Child,
    /// `127.0.0.1:PORT` of the API.
    pub addr: String,
    log: tempfile::NamedTempFile,
}

impl Served {
    /// Starts `optout serve --http-addr 127.0.0.1:PORT EXTRA` on `store` (JSON logs to a file)
    /// and waits until `/healthz` answers on `health` (the API's address if `None`).
    pub async fn start(store: &str, extra: &[&str]) -> Served {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut args = vec![
            "serve",
            "--http-addr",
            addr.as_str(),
            "--log-format",
            "json",
        ];
        args.extend_from_slice(extra);
        let child = bare_command(&args)
            .env("OPTOUT_STORE", store)
            .env("RUST_LOG", "warn,optout=info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .expect("start optout serve");
        let served = Served { child, addr, log };
        let probe = extra
            .iter()
            .position(|a| *a == "--health-addr")
            .map_or(served.addr.clone(), |i| extra[i + 1].to_string());
        super::emulator::wait_for("optout serve to answer", Duration::from_secs(30), || {
            let probe = probe.clone();
            async move { http_get(&probe, "/healthz").await.0 == 200 }
        })
        .await
        .unwrap();
        served
    }

    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        peak_rss(self.child.id())
    }

    /// The JSON log lines written so far.
    pub fn logs(&self) -> Vec<Value> {
        json_lines(&std::fs::read(self.log.path()).unwrap_or_default())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peak resident memory (`VmHWM` of `/proc/PID/status`) of process `pid`, in bytes:
/// memory ceilings are measured from outside the process, as an orchestrator sees them.
pub fn peak_rss(pid: u32) -> u64 {
    try_peak_rss(pid).unwrap_or_else(|| panic!("no VmHWM for process {pid}"))
}

/// [`peak_rss`], or `None` once the process is gone.
pub fn try_peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib * 1024)
}
