//! `--honor-revocations` on every path that has it, through the binary on both backends:
//! `run` (the consumer sets `opted_out` for a phrase only when told), `history`'s
//! `status_after`, `status --as-of`, and the same two over HTTP (`/v1/history`,
//! `/v1/status?as_of=`), which recompute from the events whatever the consumer did.
//!
//! The stream: subscriber A opts in (START, 12:10) and later writes "please stop texting me"
//! (a phrase Twilio did not flag, 12:20); subscriber B only writes "remove me from your list"
//! (12:30).

use crate::common::db::{self, Db};
use crate::common::emulator;
use crate::common::optout::*;
use crate::common::records::*;

use serde_json::Value;

const A: &str = "+15550001001";
const B: &str = "+15550001002";

fn stream_records() -> Vec<Vec<u8>> {
    vec![
        Inbound::new("EZh00000001", A)
            .service("MGh")
            .keyword("START")
            .at("2026-03-01T12:10:00Z")
            .build(),
        Inbound::new("EZh00000002", A)
            .service("MGh")
            .body("please stop texting me")
            .at("2026-03-01T12:20:00Z")
            .build(),
        Inbound::new("EZh00000003", B)
            .service("MGh")
            .body("remove me from your list")
            .at("2026-03-01T12:30:00Z")
            .build(),
    ]
}

/// (subscriber, status) of `optout status ARGS`.
fn statuses(o: &Optout, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    rows_of(&o.query(&all))
}

fn rows_of(rows: &[Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["subscriber"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn st(s: &str, status: &str) -> (String, String) {
    (s.to_string(), status.to_string())
}

/// `status_after` of each of A's history rows.
fn after(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["status_after"].as_str().unwrap_or("-"))
        .collect()
}

async fn revocations_change_status_only_where_honoured(plain: Db) {
    let honoured = if plain.url.starts_with("postgres") {
        db::postgres().await
    } else {
        db::sqlite().await
    };
    let emu = emulator::from_env().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("honor");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    emulator::put_records(&client, &stream, &keyed(stream_records()))
        .await
        .unwrap();
    let plain_o = Optout::with_store(emu.env(), &plain.url);
    plain_o.run_to_idle(&stream, &[]);
    let honoured_o = Optout::with_store(emu.env(), &honoured.url);
    honoured_o.run_to_idle(&stream, &["--honor-revocations"]);

    // `run`: the live table follows the consumer's setting.
    assert_eq!(statuses(&plain_o, &[]), [st(A, "opted_in")]);
    assert_eq!(
        statuses(&honoured_o, &[]),
        [st(A, "opted_out"), st(B, "opted_out")]
    );
    // Both stored the same events: only status differs.
    let events = |o: &Optout| o.query(&["events"]);
    assert_eq!(events(&plain_o), events(&honoured_o));

    // `history`: status_after recomputed from the events, honoured only when asked.
    let plain_history = plain_o.query(&["history", "--subscriber", A]);
    assert_eq!(after(&plain_history), ["opted_in", "opted_in"]);
    let honoured_history = plain_o.query(&["history", "--subscriber", A, "--honor-revocations"]);
    assert_eq!(after(&honoured_history), ["opted_in", "opted_out"]);

    // `status --as-of`: the same, at an instant; before the phrase nothing changes.
    let as_of = |at: &str, honour: bool| {
        let mut args = vec!["--as-of", at];
        if honour {
            args.push("--honor-revocations");
        }
        statuses(&plain_o, &args)
    };
    assert_eq!(as_of("2026-03-01T12:15:00Z", true), [st(A, "opted_in")]);
    assert_eq!(as_of("2026-03-01T12:25:00Z", false), [st(A, "opted_in")]);
    assert_eq!(as_of("2026-03-01T12:25:00Z", true), [st(A, "opted_out")]);
    assert_eq!(
        as_of("2026-03-01T12:35:00Z", true),
        [st(A, "opted_out"), st(B, "opted_out")]
    );
    // Without --as-of, --honor-revocations is refused (the live table already applied the
    // consumer's setting).
    let out = plain_o.output(&["status", "--honor-revocations"]);
    assert_eq!(out.status.code(), Some(2));

    // HTTP: the same answers from `optout serve` on the store the consumer did not honour.
    let served = Served::start(&plain.url, &[]).await;
    let get = |path: String| {
        let addr = served.addr.clone();
        async move {
            let (code, body) = http_get(&addr, &path).await;
            assert_eq!(code, 200, "{path}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            v["items"].as_array().unwrap().clone()
        }
    };
    let a = A.replace('+', "%2B");
    let history = get(format!("/v1/history/{a}")).await;
    assert_eq!(after(&history), ["opted_in", "opted_in"]);
    let history = get(format!("/v1/history/{a}?honor_revocations=true")).await;
    assert_eq!(after(&history), ["opted_in", "opted_out"]);
    let status = get("/v1/status?as_of=2026-03-01T12:35:00Z".into()).await;
    assert_eq!(rows_of(&status), [st(A, "opted_in")]);
    let status = get("/v1/status?as_of=2026-03-01T12:35:00Z&honor_revocations=true".into()).await;
    assert_eq!(rows_of(&status), [st(A, "opted_out"), st(B, "opted_out")]);
    let (code, _) = http_get(&served.addr, "/v1/status?honor_revocations=true").await;
    assert_eq!(code, 400, "honor_revocations without as_of");
}

// Multi-threaded: the in-process emulator serves while the test waits on the binary.
#[tokio::test(flavor = "multi_thread")]
async fn revocations_change_status_only_where_honoured_on_sqlite() {
    revocations_change_status_only_where_honoured(db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_change_status_only_where_honoured_on_postgres() {
    revocations_change_status_only_where_honoured(db::postgres().await).await;
}
