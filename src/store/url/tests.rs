//! Unit tests of the store's URL parsing and redaction.

use super::*;

#[test]
fn parses_store_urls() {
    assert_eq!(
        StoreUrl::parse("sqlite://optout.db").unwrap(),
        StoreUrl::Sqlite("optout.db".into())
    );
    assert_eq!(
        StoreUrl::parse("sqlite:///var/lib/optout.db").unwrap(),
        StoreUrl::Sqlite("/var/lib/optout.db".into())
    );
    assert_eq!(
        StoreUrl::parse("sqlite::memory:").unwrap(),
        StoreUrl::Sqlite(":memory:".into())
    );
    assert!(matches!(
        StoreUrl::parse("postgres://u@localhost/db").unwrap(),
        StoreUrl::Postgres(_)
    ));
    let err = StoreUrl::parse("mysql://root:hunter2@h/db").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unsupported scheme"), "{msg}");
    assert!(!msg.contains("hunter2"), "password leaked: {msg}");
    assert!(StoreUrl::parse("sqlite://").is_err());
}

#[test]
fn redacts_passwords() {
    assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    assert_eq!(
        redact("postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem"),
        "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    );
}

/// Asserts that `url` redacted keeps none of `secrets` and still shows `keep`.
fn hides(url: &str, secrets: &[&str], keep: &str) {
    let shown = redact(url);
    for secret in secrets {
        assert!(
            !shown.contains(secret),
            "`{secret}` leaked from {url}: {shown}"
        );
    }
    assert!(shown.contains(keep), "{shown} lost `{keep}`");
}

#[test]
fn redacts_userinfo_with_raw_at_sign() {
    // Cut at the first `@`, the old redaction printed `ss@word`.
    hides(
        "postgres://u:p@ss@word@db.example.com/optout",
        &["p@ss", "ss@word", "word"],
        "@db.example.com/optout",
    );
}

#[test]
fn redacts_userinfo_with_raw_colon_slash_and_percent() {
    hides("postgres://u:pa:ss@h/db", &["pa:ss", "ss@"], "u:***@h/db");
    hides("postgres://u:pa/ss@h/db", &["pa/ss", "pa"], "u:***@h/db");
    hides(
        "postgres://u:100%sure@h/db",
        &["100%sure", "sure"],
        "u:***@h/db",
    );
    hides("postgres://u:pa?ss@h/db", &["pa?ss", "pa"], "u:***@h/db");
    hides(
        "postgres://u:a&password=b@h/db",
        &["a&", "=b"],
        "u:***@h/db",
    );
}

#[test]
fn redacts_percent_encoded_userinfo() {
    hides(
        "postgres://u:p%40ss%3Aw%2Frd%25@h/db",
        &["p%40ss", "%3Aw", "%2Frd", "%25"],
        "u:***@h/db",
    );
}

#[test]
fn redacts_password_query_parameters() {
    // Was printed whole: no userinfo, so the old redaction left it alone.
    hides(
        "postgres://127.0.0.1:1/db?user=u&password=TopSecret1",
        &["TopSecret1"],
        "user=u&password=***",
    );
    hides(
        "postgres://h/db?password=TopSecret1&sslmode=require",
        &["TopSecret1"],
        "&sslmode=require",
    );
    hides(
        "postgres://h/db?sslmode=require&PASSWORD=TopSecret1",
        &["TopSecret1"],
        "sslmode=require",
    );
    hides(
        "postgres://h/db?p%61ssword=TopSecret1",
        &["TopSecret1"],
        "h/db",
    );
    hides(
        "postgres://h/db?password=Top%26Secret%401",
        &["Top", "Secret"],
        "h/db",
    );
    hides(
        "postgres://u:one@h/db?password=two",
        &["one", "two"],
        "u:***@h/db",
    );
    hides(
        "postgres://h/db?password=Top@Secret?1:x",
        &["Top", "Secret", "1:x"],
        "h/db?password=***",
    );
}

#[test]
fn redacts_malformed_and_keyword_spellings() {
    // Not a URL sqlx accepts, but it reaches the "unsupported scheme" error all the same.
    hides("postgres:/u:TopSecret1@h/db", &["TopSecret1"], "u:***@h/db");
    hides("postgresql:u:TopSecret1@h", &["TopSecret1"], "@h");
    hides(
        "host=h user=u password=TopSecret1 dbname=d",
        &["TopSecret1"],
        "dbname=d",
    );
    hides("mysql://root:hunter2@h/db", &["hunter2"], "root:***@h/db");
}

#[test]
fn unknown_postgres_parameters_are_refused_without_their_values() {
    for (url, key) in [
        ("postgres://u@h/db?passwd=TopSecret1", "passwd"),
        (
            "postgres://u@h/db?sslmode=require&ssl_mode=TopSecret1",
            "ssl_mode",
        ),
    ] {
        let msg = StoreUrl::parse(url).unwrap_err().to_string();
        assert!(msg.contains(&format!("unknown parameter `{key}`")), "{msg}");
        assert!(!msg.contains("TopSecret1"), "{msg}");
    }
    let known = "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=a\
                 &options[search_path]=s&password=p&statement-cache-capacity=10";
    assert!(matches!(StoreUrl::parse(known), Ok(StoreUrl::Postgres(_))));
}

#[test]
fn invalid_url_errors_never_show_the_password() {
    for url in [
        "postgres:/u:TopSecret1@h/db",
        "pg://u:TopSecret1@h/db",
        "host=h password=TopSecret1",
    ] {
        let msg = StoreUrl::parse(url).unwrap_err().to_string();
        assert!(!msg.contains("TopSecret1"), "{msg}");
    }
}
