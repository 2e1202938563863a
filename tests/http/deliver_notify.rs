//! Signed webhooks out: signatures checked by the Standard Webhooks reference library, one
//! `webhook-id` per item across retries, per-subscriber order under injected failures, giving
//! up after 24 hours, and a dispatcher that runs and stops on its shutdown token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use optout::deliver::{
    self, Clock, DispatchSettings, Dispatcher, HttpClient, NotifyConfig, NotifyTarget, Secret,
    SystemClock, Target,
};
use optout::store::{Outbox, Settle};
use tokio_util::sync::CancellationToken;

use crate::common::outbox::{ManualClock, MemoryOutbox, change, drain};
use crate::common::webhook_receiver::{Receiver, verify_all};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn target(receiver: &Arc<Receiver>) -> Arc<dyn Target> {
    let url = receiver.serve().await;
    Arc::new(NotifyTarget::new(
        NotifyConfig {
            name: "notify:1".into(),
            url: url.parse().unwrap(),
            secret: Secret::parse(SECRET).unwrap(),
        },
        HttpClient::new().unwrap(),
    ))
}

#[tokio::test]
async fn signatures_verify_and_each_subscriber_s_order_holds_under_retries() {
    // Every id fails twice before it is taken.
    let receiver = Receiver::new(2);
    let target = target(&receiver).await;
    let clock = ManualClock::new();
    let outbox = MemoryOutbox::new();
    outbox.set_outbox_targets(deliver::outbox_targets(std::slice::from_ref(&target)));
    let d = Dispatcher::new(
        target,
        outbox.clone(),
        clock.clone(),
        DispatchSettings::default(),
    )
    .with_seed(3);
    // Three subscribers, each with a run of changes that must arrive in commit order.
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for step in 0..4 {
        for sub in 0..3 {
            let status = if step % 2 == 0 {
                "opted_out"
            } else {
                "opted_in"
            };
            let detection = if step == 2 { "phrase" } else { "twilio" };
            let id = format!("s{sub}e{step}");
            let subscriber = format!("+1555000000{sub}");
            outbox.commit(change(&id, &subscriber, detection, status), clock.now());
            order.entry(subscriber).or_default().push(id);
        }
    }
    drain(&d, &outbox, &clock, 200).await;
    assert!(
        outbox
            .rows()
            .iter()
            .all(|r| r.done == Some(Settle::Delivered))
    );

    let all = receiver.received.lock().unwrap().clone();
    assert_eq!(all.len(), 12 * 3, "two failures and one success per item");
    // The reference library accepts every request, the failed tries' too.
    let verified = verify_all(SECRET, &all);
    for (r, v) in all.iter().zip(&verified) {
        assert!(v.get("error").is_none(), "{v} for {}", r.id);
        assert_eq!(v["type"], "subscriber.changed");
    }
    // And refuses a tampered body (the check is not vacuous).
    let mut tampered = all[0].clone();
    tampered.body = tampered.body.replace("opted_", "OPTED_");
    assert!(verify_all(SECRET, &[tampered])[0].get("error").is_some());
    // One webhook-id per item across its tries, each try with its own timestamp.
    let mut tries: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &all {
        tries.entry(&r.id).or_default().push(&r.timestamp);
    }
    assert_eq!(tries.len(), 12);
    for (id, stamps) in &tries {
        assert_eq!(stamps.len(), 3, "{id}");
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{id}: {stamps:?}");
    }
    // Per subscriber, deliveries (and every try) in commit order.
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for v in &verified {
        let data = &v["data"];
        let sub = data["subscriber"].as_str().unwrap().to_string();
        let ev = data["event_id"].as_str().unwrap().to_string();
        let list = seen.entry(sub).or_default();
        if list.last() != Some(&ev) {
            list.push(ev);
        }
        assert_eq!(data["send_allowed"], data["status"] != "opted_out");
        assert!(data.get("occurred_at").is_some() && data.get("detection").is_some());
        assert!(data.get("rule").is_some() && data.get("scope").is_some());
        assert!(data.get("account_sid").is_some() && data.get("reason").is_some());
    }
    assert_eq!(seen, order);
}

#[tokio::test]
async fn an_item_refused_for_24_hours_fails_and_the_later_items_of_its_key_go_on() {
    let receiver = Receiver::new(0);
    let target = target(&receiver).await;
    let clock = ManualClock::new();
    let start = clock.now();
    let outbox = MemoryOutbox::new();
    outbox.set_outbox_targets(deliver::outbox_targets(std::slice::from_ref(&target)));
    let d = Dispatcher::new(
        target,
        outbox.clone(),
        clock.clone(),
        DispatchSettings::default(),
    );
    outbox.commit(
        change("first", "+15550000001", "twilio", "opted_out"),
        start,
    );
    outbox.commit(
        change("second", "+15550000001", "twilio", "opted_in"),
        start,
    );
    receiver
        .failures
        .lock()
        .unwrap()
        .insert("first:notify:1".into(), usize::MAX);
    drain(&d, &outbox, &clock, 200).await;
    let rows = outbox.rows();
    let Some(Settle::Failed { reason }) = &rows[0].done else {
        panic!("{:?}", rows[0])
    };
    assert!(reason.contains("HTTP 503"), "{reason}");
    assert_eq!(rows[1].done, Some(Settle::Delivered));
    // Given up once the schedule had run for a day, not long after.
    let received = receiver.received.lock().unwrap().clone();
    let first_tries: Vec<_> = received
        .iter()
        .filter(|r| r.id == "first:notify:1")
        .collect();
    let span = |r: &crate::common::webhook_receiver::Received| r.timestamp.parse::<u64>().unwrap();
    let days = (span(first_tries.last().unwrap()) - span(first_tries[0])) as f64 / 86_400.0;
    assert!((0.6..=1.0).contains(&days), "{days} days of tries");
    // The later change waited for the earlier one to be settled.
    let second = received
        .iter()
        .position(|r| r.id == "second:notify:1")
        .unwrap();
    assert!(
        received[..second]
            .iter()
            .filter(|r| r.id == "first:notify:1")
            .count()
            == first_tries.len()
    );
}

#[tokio::test]
async fn a_running_dispatcher_delivers_as_items_come_and_stops_on_its_token() {
    let receiver = Receiver::new(0);
    let target = target(&receiver).await;
    let outbox = MemoryOutbox::new();
    outbox.set_outbox_targets(deliver::outbox_targets(std::slice::from_ref(&target)));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let shutdown = CancellationToken::new();
    let settings = DispatchSettings {
        poll: Duration::from_millis(20),
        ..DispatchSettings::default()
    };
    let mut tasks = deliver::spawn(
        vec![target],
        outbox.clone(),
        clock.clone(),
        settings,
        shutdown.clone(),
    );
    for i in 0..20 {
        outbox.commit(
            change(
                &format!("e{i}"),
                &format!("+1555000{i:04}"),
                "twilio",
                "opted_out",
            ),
            clock.now(),
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !outbox.drained() {
        assert!(tokio::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .expect("dispatchers stop on their token");
    assert_eq!(receiver.delivered().len(), 20);
}
