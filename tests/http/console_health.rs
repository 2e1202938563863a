//! What the console shows of the write side: the health page's outbox per delivery target
//! (what waits, how old the oldest is, what failed for good: the figures the dispatchers'
//! metrics report), and, in a process that only reads the store, the dead-letter retry as its
//! CLI command, the route refusing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use optout::store::{OutboxTarget, Settle, Settlement};

use super::console::{Console, fill};
use crate::common::db::Db;

both_backends! {
    health_shows_the_outbox_per_target;
}

/// `optout serve` reads: the page shows the CLI command, and a POST does nothing.
#[tokio::test]
async fn a_reading_process_shows_the_retry_command_and_refuses_the_action() {
    let db = crate::common::db::sqlite().await;
    fill(&db).await;
    let c = Console::start(&db.url, Vec::new()).await;
    let page = c.get("/console/dead-letters", None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("optout dead-letters --retry"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("/console/dead-letters/retry"),
        "{}",
        page.body
    );
    let origin = c.base.clone();
    let refused = c
        .send(
            axum::http::Method::POST,
            "/console/dead-letters/retry",
            &[("origin", origin.as_str())],
            Some("csrf="),
        )
        .await;
    assert_eq!(refused.status, 405, "{}", refused.body);
    let after = c.get("/console/dead-letters", None).await;
    assert_eq!(after.body, page.body, "the refused retry changed something");
}

async fn health_shows_the_outbox_per_target(db: Db) {
    db.store.set_outbox_targets(vec![OutboxTarget {
        name: "notify:0".into(),
        wants: Arc::new(|_| true),
    }]);
    fill(&db).await;
    let backlog = db.store.backlog(SystemTime::now()).await.unwrap();
    assert_eq!(backlog.len(), 1, "{backlog:?}");
    let pending = backlog[0].pending;
    assert!(pending > 0, "the fill's changes wait for the target");

    // One item fails for good: the page says so beside what still waits.
    let claimed = db
        .store
        .claim(
            "notify:0",
            "w1",
            1,
            SystemTime::now(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let settlement = Settlement {
        id: claimed[0].id,
        attempts: 1,
        settle: Settle::Failed {
            reason: "refused".into(),
        },
    };
    db.store.settle("w1", &[settlement]).await.unwrap();

    let c = Console::start(&db.url, Vec::new()).await;
    let page = c.get("/console/health", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let row = format!("<tr><td><code>notify:0</code></td><td>{}</td>", pending - 1);
    assert!(page.body.contains(&row), "{row} in {}", page.body);
    assert!(page.body.contains("<strong>1</strong>"), "{}", page.body);
    assert!(!page.body.contains("Nothing waits to be delivered"));
}
