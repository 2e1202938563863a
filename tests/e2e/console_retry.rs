//! The console's dead-letter retry in `optout run --http-addr`, the process that writes the
//! store, on both backends: the page offers it, a form from elsewhere is refused, a record the
//! database still refuses stays, and once it is fixed one press stores it (its dead letter
//! removed) while an undecodable record stays.

use std::time::Duration;

use crate::common::db::Db;
use crate::common::emulator;
use crate::common::optout::*;
use crate::common::records::*;

both_backends! {
    the_console_retries_dead_letters_where_the_process_writes;
}

/// (status, `Location`) of a retry POSTed with `origin` (none: no `Origin` header).
async fn press(addr: &str, origin: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    let (code, head, _) =
        http_post_form(addr, "/console/dead-letters/retry", &headers, "csrf=").await;
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or("")
        .to_string();
    (code, location)
}

async fn the_console_retries_dead_letters_where_the_process_writes(db: Db) {
    super::poison::refuse_poison(&db).await;
    let emu = emulator::ferrokinesis().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("console-retry");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let stop = |id: &str, from: &str| {
        Inbound::new(id, from)
            .service("MGr")
            .keyword("STOP")
            .at("2026-03-01T12:00:00.000Z")
            .build()
    };
    let records = vec![
        stop("EZc00000001", "+15550000001"),
        stop("EZc00000002", "+1555POISON"),
        b"not json at all".to_vec(),
    ];
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let o = Optout::with_store(emu.env(), &db.url);
    let worker = o.spawn_run(&stream, &["--http-addr", &addr]);
    let reader = crate::common::db::open_reader(&db.url).await;
    let r = &reader;
    emulator::wait_for("two dead letters", Duration::from_secs(30), || async move {
        r.all(&optout::store::query::DeadLetterFilter)
            .await
            .is_ok_and(|d| d.len() == 2)
    })
    .await
    .unwrap();

    let (code, page) = http_get(&addr, "/console/dead-letters").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("action=\"/console/dead-letters/retry\""),
        "{page}"
    );
    let origin = format!("http://{addr}");
    // A form from another site, or one that does not say where it came from, does nothing.
    assert_eq!(press(&addr, Some("http://evil.example")).await.0, 403);
    assert_eq!(press(&addr, None).await.0, 403);

    // Not fixed yet: both stay.
    assert_eq!(
        press(&addr, Some(&origin)).await,
        (
            303,
            "/console/dead-letters?retried=2&stored=0&left=2".to_string()
        )
    );
    // Fixed: the refused STOP is stored, its dead letter gone; the junk stays.
    super::retry::lift_poison(&db).await;
    assert_eq!(
        press(&addr, Some(&origin)).await,
        (
            303,
            "/console/dead-letters?retried=2&stored=1&left=1".to_string()
        )
    );
    let (_, page) = http_get(&addr, "/console/dead-letters?retried=2&stored=1&left=1").await;
    assert!(
        page.contains("Retried 2: 1 stored, 1 still refused."),
        "{page}"
    );
    let dead = reader
        .all(&optout::store::query::DeadLetterFilter)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.starts_with("not JSON"),
        "{:?}",
        dead[0].reason
    );
    let status = o.query(&["status", "--subscriber", "+1555POISON"]);
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["status"], "opted_out");
    worker.terminate();
}
