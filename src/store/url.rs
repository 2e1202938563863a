//! The `--store` value: which backend it names, the parameters it may carry, and how it is shown
//! (never with its password).

use super::StoreError;

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// Path of the SQLite file (`:memory:` for a private in-memory database).
    Sqlite(String),
    /// A PostgreSQL connection URL, as given.
    Postgres(String),
}

impl StoreUrl {
    /// Parses `sqlite://PATH`, `sqlite:PATH`, `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(StoreError::InvalidUrl {
                    shown: String::new(),
                    reason: "no file path; use sqlite://optout.db".into(),
                });
            }
            return Ok(StoreUrl::Sqlite(path.to_string()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Shown without its parameters: an unknown key's value may be a misplaced password.
            check_postgres_params(url).map_err(|reason| StoreError::InvalidUrl {
                shown: format!(" `{}?…`", redact(url).split('?').next().unwrap_or_default()),
                reason,
            })?;
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        // Not a URL of ours: nothing of it is shown, not even redacted (it may be a password
        // alone, which no redaction can recognise), only its length to help find it.
        Err(StoreError::InvalidUrl {
            shown: String::new(),
            reason: format!(
                "the value ({} characters, not shown) starts with neither sqlite: nor \
                 postgres://; use sqlite://PATH (embedded) or postgres://USER@HOST/DB (an \
                 unsupported scheme, or the wrong key of a mounted Secret?)",
                url.chars().count()
            ),
        })
    }
}

/// The query parameters sqlx's PostgreSQL driver understands (sqlx-postgres 0.9, `parse.rs`).
const POSTGRES_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The TLS modes sqlx's PostgreSQL driver takes (those of libpq).
const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Refuses a parameter sqlx does not know. sqlx would ignore it with a warning that logs its
/// value, so a misspelt `passwd=` would print a password (and a misspelt `sslmode` silently
/// weaken TLS); and refuses an `sslmode` it does not know here, as the configuration mistake
/// it is (sqlx reports it only when connecting). The URL is read the way sqlx reads it; one
/// it cannot read is left to sqlx, whose parse errors hold no part of the URL.
fn check_postgres_params(url: &str) -> Result<(), String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    for (key, value) in parsed.query_pairs() {
        if !POSTGRES_PARAMS.contains(&&*key) && !key.starts_with("options[") {
            return Err(format!(
                "unknown parameter `{key}`; PostgreSQL URLs take {}",
                POSTGRES_PARAMS.join(", ")
            ));
        }
        if (key == "sslmode" || key == "ssl-mode") && !SSL_MODES.contains(&&*value) {
            return Err(format!(
                "`{key}` takes {}; check its spelling",
                SSL_MODES.join(", ")
            ));
        }
    }
    Ok(())
}

/// Hides the password in a connection URL before it reaches a log line or an error.
///
/// Errs on the side of hiding too much: every spelling sqlx accepts is covered, including
/// passwords that contain raw `@`, `:`, `/`, `?` or `%` (userinfo runs to the *last* `@`),
/// `password=` query parameters (keys compared after percent-decoding, any case) and libpq-style
/// `key=value` strings. A query value that itself contains `@` makes the host part hidden too.
pub fn redact(url: &str) -> String {
    let (prefix, rest) = split_scheme(url);
    let authority = rest.split('?').next().unwrap_or_default();
    // Userinfo before any `?`: hide it whole, whatever it contains (`&`, `=`, `@`...).
    if let Some(at) = authority.rfind('@')
        && let Some((user, _)) = rest[..at].split_once(':')
    {
        return format!("{prefix}{user}:***{}", redact_password_params(&rest[at..]));
    }
    // Parameters first, so that an `@` inside a `password=` value cannot pass for userinfo;
    // then userinfo whose password holds a raw `?`.
    let rest = redact_password_params(rest);
    match rest
        .rfind('@')
        .and_then(|at| Some((rest[..at].split_once(':')?.0, at)))
    {
        Some((user, at)) => format!("{prefix}{user}:***{}", &rest[at..]),
        None => format!("{prefix}{rest}"),
    }
}

/// Splits `scheme://` (or `scheme:` followed by slashes) from the rest; no scheme, no prefix.
fn split_scheme(url: &str) -> (&str, &str) {
    if let Some(i) = url.find("://") {
        return url.split_at(i + 3);
    }
    let is_scheme = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    };
    match url.split_once(':') {
        Some((scheme, rest)) if is_scheme(scheme) => {
            let slashes = rest.len() - rest.trim_start_matches('/').len();
            url.split_at(scheme.len() + 1 + slashes)
        }
        _ => ("", url),
    }
}

/// Replaces the value of every `password=` pair. A key starts after `?`, `&`, `;` or
/// whitespace; a value runs to the next `&`, `;` or whitespace (so a raw `@`, `?` or `:` in
/// it stays hidden).
fn redact_password_params(s: &str) -> String {
    let ends_value = |c: char| c == '&' || c == ';' || c.is_whitespace();
    let mut out = String::with_capacity(s.len());
    for segment in s.split_inclusive(ends_value) {
        let (pair, end) = match segment.char_indices().last() {
            Some((i, c)) if ends_value(c) => segment.split_at(i),
            _ => (segment, ""),
        };
        match pair.find('=') {
            Some(eq) if is_password_key(pair[..eq].rsplit('?').next().unwrap_or_default()) => {
                out.push_str(&pair[..=eq]);
                out.push_str("***");
            }
            _ => out.push_str(pair),
        }
        out.push_str(end);
    }
    out
}

/// Whether a query key, once percent-decoded, names a password (`password`, `PassWord`, `p%61ssword`).
fn is_password_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let key = decoded.trim();
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("pass")
}

#[cfg(test)]
mod tests;
