//! Bearer tokens for the query API: several may be valid at once (rotation), each compared in
//! constant time.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The bearer tokens the API accepts; none means open (only allowed on a loopback address,
/// which the CLI enforces).
pub struct ApiAuth {
    tokens: Vec<Vec<u8>>,
    pub(super) metrics_require_token: bool,
}

impl ApiAuth {
    /// Accepts any of `tokens` (several, so that a token can be rotated without downtime).
    pub fn new(tokens: Vec<String>, metrics_require_token: bool) -> Self {
        ApiAuth {
            tokens: tokens.into_iter().map(String::into_bytes).collect(),
            metrics_require_token,
        }
    }

    /// No token: every route is open.
    pub fn open() -> Self {
        ApiAuth::new(Vec::new(), false)
    }

    /// No token is set: every route is open (a loopback bind).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether an `Authorization` header value (`Bearer <token>`) grants access; the web
    /// console's login form asks the same question of the token typed into it.
    pub fn allows_header(&self, authorization: Option<&[u8]>) -> bool {
        self.allows(authorization)
    }

    /// Whether an `Authorization` header value grants access. Every configured token is
    /// compared, each in constant time, so timing tells neither which token nor how much of
    /// one matched (only, as always, the length of the candidate).
    fn allows(&self, authorization: Option<&[u8]>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let Some(presented) = authorization.and_then(bearer_token) else {
            return false;
        };
        self.tokens
            .iter()
            .fold(subtle::Choice::from(0), |any, token| {
                any | subtle::ConstantTimeEq::ct_eq(token.as_slice(), presented)
            })
            .into()
    }
}

/// The token of `Bearer <token>` (scheme in any case, as RFC 7235 says).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// Rejects a request without a valid bearer token: 401 with a JSON body that says what to send.
pub(super) async fn require_token(
    State(auth): State<Arc<ApiAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if auth.allows(presented) {
        return next.run(request).await;
    }
    let detail = if presented.is_some() {
        "the bearer token is not valid"
    } else {
        "send `Authorization: Bearer <token>` with a token from OPTOUT_HTTP_TOKEN or --http-token-file"
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": "unauthorized", "detail": detail })),
    )
        .into_response()
}
