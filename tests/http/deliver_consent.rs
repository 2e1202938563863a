//! The Consent API target and its dispatcher against a fake of Twilio's Consent API that
//! enforces Twilio's documented limits, on an in-memory outbox and a clock of the test's own
//! (backoff, Retry-After and the rate limit in virtual time).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use optout::deliver::{
    self, Clock, ConsentConfig, ConsentMode, ConsentTarget, Credentials, DispatchSettings,
    Dispatcher, HttpClient, Target,
};
use optout::store::{Outbox, Settle};
use serde_json::Value;

use crate::common::consent_api::{ConsentApi, MAX_ITEMS, PER_MINUTE};
use crate::common::outbox::{ManualClock, MemoryOutbox, change, drain};
use crate::common::twilio::ACCOUNT;

const KEY: &str = "SK0123456789abcdef0123456789abcdef";
const SECRET: &str = "api-secret-for-tests";

struct Setup {
    api: Arc<ConsentApi>,
    outbox: Arc<MemoryOutbox>,
    clock: Arc<ManualClock>,
    dispatcher: Dispatcher,
}

async fn setup(mode: ConsentMode) -> Setup {
    let clock = ManualClock::new();
    let api = ConsentApi::new(clock.clone(), ACCOUNT, KEY, SECRET);
    let url = api.serve().await;
    let target: Arc<dyn Target> = Arc::new(ConsentTarget::new(
        ConsentConfig {
            mode,
            api_url: url.parse().unwrap(),
            credentials: Credentials::parse_file(&format!("{ACCOUNT} {KEY} {SECRET}")).unwrap(),
        },
        HttpClient::new().unwrap(),
        clock.clone(),
    ));
    let outbox = MemoryOutbox::new();
    outbox.set_outbox_targets(deliver::outbox_targets(std::slice::from_ref(&target)));
    let dispatcher = Dispatcher::new(
        target,
        outbox.clone(),
        clock.clone(),
        DispatchSettings::default(),
    )
    .with_seed(7);
    Setup {
        api,
        outbox,
        clock,
        dispatcher,
    }
}

fn number(i: usize) -> String {
    format!("+1555{i:07}")
}

/// Every item the fake accepted, grouped by correlation id.
fn by_correlation(api: &ConsentApi) -> HashMap<String, Vec<Value>> {
    let mut by: HashMap<String, Vec<Value>> = HashMap::new();
    for item in api.items() {
        by.entry(item["correlation_id"].as_str().unwrap().to_string())
            .or_default()
            .push(item);
    }
    by
}

#[tokio::test]
async fn every_due_revocation_arrives_with_one_correlation_id_through_500s_and_timeouts() {
    let s = setup(ConsentMode::Revocations).await;
    *s.api.fail_next.lock().unwrap() = 2;
    // Held past the 3 s Twilio gives: the client gives up and tries again later.
    *s.api.hang_next.lock().unwrap() = (1, Duration::from_secs(4));
    let now = s.clock.now();
    for i in 0..60 {
        s.outbox.commit(
            change(&format!("rev{i}"), &number(i), "phrase", "opted_out"),
            now,
        );
    }
    // Not pushed in this mode: a Twilio STOP (Twilio blocked it), WhatsApp, a reassigned number.
    s.outbox
        .commit(change("stop", &number(100), "twilio", "opted_out"), now);
    s.outbox.commit(
        change(
            "wa",
            &format!("whatsapp:{}", number(101)),
            "phrase",
            "opted_out",
        ),
        now,
    );
    s.outbox
        .commit(change("re", &number(102), "reassigned", "opted_out"), now);
    assert_eq!(
        s.outbox.rows().len(),
        60,
        "only the revocations are enqueued"
    );

    drain(&s.dispatcher, &s.outbox, &s.clock, 100).await;

    for row in s.outbox.rows() {
        assert_eq!(row.done, Some(Settle::Delivered), "{row:?}");
    }
    let arrivals = s.api.arrivals.lock().unwrap().clone();
    assert!(arrivals.iter().all(|a| a.items.len() <= MAX_ITEMS));
    assert!(arrivals.iter().any(|a| a.status == 500));
    let by = by_correlation(&s.api);
    // Every revocation arrived; copies (the timed-out request was taken) carry one id.
    assert_eq!(by.len(), 60);
    let keys: HashSet<String> = s.outbox.rows().iter().map(|r| r.item.key.clone()).collect();
    for key in &keys {
        let id = deliver::correlation_id(key);
        let copies = &by[&id];
        assert!(
            copies.iter().all(|c| c == &copies[0]),
            "copies differ: {copies:?}"
        );
        assert_eq!(copies[0]["status"], "opt-out");
        assert_eq!(copies[0]["source"], "opt-out-message");
    }
    let copies: usize = by.values().map(Vec::len).sum();
    assert!(copies > 60, "the timed-out request's items were sent again");
}

