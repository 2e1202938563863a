//! The synthetic traffic generator: deterministic, the promised mix, Twilio's shapes and sizes.

use std::collections::{BTreeMap, HashSet};

use optout::event::{DecodeOptions, Outcome, classify};
use optout::synth::{Kind, MixOptions, Synth};
use serde_json::Value;

fn mix(seed: u64, opt_ratio: f64, n: usize) -> Vec<(Kind, Vec<u8>)> {
    let mut synth = Synth::new(MixOptions {
        seed,
        opt_ratio,
        subscribers: 200,
    });
    (0..n).map(|_| synth.next_record()).collect()
}

fn is_hex_id(s: &str, prefix: &str) -> bool {
    s.len() == 34
        && s.starts_with(prefix)
        && s[2..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn same_seed_same_records_other_seed_other_records() {
    assert_eq!(mix(5, 0.02, 300), mix(5, 0.02, 300));
    assert_ne!(mix(5, 0.02, 300), mix(6, 0.02, 300));
    let mut a = Synth::new(MixOptions::default());
    let mut b = Synth::new(MixOptions::default());
    assert_eq!(a.test_event(), b.test_event());
}

#[test]
fn the_mix_has_the_promised_shares_and_mean_size() {
    let records = mix(11, 0.02, 20_000);
    let mut count: BTreeMap<Kind, usize> = BTreeMap::new();
    let (mut bytes, mut string_data, mut with_service, mut whatsapp) = (0, 0, 0, 0);
    for (kind, r) in &records {
        *count.entry(*kind).or_default() += 1;
        bytes += r.len();
        let v: Value = serde_json::from_slice(r).expect("synth records are JSON");
        let data = match &v["data"] {
            Value::String(s) => {
                string_data += 1;
                serde_json::from_str(s).expect("string data holds JSON")
            }
            d => d.clone(),
        };
        if *kind == Kind::OptKeyword {
            with_service += usize::from(data.get("messagingServiceSid").is_some());
            whatsapp += usize::from(
                data["from"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("whatsapp:")),
            );
        }
    }
    let share = |k| count.get(&k).copied().unwrap_or_default() as f64 / records.len() as f64;
    // The 2% opt share: 20 keywords Twilio flags, 6 revocation phrases it does not.
    let opt_share = share(Kind::OptKeyword) + share(Kind::Revocation);
    assert!((opt_share - 0.02).abs() < 0.005, "{count:?}");
    assert!(
        (share(Kind::Revocation) / opt_share - 6.0 / 26.0).abs() < 0.08,
        "{count:?}"
    );
    assert!(
        (share(Kind::InboundMessage) - 0.45).abs() < 0.015,
        "{count:?}"
    );
    assert!(
        (share(Kind::DeliveryReceipt) - 0.53).abs() < 0.015,
        "{count:?}"
    );
    assert_eq!(share(Kind::TestEvent), 0.0);
    let string_share = string_data as f64 / records.len() as f64;
    assert!((string_share - 0.10).abs() < 0.015, "{string_share}");
    let opt = count[&Kind::OptKeyword] as f64;
    assert!(
        (with_service as f64 / opt - 0.7).abs() < 0.1,
        "{with_service} of {opt}"
    );
    assert!(
        whatsapp > 0 && (whatsapp as f64) < opt * 0.25,
        "{whatsapp} of {opt}"
    );
    // The mean record is ~765 bytes (769 for this seed), like Twilio's compact records.
    let mean = bytes as f64 / records.len() as f64;
    assert!((740.0..=790.0).contains(&mean), "mean record size {mean}");
}

#[test]
fn records_look_like_twilio_events() {
    let records = mix(3, 0.3, 3_000);
    let mut ids = HashSet::new();
    let mut last_time = String::new();
    for (kind, r) in &records {
        let v: Value = serde_json::from_slice(r).expect("JSON");
        let id = v["id"].as_str().expect("id");
        assert!(is_hex_id(id, "EZ") && ids.insert(id.to_owned()), "{id}");
        let time = v["time"].as_str().expect("time").to_owned();
        // RFC 3339 with milliseconds and Z: fixed width, so string order is time order.
        assert_eq!(
            (time.len(), &time[19..20], &time[23..]),
            (24, ".", "Z"),
            "{time}"
        );
        assert!(time > last_time, "{time} after {last_time}");
        last_time = time;
        let data = match &v["data"] {
            Value::String(s) => serde_json::from_str::<Value>(s).expect("JSON data"),
            d => d.clone(),
        };
        assert!(is_hex_id(
            data["messageSid"].as_str().expect("messageSid"),
            "SM"
        ));
        assert!(is_hex_id(
            data["accountSid"].as_str().expect("accountSid"),
            "AC"
        ));
        assert_eq!(data["timestamp"], v["time"]);
        let ty = v["type"].as_str().expect("type");
        match kind {
            Kind::DeliveryReceipt => assert!(ty.starts_with("com.twilio.messaging.message.")),
            Kind::InboundMessage | Kind::Revocation => {
                assert!(data.get("optOutType").is_none())
            }
            Kind::OptKeyword => {
                let t = data["optOutType"].as_str().expect("optOutType");
                assert!(["STOP", "START", "HELP"].contains(&t), "{t}");
                let version = v["dataschema"].as_str().expect("dataschema");
                assert!(
                    version.ends_with("/5") || version.ends_with("/6"),
                    "{version}"
                );
            }
            Kind::TestEvent => panic!("next_record made a test event"),
        }
    }
}

#[test]
fn every_kind_decodes_to_its_outcome() {
    let opts = DecodeOptions {
        infer_keywords: true,
        ..DecodeOptions::default()
    };
    for (kind, r) in mix(8, 0.1, 2_000) {
        let outcome = classify(&r, opts);
        let ok = match kind {
            Kind::DeliveryReceipt => outcome == Outcome::Skip(optout::event::Skip::OtherType),
            Kind::InboundMessage => outcome == Outcome::Skip(optout::event::Skip::NotOptKeyword),
            Kind::OptKeyword => matches!(&outcome, Outcome::Opt(e) if !e.inferred),
            Kind::Revocation => {
                matches!(&outcome, Outcome::Opt(e) if e.detection == optout::event::Detection::Phrase)
            }
            Kind::TestEvent => false,
        };
        assert!(ok, "{kind:?} decoded as {outcome:?}");
    }
    let mut synth = Synth::new(MixOptions::default());
    let Outcome::Test(t) = classify(&synth.test_event(), opts) else {
        panic!("a test event")
    };
    assert_eq!((t.test_id.len(), t.account_sid.len()), (36, 34));
    assert!(t.occurred_at.is_some());
}

#[test]
fn string_data_is_a_json_string_like_twilios() {
    let records = mix(2, 0.5, 400);
    let with_string = records
        .iter()
        .map(|(_, r)| String::from_utf8_lossy(r).into_owned())
        .find(|r| r.contains(r#""data":"{\"messageSid\": \"SM"#));
    assert!(
        with_string.is_some(),
        "no record with Twilio-style string data"
    );
}

#[test]
fn kind_names_are_stable() {
    let names = [
        Kind::DeliveryReceipt,
        Kind::InboundMessage,
        Kind::OptKeyword,
        Kind::TestEvent,
    ]
    .map(Kind::as_str);
    assert_eq!(
        names,
        [
            "delivery_receipt",
            "inbound_message",
            "opt_keyword",
            "test_event"
        ]
    );
}
