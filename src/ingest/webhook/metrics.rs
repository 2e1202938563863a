//! Every metric the webhook way in owns, in one file: the table that names and describes them,
//! and their emitters.

use super::Route;
use crate::telemetry::{MetricDef, MetricKind};

/// The values of `route` (a route's label).
const ROUTES: &[&str] = &["messaging", "events"];

/// Why a request was refused: the values of `webhook_rejected_total{reason}`.
pub(super) const REASONS: &[&str] = &[
    "no_signature",
    "bad_signature",
    "no_body_hash",
    "bad_body_hash",
    "wrong_account",
    "too_large",
    "wrong_content_type",
    "malformed",
    "unavailable",
];

/// Every metric of the webhook way in.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "webhook_accepted_total",
        kind: MetricKind::Counter,
        labels: &[("route", ROUTES)],
        help: "Webhook requests stored and answered 2xx, by route.",
    },
    MetricDef {
        name: "webhook_rejected_total",
        kind: MetricKind::Counter,
        labels: &[("route", ROUTES), ("reason", REASONS)],
        help: "Webhook requests refused, by route and reason (no_signature, bad_signature, \
               no_body_hash, bad_body_hash, wrong_account, too_large, wrong_content_type, \
               malformed, unavailable).",
    },
    MetricDef {
        name: "webhook_commits_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Group commits of webhook requests.",
    },
    MetricDef {
        name: "webhook_committed_requests_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Webhook requests committed; divided by optout_webhook_commits_total, the group \
               size.",
    },
    MetricDef {
        name: "webhook_commit_retries_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Group commits of webhook requests retried after a transient store failure.",
    },
];

/// A request stored and answered 2xx.
pub(super) fn accepted(route: Route) {
    metrics::counter!("optout_webhook_accepted_total", "route" => route.label()).increment(1);
}

/// A request refused, for `reason` (one of [`REASONS`]).
pub(super) fn rejected(route: Route, reason: &'static str) {
    debug_assert!(REASONS.contains(&reason), "undocumented reason {reason}");
    metrics::counter!("optout_webhook_rejected_total", "route" => route.label(), "reason" => reason)
        .increment(1);
}

/// A group of `requests` committed in one transaction.
pub(super) fn group_committed(requests: usize) {
    metrics::counter!("optout_webhook_commits_total").increment(1);
    metrics::counter!("optout_webhook_committed_requests_total").increment(requests as u64);
}

/// A group commit retried.
pub(super) fn commit_retried() {
    metrics::counter!("optout_webhook_commit_retries_total").increment(1);
}
