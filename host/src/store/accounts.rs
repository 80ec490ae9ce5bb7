//! Accounts (issue 12): groups of customers, as Segment's `group` sets them. One tree,
//! `accounts`, three kinds of key:
//!
//! - `a␟tenant␟account` → [`Account`] (its traits, merged by every `group` call);
//! - `m␟tenant␟account␟customer` → empty: the account's members, in id order (paged reads);
//! - `c␟tenant␟customer` → the account id the customer belongs to (one at a time).
//!
//! Written by [`Store::ingest_merging`](super::Store::ingest_merging) in the transaction that
//! accepts the `group` event (so a duplicate changes nothing, and concurrent calls for members
//! on different shards merge their traits without losing one), with what the API hands it
//! ([`AccountChange`], from `engine::accounts`).

use super::keys::{key, prefix};
use super::kv::TransactionalTree;
use super::{dec, enc, Store, StoreError, TxResult};
use crate::model::{Millis, Object};
use serde::{Deserialize, Serialize};

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    #[serde(default)]
    pub traits: Object,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What one accepted `group` event does: `customer` joins `account` (leaving any other), and
/// `traits` are merged into the account's (a key given replaces the stored value; `null`
/// stores null, as `identify` does for a customer).
#[derive(Debug, Clone, PartialEq)]
pub struct AccountChange {
    pub account: String,
    pub customer: String,
    pub traits: Object,
}

fn account_key(tenant: &str, account: &str) -> Vec<u8> {
    key(&[b"a", tenant.as_bytes(), account.as_bytes()])
}

fn member_key(tenant: &str, account: &str, customer: &str) -> Vec<u8> {
    key(&[
        b"m",
        tenant.as_bytes(),
        account.as_bytes(),
        customer.as_bytes(),
    ])
}

fn customer_key(tenant: &str, customer: &str) -> Vec<u8> {
    key(&[b"c", tenant.as_bytes(), customer.as_bytes()])
}

/// Applies `change` at `now` inside a transaction.
pub(super) fn apply(
    tree: &TransactionalTree,
    tenant: &str,
    change: &AccountChange,
    now: Millis,
) -> TxResult<()> {
    let k = account_key(tenant, &change.account);
    let mut account = match tree.get(&k)? {
        Some(v) => dec::<Account>(&v).map_err(super::abort)?,
        None => Account {
            id: change.account.clone(),
            traits: Object::new(),
            created_at: now,
            updated_at: now,
        },
    };
    for (name, value) in &change.traits {
        account.traits.insert(name.clone(), value.clone());
    }
    account.updated_at = now;
    tree.put(k, enc(&account))?;
    let ck = customer_key(tenant, &change.customer);
    if let Some(old) = tree.get(&ck)? {
        let old = String::from_utf8_lossy(&old).into_owned();
        if old != change.account {
            tree.delete(member_key(tenant, &old, &change.customer))?;
        }
    }
    tree.put(ck, change.account.as_bytes())?;
    tree.put(member_key(tenant, &change.account, &change.customer), &[])?;
    Ok(())
}

