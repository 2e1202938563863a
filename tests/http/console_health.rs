//! The console's health page shows the outbox per delivery target: what waits, how old the
//! oldest is, and what failed for good, the same figures the dispatchers' metrics report.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use optout::store::{OutboxTarget, Settle, Settlement};

use super::console::{Console, fill};
use crate::common::db::Db;

both_backends! {
    health_shows_the_outbox_per_target;
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
