//! How commands open the store: queries only read (no file created, no migration, a read-only
//! copy or a SELECT-only role is enough), files holding phone numbers are private, the runner
//! lock cannot be dodged through a symlink, failures name their cause, replay never drops a
//! dead letter and checks its inputs before committing anything.

use crate::common::db;
use crate::common::optout::*;
use crate::common::records::*;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One line, exit code 2, and no file left behind.
#[test]
fn a_query_on_a_missing_sqlite_file_says_what_to_run_and_creates_nothing() {
    let o = Optout::new(vec![]);
    for cmd in [
        &["status"][..],
        &["events"],
        &["dead-letters"],
        &["test-events"],
    ] {
        let out = o.output(cmd);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("no optout database at"), "{err}");
        assert!(err.contains("optout migrate"), "{err}");
        assert!(
            !o.db_path.exists(),
            "{cmd:?} created {}",
            o.db_path.display()
        );
    }
}

/// A database at schema version 1 (what the first release wrote).
#[test]
fn a_query_on_an_older_schema_says_to_migrate() {
    let o = Optout::new(vec![]);
    let db = format!("sqlite://{}?mode=rwc", o.db_path.display());
    let v1 = include_str!("../../migrations/sqlite/0001_init.sql");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&db).await.unwrap();
        sqlx::raw_sql(v1).execute(&mut c).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE optout_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TEXT NOT NULL); INSERT INTO optout_migrations VALUES (1, 'init', 'x');",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    });
    let out = o.output(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `optout migrate`"),
        "{}",
        stderr(&out)
    );
    // `migrate` brings it up to date, and then queries work.
    let out = o.output(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(o.output(&["status"]).status.success());
}

