//! A fake Twilio on the sending side: webhook requests built as Twilio sends them (a form per
//! inbound message; a JSON array of CloudEvents with `bodySHA256` on the URL) and signed by
//! Twilio's own helper library (PyPI `twilio`, `RequestValidator`, through tests/twilio_sign.py
//! in .twilio-venv/, which scripts/install-twilio-helper.sh creates), never by optout's code.
//! Also a plain HTTP/1.1 client to send them with.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test auth token (Twilio's are 32 hex digits).
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// The second token of a rotation.
pub const SECOND_TOKEN: &str = "fedcba9876543210fedcba9876543210";
/// The account of the tests' messages.
pub const ACCOUNT: &str = "AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a";

/// The interpreter with Twilio's library.
pub fn python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".twilio-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-twilio-helper.sh (scripts/test.sh does)",
        py.display()
    );
    py
}

/// What to sign: a form's parameters, or a JSON body.
#[derive(Debug, Clone)]
pub enum Payload {
    Form(Vec<(String, String)>),
    Json(String),
}

/// One request for Twilio's library to sign.
#[derive(Debug, Clone)]
pub struct ToSign {
    pub token: String,
    /// The URL Twilio calls (for JSON, before `bodySHA256` is appended).
    pub url: String,
    pub payload: Payload,
    /// `HMAC_SHA256` for Twilio's webhook signing settings; `None`: the auth token's SHA1.
    pub algorithm: Option<&'static str>,
}

/// What the library made of it.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The URL signed (a JSON body's carries `bodySHA256`).
    pub url: String,
    pub signature: String,
    /// Whether the library's own `validate` accepts the request it describes.
    pub valid: bool,
}

/// Signs every request with one run of Twilio's library.
pub fn sign_all(requests: &[ToSign]) -> Vec<Signed> {
    let input: Vec<Value> = requests
        .iter()
        .map(|r| {
            let mut v = json!({ "token": r.token, "url": r.url });
            match &r.payload {
                Payload::Form(params) => v["params"] = json!(params),
                Payload::Json(body) => v["body"] = json!(body),
            }
            if let Some(a) = r.algorithm {
                v["algorithm"] = json!(a);
            }
            v
        })
        .collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/twilio_sign.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/twilio_sign.py");
    let mut stdin = child.stdin.take().unwrap();
    let text = serde_json::to_vec(&input).unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&text).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "twilio_sign.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|r| Signed {
            url: r["url"].as_str().unwrap().to_owned(),
            signature: r["signature"].as_str().unwrap().to_owned(),
            valid: r["valid"].as_bool().unwrap(),
        })
        .collect()
}

/// One request as Twilio would send it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Path and query (what goes on the request line).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The same request with `name` set to `value` (or removed when `None`).
    pub fn with_header(mut self, name: &str, value: Option<&str>) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.headers.push((name.to_owned(), v.to_owned()));
        }
        self
    }
}

/// The form body of `params`, encoded as Twilio encodes it.
pub fn form_body(params: &[(String, String)]) -> Vec<u8> {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (n, v) in params {
        s.append_pair(n, v);
    }
    s.finish().into_bytes()
}

/// The path and query of a full URL.
pub fn target_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

/// Twilio's requests for `public` (the URL Twilio calls, e.g. `https://optout.example.com`),
/// signed with `token`: all of them with one run of the library.
pub fn requests(public: &str, token: &str, payloads: &[(&str, Payload)]) -> Vec<Request> {
    let to_sign: Vec<ToSign> = payloads
        .iter()
        .map(|(path, p)| ToSign {
            token: token.to_owned(),
            url: format!("{public}{path}"),
            payload: p.clone(),
            algorithm: None,
        })
        .collect();
    sign_all(&to_sign)
        .into_iter()
        .zip(payloads)
        .map(|(signed, (_, payload))| signed_request(&signed, payload))
        .collect()
}

/// The request a signature describes.
pub fn signed_request(signed: &Signed, payload: &Payload) -> Request {
    let (content_type, body) = match payload {
        Payload::Form(params) => ("application/x-www-form-urlencoded", form_body(params)),
        Payload::Json(body) => ("application/json", body.clone().into_bytes()),
    };
    Request {
        target: target_of(&signed.url),
        headers: vec![
            ("Content-Type".into(), content_type.into()),
            ("X-Twilio-Signature".into(), signed.signature.clone()),
            ("User-Agent".into(), "TwilioProxy/1.1".into()),
        ],
        body,
    }
}

/// An inbound message's Messaging webhook parameters, as Twilio sends them: `OptOutType` when
/// Advanced Opt-Out flagged it.
pub fn inbound_params(
    sid: &str,
    from: &str,
    service: Option<&str>,
    body: &str,
    opt_out_type: Option<&str>,
) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", "SAN FRANCISCO"),
        ("FromZip", "94105"),
        ("SmsSid", sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", "SAN FRANCISCO"),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", "+15559870002"),
        ("ToZip", "94105"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    if let Some(s) = service {
        p.push(("MessagingServiceSid".into(), s.into()));
    }
    if let Some(t) = opt_out_type {
        p.push(("OptOutType".into(), t.into()));
    }
    p
}

/// An HTTP answer: status, content type, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// Sends `r` to `addr` as an HTTP/1.1 POST on a connection of its own.
pub async fn post(addr: &str, r: &Request) -> std::io::Result<Answer> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(&encode(addr, r, true)).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("no answer within 30 s"))??;
    parse(&buf).ok_or_else(|| std::io::Error::other("no complete HTTP answer"))
}

/// The request's bytes on the wire.
pub fn encode(addr: &str, r: &Request, close: bool) -> Vec<u8> {
    let mut head = format!("POST {} HTTP/1.1\r\nHost: {addr}\r\n", r.target);
    for (n, v) in &r.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&r.body);
    bytes
}

/// Parses a whole answer read to the connection's end.
pub fn parse(buf: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    Some(Answer {
        status,
        content_type,
        body: body.to_owned(),
    })
}

/// One keep-alive HTTP/1.1 connection, as Twilio's senders keep them.
pub struct Connection {
    addr: String,
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Connection {
    /// Connects to `addr`.
    pub async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            addr: addr.to_owned(),
            stream: tokio::io::BufReader::new(stream),
        })
    }

    /// Sends `r` and reads its answer, leaving the connection open.
    pub async fn send(&mut self, r: &Request) -> std::io::Result<Answer> {
        use tokio::io::AsyncBufReadExt;
        self.stream
            .get_mut()
            .write_all(&encode(&self.addr, r, false))
            .await?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Answer {
            status: head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            content_type: header("content-type").unwrap_or_default(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
