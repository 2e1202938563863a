//! PostgreSQL's plans for the reads that run at scale, checked by counting what the server
//! did (its table statistics), never by timing.
//!
//! An export pages through every event; if a page's query cannot walk the
//! `(occurred_at, event_id)` index, every page is a full scan and a sort, and the export is
//! quadratic. That went unnoticed once: the SELECT list shows `occurred_at` as text under the
//! same name, and `ORDER BY occurred_at` sorted by that text.

use std::time::{Duration, Instant};

use optout::event::OptOutType;
use optout::store::EventFilter;
use optout::store::query::PageRequest;
use sqlx::{Connection, PgConnection, Row};

use crate::common::events::*;

/// Sequential and index scans of `opt_events`, as far as the server has heard.
async fn scans(c: &mut PgConnection) -> (i64, i64) {
    // A statistics snapshot is kept for the transaction; drop it to read fresh counts.
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *c)
        .await
        .unwrap();
    let r = sqlx::query(
        "SELECT COALESCE(seq_scan, 0) AS seq, COALESCE(idx_scan, 0) AS idx \
         FROM pg_stat_user_tables WHERE relname = 'opt_events'",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    (r.get("seq"), r.get("idx"))
}

#[tokio::test]
async fn event_pages_walk_the_time_index() {
    let db = crate::common::db::postgres().await;
    for chunk in 0..10 {
        let events = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                opt_event(
                    &format!("EV{n:06}"),
                    OptOutType::Stop,
                    &format!("+1555{n:07}"),
                    n % 1_000,
                )
            })
            .collect();
        db.store.commit(&batch("a", events)).await.unwrap();
    }
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("ANALYZE opt_events")
        .execute(&mut c)
        .await
        .unwrap();
    let before = scans(&mut c).await;

    const PAGES: i64 = 12;
    let mut req = PageRequest::parse(Some(100), None).unwrap();
    for _ in 0..PAGES {
        let page = db.reader.page(&EventFilter::default(), &req).await.unwrap();
        assert_eq!(page.items.len(), 100);
        req = PageRequest::parse(Some(100), page.next_cursor.as_deref()).unwrap();
    }

    // Other sessions report their counts when idle, at most every ten seconds: wait until
    // the pages' index scans are in, then no full scan may be.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let now = scans(&mut c).await;
        if now.1 - before.1 >= PAGES {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "{PAGES} pages of events made {} index scans of opt_events and {} full scans \
             in 60 s: the page query does not walk opt_events_by_time_id",
            now.1 - before.1,
            now.0 - before.0
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        after.0 - before.0,
        0,
        "pages of events scanned opt_events in full"
    );
}