#[test]
fn a_garbage_file_is_named_as_such() {
    let o = Optout::new(vec![]);
    std::fs::write(&o.db_path, vec![0x42u8; 8192]).unwrap();
    for cmd in [&["status"][..], &["migrate"]] {
        let out = o.output(cmd);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("file is not a database"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn an_unreachable_postgres_is_named_by_its_cause() {
    let o = Optout::with_store(vec![], "postgres://u:TopSecret1@127.0.0.1:1/db");
    let out = o.output(&["status"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
    assert!(!err.contains("TopSecret1"), "password leaked: {err}");
}

/// While `optout run` holds the database (WAL, shared memory and runner lock all present),
/// every file next to it is 0600, even under umask 000.
#[test]
fn database_files_are_private_whatever_the_umask() {
    let o = Optout::new(vec![]);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {} --store {} run --stream s",
            env!("CARGO_BIN_EXE_optout"),
            o.store
        ))
        // Nothing listens there: the consumer keeps retrying its first listing, holding the
        // store open, which is all this test needs.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = o.db_path.parent().unwrap().to_path_buf();
    let names = [
        "optout.db",
        "optout.db-wal",
        "optout.db-shm",
        "optout.db.lock",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !names.iter().all(|n| dir.join(n).exists()) {
        assert!(std::time::Instant::now() < deadline, "files never appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for name in names {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Reads a copy the querying user may not write, in a directory it may not write either, as
/// an unprivileged user (root ignores file modes, so the check runs as `nobody`).
#[test]
fn queries_work_on_a_read_only_copy() {
    let o = Optout::new(vec![]);
    let file = o.db_path.with_file_name("in.jsonl");
    std::fs::write(&file, [opt_event(0), b"\n".to_vec()].concat()).unwrap();
    assert!(
        o.output(&["replay", file.to_str().unwrap()])
            .status
            .success()
    );
    let wal = o.db_path.with_file_name("optout.db-wal");
    assert!(
        !wal.exists(),
        "a clean exit folds the WAL into the database file"
    );
    let ro = tempfile::tempdir().unwrap();
    let copy = ro.path().join("copy.db");
    std::fs::copy(&o.db_path, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(ro.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_optout"))
        .args(["--store", &format!("sqlite://{}", copy.display())])
        .args(["events", "--format", "json"])
        .output()
        .expect("setpriv (util-linux) runs the query as nobody");
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(&out.stdout);
    assert_eq!(rows.len(), 1);
    let names: Vec<String> = std::fs::read_dir(ro.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["copy.db"], "the query wrote next to the copy");
    std::fs::set_permissions(ro.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_work_with_a_select_only_postgres_role() {
    use sqlx::Connection;
    let pg = db::postgres().await;
    let role = format!("optout_reader_{:08x}", fastrand::u32(..));
    let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let reader_url = pg
        .url
        .replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let reader = Optout::with_store(vec![], &reader_url);
    for cmd in [
        &["status"][..],
        &["events"],
        &["dead-letters"],
        &["test-events"],
    ] {
        let out = reader.output(cmd);
        assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    }
    // The same role cannot write: a replay fails and says why.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, [opt_event(0), b"\n".to_vec()].concat()).unwrap();
    let out = reader.output(&["replay", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role};"
    )))
    .execute(&mut c)
    .await;
}

#[test]
fn the_runner_lock_follows_symlinks() {
    let o = Optout::new(vec![]);
    assert!(o.output(&["migrate"]).status.success());
    let link = o.db_path.with_file_name("alias.db");
    std::os::unix::fs::symlink(&o.db_path, &link).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let first = optout::store::open(&o.store, 1).await.unwrap();
        first.claim_single_runner().await.unwrap();
        let second = optout::store::open(&format!("sqlite://{}", link.display()), 1)
            .await
            .unwrap();
        let err = second.claim_single_runner().await.unwrap_err();
        assert!(err.to_string().contains("already using"), "{err}");
    });
}

/// Two runs over stdin (or two files of the same name) each keep their dead letters.
#[test]
fn replay_never_drops_a_dead_letter() {
    let o = Optout::new(vec![]);
    for input in ["x\n", "y\n"] {
        let mut child = o
            .command(&["replay", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(summary.contains("1 dead letters stored"), "{summary}");
    }
    let dead = o.query(&["dead-letters"]);
    assert_eq!(dead.len(), 2, "{dead:?}");
}

#[test]
fn replay_checks_every_input_before_committing_anything() {
    let o = Optout::new(vec![]);
    let file = o.db_path.with_file_name("in.jsonl");
    std::fs::write(&file, [opt_event(0), b"\n".to_vec()].concat()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = o.output(&[
        "replay",
        file.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("a directory"), "{}", stderr(&out));
    assert!(
        !o.db_path.exists(),
        "nothing may be stored when an input is bad"
    );
}

/// A store value that is no URL (a password alone, the wrong key of a mounted Secret) is
/// refused in one line, exit 2, without a character of it; a misspelt `sslmode` too, as the
/// configuration mistake it is, before any connection.
#[test]
fn a_store_value_that_cannot_be_parsed_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store-url");
    std::fs::write(&file, "S3cr3t-P4ssw0rd!").unwrap();
    for args in [
        vec!["status"],
        vec!["run", "--stream", "s"],
        vec!["migrate"],
    ] {
        let mut cmd = bare_command(&args);
        cmd.arg("--store-file").arg(&file);
        let (code, text) = output_of(&mut cmd);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
        for part in ["S3cr3t", "P4ssw0rd", "3cr3t-P4"] {
            assert!(!text.contains(part), "{args:?} echoed the value: {text}");
        }
        assert!(text.contains("16 characters"), "{text}");
    }
    for (store, command) in [
        (
            "postgres://u:TopSecret1@127.0.0.1:1/db?sslmode=bogus",
            "status",
        ),
        (
            "postgres://u:TopSecret1@127.0.0.1:1/db?sslmode=bogus",
            "migrate",
        ),
        (
            "postgres://u:TopSecret1@127.0.0.1:1/db?ssl-mode=verify_full",
            "serve",
        ),
    ] {
        let (code, text) = output_of(bare_command(&[command]).env("OPTOUT_STORE", store));
        assert_eq!(code, Some(2), "{store} {command}: {text}");
        assert!(
            text.contains("sslmode") || text.contains("ssl-mode"),
            "{text}"
        );
        assert!(!text.contains("TopSecret1"), "{text}");
    }
}
