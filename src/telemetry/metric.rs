//! What a metric is, for the layers of optout that own metrics: each declares a table of
//! [`MetricDef`]s in one file of its own (next to the code that emits them), the composition
//! root describes every table to the recorder, and `docs/operating.md` lists them all, checked
//! by a test against the tables. (The Kinesis engine keeps the same shape in its own crate.)

/// The prefix of every optout metric, the engine's included (`optout_shards_reading`).
pub const PREFIX: &str = "optout";

/// A counter only goes up; a gauge is set to the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic, named `…_total`.
    Counter,
    /// The current value.
    Gauge,
}

impl MetricKind {
    /// The Prometheus `TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One metric: enough to describe it and to list it in the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The name after `optout_`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Its labels, each with every value it takes (empty when open-ended).
    pub labels: &'static [(&'static str, &'static [&'static str])],
    /// What it means: the Prometheus `HELP` text.
    pub help: &'static str,
}

impl MetricDef {
    /// The full name, `optout_…`.
    pub fn full_name(&self) -> String {
        format!("{PREFIX}_{}", self.name)
    }
}

/// Describes every metric of `defs` to the installed recorder.
pub fn describe(defs: &[MetricDef]) {
    for def in defs {
        let name = def.full_name();
        match def.kind {
            MetricKind::Counter => metrics::describe_counter!(name, def.help),
            MetricKind::Gauge => metrics::describe_gauge!(name, def.help),
        }
    }
}
