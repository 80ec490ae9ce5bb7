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
use super::kv::Transactional;
use super::kv::TransactionalTree;
use super::queue::{Pending, QueuedTrigger};
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

/// Applies `change` at `now` inside a transaction; answers the account the customer left for
/// it, if any. With `whole` false (a cluster of several partitions, issue 16) only the
/// customer's membership is written: the account's traits and members are its own
/// partition's, told by a forward ([`AccountWrite`]).
pub(super) fn apply(
    tree: &TransactionalTree,
    tenant: &str,
    change: &AccountChange,
    now: Millis,
    whole: bool,
) -> TxResult<Option<String>> {
    if whole {
        merge_traits(tree, tenant, &change.account, &change.traits, now)?;
    }
    let ck = customer_key(tenant, &change.customer);
    let mut left = None;
    if let Some(old) = tree.get(&ck)? {
        let old = String::from_utf8_lossy(&old).into_owned();
        if old != change.account {
            if whole {
                tree.delete(member_key(tenant, &old, &change.customer))?;
            }
            left = Some(old);
        }
    }
    tree.put(ck, change.account.as_bytes())?;
    if whole {
        tree.put(member_key(tenant, &change.account, &change.customer), &[])?;
    }
    Ok(left)
}

/// Identity merge across partitions (issue 16): `customer`, merged into an id of another
/// partition, leaves its account here (its account's partition is told by a forward).
pub(super) fn leave(tree: &TransactionalTree, tenant: &str, customer: &str) -> TxResult<()> {
    tree.delete(customer_key(tenant, customer))?;
    Ok(())
}

/// A merge across partitions that closed a cycle merged nothing (issue 16): `customer`
/// belongs to `account` again.
pub(super) fn rejoin(
    tree: &TransactionalTree,
    tenant: &str,
    customer: &str,
    account: &str,
) -> TxResult<()> {
    tree.put(customer_key(tenant, customer), account.as_bytes())?;
    Ok(())
}

/// Merges `traits` into `account`'s at `now` (creating the account).
fn merge_traits(
    tree: &TransactionalTree,
    tenant: &str,
    account: &str,
    traits: &Object,
    now: Millis,
) -> TxResult<()> {
    let k = account_key(tenant, account);
    let mut stored = match tree.get(&k)? {
        Some(v) => dec::<Account>(&v).map_err(super::abort)?,
        None => Account {
            id: account.to_owned(),
            traits: Object::new(),
            created_at: now,
            updated_at: now,
        },
    };
    for (name, value) in traits {
        stored.traits.insert(name.clone(), value.clone());
    }
    stored.updated_at = now;
    tree.put(k, enc(&stored))?;
    Ok(())
}

/// Cluster mode (issue 16): what a partition writes of an account that is not only its own
/// members' business (`store/forwards.rs`), in a trigger's commit.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountWrite {
    /// On the account's partition: a member's `group` call, taken in there (its traits merged
    /// as of `at`, the member listed).
    Joined {
        account: String,
        member: String,
        traits: Object,
        at: Millis,
    },
    /// On the account's partition: a member left.
    Left { account: String, member: String },
    /// On a member's partition: the account's traits as its partition keeps them, this
    /// partition's copy.
    Traits { account: String, traits: Object },
}

