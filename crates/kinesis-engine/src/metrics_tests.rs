//! Unit tests of the metric table: every emitted metric is described, with its kind and
//! labels; names stay exactly what dashboards and alert rules use; and no other file of the
//! crate emits a metric of its own.

use std::collections::BTreeMap;
use std::sync::Mutex;

use metrics::{Counter, Gauge, Histogram, KeyName, Recorder, Unit};

use super::*;

/// One registration: name, kind and labels.
type Registered = (String, MetricKind, Vec<(String, String)>);

/// What a recorder was told: descriptions (name → kind) and registrations.
#[derive(Default)]
struct Capture {
    described: Mutex<BTreeMap<String, MetricKind>>,
    registered: Mutex<Vec<Registered>>,
}

impl Capture {
    fn register(&self, key: &Key, kind: MetricKind) {
        let labels = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        let name = key.name().to_string();
        self.registered.lock().unwrap().push((name, kind, labels));
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        let name = key.as_str().to_string();
        self.described
            .lock()
            .unwrap()
            .insert(name, MetricKind::Counter);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        let name = key.as_str().to_string();
        self.described
            .lock()
            .unwrap()
            .insert(name, MetricKind::Gauge);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        panic!("the engine has no histogram: {}", key.as_str());
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.register(key, MetricKind::Counter);
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.register(key, MetricKind::Gauge);
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        panic!("the engine has no histogram: {}", key.name());
    }
}

/// Every occurrence the engine emits, each label value at least once.
fn emit_everything(m: &Metrics) {
    m.get_records_call();
    m.get_records_sdk_read();
    m.subscription();
    for kind in [RetryKind::Throttled, RetryKind::Transient] {
        m.retry(kind);
    }
    for kind in [
        CommitFailure::Transient,
        CommitFailure::LeaseLost,
        CommitFailure::Fatal,
        CommitFailure::CheckpointMoved,
    ] {
        m.commit_failed(kind);
    }
    for reason in [
        RestartReason::Panic,
        RestartReason::Error,
        RestartReason::Stall,
    ] {
        m.shard_restarted(reason);
    }
    m.shards_reading(2);
    m.shards_failing(1);
    m.in_flight_bytes(1024);
    m.in_flight_wait();
    let shard = m.shard("shardId-000000000001");
    shard.millis_behind_latest(1500);
    shard.committed_now();
}

#[test]
fn every_emitted_metric_is_described_with_its_kind_and_labels() {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        describe("optout");
        emit_everything(&Metrics::new("optout"));
    });
    let described = capture.described.lock().unwrap();
    let registered = capture.registered.lock().unwrap();
    for (name, kind, labels) in registered.iter() {
        assert_eq!(described.get(name), Some(kind), "{name} is not described");
        let def = METRICS
            .iter()
            .find(|d| d.full_name("optout") == *name)
            .expect("in the table");
        match (def.label, labels.as_slice()) {
            (None, []) => {}
            (Some(l), [(label, value)]) => {
                assert_eq!(label, l.name, "{name}");
                assert!(
                    l.values.is_empty() || l.values.contains(&value.as_str()),
                    "{name}{{{label}={value}}} is not a listed value"
                );
            }
            other => panic!("{name}: labels {other:?} do not match the table"),
        }
    }
    // The emitters above cover the whole table, every label value included.
    for def in &METRICS {
        let name = def.full_name("optout");
        let values: Vec<&str> = registered
            .iter()
            .filter(|(n, _, _)| *n == name)
            .flat_map(|(_, _, labels)| labels.iter().map(|(_, v)| v.as_str()))
            .collect();
        assert!(
            registered.iter().any(|(n, _, _)| *n == name),
            "{name} never emitted"
        );
        for v in def.label.map_or(&[][..], |l| l.values) {
            assert!(values.contains(v), "{name}: value {v} never emitted");
        }
    }
}

#[test]
fn label_values_follow_the_enums() {
    let value = |metric: Metric, i: usize| METRICS[metric as usize].label.unwrap().values[i];
    assert_eq!(RetryKind::Throttled.as_str(), "throttled");
    assert_eq!(RetryKind::Transient.as_str(), "transient");
    let failure = |k: CommitFailure| value(Metric::CommitFailures, k as usize);
    assert_eq!(failure(CommitFailure::Transient), "transient");
    assert_eq!(failure(CommitFailure::LeaseLost), "lease_lost");
    assert_eq!(failure(CommitFailure::Fatal), "fatal");
    assert_eq!(failure(CommitFailure::CheckpointMoved), "checkpoint_moved");
    assert_eq!(RestartReason::Panic.as_str(), "panic");
    assert_eq!(RestartReason::Error.as_str(), "error");
    assert_eq!(RestartReason::Stall.as_str(), "stall");
}

#[test]
fn the_table_is_indexed_by_metric_and_names_keep_the_prefix() {
    for (i, def) in METRICS.iter().enumerate() {
        assert_eq!(def.metric as usize, i, "{} out of place", def.name);
        assert_eq!(
            def.name.ends_with("_total"),
            def.kind == MetricKind::Counter,
            "{}",
            def.name
        );
    }
    // An application's dashboards and alert rules use these exact names (here, optout's).
    let names: Vec<String> = METRICS.iter().map(|d| d.full_name("optout")).collect();
    assert_eq!(
        names,
        [
            "optout_get_records_calls_total",
            "optout_subscriptions_total",
            "optout_retries_total",
            "optout_millis_behind_latest",
            "optout_commit_failures_total",
            "optout_shard_last_commit_timestamp_seconds",
            "optout_shards_reading",
            "optout_shards_failing",
            "optout_shard_restarts_total",
            "optout_in_flight_bytes",
            "optout_in_flight_waits_total",
            "optout_get_records_sdk_reads_total",
        ]
    );
    assert_eq!(METRICS[0].full_name(""), "get_records_calls_total");
}

#[test]
fn no_other_file_emits_a_metric() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("metrics") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for mac in ["counter!", "gauge!", "histogram!"] {
            assert!(
                !text.contains(mac),
                "{} uses {mac}: emit through metrics.rs",
                path.display()
            );
        }
    }
}
