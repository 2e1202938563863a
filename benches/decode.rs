//! Decoder throughput on the Twilio mix: `event::classify` against two serde_json baselines.
//!
//! All three run over the same 10,000 synthetic records (seed 42, 2% opt keywords; ~45% ordinary
//! inbound messages, ~53% delivery receipts, ~10% with `data` as a JSON string), reported as
//! records per second. The baselines show why `classify` uses its own scanner: a borrowed-struct
//! serde parse (which, unlike `classify`, skips unknown values without checking UTF-8 in them)
//! and a `serde_json::Value` parse. Run with
//! `cargo bench --bench decode -- --warm-up-time 1 --measurement-time 3`.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use optout::event::{DecodeOptions, INBOUND_MESSAGE_TYPE, Outcome, classify};
use optout::synth::{MixOptions, Synth};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};

/// The envelope as a borrowed struct; `data` read as the inbound fields or kept as a string.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    ty: Cow<'a, str>,
    #[serde(borrow)]
    #[allow(dead_code)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    specversion: Cow<'a, str>,
    #[serde(borrow, default)]
    dataschema: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
}

/// `data` as Twilio sends it: an object, or a JSON string holding one.
enum Data<'a> {
    Text(Cow<'a, str>),
    Fields(Inbound<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = Data<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object or a JSON string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Data<'de>, E> {
                Ok(Data::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Data<'de>, E> {
                Ok(Data::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Data<'de>, A::Error> {
                Inbound::deserialize(MapAccessDeserializer::new(m)).map(Data::Fields)
            }
        }
        d.deserialize_any(DataVisitor)
    }
}

/// The inbound-message fields the decoder needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inbound<'a> {
    #[serde(borrow)]
    account_sid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow)]
    opt_out_type: Option<Cow<'a, str>>,
}

/// Roughly what `classify` decides, the serde way: 0 skip/dead, 1 opt.
fn serde_borrowed(record: &[u8]) -> u8 {
    let Ok(env) = serde_json::from_slice::<Envelope<'_>>(record) else {
        return 0;
    };
    if env.specversion != "1.0" || env.id.is_empty() || env.ty != INBOUND_MESSAGE_TYPE {
        return 0;
    }
    match &env.data {
        Some(Data::Fields(d)) => opt_of(d, &env),
        Some(Data::Text(inner)) => serde_json::from_str::<Inbound<'_>>(inner)
            .map(|d| opt_of(&d, &env))
            .unwrap_or(0),
        None => 0,
    }
}

fn opt_of(d: &Inbound<'_>, env: &Envelope<'_>) -> u8 {
    let known = d.account_sid.is_some() && d.from.is_some() && d.to.is_some();
    let stamped = d.timestamp.is_some() && env.dataschema.is_some() && d.body.is_some();
    u8::from(known && stamped && d.opt_out_type.is_some())
}

/// The same decision from a `serde_json::Value`.
fn serde_value(record: &[u8]) -> u8 {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(record) else {
        return 0;
    };
    if v["type"] != INBOUND_MESSAGE_TYPE {
        return 0;
    }
    let data = match &v["data"] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
        other => other.clone(),
    };
    u8::from(data["optOutType"].is_string())
}

fn records() -> Vec<Vec<u8>> {
    let mut synth = Synth::new(MixOptions {
        seed: 42,
        opt_ratio: 0.02,
        subscribers: 200,
    });
    (0..10_000).map(|_| synth.next_record().1).collect()
}

fn decode(c: &mut Criterion) {
    let records = records();
    let opts = DecodeOptions::default();
    let opts_seen = records
        .iter()
        .filter(|r| matches!(classify(r, opts), Outcome::Opt(_)))
        .count();
    assert!(opts_seen > 100, "the mix should hold ~200 opt events");
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("classify", |b| {
        b.iter(|| {
            let mut opt = 0usize;
            for r in &records {
                opt += usize::from(matches!(classify(black_box(r), opts), Outcome::Opt(_)));
            }
            opt
        })
    });
    group.bench_function("serde_borrowed", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| usize::from(serde_borrowed(black_box(r))))
                .sum::<usize>()
        })
    });
    group.bench_function("serde_value", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| usize::from(serde_value(black_box(r))))
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
