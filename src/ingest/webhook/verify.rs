//! Is this request from Twilio? `X-Twilio-Signature`, as Twilio computes it and its helper
//! libraries check it (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>):
//!
//! - the signed text is the URL Twilio called, then, for a form, every POST parameter sorted by
//!   name, each name followed by its value (the values of a repeated name de-duplicated and
//!   sorted), with no separators; every received parameter, since Twilio adds new ones without
//!   notice;
//! - a JSON body (the Event Streams webhook) signs the URL alone, which carries `bodySHA256`, the
//!   hex SHA-256 of the raw body;
//! - the signature is base64 of HMAC-SHA1 keyed with the auth token, or HMAC-SHA256 when
//!   `X-Twilio-Webhooks-Signature-Settings` says `algorithm=HMAC_SHA256`;
//! - the URL is tried with and without its port, as the libraries do, since Twilio's own
//!   signing is not consistent about it.
//!
//! The URL is `--public-url` (what Twilio calls, behind any TLS-terminating proxy) plus the
//! request's own path and query, never the request's `Host` header: a signature made for
//! another host must not pass. Every candidate is compared in constant time.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// One auth token, optionally tied to one account or subaccount.
#[derive(Clone)]
pub struct AuthToken {
    /// Only requests of this account may be signed with it (`AC… TOKEN` lines).
    pub account: Option<String>,
    secret: Vec<u8>,
}

/// The auth tokens requests may be signed with: several during a rotation (the primary and the
/// secondary token), each maybe tied to one account.
#[derive(Clone, Default)]
pub struct AuthTokens(Vec<AuthToken>);

impl std::fmt::Debug for AuthTokens {
    /// By hand: a token never reaches a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accounts: Vec<&str> = self
            .0
            .iter()
            .map(|t| t.account.as_deref().unwrap_or("any account"))
            .collect();
        f.debug_struct("AuthTokens")
            .field("tokens", &accounts)
            .finish()
    }
}

impl AuthTokens {
    /// Parses a token file: one token per line, or `AC… TOKEN` to tie a token to an account;
    /// blank lines and `#` comments are skipped. The error says which line is wrong, never
    /// what it holds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let token = match fields.as_slice() {
                [token] => AuthToken {
                    account: None,
                    secret: token.as_bytes().to_vec(),
                },
                [account, token] if crate::event::is_sid(account) && account.starts_with("AC") => {
                    AuthToken {
                        account: Some((*account).to_owned()),
                        secret: token.as_bytes().to_vec(),
                    }
                }
                _ => {
                    return Err(format!(
                        "line {} is neither `TOKEN` nor `AC<32 hex digits> TOKEN`",
                        n + 1
                    ));
                }
            };
            tokens.push(token);
        }
        if tokens.is_empty() {
            return Err("holds no token: write the account's auth token, one per line".into());
        }
        Ok(AuthTokens(tokens))
    }

    /// The tokens, for tests and callers that sign.
    pub fn iter(&self) -> impl Iterator<Item = &AuthToken> {
        self.0.iter()
    }
}

/// The hash Twilio signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// The default.
    HmacSha1,
    /// With Twilio's webhook signing settings (a SharedKey).
    HmacSha256,
}

impl Algorithm {
    /// The algorithm `X-Twilio-Webhooks-Signature-Settings` names (`key=…,algorithm=HMAC_SHA256`),
    /// HMAC-SHA1 without the header; `None` for one we do not know.
    pub fn from_settings(header: Option<&str>) -> Option<Algorithm> {
        // As Twilio's libraries read it: the first `algorithm=` with a value; the name in any
        // case; none means the auth token's HMAC-SHA1.
        let named = header
            .unwrap_or_default()
            .split(',')
            .filter_map(|part| part.split_once('='))
            .find(|(k, v)| k.trim() == "algorithm" && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_ascii_uppercase());
        match named.as_deref() {
            None | Some("HMAC_SHA1") => Some(Algorithm::HmacSha1),
            Some("HMAC_SHA256") => Some(Algorithm::HmacSha256),
            Some(_) => None,
        }
    }
}

