//! The console's browser sessions: a bearer token of the API, typed once into the login form,
//! becomes a signed, expiring cookie, so that the token itself is never stored in the browser.
//!
//! Stateless on purpose: the cookie is `expiry.id.signature`, signed with HMAC-SHA256 under
//! the session key (`--session-key-file`, shared by every pod behind one address; a random key
//! per process when none is given). Nothing is kept on the server, so any pod that has the key
//! can check any session, and a restart without a key file logs everyone out.
//!
//! Every state-changing form carries a CSRF token derived from the session (HMAC of its id):
//! another site can make the browser send the cookie (SameSite=Strict already stops most of
//! that) but cannot read the token to put in the form. The login form, before any session
//! exists, carries a signed, expiring token of its own.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "optout_session";
/// How long a session lasts from login: a working day.
pub const SESSION_SECS: i64 = 8 * 3600;
/// How long a login form may be left open before it must be reloaded.
const LOGIN_FORM_SECS: i64 = 3600;
/// Shortest session key accepted from `--session-key-file`.
pub const MIN_KEY_BYTES: usize = 32;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The key sessions are signed with.
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

impl SessionKey {
    /// A fresh random key: sessions last as long as the process.
    pub fn random() -> Self {
        let mut key = vec![0u8; 32];
        // The operating system's generator does not fail on the platforms we build for; if it
        // ever did, a process without a usable key must not start.
        getrandom::fill(&mut key).expect("the operating system's random generator failed");
        SessionKey(key)
    }

    /// The key held in a file's text (surrounding white space ignored); a mistake says what
    /// to do and never shows the key.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let key = text.trim().as_bytes().to_vec();
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key is {} bytes: write at least {MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)",
                key.len()
            ));
        }
        Ok(SessionKey(key))
    }

    fn mac(&self, parts: &[&str]) -> Vec<u8> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        for p in parts {
            m.update(p.as_bytes());
            m.update(b"|");
        }
        m.finalize().into_bytes().to_vec()
    }

    fn check(&self, parts: &[&str], signature: &str) -> bool {
        let Ok(given) = B64.decode(signature) else {
            return false;
        };
        self.mac(parts).ct_eq(&given).into()
    }

    /// A new session starting at `now` (Unix seconds): the cookie's value.
    pub fn issue(&self, now: i64) -> String {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the operating system's random generator failed");
        let (exp, id) = ((now + SESSION_SECS).to_string(), B64.encode(id));
        let sig = B64.encode(self.mac(&["session", &exp, &id]));
        format!("{exp}.{id}.{sig}")
    }

    /// The session a cookie's value holds, if signed with this key and not expired at `now`.
    pub fn verify(&self, value: &str, now: i64) -> Option<Session> {
        let mut parts = value.split('.');
        let (exp, id, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !self.check(&["session", exp, id], sig) {
            return None;
        }
        let expires_at: i64 = exp.parse().ok()?;
        (now < expires_at).then(|| Session {
            id: id.to_string(),
            csrf: B64.encode(self.mac(&["csrf", id])),
            expires_at,
        })
    }

    /// A token for a login form shown at `now`.
    pub fn login_token(&self, now: i64) -> String {
        let exp = (now + LOGIN_FORM_SECS).to_string();
        let sig = B64.encode(self.mac(&["login", &exp]));
        format!("{exp}.{sig}")
    }

    /// Whether a login form's token is this key's and still fresh at `now`.
    pub fn check_login_token(&self, token: &str, now: i64) -> bool {
        let Some((exp, sig)) = token.split_once('.') else {
            return false;
        };
        self.check(&["login", exp], sig) && exp.parse::<i64>().is_ok_and(|e| now < e)
    }
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random, unique per login.
    pub id: String,
    /// The token every state-changing form of this session must carry.
    pub csrf: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Session {
    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        self.csrf.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

/// Sessions signed out before they expired, remembered until they would have: a cookie copied
/// before logout stops working at once on this process. (Other processes sharing the key
/// accept it until it expires; the cookie is deleted from the browser either way.)
#[derive(Default)]
pub struct SignedOut(std::sync::Mutex<std::collections::HashMap<String, i64>>);

/// Signed-out sessions remembered at most; past it the oldest are forgotten first (they
/// still expire on their own within [`SESSION_SECS`]).
const MAX_SIGNED_OUT: usize = 10_000;

impl SignedOut {
    /// Remembers that `session` signed out at `now`.
    pub fn add(&self, session: &Session, now: i64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, exp| *exp > now);
        if m.len() >= MAX_SIGNED_OUT
            && let Some(oldest) = m.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())
        {
            m.remove(&oldest);
        }
        m.insert(session.id.clone(), session.expires_at);
    }

    /// Whether `session` signed out.
    pub fn contains(&self, session: &Session) -> bool {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.contains_key(&session.id)
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The `Set-Cookie` value for a session (or, with `None`, one that deletes it).
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!(
            "{COOKIE}={v}; Path=/console; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict{secure}"
        ),
        None => format!("{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_checked_by_its_key_and_expires() {
        let key = SessionKey::random();
        let cookie = key.issue(1_000);
        let session = key.verify(&cookie, 1_001).unwrap();
        assert_eq!(session.expires_at, 1_000 + SESSION_SECS);
        assert!(
            key.verify(&cookie, 1_000 + SESSION_SECS).is_none(),
            "expired"
        );
        assert!(
            SessionKey::random().verify(&cookie, 1_001).is_none(),
            "other key"
        );
        // Tampering with the expiry breaks the signature.
        let (_, rest) = cookie.split_once('.').unwrap();
        assert!(key.verify(&format!("99999999999.{rest}"), 1_001).is_none());
        assert!(key.verify("", 1).is_none() && key.verify("a.b.c.d", 1).is_none());
    }

    #[test]
    fn a_shared_key_file_lets_every_pod_check_every_session() {
        let a = SessionKey::from_text("0123456789abcdef0123456789abcdef\n").unwrap();
        let b = SessionKey::from_text("  0123456789abcdef0123456789abcdef").unwrap();
        let cookie = a.issue(5);
        assert_eq!(a.verify(&cookie, 6), b.verify(&cookie, 6));
        assert!(b.verify(&cookie, 6).is_some());
        let e = SessionKey::from_text("short").unwrap_err();
        assert!(e.contains("5 bytes") && !e.contains("short"), "{e}");
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_login_tokens_expire() {
        let key = SessionKey::random();
        let one = key.verify(&key.issue(0), 1).unwrap();
        let two = key.verify(&key.issue(0), 1).unwrap();
        assert_ne!(one.csrf, two.csrf);
        assert!(one.csrf_matches(&one.csrf.clone()) && !one.csrf_matches(&two.csrf));
        let t = key.login_token(0);
        assert!(key.check_login_token(&t, 10));
        assert!(!key.check_login_token(&t, LOGIN_FORM_SECS));
        assert!(!SessionKey::random().check_login_token(&t, 10));
    }

    #[test]
    fn cookies_are_read_by_name_and_set_with_their_flags() {
        assert_eq!(
            cookie("a=1; optout_session=x.y.z; b=2", COOKIE),
            Some("x.y.z")
        );
        assert_eq!(cookie("a=1", COOKIE), None);
        let set = set_cookie(Some("v"), true);
        for flag in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Max-Age=28800",
            "Path=/console",
        ] {
            assert!(set.contains(flag), "{set}");
        }
        assert!(!set_cookie(Some("v"), false).contains("Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
    }
}
