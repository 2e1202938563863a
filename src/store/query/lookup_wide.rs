//! The sender's check under `--revocation-scope account|all`: each scope's own answer
//! (`lookup.rs`), overruled by a later honoured opt-out of the number in another scope of the
//! group (the same account, or any account).
//!
//! A number has few scopes, so the opt-outs that may reach are read once per lookup, the
//! latest per (account, scope), from the partial index of honoured opt-outs, and matched
//! against the page in memory. A scope the number never wrote to (a new sender, say) still
//! gets an answer when the caller names it: under `account` for each account it is known in
//! (the caller's `account=`, else the accounts where the store has seen that scope), under
//! `all` whatever the account.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::lookup::{
    LookupFilter, LookupItem, SCOPE_KEY, SCOPE_ORDER, item, join_live, latest_signals,
};
use super::sqlbuild::Select;
use super::{MAX_LIMIT, MAX_LIST_VALUES, Page, PageRequest, QueryError, Reader};
use crate::store::RevocationScope;

/// An honoured opt-out of the number: the latest of its (account, scope).
#[derive(Debug, Clone)]
pub(super) struct Reaching {
    account_sid: String,
    scope: String,
    messaging_service_sid: Option<String>,
    sender: String,
    subscriber: String,
    /// As the API writes times (fixed width, so text order is time order).
    occurred_at: String,
    event_id: String,
}

impl Reaching {
    /// Whether this opt-out reaches (`account`, `scope`) under `mode`: another scope of the
    /// same account, or under `all` of any account.
    fn reaches(&self, mode: RevocationScope, account: &str, scope: &str) -> bool {
        let group = match mode {
            RevocationScope::Scope => false,
            RevocationScope::Account => self.account_sid == account,
            RevocationScope::All => true,
        };
        group && !(self.account_sid == account && self.scope == scope)
    }

    /// The answer this opt-out gives for `key` (account, scope, service, sender), or for its
    /// own scope when `None`.
    pub(super) fn item_for(
        &self,
        mode: RevocationScope,
        key: Option<(String, String, Option<String>, String)>,
    ) -> LookupItem {
        let (account_sid, scope, messaging_service_sid, sender) = key.unwrap_or_else(|| {
            (
                self.account_sid.clone(),
                self.scope.clone(),
                self.messaging_service_sid.clone(),
                self.sender.clone(),
            )
        });
        LookupItem {
            account_sid,
            scope,
            messaging_service_sid,
            sender,
            subscriber: self.subscriber.clone(),
            status: "opted_out".into(),
            send_allowed: false,
            reason: reason(mode).into(),
            event_id: self.event_id.clone(),
            rule: None,
            changed_at: self.occurred_at.clone(),
            live_status: None,
            origin_account_sid: Some(self.account_sid.clone()),
            origin_scope: Some(self.scope.clone()),
        }
    }
}

/// The reason an opt-out from another scope gives.
fn reason(mode: RevocationScope) -> &'static str {
    match mode {
        RevocationScope::All => "all_accounts_opt_out",
        _ => "account_opt_out",
    }
}

/// `item` as the mode answers it: overruled by the latest opt-out of `reach` (latest first)
/// that reaches its scope, if that one is later than the scope's own signal.
fn overrule(item: LookupItem, reach: &[Reaching], mode: RevocationScope) -> LookupItem {
    let Some(r) = reach
        .iter()
        .find(|r| r.reaches(mode, &item.account_sid, &item.scope))
    else {
        return item;
    };
    if (&r.occurred_at, &r.event_id) <= (&item.changed_at, &item.event_id) {
        return item;
    }
    LookupItem {
        live_status: item.live_status.clone(),
        ..r.item_for(
            mode,
            Some((
                item.account_sid,
                item.scope,
                item.messaging_service_sid,
                item.sender,
            )),
        )
    }
}

