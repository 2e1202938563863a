//! `/console/activity`: opt-outs, opt-ins and help requests per day over a chosen range, as a
//! chart and as tables by scope and by detection, read from the daily rollup the store keeps
//! in the commit (one row per day, scope, type and detection): the page costs the same at ten
//! million events as at ten.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;

use super::chart::{Chart, KINDS};
use super::session::Session;
use super::{Chrome, Console, problem, query_failed, render};
use crate::store::query::console::{ActivityKey, MAX_ACTIVITY_DAYS};

/// Days shown when no range is given.
const DEFAULT_DAYS: i64 = 30;
/// Scopes listed in the table at most (the busiest).
const MAX_SCOPES: usize = 50;

#[derive(Debug, Deserialize)]
pub(super) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    scope: Option<String>,
    /// `1`: also the totals of every scope (one pass over every scope's days in the range,
    /// so only when asked).
    by_scope: Option<String>,
}

/// One row of a table: a name and its counts of STOP, START and HELP.
pub(super) struct Totals {
    name: String,
    counts: [u64; 3],
    /// The activity of this scope alone, over the same range.
    link: String,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    chrome: Chrome,
    from: String,
    to: String,
    scope: String,
    chart: String,
    days: Vec<(String, [u64; 3])>,
    scopes: Vec<Totals>,
    more_scopes: usize,
    /// The totals by scope were asked for; else the link that asks.
    want_scopes: bool,
    scopes_link: String,
    detections: Vec<Totals>,
    kinds: [(&'static str, &'static str, &'static str); 3],
}

fn parse_day(name: &str, value: Option<&str>) -> Result<Option<NaiveDate>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("{name}: a date like 2026-03-01")),
    }
}

fn kind_index(opt_out_type: &str) -> Option<usize> {
    KINDS.iter().position(|(k, _, _)| *k == opt_out_type)
}

pub(super) async fn page(
    State(console): State<Console>,
    session: Option<axum::Extension<Session>>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let (from, to) = match (
        parse_day("from", q.from.as_deref()),
        parse_day("to", q.to.as_deref()),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return problem(StatusCode::BAD_REQUEST, &e),
    };
    let to = to.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = from.unwrap_or(to - chrono::Duration::days(DEFAULT_DAYS - 1));
    if from > to || (to - from).num_days() >= MAX_ACTIVITY_DAYS {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!(
                "Choose a range from an earlier day to a later one, at most {MAX_ACTIVITY_DAYS} days."
            ),
        );
    }
    let scope = q.scope.unwrap_or_default().trim().to_string();
    let only = (!scope.is_empty()).then_some(scope.as_str());
    let reader = &console.reader;
    // Three sums in the database, each one scan of the range's rollup rows.
    let want_scopes = q.by_scope.as_deref() == Some("1");
    let (by_day, by_scope, by_detection) = tokio::join!(
        reader.activity_counts(from, to, ActivityKey::Day, only),
        async {
            match want_scopes {
                true => {
                    reader
                        .activity_counts(from, to, ActivityKey::Scope, None)
                        .await
                }
                false => Ok(Vec::new()),
            }
        },
        reader.activity_counts(from, to, ActivityKey::Detection, only),
    );
    let (by_day, by_scope, by_detection) = match (by_day, by_scope, by_detection) {
        (Ok(d), Ok(s), Ok(t)) => (d, s, t),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return query_failed(e),
    };
    let mut per_day: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    let mut d = from;
    while d <= to {
        per_day.insert(d.format("%Y-%m-%d").to_string(), [0; 3]);
        d += chrono::Duration::days(1);
    }
    let fold =
        |rows: Vec<(String, String, i64)>, into: &mut BTreeMap<String, [u64; 3]>, any: bool| {
            for (key, kind, n) in rows {
                let Some(k) = kind_index(&kind) else {
                    continue;
                };
                if let Some(counts) = into.get_mut(&key) {
                    counts[k] += n.max(0) as u64;
                } else if any {
                    into.entry(key).or_default()[k] += n.max(0) as u64;
                }
            }
        };
    fold(by_day, &mut per_day, false);
    let mut per_scope: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    fold(by_scope, &mut per_scope, true);
    let mut per_detection: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    fold(by_detection, &mut per_detection, true);
    let days: Vec<(String, [u64; 3])> = per_day.into_iter().collect();
    let chart = match Chart::new(&days).render() {
        Ok(svg) => svg,
        Err(e) => {
            tracing::error!(error = %e, "The activity chart failed to render.");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The chart failed to render.",
            );
        }
    };
    let (from_s, to_s) = (from.format("%Y-%m-%d"), to.format("%Y-%m-%d"));
    let mut scopes: Vec<Totals> = per_scope
        .into_iter()
        .map(|(name, counts)| {
            let link = format!(
                "/console/activity?from={from_s}&to={to_s}&scope={}",
                percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
            );
            Totals { name, counts, link }
        })
        .collect();
    scopes.sort_by(|a, b| {
        let total = |t: &Totals| t.counts.iter().sum::<u64>();
        total(b).cmp(&total(a)).then_with(|| a.name.cmp(&b.name))
    });
    let more_scopes = scopes.len().saturating_sub(MAX_SCOPES);
    scopes.truncate(MAX_SCOPES);
    let scopes_link = format!(
        "/console/activity?from={from_s}&to={to_s}&scope={}&by_scope=1",
        percent_encoding::utf8_percent_encode(&scope, percent_encoding::NON_ALPHANUMERIC)
    );
    let page = ActivityPage {
        chrome: super::pages::chrome("activity", &session),
        from: from.format("%Y-%m-%d").to_string(),
        to: to.format("%Y-%m-%d").to_string(),
        scope,
        chart,
        days,
        scopes,
        more_scopes,
        want_scopes,
        scopes_link,
        detections: per_detection
            .into_iter()
            .map(|(name, counts)| Totals {
                name,
                counts,
                link: String::new(),
            })
            .collect(),
        kinds: KINDS,
    };
    render(page).into_response()
}
