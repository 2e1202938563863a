//! The outbox's backlog per target (pending and failed items, the oldest pending one's age):
//! one statement for the dispatchers' metrics (write side) and the console's health page (read
//! side), so both show the same figures.

use std::time::SystemTime;

use sqlx::{Any, Pool, Row as _};

use super::model::ms;
use super::outbox::TargetBacklog;

/// Pending and failed items per target that has any, in target order (delivered items are not
/// counted).
pub(super) async fn read(
    pool: &Pool<Any>,
    now: SystemTime,
) -> Result<Vec<TargetBacklog>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT target, SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending, \
         SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed, \
         MIN(CASE WHEN state = 'pending' THEN created_ms END) AS oldest_ms \
         FROM outbox WHERE state <> 'delivered' GROUP BY target ORDER BY target",
    )
    .fetch_all(pool)
    .await?;
    let now_ms = ms(now);
    rows.iter()
        .map(|r| {
            let oldest: Option<i64> = r.try_get("oldest_ms")?;
            Ok(TargetBacklog {
                target: r.try_get("target")?,
                pending: r.try_get::<i64, _>("pending")?.max(0) as u64,
                failed: r.try_get::<i64, _>("failed")?.max(0) as u64,
                oldest_pending_secs: oldest
                    .map(|t| (now_ms.saturating_sub(t).max(0) / 1000) as u64),
            })
        })
        .collect()
}
