//! The one HTTP client the delivery targets share: hyper-util's pooled client over rustls
//! (the stack the AWS SDK already builds), with a deadline per request and a bounded read of
//! the answer, so that a slow or chatty receiver can neither hold a dispatcher nor fill memory.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest answer body read from a target; a larger one is an error of that try.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A response, its body read in full (within [`MAX_RESPONSE_BYTES`]).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request got no answer; every one of them is worth another try later.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("answer body over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// A pooled HTTPS (and plain HTTP, for tests and sidecars) client.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    /// A client trusting the platform's root certificates.
    pub fn new() -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(HttpClient { inner })
    }

    /// POSTs `body` to `uri` with `headers`; the whole exchange, body read included, within
    /// `timeout`.
    pub async fn post(
        &self,
        uri: &Uri,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, SendError> {
        let mut request = Request::post(uri.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SendError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| SendError::Transport(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        SendError::TooLarge
                    } else {
                        SendError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout(timeout))?
    }
}

/// An error with its causes, on one line (hyper's own message is only "client error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A `Retry-After` in seconds (Twilio's form; an HTTP date is read as no hint), bounded.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}
