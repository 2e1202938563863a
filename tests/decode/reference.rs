//! A slow, obviously-correct classifier over `serde_json::Value`, and the tests that hold the
//! fast decoder to it: on synthetic traffic (several seeds and opt ratios) and on randomly
//! mutated records (byte flips, insertions, deletions, truncations).

use chrono::{DateTime, Utc};
use optout::event::{
    DecodeOptions, INBOUND_MESSAGE_TYPE, OptEvent, OptOutType, Outcome, Skip, TEST_EVENT_TYPE,
    TestEvent, classify,
};
use optout::synth::{Kind, MixOptions, Synth};
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYWORDS: [(&str, OptOutType); 13] = [
    ("stop", OptOutType::Stop),
    ("stopall", OptOutType::Stop),
    ("unsubscribe", OptOutType::Stop),
    ("cancel", OptOutType::Stop),
    ("end", OptOutType::Stop),
    ("quit", OptOutType::Stop),
    ("revoke", OptOutType::Stop),
    ("optout", OptOutType::Stop),
    ("start", OptOutType::Start),
    ("yes", OptOutType::Start),
    ("unstop", OptOutType::Start),
    ("help", OptOutType::Help),
    ("info", OptOutType::Help),
];

/// An identity value every backend can store and index: no NUL, at most 512 bytes.
fn storable_id(v: &str) -> bool {
    !v.contains('\u{0}') && v.len() <= 512
}

fn dead(category: &str) -> Outcome {
    Outcome::Dead(format!("{category}: (reference)"))
}

fn string<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

fn timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.to_utc())
}

fn version(dataschema: &str) -> Option<u32> {
    let last = dataschema.split('/').next_back()?;
    let digits = last.strip_suffix(".json").unwrap_or(last);
    let all_digits = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    all_digits.then(|| digits.parse().ok()).flatten()
}

/// The rules of DESIGN.md "Semantics", written the slow and plain way.
pub fn reference(bytes: &[u8], opts: DecodeOptions) -> Outcome {
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(bytes) else {
        return dead("not JSON");
    };
    for key in ["id", "type", "source", "specversion"] {
        if string(&top, key).is_none_or(str::is_empty) {
            return dead("not a CloudEvent");
        }
    }
    if string(&top, "specversion") != Some("1.0") {
        return dead("not a CloudEvent");
    }
    let id = string(&top, "id").unwrap_or_default();
    let ty = string(&top, "type").unwrap_or_default();
    if ty != INBOUND_MESSAGE_TYPE && ty != TEST_EVENT_TYPE {
        return Outcome::Skip(Skip::OtherType);
    }
    let data = match top.get("data") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => return dead("no usable data"),
        },
        _ => return dead("no usable data"),
    };
    if ty == TEST_EVENT_TYPE {
        return match string(&data, "test_id") {
            Some(t) if !t.is_empty() && (!storable_id(t) || !storable_id(id)) => {
                dead("unstorable field")
            }
            Some(t) if !t.is_empty() => Outcome::Test(TestEvent {
                test_id: t.to_owned(),
                account_sid: id.to_owned(),
                occurred_at: string(&top, "time").and_then(timestamp),
            }),
            _ => dead("no test_id"),
        };
    }
    let schema_version = string(&top, "dataschema").and_then(version);
    let (opt_out_type, inferred) = match data.get("optOutType") {
        None | Some(Value::Null) => {
            let may_infer = opts.infer_keywords && schema_version.is_none_or(|v| v < 5);
            // ASCII case only, as documented (Unicode lower-casing maps the Kelvin sign to `k`).
            let body = string(&data, "body").map(|b| b.trim().to_ascii_lowercase());
            let keyword = body.and_then(|b| KEYWORDS.iter().find(|(k, _)| *k == b));
            match keyword {
                Some(&(_, t)) if may_infer => (t, true),
                _ => return Outcome::Skip(Skip::NotOptKeyword),
            }
        }
        // ASCII case only: Unicode upper-casing maps "ſtop" and "ﬆart" to STOP and START.
        Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
            "STOP" => (OptOutType::Stop, false),
            "START" => (OptOutType::Start, false),
            "HELP" => (OptOutType::Help, false),
            _ => return dead("unknown optOutType"),
        },
        Some(_) => return dead("unknown optOutType"),
    };
    let mut required = ["accountSid", "from", "to", "timestamp"].map(|k| string(&data, k));
    if required.iter().any(|v| v.is_none_or(str::is_empty)) {
        return dead("missing field");
    }
    let [account, from, to, ts] = required
        .each_mut()
        .map(|v| v.unwrap_or_default().to_owned());
    let Some(occurred_at) = timestamp(&ts) else {
        return dead("bad timestamp");
    };
    let optional = |k| string(&data, k).map(str::to_owned);
    let service = optional("messagingServiceSid");
    let ids = [
        Some(id),
        Some(&account),
        Some(&from),
        Some(&to),
        service.as_deref(),
    ];
    if !ids.into_iter().flatten().all(storable_id) {
        return dead("unstorable field");
    }
    // Free text keeps the event: U+0000 becomes U+FFFD.
    let text = |k| optional(k).map(|v: String| v.replace('\u{0}', "\u{FFFD}"));
    Outcome::Opt(OptEvent {
        event_id: id.to_owned(),
        opt_out_type,
        inferred,
        account_sid: account,
        messaging_service_sid: service,
        sender: to,
        subscriber: from,
        body: text("body"),
        message_sid: text("messageSid"),
        occurred_at,
        schema_version,
    })
}

