//! The group of a key under `--revocation-scope account|all`: the other keys of the same
//! subscriber that one opt-out reaches (the same account, or every account), as far as optout
//! has seen them (a live status row, or an answer recorded in `change_heads`). A commit that
//! touches one key answers the whole group again, so the feed and the pushes say what the
//! sender's check says for every scope of the group.
//!
//! On PostgreSQL the writers of one subscriber's group take turns from the look-up of the
//! group to their commit (a transaction-scoped advisory lock per subscriber): otherwise two
//! writers each adding a scope of the same subscriber could each miss the other's uncommitted
//! opt-out, and neither would answer the other's key again.

use std::collections::BTreeSet;

use sha2::Digest;
use sqlx::{Any, Row as _, Transaction};

use super::Key;
use crate::store::RevocationScope;
use crate::store::StoreError;

/// The class of the per-subscriber advisory locks ("optg"); the two-key lock space does not
/// overlap the one-key space of the feed's lock.
const GROUP_LOCK_CLASS: i32 = 0x6f70_7467;

/// The lock key of `subscriber`'s group: the first four bytes of its SHA-256 (a stable hash:
/// every process must pick the same key). Two subscribers sharing a key only take turns.
fn lock_key(subscriber: &str) -> i32 {
    let digest = sha2::Sha256::digest(subscriber.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// PostgreSQL: takes the group lock of every subscriber of `keys`, in lock-key order (every
/// writer takes them in that order and before any `change_heads` row, so no two wait on each
/// other in a cycle). Held until the transaction ends.
pub(super) async fn lock_subscribers(
    tx: &mut Transaction<'_, Any>,
    keys: &[Key],
) -> Result<(), StoreError> {
    let ids: BTreeSet<i32> = keys.iter().map(|k| lock_key(&k.2)).collect();
    for id in ids {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(GROUP_LOCK_CLASS)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `keys` with every key of their groups that optout has seen, in key order (`keys` as given
/// in `scope` mode).
pub(super) async fn expand(
    tx: &mut Transaction<'_, Any>,
    mode: RevocationScope,
    keys: Vec<Key>,
) -> Result<Vec<Key>, StoreError> {
    let sql = match mode {
        RevocationScope::Scope => return Ok(keys),
        RevocationScope::Account => {
            "SELECT account_sid, scope FROM opt_status WHERE subscriber = $1 AND account_sid = $2 \
             UNION SELECT account_sid, scope FROM change_heads \
             WHERE subscriber = $1 AND account_sid = $2"
        }
        RevocationScope::All => {
            "SELECT account_sid, scope FROM opt_status WHERE subscriber = $1 \
             UNION SELECT account_sid, scope FROM change_heads WHERE subscriber = $1"
        }
    };
    // One look per group: (subscriber, account) under `account`, the subscriber under `all`.
    let groups: BTreeSet<(&str, &str)> = keys
        .iter()
        .map(|(account, _, subscriber)| match mode {
            RevocationScope::All => (subscriber.as_str(), ""),
            _ => (subscriber.as_str(), account.as_str()),
        })
        .collect();
    let mut all: BTreeSet<Key> = BTreeSet::new();
    for (subscriber, account) in groups {
        let mut q = sqlx::query(sql).bind(subscriber);
        if mode == RevocationScope::Account {
            q = q.bind(account);
        }
        for r in q.fetch_all(&mut **tx).await? {
            all.insert((
                r.try_get("account_sid")?,
                r.try_get("scope")?,
                subscriber.to_string(),
            ));
        }
    }
    all.extend(keys);
    Ok(all.into_iter().collect())
}

#[cfg(test)]
mod tests {
    /// Processes of different builds share a database: the key must never change.
    #[test]
    fn a_subscribers_lock_key_is_pinned() {
        let key = super::lock_key("+15551230000");
        assert_eq!(key, super::lock_key("+15551230000"));
        assert_eq!(key, -2_032_923_084);
    }
}
