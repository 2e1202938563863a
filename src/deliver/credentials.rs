//! Twilio credentials for the Consent API, per account: an API key and secret (preferred: it
//! can be revoked on its own) or the account's auth token. Read once at start; never printed,
//! logged or shown in a `Debug`.

use std::collections::HashMap;

/// HTTP basic auth for one account.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// An API key SID (`SK…`) or the account SID.
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Credentials by account SID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials(HashMap<String, Credential>);

/// What the environment holds, in Twilio's own variable names.
#[derive(Clone, Default)]
pub struct TwilioEnv {
    pub account_sid: Option<String>,
    pub api_key: Option<String>,
    pub api_secret: Option<String>,
    pub auth_token: Option<String>,
}

impl std::fmt::Debug for TwilioEnv {
    /// By hand: whether each is set, never a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "set" } else { "unset" };
        f.debug_struct("TwilioEnv")
            .field("account_sid", &self.account_sid)
            .field("api_key", &set(&self.api_key))
            .field("api_secret", &set(&self.api_secret))
            .field("auth_token", &set(&self.auth_token))
            .finish()
    }
}

impl TwilioEnv {
    /// Whether any of the variables is set.
    pub fn any(&self) -> bool {
        self.account_sid.is_some()
            || self.api_key.is_some()
            || self.api_secret.is_some()
            || self.auth_token.is_some()
    }

    /// `TWILIO_ACCOUNT_SID`, `TWILIO_API_KEY`, `TWILIO_API_SECRET`, `TWILIO_AUTH_TOKEN`.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        TwilioEnv {
            account_sid: var("TWILIO_ACCOUNT_SID"),
            api_key: var("TWILIO_API_KEY"),
            api_secret: var("TWILIO_API_SECRET"),
            auth_token: var("TWILIO_AUTH_TOKEN"),
        }
    }
}

fn check_account(sid: &str) -> Result<(), String> {
    let hex = sid.len() == 34 && sid[2..].chars().all(|c| c.is_ascii_hexdigit());
    if sid.starts_with("AC") && hex {
        Ok(())
    } else {
        Err(format!(
            "`{sid}` is not an account SID (AC and 32 hex digits)"
        ))
    }
}

impl Credentials {
    /// The account's credential, if any.
    pub fn get(&self, account: &str) -> Option<&Credential> {
        self.0.get(account)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// From the environment: `TWILIO_ACCOUNT_SID` with `TWILIO_API_KEY` and
    /// `TWILIO_API_SECRET`, or with `TWILIO_AUTH_TOKEN`. Messages name variables, never values.
    pub fn from_env(env: &TwilioEnv) -> Result<Self, String> {
        let Some(account) = env.account_sid.as_deref().map(str::trim) else {
            return Err(
                "set TWILIO_ACCOUNT_SID with TWILIO_API_KEY and TWILIO_API_SECRET (or \
                        TWILIO_AUTH_TOKEN), or --twilio-credentials-file"
                    .into(),
            );
        };
        check_account(account).map_err(|e| format!("TWILIO_ACCOUNT_SID: {e}"))?;
        let credential = match (&env.api_key, &env.api_secret, &env.auth_token) {
            (Some(key), Some(secret), _) => Credential {
                username: key.trim().to_string(),
                password: secret.trim().to_string(),
            },
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err("TWILIO_API_KEY and TWILIO_API_SECRET go together: set both".into());
            }
            (None, None, Some(token)) => Credential {
                username: account.to_string(),
                password: token.trim().to_string(),
            },
            (None, None, None) => {
                return Err(
                    "TWILIO_ACCOUNT_SID needs TWILIO_API_KEY and TWILIO_API_SECRET, or \
                            TWILIO_AUTH_TOKEN"
                        .into(),
                );
            }
        };
        Ok(Credentials(HashMap::from([(
            account.to_string(),
            credential,
        )])))
    }

    /// From a file, one account a line: `ACCOUNT_SID API_KEY API_SECRET` or
    /// `ACCOUNT_SID AUTH_TOKEN`; blank lines and `#` comments skipped. Errors name the line,
    /// never its secret.
    pub fn parse_file(text: &str) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let n = n + 1;
            let (account, credential) = match fields[..] {
                [account, key, secret] => (
                    account,
                    Credential {
                        username: key.to_string(),
                        password: secret.to_string(),
                    },
                ),
                [account, token] => (
                    account,
                    Credential {
                        username: account.to_string(),
                        password: token.to_string(),
                    },
                ),
                _ => {
                    return Err(format!(
                        "line {n}: write `ACCOUNT_SID API_KEY API_SECRET` or `ACCOUNT_SID AUTH_TOKEN`"
                    ));
                }
            };
            check_account(account).map_err(|e| format!("line {n}: {e}"))?;
            if map.insert(account.to_string(), credential).is_some() {
                return Err(format!("line {n}: account {account} is listed twice"));
            }
        }
        if map.is_empty() {
            return Err("holds no credentials".into());
        }
        Ok(Credentials(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AC: &str = "AC0123456789abcdef0123456789abcdef";

    #[test]
    fn an_api_key_is_preferred_to_the_auth_token() {
        let env = TwilioEnv {
            account_sid: Some(AC.into()),
            api_key: Some("SKkey".into()),
            api_secret: Some("secret".into()),
            auth_token: Some("token".into()),
        };
        let c = Credentials::from_env(&env).unwrap();
        assert_eq!(c.get(AC).unwrap().username, "SKkey");
        let env = TwilioEnv {
            api_key: None,
            api_secret: None,
            ..env
        };
        let c = Credentials::from_env(&env).unwrap();
        assert_eq!(c.get(AC).unwrap().username, AC);
        assert_eq!(c.get(AC).unwrap().password, "token");
    }

    #[test]
    fn mistakes_name_the_variable_or_line_and_never_the_secret() {
        let env = TwilioEnv {
            account_sid: Some(AC.into()),
            api_key: Some("SKkey".into()),
            ..TwilioEnv::default()
        };
        assert!(
            Credentials::from_env(&env)
                .unwrap_err()
                .contains("TWILIO_API_SECRET")
        );
        assert!(Credentials::from_env(&TwilioEnv::default()).is_err());
        let e = Credentials::parse_file(&format!("{AC} SKkey s3cr3t\nACnope t0ken\n")).unwrap_err();
        assert!(e.starts_with("line 2:") && !e.contains("t0ken"), "{e}");
        let c = Credentials::parse_file(&format!("# accounts\n\n{AC} SKkey s3cr3t\n")).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(
            Credentials::parse_file("\n# none\n").unwrap_err(),
            "holds no credentials"
        );
    }
}
