//! Every metric the pipeline owns, in one file: the table that names and describes them, and
//! the two places that emit them. Counts are added once per committed batch, never per record
//! and never for a batch that did not land, so a retried batch is not counted twice.

use super::DecodeCounts;
use crate::store::CommitSummary;
use crate::telemetry::{MetricDef, MetricKind};

/// The values of `records_total{outcome}`.
const OUTCOMES: &[&str] = &[
    "opt_event",
    "test_event",
    "other_type",
    "not_opt_keyword",
    "dead_letter",
];

/// Every metric of the pipeline.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "records_total",
        kind: MetricKind::Counter,
        labels: &[("outcome", OUTCOMES)],
        help: "Records committed, by what they turned out to be (opt_event, test_event, \
               other_type, not_opt_keyword, dead_letter).",
    },
    MetricDef {
        name: "revocations_detected_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Opt events recognised by a revocation phrase (also counted as opt events).",
    },
    MetricDef {
        name: "opt_events_stored_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Opt events stored for the first time.",
    },
    MetricDef {
        name: "opt_events_duplicate_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Opt events seen again and ignored.",
    },
    MetricDef {
        name: "opt_events_updated_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Copies of a stored message (another path, a better time or detection) that \
               changed the stored event.",
    },
    MetricDef {
        name: "status_changes_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Opt status rows inserted or changed.",
    },
    MetricDef {
        name: "dead_letters_total",
        kind: MetricKind::Counter,
        labels: &[],
        help: "Dead letters stored (undecodable or unstorable records).",
    },
];

/// A committed batch's records, by outcome.
pub(super) fn decoded(counts: &DecodeCounts) {
    let by_outcome = [
        counts.opt_events,
        counts.test_events,
        counts.skipped_other_type,
        counts.skipped_not_opt_keyword,
        counts.dead_letters,
    ];
    for (outcome, n) in OUTCOMES.iter().zip(by_outcome) {
        if n > 0 {
            metrics::counter!("optout_records_total", "outcome" => *outcome).increment(n);
        }
    }
    if counts.revocations > 0 {
        metrics::counter!("optout_revocations_detected_total").increment(counts.revocations);
    }
}

/// What a committed batch changed in the store.
pub(super) fn committed(summary: &CommitSummary) {
    metrics::counter!("optout_opt_events_stored_total").increment(summary.opt_events_new);
    metrics::counter!("optout_opt_events_duplicate_total").increment(summary.opt_events_duplicate);
    metrics::counter!("optout_opt_events_updated_total").increment(summary.opt_events_updated);
    metrics::counter!("optout_status_changes_total").increment(summary.status_changes);
    metrics::counter!("optout_dead_letters_total").increment(summary.dead_letters);
}
