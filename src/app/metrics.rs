//! Every metric optout exposes: the engine's (under optout's prefix) and each layer's own
//! table, described to the recorder once, and listed in `docs/operating.md` (a test holds the
//! docs to these tables, so a metric cannot be added undescribed or undocumented).

use std::fmt::Write as _;

use crate::telemetry::{self, METRICS_PREFIX, MetricDef};

/// The tables of optout's own layers, in the order the docs list them.
const LAYERS: &[(&str, &[MetricDef])] = &[
    ("pipeline", crate::pipeline::metrics::METRICS),
    ("store", crate::store::metrics::METRICS),
    ("http", crate::http::metrics::METRICS),
    ("webhook", crate::ingest::webhook::metrics::METRICS),
    ("deliver", crate::deliver::metrics::METRICS),
];

/// Installs the Prometheus recorder (once per process) and describes every metric.
pub(super) fn install() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = telemetry::init_metrics()?;
    kinesis_engine::metrics::describe(METRICS_PREFIX);
    for (_, defs) in LAYERS {
        telemetry::describe(defs);
    }
    Some(handle)
}

/// One row of the metric table: name, type, labels, meaning, and the layer that owns it.
struct Row {
    name: String,
    kind: &'static str,
    label: String,
    help: &'static str,
    owner: &'static str,
}

fn label_text(name: &str, values: &[&str]) -> String {
    if values.is_empty() {
        format!("`{name}`")
    } else {
        format!("`{name}`: {}", values.join(", "))
    }
}

fn rows() -> Vec<Row> {
    let engine = kinesis_engine::metrics::METRICS.iter().map(|d| Row {
        name: d.full_name(METRICS_PREFIX),
        kind: match d.kind {
            kinesis_engine::metrics::MetricKind::Counter => "counter",
            kinesis_engine::metrics::MetricKind::Gauge => "gauge",
        },
        label: d
            .label
            .map_or_else(String::new, |l| label_text(l.name, l.values)),
        help: d.help,
        owner: "engine",
    });
    let layers = LAYERS.iter().flat_map(|(owner, defs)| {
        defs.iter().map(move |d| Row {
            name: d.full_name(),
            kind: d.kind.as_str(),
            label: d
                .labels
                .iter()
                .map(|(name, values)| label_text(name, values))
                .collect::<Vec<_>>()
                .join("; "),
            help: d.help,
            owner,
        })
    });
    let mut rows: Vec<Row> = engine.chain(layers).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// Every metric's name, for the test that reads `/metrics`.
pub fn names() -> Vec<String> {
    rows().into_iter().map(|r| r.name).collect()
}

/// The Markdown table of every metric, as `docs/operating.md` holds it.
pub fn table() -> String {
    let mut out =
        String::from("| metric | type | labels | meaning | owner |\n|---|---|---|---|---|\n");
    for r in rows() {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            r.name, r.kind, r.label, r.help, r.owner
        );
    }
    out
}

#[cfg(test)]
mod tests {
    /// The docs list exactly the metrics the code describes: regenerate the table between the
    /// markers with `OPTOUT_BLESS=1 cargo test --lib metric_table` after adding one.
    #[test]
    fn the_metric_table_in_the_docs_is_the_code_s() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operating.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- metrics:begin -->\n", "<!-- metrics:end -->");
        let start = docs.find(begin).expect("metrics:begin marker") + begin.len();
        let stop = docs.find(end).expect("metrics:end marker");
        let table = super::table();
        if std::env::var("OPTOUT_BLESS").as_deref() == Ok("1") {
            let updated = format!("{}{table}{}", &docs[..start], &docs[stop..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert_eq!(
            &docs[start..stop],
            table,
            "docs/operating.md's metric table is out of date: OPTOUT_BLESS=1 cargo test --lib metric_table"
        );
    }
}