/// Same outcome, comparing dead letters by their category only.
fn same(fast: &Outcome, slow: &Outcome) -> bool {
    match (fast, slow) {
        (Outcome::Dead(f), Outcome::Dead(s)) => s
            .split(": ")
            .next()
            .is_some_and(|c| f.starts_with(&format!("{c}: "))),
        _ => fast == slow,
    }
}

const MODES: [DecodeOptions; 2] = [
    DecodeOptions {
        infer_keywords: false,
    },
    DecodeOptions {
        infer_keywords: true,
    },
];

#[test]
fn agrees_with_reference_on_20k_synth_records() {
    let configs = [(1, 0.02), (2, 0.02), (3, 0.3), (4, 1.0)];
    let mut opts_seen = 0;
    for (seed, opt_ratio) in configs {
        let mut synth = Synth::new(MixOptions {
            seed,
            opt_ratio,
            subscribers: 200,
        });
        let mut records: Vec<_> = (0..5_000).map(|_| synth.next_record()).collect();
        records.push((Kind::TestEvent, synth.test_event()));
        for (i, (kind, bytes)) in records.into_iter().enumerate() {
            for opts in MODES {
                let (fast, slow) = (classify(&bytes, opts), reference(&bytes, opts));
                assert!(same(&fast, &slow), "seed {seed} #{i}: {fast:?} vs {slow:?}");
                let as_kind = match &fast {
                    Outcome::Opt(e) if !e.inferred => Kind::OptKeyword,
                    Outcome::Skip(Skip::NotOptKeyword) => Kind::InboundMessage,
                    Outcome::Skip(Skip::OtherType) => Kind::DeliveryReceipt,
                    Outcome::Test(_) => Kind::TestEvent,
                    other => panic!("seed {seed} #{i}: unexpected {other:?}"),
                };
                assert_eq!(as_kind, kind, "seed {seed} #{i}");
                opts_seen += usize::from(kind == Kind::OptKeyword);
            }
        }
    }
    assert!(
        opts_seen > 2 * 6_000,
        "the mix held too few opt events: {opts_seen}"
    );
}

/// One edit of a record's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Append(u8),
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match *edit {
        Edit::Flip(i, mask) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            bytes[i] ^= mask.max(1);
        }
        Edit::Insert(i, b) => bytes.insert(at(i, bytes.len() + 1), b),
        Edit::Delete(i) if !bytes.is_empty() => {
            bytes.remove(at(i, bytes.len()));
        }
        Edit::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
        Edit::Append(b) => bytes.push(b),
        _ => {}
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes worth inserting: structural characters, quotes, escapes, digits, controls, UTF-8.
    let interesting =
        || prop::sample::select(b"{}[]:,\"\\ 0-.eEtfnu\x00\x1f\x7f\x80\xc3\xff".to_vec());
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, m)| Edit::Flip(i, m)),
        2 => (any::<usize>(), interesting()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => any::<usize>().prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => interesting().prop_map(Edit::Append),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// Mutated records: the fast decoder and the reference agree on the outcome (dead letters
    /// by category), so broken JSON is never a silent skip.
    #[test]
    fn agrees_with_reference_on_mutated_records(
        seed in 0u64..1_000,
        index in 0usize..40,
        opt_ratio in prop::sample::select(vec![0.02, 0.5, 1.0]),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut synth = Synth::new(MixOptions { seed, opt_ratio, subscribers: 20 });
        let mut bytes = if index == 0 { synth.test_event() } else { synth.next_record().1 };
        for _ in 1..index {
            bytes = synth.next_record().1;
        }
        for e in &edits {
            apply(&mut bytes, e);
        }
        for opts in MODES {
            let (fast, slow) = (classify(&bytes, opts), reference(&bytes, opts));
            prop_assert!(same(&fast, &slow), "{fast:?} vs {slow:?} on {}", String::from_utf8_lossy(&bytes));
        }
    }
}