/// The text Twilio signs: the URL, then each parameter name and value, sorted by name (code
/// point order, as Python's and Node's libraries sort), repeated values de-duplicated and
/// sorted.
pub fn signed_text(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut text = url.as_bytes().to_vec();
    for (name, value) in sorted {
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(value.as_bytes());
    }
    text
}

/// `base64(HMAC(token, text))`.
pub fn signature(algorithm: Algorithm, token: &[u8], text: &[u8]) -> String {
    let mac = match algorithm {
        Algorithm::HmacSha1 => {
            let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(token).expect("any key length");
            m.update(text);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::HmacSha256 => {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(token).expect("any key length");
            m.update(text);
            m.finalize().into_bytes().to_vec()
        }
    };
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// The lower-case hex SHA-256 of a body, as `bodySHA256` carries it.
pub fn body_sha256(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether two strings are equal, in time that depends only on their lengths.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The tokens whose signature of one of `texts` equals `presented` (each comparison in constant
/// time; every token and text is tried, so timing does not tell which one matched).
pub fn matching_tokens<'t>(
    tokens: &'t AuthTokens,
    algorithm: Algorithm,
    texts: &[Vec<u8>],
    presented: &str,
) -> Vec<&'t AuthToken> {
    let mut matched = Vec::new();
    for token in tokens.iter() {
        let mut any = subtle::Choice::from(0);
        for text in texts {
            let expected = signature(algorithm, &token.secret, text);
            any |= expected.as_bytes().ct_eq(presented.as_bytes());
        }
        if bool::from(any) {
            matched.push(token);
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Twilio's own test vectors (twilio-python `tests/unit/test_request_validator.py`).
    #[test]
    fn twilio_s_published_vectors() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        let text = signed_text(url, &params);
        assert_eq!(
            signature(Algorithm::HmacSha1, b"12345", &text),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            signature(Algorithm::HmacSha256, b"12345", &text),
            "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s="
        );
        let repeated = p(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            signature(Algorithm::HmacSha1, b"12345", &signed_text(url, &repeated)),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = body_sha256(body);
        assert_eq!(
            hash,
            "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let url = format!("{url}&bodySHA256={hash}");
        assert_eq!(
            signature(Algorithm::HmacSha1, b"12345", &signed_text(&url, &[])),
            "a9nBmqA0ju/hNViExpshrM61xv4="
        );
    }

    #[test]
    fn settings_header_names_the_algorithm() {
        assert_eq!(Algorithm::from_settings(None), Some(Algorithm::HmacSha1));
        assert_eq!(
            Algorithm::from_settings(Some("key=webhooks_sharedkey_01,algorithm=HMAC_SHA256")),
            Some(Algorithm::HmacSha256)
        );
        assert_eq!(
            Algorithm::from_settings(Some("key=k, algorithm=HMAC_SHA1")),
            Some(Algorithm::HmacSha1)
        );
        assert_eq!(Algorithm::from_settings(Some("algorithm=MD5")), None);
        assert_eq!(
            Algorithm::from_settings(Some("key=k,algorithm=")),
            Some(Algorithm::HmacSha1)
        );
        assert_eq!(
            Algorithm::from_settings(Some("algorithm=hmac_sha256")),
            Some(Algorithm::HmacSha256)
        );
    }

    #[test]
    fn token_files() {
        let t = AuthTokens::parse(
            "# rotation\nprimary\n\n  ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa secondary \n",
        )
        .unwrap();
        let accounts: Vec<_> = t.iter().map(|t| t.account.clone()).collect();
        assert_eq!(
            accounts,
            [None, Some("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into())]
        );
        assert!(!format!("{t:?}").contains("primary"));
        assert!(AuthTokens::parse("\n# none\n").is_err());
        let e = AuthTokens::parse("ok\nMG1 token\n").err().unwrap();
        assert!(e.contains("line 2") && !e.contains("token\n"), "{e}");
        assert!(AuthTokens::parse("a b c").is_err());
    }
}
