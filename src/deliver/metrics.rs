//! Every metric the delivery side owns, in one file: the table that names and describes
//! them, and their emitters. Targets are labelled by name (`twilio-consent`, `notify:<n>`).

use crate::store::TargetBacklog;
use crate::telemetry::{MetricDef, MetricKind};

/// Why a change is not pushed: the values of `delivery_skipped_total{reason}`.
pub const SKIP_REASONS: &[&str] = &["whatsapp", "reassigned", "not_revocation", "no_credentials"];

/// The values of `deliveries_total{result}`.
const RESULTS: &[&str] = &["delivered", "retry", "failed"];

/// Every metric of the delivery side.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "deliveries_total",
        kind: MetricKind::Counter,
        labels: &[("target", &[]), ("result", RESULTS)],
        help: "Delivery tries settled, by target and result (delivered; retry: due again \
               later; failed: given up, see `optout deliveries`).",
    },
    MetricDef {
        name: "delivery_throttled_total",
        kind: MetricKind::Counter,
        labels: &[("target", &[])],
        help: "Requests a target answered 429 Too Many Requests (retried after its \
               Retry-After).",
    },
    MetricDef {
        name: "delivery_skipped_total",
        kind: MetricKind::Counter,
        labels: &[("target", &[]), ("reason", SKIP_REASONS)],
        help: "Changes a target does not take, counted when committed (whatsapp: the Consent \
               API is SMS only; reassigned: Twilio made that opt-out; not_revocation: \
               --twilio-consent revocations; no_credentials: an account without credentials).",
    },
    MetricDef {
        name: "outbox_pending",
        kind: MetricKind::Gauge,
        labels: &[("target", &[])],
        help: "Items waiting for delivery, by target.",
    },
    MetricDef {
        name: "outbox_oldest_pending_seconds",
        kind: MetricKind::Gauge,
        labels: &[("target", &[])],
        help: "Age of the oldest item waiting for delivery, by target (0 when none waits).",
    },
    MetricDef {
        name: "outbox_failed",
        kind: MetricKind::Gauge,
        labels: &[("target", &[])],
        help: "Items given up, by target (kept and listed by `optout deliveries`).",
    },
];

/// Settled tries of `target` by result.
pub(super) fn settled(target: &str, delivered: u64, retry: u64, failed: u64) {
    for (result, n) in RESULTS.iter().zip([delivered, retry, failed]) {
        if n > 0 {
            metrics::counter!("optout_deliveries_total", "target" => target.to_string(), "result" => *result)
                .increment(n);
        }
    }
}

/// A 429 from `target`.
pub(super) fn throttled(target: &str) {
    metrics::counter!("optout_delivery_throttled_total", "target" => target.to_string())
        .increment(1);
}

/// A change `target` does not take.
pub(super) fn skipped(target: &str, reason: &'static str) {
    metrics::counter!("optout_delivery_skipped_total", "target" => target.to_string(), "reason" => reason)
        .increment(1);
}

/// The outbox's backlog of one target.
pub(super) fn backlog(b: &TargetBacklog) {
    let t = b.target.clone();
    metrics::gauge!("optout_outbox_pending", "target" => t.clone()).set(b.pending as f64);
    metrics::gauge!("optout_outbox_failed", "target" => t.clone()).set(b.failed as f64);
    metrics::gauge!("optout_outbox_oldest_pending_seconds", "target" => t)
        .set(b.oldest_pending_secs.unwrap_or(0) as f64);
}
