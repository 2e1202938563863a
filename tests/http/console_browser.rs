//! The web console in a real browser, on both backends: headless Chromium from Debian's
//! packages, driven over WebDriver (chromedriver, through `fantoccini`). It signs in with the
//! keyboard alone, follows a deep link to a number, reads its timeline, opens every page at
//! 375 px and at desktop width, and checks that no console error was logged, no dialog opened
//! and no element was injected by the hostile bodies. A screenshot of each page goes to
//! target/console-screenshots/; with OPTOUT_BLESS=1 (SQLite run) into docs/console/ too.
//!
//! Needs `chromium` and `chromedriver` (scripts/install-chromium.sh, which scripts/test.sh runs).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::console::{Console, HOSTILE, fill};
use crate::common::db::Db;

both_backends! {
    a_person_answers_the_questions_in_chromium;
}

const TOKEN: &str = "browser-test-token-0123456789abcdef";

/// chromedriver on a free port, ended when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn driver() -> Driver {
    let bin = which("chromedriver").expect(
        "chromedriver not found: run scripts/install-chromium.sh (Debian's chromium-driver)",
    );
    let port = crate::common::http::free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    // Dropping it (on a panic too) ends the process.
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Ready once it accepts connections (it binds after it has started).
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not answer on {} within 10 s", driver.url);
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut chrome = json!({
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    if let Some(bin) = which("chromium") {
        chrome["binary"] = json!(bin);
    }
    let caps = json!({
        "goog:chromeOptions": chrome,
        "goog:loggingPrefs": { "browser": "ALL" },
        // A dialog opened by an injected script stays open, for the check below to see.
        "unhandledPromptBehavior": "ignore",
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// chromedriver's browser log since the last call (`/se/log`, its W3C-mode log endpoint).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.into()),
        )
    }
}

/// Fails on any console message of level SEVERE (errors, CSP violations, failed loads), any
/// open dialog, and any element the hostile bodies could have injected.
async fn assert_clean(c: &Client, page: &str) {
    let log = c.issue_cmd(BrowserLog).await.expect("the browser log");
    let errors: Vec<&Value> = log
        .as_array()
        .map(|a| a.iter().filter(|e| e["level"] == "SEVERE").collect())
        .unwrap_or_default();
    assert!(errors.is_empty(), "{page}: console errors: {errors:?}");
    assert!(
        c.get_alert_text().await.is_err(),
        "{page}: a dialog is open"
    );
    for css in [
        "script",
        "img",
        "iframe",
        "object",
        "embed",
        "a[href^='javascript:']",
    ] {
        let found = c.find_all(Locator::Css(css)).await.unwrap();
        assert!(
            found.is_empty(),
            "{page}: {} `{css}` element(s)",
            found.len()
        );
    }
}

async fn shot(c: &Client, backend: &str, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/console-screenshots").join(backend);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    if backend == "sqlite" && std::env::var_os("OPTOUT_BLESS").is_some() {
        let docs = root.join("docs/console");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn path_of(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

async fn wait_for_path(c: &Client, want: &str) {
    for _ in 0..100 {
        if path_of(c).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = match c.find(Locator::Css(".error")).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    panic!("still at {} rather than {want}: {error}", path_of(c).await);
}

async fn a_person_answers_the_questions_in_chromium(db: Db) {
    let backend = if db.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    fill(&db).await;
    let console = Console::start(&db.url, vec![TOKEN.into()]).await;
    let driver = driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    c.set_window_size(1280, 1000).await.unwrap();

    // A deep link first: the login form, then back to the number. Keyboard only: the token
    // field has the focus, Enter submits.
    let deep = "/console/subscribers/%2B15551230001";
    c.goto(&format!("{}{deep}", console.base)).await.unwrap();
    assert!(path_of(&c).await.starts_with("/console/login"));
    assert_clean(&c, "login").await;
    shot(&c, backend, "login").await;
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("token"));
    focused
        .send_keys(&format!("{TOKEN}\u{E007}"))
        .await
        .unwrap();
    wait_for_path(&c, deep).await;

    // Is this number opted out, of what, since when, by which message, detected how?
    let verdict = c
        .find(Locator::Css("[data-testid=verdict]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(verdict.contains("Do not send"), "{verdict}");
    let events = c.find_all(Locator::Css("ol.timeline > li")).await.unwrap();
    assert_eq!(events.len(), 3, "the number's three events");
    let mut bodies = Vec::new();
    for b in c.find_all(Locator::Css("dd.body")).await.unwrap() {
        bodies.push(b.text().await.unwrap());
    }
    // Newest first; every hostile body shown exactly as written.
    assert_eq!(bodies, vec![HOSTILE[2], HOSTILE[1], HOSTILE[0]]);
    let first = events[0].text().await.unwrap();
    assert!(
        first.contains("detected by phrase") && first.contains("builtin-2026.1"),
        "{first}"
    );
    assert!(first.contains(&format!("SM{:032x}", 3)), "{first}");
    assert_clean(&c, "subscriber").await;
    shot(&c, backend, "subscriber").await;

    // Every page, each clean.
    let pages = [
        ("revocations", "/console/revocations"),
        (
            "activity",
            "/console/activity?from=2026-03-01&to=2026-03-31",
        ),
        ("dead-letters", "/console/dead-letters"),
        ("health", "/console/health"),
    ];
    for (name, path) in pages {
        c.goto(&format!("{}{path}", console.base)).await.unwrap();
        assert_eq!(path_of(&c).await, path);
        let h1 = c
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!h1.is_empty(), "{name}");
        assert_clean(&c, name).await;
        shot(&c, backend, name).await;
    }
    c.goto(&format!("{}/console/revocations", console.base))
        .await
        .unwrap();
    let rev = c
        .find(Locator::Css("td.body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(rev, HOSTILE[2], "the revocation's body, as text");
    c.goto(&format!(
        "{}/console/activity?from=2026-03-01&to=2026-03-31",
        console.base
    ))
    .await
    .unwrap();
    let bars = c.find_all(Locator::Css("svg.chart rect")).await.unwrap();
    assert!(!bars.is_empty(), "the chart has bars");

    // At 375 px: the lookup by keyboard alone, and no page wider than the screen.
    c.set_window_size(375, 812).await.unwrap();
    c.goto(&format!("{}/console/", console.base)).await.unwrap();
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("number"));
    focused.send_keys("+15551230001\u{E007}").await.unwrap();
    wait_for_path(&c, deep).await;
    for (name, path) in [
        ("lookup-375", deep),
        ("revocations-375", "/console/revocations"),
    ] {
        c.goto(&format!("{}{path}", console.base)).await.unwrap();
        let overflow = c
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(overflow, json!(false), "{name}: wider than 375 px");
        assert_clean(&c, name).await;
        shot(&c, backend, name).await;
    }

    // Sign out with the keyboard: Tab to the button, Enter.
    let button = c.find(Locator::Css("form.logout button")).await.unwrap();
    button.send_keys("\u{E007}").await.unwrap();
    wait_for_path(&c, "/console/login").await;
    c.goto(&format!("{}{deep}", console.base)).await.unwrap();
    assert!(
        path_of(&c).await.starts_with("/console/login"),
        "signed out"
    );
    c.close().await.unwrap();
}