#[tokio::test]
async fn no_account_exceeds_100_requests_a_minute_and_nothing_is_throttled() {
    let s = setup(ConsentMode::All).await;
    let now = s.clock.now();
    // 6,000 opt-outs: 240 requests of 25, more than two minutes of Twilio's allowance.
    for i in 0..6000 {
        s.outbox.commit(
            change(&format!("e{i}"), &number(i), "twilio", "opted_out"),
            now,
        );
    }
    drain(&s.dispatcher, &s.outbox, &s.clock, 1000).await;
    let arrivals = s.api.arrivals.lock().unwrap().clone();
    assert!(
        arrivals.iter().all(|a| a.status == 201),
        "a request was refused"
    );
    assert_eq!(arrivals.len(), 240);
    let times: Vec<_> = arrivals.iter().map(|a| a.at).collect();
    for (i, t) in times.iter().enumerate() {
        let in_minute = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t).unwrap() < Duration::from_secs(60))
            .count();
        assert!(in_minute <= PER_MINUTE, "{in_minute} requests in a minute");
    }
    let elapsed = s.clock.now().duration_since(now).unwrap();
    assert!(elapsed >= Duration::from_secs(120), "{elapsed:?}");
    assert_eq!(by_correlation(&s.api).len(), 6000);
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let s = setup(ConsentMode::All).await;
    // Another client of the account used most of the minute: Twilio answers 429 early.
    *s.api.per_minute.lock().unwrap() = 2;
    let now = s.clock.now();
    for i in 0..100 {
        s.outbox.commit(
            change(&format!("e{i}"), &number(i), "twilio", "opted_out"),
            now,
        );
    }
    drain(&s.dispatcher, &s.outbox, &s.clock, 200).await;
    let arrivals = s.api.arrivals.lock().unwrap().clone();
    let first_429 = arrivals
        .iter()
        .position(|a| a.status == 429)
        .expect("a 429");
    let refused_at = arrivals[first_429].at;
    // The next accepted request came when the fake's minute had freed a slot.
    let next = arrivals[first_429..]
        .iter()
        .find(|a| a.status == 201)
        .expect("accepted later");
    assert!(next.at.duration_since(refused_at).unwrap() >= Duration::from_secs(1));
    for row in s.outbox.rows() {
        assert_eq!(row.done, Some(Settle::Delivered));
    }
    // 100 items over at most 2 requests a minute: about 2 minutes, not more than the backoff
    // cap adds.
    assert_eq!(by_correlation(&s.api).len(), 100);
}

