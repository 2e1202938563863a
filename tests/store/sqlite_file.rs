//! The SQLite file as a file: deleted or replaced under a store that has it open, reached
//! through a hard link by a second runner, left world-readable by an older version, and its
//! write-ahead log under steady readers.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use optout::event::OptOutType;
use optout::store::query::PageRequest;
use optout::store::{EventFilter, FailureKind, Reader, StoreError};

use crate::common::events::{batch, opt_event};
use crate::common::optout::Optout;

fn remove_database(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// After `rm` of the database and its `-wal` and `-shm`, the store refuses to write (and keeps
/// refusing, even once a file is back under the name), and a reader's ping fails: nothing
/// lands in a file that no path names.
#[tokio::test]
async fn a_deleted_or_replaced_file_is_noticed_and_never_written() {
    for replace in [false, true] {
        let db = crate::common::db::sqlite().await;
        let path = db.url.strip_prefix("sqlite://").unwrap().to_string();
        let ev = |id: &str| opt_event(id, OptOutType::Stop, "+15550000001", 10);
        db.store.commit(&batch("a", vec![ev("E1")])).await.unwrap();
        db.store.upkeep().await.unwrap();
        db.reader.ping().await.unwrap();
        remove_database(std::path::Path::new(&path));
        if replace {
            // Another database under the same name (a restore over the live file).
            let other = optout::store::open(&db.url, 1).await.unwrap();
            other.close().await;
        }
        let err = db.store.upkeep().await.unwrap_err();
        assert!(matches!(err, StoreError::Replaced { .. }), "{err}");
        assert_eq!(err.kind(), FailureKind::Fatal);
        assert!(err.to_string().contains(&path), "{err}");
        let refused = db.store.commit(&batch("a", vec![ev("E2")])).await;
        assert!(
            matches!(refused, Err(StoreError::Replaced { .. })),
            "{refused:?}"
        );
        assert!(db.reader.ping().await.is_err(), "readiness must fail");
    }
}

/// A second runner through a hard link (another path, the same inode) meets the lock.
#[test]
fn the_runner_lock_follows_hard_links() {
    let o = Optout::new(vec![]);
    assert!(o.output(&["migrate"]).status.success());
    let link = o.db_path.with_file_name("hard.db");
    std::fs::hard_link(&o.db_path, &link).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let first = optout::store::open(&o.store, 1).await.unwrap();
        first.claim_single_runner().await.unwrap();
        let second = optout::store::open(&format!("sqlite://{}", link.display()), 1)
            .await
            .unwrap();
        let err = second.claim_single_runner().await.unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        // Released when the first store closes.
        first.close().await;
        second.claim_single_runner().await.unwrap();
        second.close().await;
    });
}

/// A database (and its `-wal`, `-shm`) made world-readable by an older version is made
/// private on the next open for writing, with one structured WARN per file.
#[test]
fn world_readable_files_are_made_private_on_open() {
    let o = Optout::new(vec![]);
    assert!(o.output(&["migrate"]).status.success());
    let files: Vec<std::path::PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = o.db_path.as_os_str().to_owned();
            p.push(s);
            p.into()
        })
        .collect();
    for f in &files {
        if !f.exists() {
            std::fs::write(f, b"").unwrap();
        }
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = o.output(&["migrate"]);
    assert!(out.status.success());
    for f in &files {
        if let Ok(meta) = std::fs::metadata(f) {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", f.display());
        }
    }
    let logs = crate::common::optout::json_lines(&out.stderr);
    let tightened = logs
        .iter()
        .filter(|l| l["level"] == "WARN" && l["was"] == "644" && l["now"] == "600")
        .count();
    assert_eq!(tightened, 3, "{logs:?}");
    // Once private, nothing more is said.
    let again = o.output(&["migrate"]);
    let logs = crate::common::optout::json_lines(&again.stderr);
    assert!(logs.iter().all(|l| l["was"].is_null()), "{logs:?}");
}

/// Eight readers paging without pause while 80 MB of events are committed: the store's
/// upkeep (once a second, as `run` and `replay` call it) keeps the write-ahead log bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_write_ahead_log_stays_bounded_under_readers() {
    let db = crate::common::db::sqlite().await;
    let path = db.url.strip_prefix("sqlite://").unwrap().to_string();
    let wal = format!("{path}-wal");
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let reader = Arc::new(Reader::open(&db.url, 1).await.unwrap());
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut pages = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let req = PageRequest {
                    limit: 200,
                    cursor: None,
                };
                reader.page(&EventFilter::default(), &req).await.unwrap();
                pages += 1;
            }
            pages
        }));
    }
    let upkeep = {
        let (store, stop, wal) = (db.store.clone(), stop.clone(), wal.clone());
        tokio::spawn(async move {
            let mut largest = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store.upkeep().await.unwrap();
                largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            largest
        })
    };
    let body = "x".repeat(2_000);
    for b in 0..40 {
        let events = (0..1_000)
            .map(|i| {
                let mut e = opt_event(
                    &format!("EW{b:03}{i:04}"),
                    OptOutType::Stop,
                    &format!("+1555{i:07}"),
                    i64::from(b * 1_000 + i),
                );
                e.body = Some(body.clone());
                e
            })
            .collect();
        db.store.commit(&batch("w", events)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let largest = upkeep.await.unwrap();
    let mut pages = 0;
    for r in readers {
        pages += r.await.unwrap();
    }
    let db_size = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "database {:.0} MiB, largest write-ahead log {:.0} MiB, {pages} pages read meanwhile",
        db_size as f64 / 1048576.0,
        largest as f64 / 1048576.0
    );
    assert!(pages > 100, "the readers read");
    assert!(
        largest < 48 << 20,
        "the write-ahead log reached {largest} bytes next to a {db_size}-byte database"
    );
}