impl Store {
    /// One account; `None` if no `group` named it.
    pub fn account(&self, tenant: &str, id: &str) -> Result<Option<Account>, StoreError> {
        self.accounts
            .get(account_key(tenant, id))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// Up to `limit` members of an account in id order, after `after` (exclusive), and whether
    /// more follow.
    pub fn account_members(
        &self,
        tenant: &str,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let start = prefix(&[b"m", tenant.as_bytes(), id.as_bytes()]);
        let from = match after {
            Some(after) => {
                let mut k = start.clone();
                k.extend_from_slice(after.as_bytes());
                k.push(0);
                k
            }
            None => start.clone(),
        };
        let mut members = Vec::new();
        for k in self.accounts.range(from..).keys() {
            let k = k?;
            if !k.starts_with(&start) {
                break;
            }
            if members.len() == limit {
                return Ok((members, true));
            }
            members.push(String::from_utf8_lossy(&k[start.len()..]).into_owned());
        }
        Ok((members, false))
    }

    /// The account a customer belongs to, if any.
    pub fn customer_account(
        &self,
        tenant: &str,
        customer: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .accounts
            .get(customer_key(tenant, customer))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

// Account journeys (issue 12)
impl Store {
    /// Identity merge of a member: `from`'s account membership passes to `into` unless `into`
    /// belongs to an account already (theirs stays), and `from`, merged away, leaves its
    /// account; one transaction. Idempotent, so the merge that calls it may run again after a
    /// crash. Account journeys route the merged customer's events by the membership it leaves.
    pub fn move_membership(&self, tenant: &str, from: &str, into: &str) -> Result<(), StoreError> {
        let (from_key, into_key) = (customer_key(tenant, from), customer_key(tenant, into));
        self.accounts.transaction(|tree| {
            let Some(account) = tree.get(&from_key)? else {
                return Ok(());
            };
            let account = String::from_utf8_lossy(&account).into_owned();
            tree.delete(from_key.as_slice())?;
            tree.delete(member_key(tenant, &account, from))?;
            if tree.get(&into_key)?.is_none() {
                tree.put(into_key.as_slice(), account.as_bytes())?;
                tree.put(member_key(tenant, &account, into), &[])?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;
    use crate::model::Event;
    use serde_json::json;

    fn group(
        id: &str,
        customer: &str,
        account: &str,
        traits: serde_json::Value,
    ) -> (Event, AccountChange) {
        let traits: Object = serde_json::from_value(traits).unwrap();
        let event = Event {
            id: id.into(),
            customer: customer.into(),
            name: "group".into(),
            properties: Object::new(),
            timestamp: 0,
        };
        let change = AccountChange {
            account: account.into(),
            customer: customer.into(),
            traits,
        };
        (event, change)
    }

    #[tokio::test]
    async fn group_calls_merge_traits_and_members_page_in_order() {
        let (_dir, store) = temp_store();
        let calls = [
            group("g1", "cy", "acme", json!({"plan": "pro", "csm": "ann"})),
            group("g2", "ada", "acme", json!({"plan": "enterprise"})),
            group("g3", "bob", "acme", json!({})),
            // A duplicate changes nothing.
            group("g1", "cy", "acme", json!({"plan": "pro", "csm": "ann"})),
        ];
        let events: Vec<Event> = calls.iter().map(|(e, _)| e.clone()).collect();
        let changes: Vec<Option<AccountChange>> =
            calls.iter().map(|(_, c)| Some(c.clone())).collect();
        store
            .ingest_with(super::super::events::Extras {
                tenant: "t",
                events: &events,
                merges: &[],
                accounts: &changes,
                now: 5,
                window: None,
            })
            .await
            .unwrap();
        let acme = store.account("t", "acme").unwrap().unwrap();
        assert_eq!(acme.traits["plan"], "enterprise");
        assert_eq!(acme.traits["csm"], "ann");
        let (page, more) = store.account_members("t", "acme", None, 2).unwrap();
        assert_eq!((page, more), (vec!["ada".to_string(), "bob".into()], true));
        let (page, more) = store.account_members("t", "acme", Some("bob"), 2).unwrap();
        assert_eq!((page, more), (vec!["cy".to_string()], false));
        assert_eq!(
            store.customer_account("t", "cy").unwrap().as_deref(),
            Some("acme")
        );
        // Moving to another account leaves the first.
        let (event, change) = group("g4", "cy", "globex", json!({}));
        store
            .ingest_with(super::super::events::Extras {
                tenant: "t",
                events: &[event],
                merges: &[],
                accounts: &[Some(change)],
                now: 6,
                window: None,
            })
            .await
            .unwrap();
        assert_eq!(
            store.account_members("t", "acme", None, 10).unwrap().0,
            ["ada", "bob"]
        );
        assert_eq!(
            store.customer_account("t", "cy").unwrap().as_deref(),
            Some("globex")
        );
        assert!(store.account("u", "acme").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_merged_member_passes_their_account_on_unless_the_known_id_has_one() {
        let (_dir, store) = temp_store();
        let calls = [
            group("g1", "anon-1", "acme", json!({})),
            group("g2", "anon-2", "acme", json!({})),
            group("g3", "bob", "globex", json!({})),
        ];
        let events: Vec<Event> = calls.iter().map(|(e, _)| e.clone()).collect();
        let changes: Vec<Option<AccountChange>> =
            calls.iter().map(|(_, c)| Some(c.clone())).collect();
        store
            .ingest_with(super::super::events::Extras {
                tenant: "t",
                events: &events,
                merges: &[],
                accounts: &changes,
                now: 5,
                window: None,
            })
            .await
            .unwrap();
        store.move_membership("t", "anon-1", "ada").unwrap();
        store.move_membership("t", "anon-2", "bob").unwrap();
        // Again, as after a crash: nothing changes.
        store.move_membership("t", "anon-1", "ada").unwrap();
        assert_eq!(
            store.customer_account("t", "ada").unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(
            store.customer_account("t", "bob").unwrap().as_deref(),
            Some("globex")
        );
        assert_eq!(store.customer_account("t", "anon-1").unwrap(), None);
        assert_eq!(store.customer_account("t", "anon-2").unwrap(), None);
        assert_eq!(
            store.account_members("t", "acme", None, 10).unwrap().0,
            ["ada"]
        );
    }
}