#[tokio::test]
async fn a_non_zero_error_code_fails_its_item_only_and_is_recorded() {
    let s = setup(ConsentMode::All).await;
    s.api.bad_contacts.lock().unwrap().insert(number(3), 30646);
    let now = s.clock.now();
    for i in 0..5 {
        s.outbox.commit(
            change(&format!("e{i}"), &number(i), "twilio", "opted_out"),
            now,
        );
    }
    drain(&s.dispatcher, &s.outbox, &s.clock, 20).await;
    for row in s.outbox.rows() {
        if row.item.change.subscriber == number(3) {
            match &row.done {
                Some(Settle::Failed { reason }) => {
                    assert!(reason.starts_with("error_code 30646"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(row.item.attempts, 1, "refused for good, not retried");
        } else {
            assert_eq!(row.done, Some(Settle::Delivered));
        }
    }
}

#[tokio::test]
async fn after_ten_failed_tries_an_item_fails_for_good() {
    let s = setup(ConsentMode::All).await;
    *s.api.fail_next.lock().unwrap() = usize::MAX;
    let now = s.clock.now();
    s.outbox
        .commit(change("e1", &number(1), "twilio", "opted_out"), now);
    drain(&s.dispatcher, &s.outbox, &s.clock, 50).await;
    let row = &s.outbox.rows()[0];
    assert_eq!(row.item.attempts, 10);
    match &row.done {
        Some(Settle::Failed { reason }) => {
            assert!(
                reason.starts_with("gave up after 10 tries: HTTP 500"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.api.arrivals.lock().unwrap().len(), 10);
}

#[tokio::test]
async fn nothing_is_enqueued_or_pushed_in_off_mode() {
    let s = setup(ConsentMode::Off).await;
    let now = s.clock.now();
    s.outbox
        .commit(change("e1", &number(1), "phrase", "opted_out"), now);
    s.outbox
        .commit(change("e2", &number(2), "twilio", "opted_out"), now);
    assert!(s.outbox.rows().is_empty());
    assert_eq!(s.dispatcher.tick().await.unwrap(), 0);
    assert!(s.api.arrivals.lock().unwrap().is_empty());
}

#[tokio::test]
async fn wrong_credentials_are_retried_then_failed_never_shown() {
    let clock = ManualClock::new();
    let api = ConsentApi::new(clock.clone(), ACCOUNT, KEY, SECRET);
    let url = api.serve().await;
    let target: Arc<dyn Target> = Arc::new(ConsentTarget::new(
        ConsentConfig {
            mode: ConsentMode::All,
            api_url: url.parse().unwrap(),
            credentials: Credentials::parse_file(&format!("{ACCOUNT} {KEY} wrong-s3cret")).unwrap(),
        },
        HttpClient::new().unwrap(),
        clock.clone(),
    ));
    let outbox = MemoryOutbox::new();
    outbox.set_outbox_targets(deliver::outbox_targets(std::slice::from_ref(&target)));
    let d = Dispatcher::new(
        target,
        outbox.clone(),
        clock.clone(),
        DispatchSettings::default(),
    );
    outbox.commit(change("e1", &number(1), "twilio", "opted_out"), clock.now());
    drain(&d, &outbox, &clock, 50).await;
    let row = &outbox.rows()[0];
    let Some(Settle::Failed { reason }) = &row.done else {
        panic!("{row:?}")
    };
    assert!(
        reason.contains("HTTP 401") && !reason.contains("wrong-s3cret"),
        "{reason}"
    );
}

/// Twilio's own helper library sends its Bulk Consents request to the fake, which must accept
/// it; and the items optout sends have exactly the fields the library's do.
#[tokio::test]
async fn the_fake_accepts_twilio_s_helper_library_and_optout_sends_the_same_shape() {
    let s = setup(ConsentMode::All).await;
    let url = {
        // The fake's base URL, from a request of our own.
        s.outbox.commit(
            change("e1", &number(1), "twilio", "opted_out"),
            s.clock.now(),
        );
        drain(&s.dispatcher, &s.outbox, &s.clock, 10).await;
        s.api.items()[0].clone()
    };
    let ours = url;
    let base = s.api.base_url();
    let script = r#"
import json, sys
from twilio.rest import Client
base, account, key, secret = sys.argv[1:5]
client = Client(key, secret, account)
client.accounts.base_url = base
item = {"contact_id": "+15550009999", "correlation_id": "ad388b5a46b33b874b0d41f7226db2ef",
        "sender_id": "MG0123456789abcdef0123456789abcdef", "status": "opt-out",
        "source": "opt-out-message", "date_of_consent": "2026-03-01T10:00:00Z"}
result = client.accounts.v1.bulk_consents.create(items=[item])
print(json.dumps(result.items))
"#;
    let out = tokio::process::Command::new(crate::common::twilio::python())
        .args(["-c", script, &base, ACCOUNT, KEY, SECRET])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer[0]["error_code"], 0, "{answer}");
    let arrivals = s.api.arrivals.lock().unwrap().clone();
    let theirs = &arrivals.last().unwrap().items[0];
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ours), keys(theirs));
}
