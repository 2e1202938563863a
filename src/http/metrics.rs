//! Every metric the HTTP server shell owns, in one file: the table that names and describes
//! them, and their emitters.

use crate::telemetry::{MetricDef, MetricKind};

/// The listeners, the values of `http_connections_refused_total{listener}`.
pub(super) const LISTENERS: &[&str] = &["api", "health"];

/// Every metric of the HTTP server.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "http_connections_refused_total",
        kind: MetricKind::Counter,
        labels: &[("listener", LISTENERS)],
        help: "HTTP connections closed at once for the listener's cap, by listener (api, health).",
    },
    MetricDef {
        name: "http_requests_refused_total",
        kind: MetricKind::Counter,
        labels: &[("reason", &["busy"])],
        help: "API requests answered 503 busy because as many as allowed were in flight.",
    },
];

/// A connection closed at once: `listener` was at its cap.
pub(super) fn connection_refused(listener: &'static str) {
    metrics::counter!("optout_http_connections_refused_total", "listener" => listener).increment(1);
}

/// A request answered 503 `busy`.
pub(super) fn request_refused_busy() {
    metrics::counter!("optout_http_requests_refused_total", "reason" => "busy").increment(1);
}
