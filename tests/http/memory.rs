//! Bytes bound every response: whoever can write to the stream decides how large a body or
//! a raw record is, and no request may turn that into the server's memory.
//!
//! 200 dead letters of 1 MiB (Kinesis' default maximum record) and 200 STOPs with 1 MiB bodies
//! (half of them control characters, which JSON writes six times as long), then 32 requests
//! at once of the worst kinds (the largest pages, NDJSON exports, single items whole) against
//! a real `optout serve`: its peak RSS, read from `/proc`, stays under 128 MiB. Lists carry
//! the records cut short, with `truncated` and the whole length; pages end at their byte cap
//! and say where the rest is; the single-item fetches return every byte.

use base64::Engine as _;
use optout::event::{Detection, OptEvent, OptOutType};
use optout::store::{Batch, DeadLetter, Positioned};
use serde_json::Value;

use crate::common::db::Db;
use crate::common::optout::{Served, http_get, http_get_with};

both_backends! {
    responses_stay_bounded_whatever_the_rows_hold;
}

const MIB: usize = 1 << 20;
const ROWS: usize = 200;
/// The ceiling the issue sets for `optout serve` under 32 worst-case requests.
const CEILING: u64 = 128 * MIB as u64;

fn raw_record(i: usize) -> Vec<u8> {
    (0..MIB).map(|j| (j.wrapping_mul(31) + i) as u8).collect()
}

fn big_body(i: usize) -> String {
    let filler = if i.is_multiple_of(2) { '\u{1}' } else { 'x' };
    let mut body = String::with_capacity(MIB);
    body.push_str("STOP ");
    while body.len() < MIB {
        body.push(filler);
    }
    body
}

/// Plants the rows, ten of each per commit.
async fn plant(db: &Db) {
    for chunk in 0..ROWS / 10 {
        let mut batch = Batch {
            stream: "s".into(),
            shard_id: "big".into(),
            ..Batch::default()
        };
        for i in chunk * 10..chunk * 10 + 10 {
            batch.dead_letters.push(DeadLetter {
                sequence_number: format!("{i:06}"),
                partition_key: Some("pk".into()),
                reason: "not JSON: planted".into(),
                data: raw_record(i),
            });
            batch.opt_events.push(Positioned {
                sequence_number: format!("{:06}", 1_000 + i),
                value: OptEvent {
                    event_id: format!("EZbig{i:05}"),
                    opt_out_type: OptOutType::Stop,
                    inferred: false,
                    detection: Detection::Twilio,
                    rule: None,
                    account_sid: "AC1".into(),
                    messaging_service_sid: Some(format!("MG{}", i % 7)),
                    sender: "+15559870002".into(),
                    subscriber: format!("+1555000{:04}", i % 20),
                    body: Some(big_body(i)),
                    message_sid: Some(format!("SM{i:032}")),
                    occurred_at: crate::common::events::ts(1_772_366_400 + i as i64),
                    schema_version: Some(5),
                    time_source: optout::event::TimeSource::Twilio,
                },
            });
        }
        db.store.commit(&batch).await.unwrap();
    }
}

/// Follows `next_cursor` from `path` (which has no query string yet, or ends in one) until the
/// end; returns every item and the number of pages.
async fn every_page(addr: &str, path: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = path.to_string();
    loop {
        let (code, body) = http_get(addr, &next).await;
        assert_eq!(code, 200, "{next}: {}", &body[..body.len().min(300)]);
        assert!(
            body.len() <= 600 << 10,
            "{next}: a page of {} bytes",
            body.len()
        );
        let page: Value = serde_json::from_str(&body).unwrap();
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                next = format!("{path}{sep}cursor={c}");
            }
            None => return (items, pages),
        }
    }
}

async fn responses_stay_bounded_whatever_the_rows_hold(db: Db) {
    plant(&db).await;
    let served = Served::start(&db.url, &[]).await;
    let addr = served.addr.clone();

    // Lists: cut rows, flagged, every row reached by cursors, pages under their byte cap.
    let (dead, pages) = every_page(&addr, "/v1/dead-letters?limit=10000").await;
    assert_eq!(dead.len(), ROWS);
    for d in &dead {
        assert_eq!(d["truncated"], true, "{d}");
        assert_eq!(d["data_bytes"], MIB as u64);
        let preview = base64::engine::general_purpose::STANDARD
            .decode(d["data_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(preview.len(), 1_024);
    }
    let (events, event_pages) = every_page(&addr, "/v1/events?limit=10000").await;
    assert_eq!(events.len(), ROWS);
    assert!(
        event_pages > 1,
        "escaped bodies fill a page before 200 rows"
    );
    for e in &events {
        assert_eq!(e["truncated"], true);
        assert_eq!(e["body"].as_str().unwrap().chars().count(), 1_024);
    }
    eprintln!("dead letters in {pages} page(s), events in {event_pages}");

    // Single items: whole, byte for byte.
    let id = dead[7]["id"].as_str().unwrap();
    let (code, body) = http_get(&addr, &format!("/v1/dead-letters/{id}")).await;
    assert_eq!(code, 200);
    let whole: Value = serde_json::from_str(&body).unwrap();
    let data = base64::engine::general_purpose::STANDARD
        .decode(whole["data_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, raw_record(7));
    assert_eq!(
        (whole["truncated"].clone(), whole["reason"].clone()),
        (Value::Bool(false), Value::from("not JSON: planted"))
    );
    for i in [4, 5] {
        let (code, body) = http_get(&addr, &format!("/v1/events/EZbig{i:05}")).await;
        assert_eq!(code, 200);
        let whole: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(whole["body"].as_str().unwrap(), big_body(i), "event {i}");
        assert_eq!(whole["subscriber"], format!("+1555000{:04}", i % 20));
    }
    let (code, _) = http_get(&addr, "/v1/events/EZnothing").await;
    assert_eq!(code, 404);
    let (code, _) = http_get(&addr, "/v1/dead-letters/not-an-id").await;
    assert_eq!(code, 400);

    // 32 worst-case requests at once, each read to its end.
    let before = served.peak_rss();
    let ndjson = [("Accept", "application/x-ndjson")];
    let mut requests: Vec<(String, bool)> = Vec::new();
    for k in 0..32 {
        let request = match k % 8 {
            0 => ("/v1/dead-letters?limit=10000".to_string(), false),
            1 => ("/v1/events?limit=10000".to_string(), false),
            2 => ("/v1/dead-letters".to_string(), true),
            3 => ("/v1/events".to_string(), true),
            4 | 5 => (
                format!("/v1/dead-letters/{}", dead[k * 5]["id"].as_str().unwrap()),
                false,
            ),
            6 => (format!("/v1/events/EZbig{:05}", k * 6), false),
            _ => ("/v1/history/%2B15550000004?limit=10000".to_string(), false),
        };
        requests.push(request);
    }
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(path, export)| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let headers: &[(&str, &str)] = if export { &ndjson } else { &[] };
                let (code, body) = http_get_with(&addr, &path, headers).await;
                (path, code, body.len())
            })
        })
        .collect();
    let mut bytes = 0;
    for t in tasks {
        let (path, code, len) = t.await.unwrap();
        assert_eq!(code, 200, "{path}");
        bytes += len;
    }
    let peak = served.peak_rss();
    eprintln!(
        "32 requests, {:.1} MiB sent; peak RSS {:.1} MiB (before them {:.1} MiB)",
        bytes as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        before as f64 / MIB as f64
    );
    assert!(
        peak < CEILING,
        "peak RSS {peak} bytes is over the {CEILING}-byte ceiling"
    );
}
