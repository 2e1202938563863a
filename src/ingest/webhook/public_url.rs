//! `--public-url`: the scheme, host, port and path prefix Twilio calls, which a request to
//! optout behind a TLS-terminating proxy no longer shows. Twilio signs the URL it called, so this
//! plus the request's own path and query is what a signature is checked against.

/// The part of the URL Twilio calls that the request itself does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    scheme: String,
    host: String,
    /// An explicit port, if the URL has one.
    port: Option<u16>,
    /// A path prefix a proxy strips before forwarding (`/optout`), without a trailing `/`.
    prefix: String,
}

impl PublicUrl {
    /// Reads `https://host[:port][/prefix]`; anything else is refused with what to write.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text.trim())
            .map_err(|e| format!("`{text}` is not a URL ({e}); e.g. https://optout.example.com"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: use an http or https URL"));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("`{text}` has no host"));
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "`{text}` carries credentials: give Basic-auth users in --twilio-basic-auth-file"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{text}` has a query or fragment: give scheme, host, port and path prefix only"
            ));
        }
        Ok(PublicUrl {
            scheme: url.scheme().to_owned(),
            host: host.to_owned(),
            port: url.port(),
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The URLs Twilio may have signed for a request to `path_and_query` (as received, still
    /// percent-encoded): without a port and with one (the explicit or the scheme's default), as
    /// Twilio's libraries try both; with `userinfo` (`user:password@`, a sink URL's Basic
    /// credentials), each of those with and without it.
    pub fn candidates(&self, path_and_query: &str, userinfo: Option<&str>) -> Vec<String> {
        let default = if self.scheme == "https" { 443 } else { 80 };
        let port = self.port.unwrap_or(default);
        let users = match userinfo {
            None => vec![String::new()],
            Some(u) => vec![String::new(), format!("{u}@")],
        };
        let (scheme, host, prefix) = (&self.scheme, &self.host, &self.prefix);
        let mut urls = Vec::with_capacity(4);
        for user in users {
            urls.push(format!("{scheme}://{user}{host}{prefix}{path_and_query}"));
            urls.push(format!(
                "{scheme}://{user}{host}:{port}{prefix}{path_and_query}"
            ));
        }
        urls
    }
}

impl std::fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_builds_the_signed_urls() {
        let u = PublicUrl::parse("https://optout.example.com/").unwrap();
        assert_eq!(u.to_string(), "https://optout.example.com");
        assert_eq!(
            u.candidates("/twilio/messaging?a=1", None),
            [
                "https://optout.example.com/twilio/messaging?a=1",
                "https://optout.example.com:443/twilio/messaging?a=1",
            ]
        );
        let u = PublicUrl::parse("http://proxy:8080/optout").unwrap();
        assert_eq!(
            u.candidates("/twilio/events?bodySHA256=ab", Some("u:p")),
            [
                "http://proxy/optout/twilio/events?bodySHA256=ab",
                "http://proxy:8080/optout/twilio/events?bodySHA256=ab",
                "http://u:p@proxy/optout/twilio/events?bodySHA256=ab",
                "http://u:p@proxy:8080/optout/twilio/events?bodySHA256=ab",
            ]
        );
    }

    #[test]
    fn refuses_what_cannot_be_a_base() {
        for bad in [
            "optout.example.com",
            "ftp://x",
            "https://u:p@x",
            "https://x/?q=1",
            "https://x/#f",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