impl Reader {
    /// The number's honoured opt-outs that may reach other scopes, the latest per (account,
    /// scope), latest first; none in `scope` mode. Under `account` only the caller's accounts
    /// matter; under `all` every account does, whatever the caller filters on.
    pub(super) async fn reaching_opt_outs(
        &self,
        f: &LookupFilter,
    ) -> Result<Vec<Reaching>, QueryError> {
        if self.revocation_scope == RevocationScope::Scope {
            return Ok(Vec::new());
        }
        let mut q = Select::new(
            self.dialect,
            "SELECT account_sid, scope, messaging_service_sid, sender, subscriber, event_id, \
             occurred_at, ROW_NUMBER() OVER (PARTITION BY account_sid, scope ORDER BY \
             occurred_at DESC, event_id DESC) AS rn FROM opt_events \
             WHERE opt_out_type = 'STOP' AND sets_status"
                .into(),
        );
        q.eq("subscriber", Some(&f.subscriber));
        if self.revocation_scope == RevocationScope::Account {
            q.any_of("account_sid", &f.accounts)?;
        }
        q.sql = format!(
            "SELECT r.account_sid, r.scope, r.messaging_service_sid, r.sender, r.subscriber, \
             r.event_id, {} AS at FROM ({}) r WHERE r.rn = 1 \
             ORDER BY r.occurred_at DESC, r.event_id DESC LIMIT {MAX_LIMIT}",
            self.dialect.ts_out("r.occurred_at"),
            q.sql
        );
        let rows = q.fetch(&self.pool).await?;
        let row = |r: &AnyRow| -> Result<Reaching, sqlx::Error> {
            Ok(Reaching {
                account_sid: r.try_get("account_sid")?,
                scope: r.try_get("scope")?,
                messaging_service_sid: r.try_get("messaging_service_sid")?,
                sender: r.try_get("sender")?,
                subscriber: r.try_get("subscriber")?,
                occurred_at: r.try_get("at")?,
                event_id: r.try_get("event_id")?,
            })
        };
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// The page of scopes `req` asks for, each as the mode answers it.
    pub(super) async fn signal_page(
        &self,
        f: &LookupFilter,
        req: &PageRequest,
        reach: &[Reaching],
    ) -> Result<Page<LookupItem>, QueryError> {
        let mut q = latest_signals(self, f)?;
        q.after(SCOPE_KEY, req.cursor.as_ref())?;
        join_live(&mut q);
        q.order_limit(SCOPE_ORDER, req.limit);
        let mode = self.revocation_scope;
        let page: Page<LookupItem> = q
            .fetch_page(&self.pool, req.limit, item, |i: &LookupItem| {
                vec![i.account_sid.clone(), i.scope.clone()]
            })
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|i| overrule(i, reach, mode))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// When more scopes follow than a page holds: the first scope that is opted out over every
    /// page, and whether any scope has a signal.
    pub(super) async fn first_out_of_all_pages(
        &self,
        f: &LookupFilter,
        reach: &[Reaching],
    ) -> Result<(Option<LookupItem>, bool), QueryError> {
        let mut req = PageRequest {
            limit: MAX_LIMIT,
            cursor: None,
        };
        let mut any = false;
        loop {
            let page = self.signal_page(f, &req, reach).await?;
            any |= !page.items.is_empty();
            if let Some(out) = page.items.into_iter().find(|i| !i.send_allowed) {
                return Ok((Some(out), true));
            }
            match page.next_cursor {
                Some(next) => req.cursor = Some(super::Cursor::decode(&next)?),
                None => return Ok((None, any)),
            }
        }
    }

    /// The answers for a scope the caller names but the number never wrote to: one per account
    /// that scope is known in, where an opt-out reaches it.
    pub(super) async fn unseen_scope_items(
        &self,
        f: &LookupFilter,
        reach: &[Reaching],
    ) -> Result<Vec<LookupItem>, QueryError> {
        let (Some(scope), false) = (&f.scope, reach.is_empty()) else {
            return Ok(Vec::new());
        };
        // The accounts to answer for: the caller's, else those of the opt-outs that may reach
        // (no other account can be reached under `account`; under `all` a scope known in none
        // of them is answered by the lookup as a whole).
        let mut accounts: Vec<String> = if f.accounts.is_empty() {
            reach.iter().map(|r| r.account_sid.clone()).collect()
        } else {
            f.accounts.clone()
        };
        accounts.sort();
        accounts.dedup();
        accounts.truncate(MAX_LIST_VALUES);
        let mut known: Vec<(String, Option<String>, String)> = Vec::new();
        for account in accounts {
            // One row of the scope in the account (the key index), for its service and sender.
            let mut q = Select::new(
                self.dialect,
                "SELECT messaging_service_sid, sender FROM opt_events WHERE 1 = 1".into(),
            );
            q.eq("account_sid", Some(&account));
            q.eq("scope", Some(scope));
            q.sql.push_str(" LIMIT 1");
            match q.fetch(&self.pool).await?.first() {
                Some(r) => known.push((
                    account,
                    r.try_get("messaging_service_sid")?,
                    r.try_get("sender")?,
                )),
                // A named account where the scope was never seen: the scope names the sender.
                None if !f.accounts.is_empty() => {
                    let service = scope.starts_with("MG").then(|| scope.clone());
                    let sender = if service.is_some() { "" } else { scope };
                    known.push((account, service, sender.to_string()));
                }
                None => {}
            }
        }
        known.sort_by(|a, b| a.0.cmp(&b.0));
        let mode = self.revocation_scope;
        Ok(known
            .into_iter()
            .filter_map(|(account, service, sender)| {
                let r = reach.iter().find(|r| r.reaches(mode, &account, scope))?;
                Some(r.item_for(mode, Some((account, scope.clone(), service, sender))))
            })
            .collect())
    }
}