/// Applies `write` inside a trigger's commit.
pub(super) fn apply_write(
    tree: &TransactionalTree,
    tenant: &str,
    write: &AccountWrite,
) -> TxResult<()> {
    match write {
        AccountWrite::Joined {
            account,
            member,
            traits,
            at,
        } => {
            merge_traits(tree, tenant, account, traits, *at)?;
            tree.put(member_key(tenant, account, member), &[])?;
        }
        AccountWrite::Left { account, member } => {
            // A member's calls all come from their partition, taken in their order.
            tree.delete(member_key(tenant, account, member))?;
        }
        AccountWrite::Traits { account, traits } => {
            let k = account_key(tenant, account);
            let mut stored = match tree.get(&k)? {
                Some(v) => dec::<Account>(&v).map_err(super::abort)?,
                None => Account {
                    id: account.clone(),
                    traits: Object::new(),
                    created_at: 0,
                    updated_at: 0,
                },
            };
            stored.traits = traits.clone();
            tree.put(k, enc(&stored))?;
        }
    }
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

    /// Whether `customer` is listed among `account`'s members.
    pub fn is_account_member(
        &self,
        tenant: &str,
        account: &str,
        customer: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .accounts
            .contains_key(member_key(tenant, account, customer))?)
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
    /// Identity merge across partitions (issue 16): `into`, the known id, takes the account
    /// `account` that the merged id left on its partition, unless it belongs to one already
    /// (theirs stays); the account's partition is told by a forward ([`Pending::Grouped`],
    /// which also sends the account's traits back). One transaction; idempotent.
    pub fn join_merged(
        &self,
        tenant: &str,
        into: &str,
        account: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let into_key = customer_key(tenant, into);
        let slot = self.forward_slot()?;
        let joined = (&self.accounts, &self.queue).transaction(|(tree, queue)| {
            if tree.get(&into_key)?.is_some() {
                return Ok(false);
            }
            tree.put(into_key.as_slice(), account.as_bytes())?;
            let grouped = QueuedTrigger {
                tenant: tenant.to_owned(),
                customer: crate::engine::accounts::subject(account),
                pending: Pending::Grouped {
                    member: into.to_owned(),
                    traits: Object::new(),
                    at: now,
                },
            };
            queue.put(slot.as_slice(), enc(&grouped))?;
            Ok(true)
        })?;
        if joined {
            self.poke_forwarder();
        }
        Ok(())
    }

    /// Identity merge of a member: `from`'s account membership passes to `into` unless `into`
    /// belongs to an account already (theirs stays), and `from`, merged away, leaves its
    /// account; one transaction. Idempotent, so the merge that calls it may run again after a
    /// crash. Account journeys route the merged customer's events by the membership it leaves.
    /// Over several partitions (issue 16) the account's partition is told, by forwards.
    pub fn move_membership(
        &self,
        tenant: &str,
        from: &str,
        into: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (from_key, into_key) = (customer_key(tenant, from), customer_key(tenant, into));
        let whole = self.place().is_none();
        let slots = match whole {
            true => None,
            false => Some((self.forward_slot()?, self.forward_slot()?)),
        };
        let told = (&self.accounts, &self.queue).transaction(|(tree, queue)| {
            let Some(account) = tree.get(&from_key)? else {
                return Ok(false);
            };
            let account = String::from_utf8_lossy(&account).into_owned();
            tree.delete(from_key.as_slice())?;
            let joins = tree.get(&into_key)?.is_none();
            if joins {
                tree.put(into_key.as_slice(), account.as_bytes())?;
            }
            if let Some((leaving, joining)) = &slots {
                let told = |slot: &Vec<u8>, pending: Pending| {
                    let trigger = QueuedTrigger {
                        tenant: tenant.to_owned(),
                        customer: crate::engine::accounts::subject(&account),
                        pending,
                    };
                    queue.put(slot.as_slice(), enc(&trigger))
                };
                told(
                    leaving,
                    Pending::Left {
                        member: from.to_owned(),
                    },
                )?;
                if joins {
                    let pending = Pending::Grouped {
                        member: into.to_owned(),
                        traits: Object::new(),
                        at: now,
                    };
                    told(joining, pending)?;
                }
                return Ok(true);
            }
            tree.delete(member_key(tenant, &account, from))?;
            if joins {
                tree.put(member_key(tenant, &account, into), &[])?;
            }
            Ok(false)
        })?;
        if told {
            self.poke_forwarder();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};
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
        fixtures::ingest_groups(&store, &calls, 5).await;
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
        fixtures::ingest_groups(&store, &[(event, change)], 6).await;
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
        fixtures::ingest_groups(&store, &calls, 5).await;
        store.move_membership("t", "anon-1", "ada", 7).unwrap();
        store.move_membership("t", "anon-2", "bob", 7).unwrap();
        // Again, as after a crash: nothing changes.
        store.move_membership("t", "anon-1", "ada", 7).unwrap();
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
