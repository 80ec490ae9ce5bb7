//! Identity merge (issue 12): ids merged into others, and the writes of a merge.
//!
//! `aliases`: `tenant␟merged id` → the id it was merged into (UTF-8). An entry is written once,
//! by [`Store::merge_out`], and never changed: an id merges once (a later merge of the same id
//! is dropped, first wins). Ingest reads it to queue a merged id's events for the id it was
//! merged into ([`Store::resolve`]); a shard worker reads it to pass on what was queued for a
//! merged id before the entry existed ([`Store::forward`]).
//!
//! A merge runs in two steps so that each customer's records are written only by their own
//! shard's worker (invariant 11 in `ARCHITECTURE.md`):
//!
//! 1. [`Pending::MergeOut`] on the merged id's shard, behind that id's earlier triggers:
//!    writes the alias and queues [`Pending::MergeIn`] for the known id, one transaction.
//! 2. [`Pending::MergeIn`] on the known id's shard: [`Store::commit_merge`] writes what the
//!    engine made of the two profiles and their enrollments (`engine::identity`), one
//!    transaction with the trigger's removal.
//!
//! Across partitions (issue 16, `docs/SCALING.md` "Crossing partitions") the two ids' records
//! are in two stores, and a merge takes three steps, each one transaction, the second and third
//! sent as forwards (`store/forwards.rs`), so each store is written only by its own workers:
//!
//! 1. [`Pending::MergeOut`] on the merged id's partition ([`Store::merge_out`]): the alias, and
//!    the merged id's records taken out — its profile removed, its pending timers and audience
//!    watches removed, its account membership left — and sent inside the
//!    [`Pending::MergeIn`] ([`Carried`]). Its enrollments stay: which of them move is decided
//!    by the known id's.
//! 2. [`Pending::MergeIn`] on the known id's partition: the same merge, with the carried
//!    records as the merged side. What moves is written here (the timers that were pending set
//!    again, the account joined); what stays under the merged id (a run the known id's
//!    enrollment in the same journey ended) is sent back in a [`Pending::MergeBack`], and every
//!    run that stays is marked here ([`Store::ended_by_merge`]) so that a trigger of one passed on later is
//!    dropped, as on one node.
//! 3. [`Pending::MergeBack`] on the merged id's partition ([`Store::merge_back`]): the moved
//!    runs removed, the ended ones written with their report cells.

use super::customers::customer_key;
use super::enrollments::enrollment_key;
use super::keys::key;
use super::kv::Transactional;
use super::queue::{shard_of_key, Pending, QueueEntry, QueuedTrigger};
use super::timers::{timer_key, TimerRecord};
use super::{enc, AudienceWrite, Store, StoreError};
use crate::audience::Watch;
use crate::model::{Customer, Enrollment};
use crate::report::cells::{CellDelta, Tally};
use serde::{Deserialize, Serialize};

/// How many hops of merged ids [`Store::resolve`] follows (a chain `a → b → c` forms when a
/// known id is later merged into another one).
const MAX_HOPS: usize = 16;

/// Everything a merge writes, from `engine::identity::merge`, committed with the removal of
/// its [`Pending::MergeIn`] trigger.
#[derive(Debug, Default)]
pub struct MergeCommit {
    pub tenant: String,
    /// The `MergeIn` trigger's key in the queue.
    pub queue_key: Vec<u8>,
    /// The known customer, with the merged profile's traits.
    pub customer: Option<Customer>,
    /// The merged id, whose profile is removed.
    pub merged: String,
    /// Enrollments written: moved ones under the known id, ended ones under the merged id.
    pub enrollments: Vec<Enrollment>,
    /// (customer, journey, run) of enrollment records removed (the merged id's moved ones).
    pub enrollments_removed: Vec<(String, String, u32)>,
    /// Timers moved: (the merged id's record, the known id's); a timer that fired meanwhile
    /// (gone from the tree) is not set again.
    pub timers_moved: Vec<(TimerRecord, TimerRecord)>,
    pub timers_cancelled: Vec<TimerRecord>,
    /// What the written enrollments change in the report's cells.
    pub report_deltas: Vec<CellDelta>,
    /// Audience watches moved (issue 12): the merged id's removed, the known id's written.
    pub audience: Vec<super::AudienceWrite>,
    // Merges across partitions (issue 16).
    /// Timers set whether or not the merged id's are pending here (they were taken out of the
    /// merged id's partition, and only the pending ones carried).
    pub timers_set: Vec<TimerRecord>,
    /// Runs (journey, run) of the merged id that stay on its partition (ended by the merge, or
    /// over already): marked here ([`Store::ended_by_merge`]).
    pub ended_elsewhere: Vec<(String, u32)>,
    /// A trigger queued with the commit: step three, for the merged id's partition.
    pub back: Option<QueuedTrigger>,
}

/// What a merged id's partition sends with step two when the known id is another partition's
/// customer (issue 16): the merged id's records as step one took them out of its store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    /// The merged id's profile (removed from its partition).
    #[serde(default)]
    pub customer: Option<Customer>,
    /// Its enrollments (they stay on its partition until step three).
    #[serde(default)]
    pub enrollments: Vec<Enrollment>,
    /// The timers of those enrollments still pending, as (journey, run, name): removed from its
    /// partition, set again for the runs that move. A timer an enrollment lists that is not
    /// here fired meanwhile: its trigger is queued behind the merge and passed on.
    #[serde(default)]
    pub pending: Vec<(String, u32, String)>,
    /// Its audience watches, as (journey, trigger, watch) (removed from its partition).
    #[serde(default)]
    pub watches: Vec<(String, String, Watch)>,
    /// The account it belonged to (it left it on its partition).
    #[serde(default)]
    pub account: Option<String>,
}

fn alias_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), id.as_bytes()])
}

/// The mark of a merged id's run that a merge ended on another partition, in the `aliases`
/// tree: a first part no tenant id has (tenant ids are slugs), so it never reads as an alias.
fn ended_key(tenant: &str, id: &str, journey: &str, run: u32) -> Vec<u8> {
    key(&[
        b"\0ended",
        tenant.as_bytes(),
        id.as_bytes(),
        journey.as_bytes(),
        &run.to_be_bytes(),
    ])
}

impl Store {
    /// The id `id` was merged into, if it was.
    pub fn alias(&self, tenant: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .aliases
            .get(alias_key(tenant, id))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The id `id`'s triggers go to: `id` itself unless it was merged, else (following a chain
    /// of merges) the id it ends in. Over several partitions (issue 16) the chain stops at the
    /// last id of this partition: its triggers are queued here and passed on by its shard's
    /// worker ([`Store::forward`]), since an ingested event is queued where it is logged.
    pub fn resolve(&self, tenant: &str, id: &str) -> Result<String, StoreError> {
        let mut at = id.to_string();
        for _ in 0..MAX_HOPS {
            match self.alias(tenant, &at)? {
                Some(next) if next != at && self.elsewhere(&next).is_none() => at = next,
                _ => break,
            }
        }
        Ok(at)
    }

    /// Step one of a merge of `from` into `into` (the [`Pending::MergeOut`] at `queue_key`),
    /// in one transaction: records the alias and queues [`Pending::MergeIn`] for `into` on its
    /// shard. Returns `into`'s shard, or `None` when there was nothing to do (`from` merged
    /// already, or `into` ends in `from`): the trigger is removed either way.
    pub fn merge_out(
        &self,
        queue_key: &[u8],
        tenant: &str,
        from: &str,
        into: &str,
    ) -> Result<Option<u16>, StoreError> {
        let mut into = self.resolve(tenant, into)?;
        // The chain stops at the last id of this partition; one merged into an id of another
        // partition (issue 16) sends the merge on to that id.
        if let Some(next) = self.alias(tenant, &into)? {
            into = next;
        }
        if into != from && self.elsewhere(&into).is_some() {
            return self.take_out(queue_key, tenant, from, &into, true);
        }
        let entry = self.queue_entry(&QueuedTrigger {
            tenant: tenant.to_string(),
            customer: into.clone(),
            pending: Pending::MergeIn {
                from: from.to_string(),
                carried: None,
            },
        })?;
        let alias = alias_key(tenant, from);
        let queued = (&self.queue, &self.aliases).transaction(|(queue, aliases)| {
            queue.delete(queue_key)?;
            if into == from || aliases.get(&alias)?.is_some() {
                return Ok(false);
            }
            aliases.put(alias.as_slice(), into.as_bytes())?;
            queue.put(entry.key.as_slice(), entry.value.as_slice())?;
            Ok(true)
        })?;
        Ok(queued.then(|| shard_of_key(&entry.key)))
    }

    /// A [`Pending::MergeIn`] of `from` without its records (a merge within this partition)
    /// at `queue_key`, found passed on to `into`, an id of another partition (issue 16: its
    /// known id was merged there meanwhile): `from`'s records taken out and sent with it, as
    /// step one across partitions sends them ([`Store::merge_out`]); the alias is there.
    pub fn carry_out(
        &self,
        queue_key: &[u8],
        tenant: &str,
        from: &str,
        into: &str,
    ) -> Result<Option<u16>, StoreError> {
        self.take_out(queue_key, tenant, from, into, false)
    }

    /// Step one of a merge of `from` into `into`, an id of another partition (issue 16; see
    /// the module's documentation), in one transaction: the alias (with `alias`; if `from` has
    /// one already, only the trigger is removed); `from`'s profile, pending timers, audience
    /// watches and account membership taken out of this store and sent in the
    /// [`Pending::MergeIn`] (with a [`Pending::Left`] for its account); the trigger removed.
    /// Answers no shard to wake: what it queued is forwards.
    fn take_out(
        &self,
        queue_key: &[u8],
        tenant: &str,
        from: &str,
        into: &str,
        alias: bool,
    ) -> Result<Option<u16>, StoreError> {
        let customer = self.customer(tenant, from)?;
        let enrollments = self.enrollments(tenant, from)?;
        let watches = self.audience_watches(tenant, from)?;
        let account = self.customer_account(tenant, from)?;
        let slot = self.forward_slot()?;
        let left = account
            .as_deref()
            .map(|account| {
                let member = from.to_owned();
                self.account_told(tenant, account, Pending::Left { member })
            })
            .transpose()?;
        let alias_k = alias_key(tenant, from);
        let profile = customer_key(tenant, from);
        let trees = self.taken_out_trees();
        let sent =
            trees.transaction(|(queue, aliases, customers, timers, audience, accounts)| {
                queue.delete(queue_key)?;
                if alias {
                    if aliases.get(&alias_k)?.is_some() {
                        return Ok(false);
                    }
                    aliases.put(alias_k.as_slice(), into.as_bytes())?;
                }
                customers.delete(profile.as_slice())?;
                // Only the timers still pending are set again: one that fired meanwhile is queued
                // behind this trigger and passed on to `into` like any of `from`'s triggers (the
                // enrollment still lists it, so it is decided there, as on one node).
                let mut pending = Vec::new();
                for e in &enrollments {
                    for t in &e.timers {
                        let record = TimerRecord {
                            tenant: tenant.to_owned(),
                            customer: from.to_owned(),
                            journey: e.journey.clone(),
                            run: e.run,
                            name: t.name.clone(),
                            due: t.due,
                        };
                        if timers.remove(timer_key(&record))?.is_some() {
                            pending.push((e.journey.clone(), e.run, t.name.clone()));
                        }
                    }
                }
                for (journey, trigger, watch) in &watches {
                    let removed = AudienceWrite {
                        customer: from.to_owned(),
                        journey: journey.clone(),
                        trigger: trigger.clone(),
                        old_due: watch.due,
                        watch: None,
                    };
                    super::audience::apply(audience, tenant, &removed)?;
                }
                if let Some(left) = &left {
                    super::accounts::leave(accounts, tenant, from)?;
                    queue.put(left.key.as_slice(), left.value.as_slice())?;
                }
                let merge_in = QueuedTrigger {
                    tenant: tenant.to_owned(),
                    customer: into.to_owned(),
                    pending: Pending::MergeIn {
                        from: from.to_owned(),
                        carried: Some(Box::new(Carried {
                            customer: customer.clone(),
                            enrollments: enrollments.clone(),
                            pending,
                            watches: watches.clone(),
                            account: account.clone(),
                        })),
                    },
                };
                queue.put(slot.as_slice(), enc(&merge_in))?;
                Ok(true)
            })?;
        if sent {
            self.poke_forwarder();
        }
        Ok(None)
    }

    /// Step three of a merge across partitions (issue 16), on the merged id `from`'s partition:
    /// the runs that moved removed, the ones the merge ended written with what they change in
    /// the report's cells, and the trigger removed, in one transaction.
    pub fn merge_back(
        &self,
        queue_key: &[u8],
        tenant: &str,
        from: &str,
        moved: &[(String, u32)],
        ended: &[Enrollment],
    ) -> Result<(), StoreError> {
        let mut commit = MergeCommit {
            tenant: tenant.to_owned(),
            queue_key: queue_key.to_vec(),
            merged: from.to_owned(),
            ..MergeCommit::default()
        };
        for (journey, run) in moved {
            commit
                .enrollments_removed
                .push((from.to_owned(), journey.clone(), *run));
        }
        for e in ended {
            let before = self.enrollment(tenant, from, &e.journey, e.run)?;
            commit.report_deltas.extend(crate::report::cells::delta(
                before.as_ref().map(Tally::of).as_ref(),
                Tally::of(e),
            ));
            commit.enrollments.push(e.clone());
        }
        self.commit_merge(&commit)
    }

    /// The trees a merge across partitions takes a merged id's records out of (and puts them
    /// back into): queue, aliases, customers, timers, audience, accounts.
    fn taken_out_trees(
        &self,
    ) -> (
        &super::kv::Tree,
        &super::kv::Tree,
        &super::kv::Tree,
        &super::kv::Tree,
        &super::kv::Tree,
        &super::kv::Tree,
    ) {
        (
            &self.queue,
            &self.aliases,
            &self.customers,
            &self.timers,
            &self.audience,
            &self.accounts,
        )
    }

    /// A forward (staged, for a slot of the outbox) telling `account`'s partition `pending`.
    fn account_told(
        &self,
        tenant: &str,
        account: &str,
        pending: Pending,
    ) -> Result<QueueEntry, StoreError> {
        let trigger = QueuedTrigger {
            tenant: tenant.to_owned(),
            customer: crate::engine::accounts::subject(account),
            pending,
        };
        // Bound for another partition: nothing kept decoded.
        Ok(QueueEntry::new(self.forward_slot()?, &trigger, false))
    }

    /// A merge across partitions that closed a cycle (issue 16: `id`'s `MergeIn` came back to
    /// `id` through the aliases of the ids it was merged into): as on one node it merges
    /// nothing — `id`'s alias removed and the records step one took out put back (profile,
    /// pending timers, watches, membership, its account told by a [`Pending::Grouped`]), with
    /// the trigger's removal, in one transaction, at `now`. Its enrollments never left.
    pub fn merge_undone(
        &self,
        queue_key: &[u8],
        tenant: &str,
        id: &str,
        carried: &Carried,
        now: crate::model::Millis,
    ) -> Result<(), StoreError> {
        let timers_back: Vec<TimerRecord> = carried
            .enrollments
            .iter()
            .flat_map(|e| e.timers.iter().map(move |t| (e, t)))
            .filter(|(e, t)| {
                carried
                    .pending
                    .iter()
                    .any(|(j, r, n)| *j == e.journey && *r == e.run && *n == t.name)
            })
            .map(|(e, t)| TimerRecord {
                tenant: tenant.to_owned(),
                customer: id.to_owned(),
                journey: e.journey.clone(),
                run: e.run,
                name: t.name.clone(),
                due: t.due,
            })
            .collect();
        let grouped = carried
            .account
            .as_deref()
            .map(|account| {
                let pending = Pending::Grouped {
                    member: id.to_owned(),
                    traits: crate::model::Object::new(),
                    at: now,
                };
                self.account_told(tenant, account, pending)
            })
            .transpose()?;
        let trees = self.taken_out_trees();
        trees.transaction(|(queue, aliases, customers, timers, audience, accounts)| {
            queue.delete(queue_key)?;
            aliases.delete(alias_key(tenant, id))?;
            if let Some(customer) = &carried.customer {
                customers.put(customer_key(tenant, id), enc(customer))?;
            }
            for t in &timers_back {
                timers.put(timer_key(t), enc(t))?;
            }
            for (journey, trigger, watch) in &carried.watches {
                let back = AudienceWrite {
                    customer: id.to_owned(),
                    journey: journey.clone(),
                    trigger: trigger.clone(),
                    old_due: None,
                    watch: Some(watch.clone()),
                };
                super::audience::apply(audience, tenant, &back)?;
            }
            if let (Some(account), Some(grouped)) = (&carried.account, &grouped) {
                super::accounts::rejoin(accounts, tenant, id, account)?;
                queue.put(grouped.key.as_slice(), grouped.value.as_slice())?;
            }
            Ok(())
        })?;
        if grouped.is_some() {
            self.poke_forwarder();
        }
        Ok(())
    }

    /// Whether a merge on this partition left run `run` of `journey` of the merged id `id` on
    /// the merged id's partition (issue 16: ended by the merge, or over already): a trigger of
    /// that run passed on here is dropped, as one node drops it.
    pub fn ended_by_merge(
        &self,
        tenant: &str,
        id: &str,
        journey: &str,
        run: u32,
    ) -> Result<bool, StoreError> {
        Ok(self
            .aliases
            .get(ended_key(tenant, id, journey, run))?
            .is_some())
    }

    /// Moves the trigger at `queue_key` to the queue of `trigger`'s customer (a merged id's
    /// trigger passed on), in one transaction. Returns the shard it went to, or `None` when
    /// the customer is another partition's (it went as a forward).
    pub fn forward(
        &self,
        queue_key: &[u8],
        trigger: &QueuedTrigger,
    ) -> Result<Option<u16>, StoreError> {
        let entry = self.queue_entry(trigger)?;
        self.queue.transaction(|queue| {
            queue.delete(queue_key)?;
            queue.put(entry.key.as_slice(), entry.value.as_slice())?;
            Ok(())
        })?;
        self.note_forwards(std::iter::once(&entry));
        Ok(local_shard(&entry))
    }

    /// Step two of a merge: writes `c` and removes its trigger, in one transaction (report
    /// deltas under the committing shard, as [`Store::commit_triggers`] adds them). Does not
    /// flush.
    pub fn commit_merge(&self, c: &MergeCommit) -> Result<(), StoreError> {
        let shard = shard_of_key(&c.queue_key);
        let deltas = crate::report::cells::merge(&c.report_deltas);
        let merged_key = customer_key(&c.tenant, &c.merged);
        let back = c.back.as_ref().map(|t| self.queue_entry(t)).transpose()?;
        (
            &self.queue,
            &self.customers,
            &self.enrollments,
            &self.timers,
            &self.report_cells,
            &self.audience,
            &self.aliases,
        )
            .transaction(
                |(queue, customers, enrollments, timers, cells, audience, aliases)| {
                    queue.delete(c.queue_key.as_slice())?;
                    for t in &c.timers_set {
                        timers.put(timer_key(t), enc(t))?;
                    }
                    for (journey, run) in &c.ended_elsewhere {
                        aliases.put(ended_key(&c.tenant, &c.merged, journey, *run), &[])?;
                    }
                    if let Some(back) = &back {
                        queue.put(back.key.as_slice(), back.value.as_slice())?;
                    }
                    customers.delete(merged_key.as_slice())?;
                    if let Some(customer) = &c.customer {
                        customers.put(customer_key(&c.tenant, &customer.id), enc(customer))?;
                    }
                    for (customer, journey, run) in &c.enrollments_removed {
                        enrollments.delete(enrollment_key(&c.tenant, customer, journey, *run))?;
                    }
                    for e in &c.enrollments {
                        let k = enrollment_key(&c.tenant, &e.customer, &e.journey, e.run);
                        enrollments.put(k, enc(e))?;
                    }
                    for t in &c.timers_cancelled {
                        timers.delete(timer_key(t))?;
                    }
                    for (old, new) in &c.timers_moved {
                        if timers.remove(timer_key(old))?.is_some() {
                            timers.put(timer_key(new), enc(new))?;
                        }
                    }
                    super::reports::apply(cells, &c.tenant, shard, &deltas)?;
                    for w in &c.audience {
                        super::audience::apply(audience, &c.tenant, w)?;
                    }
                    Ok(())
                },
            )?;
        if let Some(back) = &back {
            self.note_forwards(std::iter::once(back));
        }
        Ok(())
    }
}

/// The shard of this partition an entry was queued in; `None` for a forward.
fn local_shard(entry: &QueueEntry) -> Option<u16> {
    (!entry.key.starts_with(&super::forwards::OUTGOING)).then(|| shard_of_key(&entry.key))
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};
    use super::*;

    fn queued(store: &Store, customer: &str, pending: Pending) -> Vec<u8> {
        let entry = store
            .queue_entry(&QueuedTrigger {
                tenant: "t".into(),
                customer: customer.into(),
                pending,
            })
            .unwrap();
        store.queue.insert(&entry.key, entry.value).unwrap();
        entry.key
    }

    #[test]
    fn an_id_merges_once_and_chains_resolve_to_their_end() {
        let (_dir, store) = temp_store();
        let k = queued(&store, "anon", Pending::MergeOut { into: "ada".into() });
        assert!(store.merge_out(&k, "t", "anon", "ada").unwrap().is_some());
        assert_eq!(store.resolve("t", "anon").unwrap(), "ada");
        // The merge-in waits on ada's shard; the merge-out is gone.
        let all = fixtures::queued_count(&store);
        assert_eq!(all, 1);
        // A second merge of the same id is dropped: first wins.
        let k = queued(&store, "anon", Pending::MergeOut { into: "bob".into() });
        assert!(store.merge_out(&k, "t", "anon", "bob").unwrap().is_none());
        assert_eq!(store.resolve("t", "anon").unwrap(), "ada");
        // ada merged into cy later: anon's triggers go to cy.
        let k = queued(&store, "ada", Pending::MergeOut { into: "cy".into() });
        assert!(store.merge_out(&k, "t", "ada", "cy").unwrap().is_some());
        assert_eq!(store.resolve("t", "anon").unwrap(), "cy");
        // A merge back into where it came from would be a cycle: dropped.
        let k = queued(
            &store,
            "cy",
            Pending::MergeOut {
                into: "anon".into(),
            },
        );
        assert!(store.merge_out(&k, "t", "cy", "anon").unwrap().is_none());
        assert_eq!(store.resolve("t", "cy").unwrap(), "cy");
        // Another tenant's ids are its own.
        assert_eq!(store.resolve("u", "anon").unwrap(), "anon");
    }

    #[test]
    fn a_forwarded_trigger_leaves_one_queue_for_the_other() {
        let (_dir, store) = temp_store();
        let k = queued(&store, "anon", Pending::Logged);
        let moved = QueuedTrigger {
            tenant: "t".into(),
            customer: "ada".into(),
            pending: Pending::Forwarded {
                from: "anon".into(),
                inner: Box::new(Pending::Logged),
            },
        };
        let shard = store
            .forward(&k, &moved)
            .unwrap()
            .expect("a shard of this store");
        assert_eq!(shard, super::super::shard_of("t", "ada", store.shards()));
        let left = store.queued(shard, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1.customer, "ada");
        assert_eq!(fixtures::queued_count(&store), 1);
    }

    #[test]
    fn a_merge_moves_records_and_skips_a_timer_that_fired_meanwhile() {
        let (_dir, store) = temp_store();
        let mut setup = fixtures::commit(&store, "t", "anon");
        setup.customer = Some(fixtures::customer("anon"));
        setup
            .enrollments
            .push(fixtures::enrollment("anon", "welcome", 1));
        setup.timers_set.push(fixtures::timer("anon", "nudge", 10));
        store.commit_trigger(&setup).unwrap();
        let k = queued(
            &store,
            "ada",
            Pending::MergeIn {
                from: "anon".into(),
                carried: None,
            },
        );
        let mut moved = fixtures::enrollment("ada", "welcome", 1);
        moved.customer = "ada".into();
        let fired = fixtures::timer("anon", "gone", 20);
        let commit = MergeCommit {
            tenant: "t".into(),
            queue_key: k,
            customer: Some(fixtures::customer("ada")),
            merged: "anon".into(),
            enrollments: vec![moved],
            enrollments_removed: vec![("anon".into(), "welcome".into(), 1)],
            timers_moved: vec![
                (
                    fixtures::timer("anon", "nudge", 10),
                    fixtures::timer("ada", "nudge", 10),
                ),
                (fired, fixtures::timer("ada", "gone", 20)),
            ],
            ..MergeCommit::default()
        };
        store.commit_merge(&commit).unwrap();
        assert_eq!(fixtures::queued_count(&store), 0);
        assert!(store.customer("t", "anon").unwrap().is_none());
        assert!(store.customer("t", "ada").unwrap().is_some());
        assert!(store.enrollments("t", "anon").unwrap().is_empty());
        assert_eq!(store.enrollments("t", "ada").unwrap().len(), 1);
        let timers: Vec<TimerRecord> = store
            .timers
            .iter()
            .map(|kv| super::super::dec(&kv.unwrap().1).unwrap())
            .collect();
        assert_eq!(timers, [fixtures::timer("ada", "nudge", 10)]);
    }

    /// A customer id of `partition` among two.
    fn of(partition: u16, stem: &str) -> String {
        (0..)
            .map(|i| format!("{stem}{i}"))
            .find(|c| super::super::forwards::partition_of(c, 2) == partition)
            .unwrap()
    }

    /// The store of partition 0 of two, with `merged` (an id of it, a profile and run 1 of
    /// `welcome` listing `timers`, of which only `nudge` is pending) and an id of partition 1.
    fn placed_with_a_run(
        merged: &str,
        known: &str,
        timers: &[&str],
    ) -> (tempfile::TempDir, Store, String, String, Enrollment) {
        use crate::model::PendingTimer;
        let (dir, store) = temp_store();
        store.place_in(super::super::forwards::Place {
            partition: 0,
            partitions: 2,
        });
        let (from, into) = (of(0, merged), of(1, known));
        let mut setup = fixtures::commit(&store, "t", &from);
        setup.customer = Some(fixtures::customer(&from));
        let mut run = fixtures::enrollment(&from, "welcome", 1);
        run.timers = timers
            .iter()
            .map(|name| PendingTimer {
                name: (*name).into(),
                due: 10,
            })
            .collect();
        setup.enrollments.push(run.clone());
        setup.timers_set.push(fixtures::timer(&from, "nudge", 10));
        store.commit_trigger(&setup).unwrap();
        (dir, store, from, into, run)
    }

    #[test]
    fn a_merge_across_partitions_takes_the_merged_ids_records_out_then_keeps_its_ended_run() {
        use crate::model::EnrollmentStatus;
        // The merged id: a profile, a run with a pending nudge and a timer that fired
        // meanwhile (gone from the tree, queued behind the merge), an account.
        let (_dir, store, anon, ada, run) = placed_with_a_run("anon", "ada", &["nudge", "gone"]);
        store
            .accounts
            .insert(key(&[b"c", b"t", anon.as_bytes()]), "initech".as_bytes())
            .unwrap();

        // Step one: the alias; the profile, the pending timer and the membership taken out;
        // the run kept for now; nothing queued here but forwards.
        let k = queued(&store, &anon, Pending::MergeOut { into: ada.clone() });
        assert_eq!(store.merge_out(&k, "t", &anon, &ada).unwrap(), None);
        assert_eq!(store.alias("t", &anon).unwrap(), Some(ada.clone()));
        assert!(store.customer("t", &anon).unwrap().is_none());
        assert_eq!(store.timer_count(), 0);
        assert_eq!(store.customer_account("t", &anon).unwrap(), None);
        assert_eq!(
            store.enrollments("t", &anon).unwrap(),
            std::slice::from_ref(&run)
        );
        let shards: usize = (0..store.shards())
            .map(|s| store.queued(s, 10).unwrap().len())
            .sum();
        assert_eq!(shards, 0);
        // Sent: the account's partition told (`Left`), and step two carrying what was taken.
        store.number_forwards(100).unwrap();
        let sent: Vec<QueuedTrigger> = (0..2)
            .flat_map(|p| store.numbered_forwards(p, 100).unwrap())
            .map(|(_, t)| t)
            .collect();
        let merge_in = sent
            .iter()
            .find_map(|t| match &t.pending {
                Pending::MergeIn { from, carried } if *from == anon && t.customer == ada => {
                    carried.clone()
                }
                _ => None,
            })
            .expect("step two sent to the known id");
        assert_eq!(merge_in.customer, Some(fixtures::customer(&anon)));
        assert_eq!(merge_in.account.as_deref(), Some("initech"));
        assert_eq!(
            merge_in.enrollments,
            std::slice::from_ref(&run),
            "the runs as they are"
        );
        assert_eq!(
            merge_in.pending,
            [("welcome".to_string(), 1, "nudge".to_string())],
            "only the pending timer is set again"
        );
        assert!(sent.iter().any(|t| matches!(&t.pending,
            Pending::Left { member } if *member == anon)));
        // Sent again (a new owner's copy): the alias exists, so nothing happens twice.
        let again = queued(&store, &anon, Pending::MergeOut { into: ada.clone() });
        assert_eq!(store.merge_out(&again, "t", &anon, &ada).unwrap(), None);
        assert_eq!(store.number_forwards(100).unwrap().read, 0);

        // Step three: the known id had its own run, so this one ended, kept here.
        let mut ended = run.clone();
        ended.status = EnrollmentStatus::Exited;
        ended.exit_reason = Some("merged".into());
        ended.ended_at = Some(20);
        ended.timers.clear();
        let back = queued(
            &store,
            &anon,
            Pending::MergeBack {
                into: ada.clone(),
                moved: vec![],
                ended: vec![ended.clone()],
            },
        );
        store
            .merge_back(&back, "t", &anon, &[], std::slice::from_ref(&ended))
            .unwrap();
        assert_eq!(
            store.enrollment("t", &anon, "welcome", 1).unwrap(),
            Some(ended)
        );
        // A moved run is removed instead.
        let back = queued(
            &store,
            &anon,
            Pending::MergeBack {
                into: ada.clone(),
                moved: vec![("welcome".into(), 1)],
                ended: vec![],
            },
        );
        store
            .merge_back(&back, "t", &anon, &[("welcome".into(), 1)], &[])
            .unwrap();
        assert!(store.enrollments("t", &anon).unwrap().is_empty());
    }

    #[test]
    fn a_merge_marks_the_ended_runs_kept_on_the_merged_ids_partition() {
        let (_dir, store) = temp_store();
        let k = queued(&store, "ada", Pending::Logged);
        let commit = MergeCommit {
            tenant: "t".into(),
            queue_key: k,
            customer: Some(fixtures::customer("ada")),
            merged: "anon".into(),
            ended_elsewhere: vec![("welcome".into(), 1)],
            timers_set: vec![fixtures::timer("ada", "nudge", 10)],
            ..MergeCommit::default()
        };
        store.commit_merge(&commit).unwrap();
        assert!(store.ended_by_merge("t", "anon", "welcome", 1).unwrap());
        assert!(!store.ended_by_merge("t", "anon", "welcome", 2).unwrap());
        assert_eq!(
            store.alias("t", "anon").unwrap(),
            None,
            "a mark is no alias"
        );
        assert_eq!(
            store.timer_count(),
            1,
            "set though the merged id's was not here"
        );
    }

    #[test]
    fn a_merge_that_closes_a_cycle_puts_the_records_back() {
        let (_dir, store, c, a, _) = placed_with_a_run("c", "a", &["nudge"]);
        let k = queued(&store, &c, Pending::MergeOut { into: a.clone() });
        store.merge_out(&k, "t", &c, &a).unwrap();
        store.number_forwards(100).unwrap();
        let carried = store
            .numbered_forwards(1, 100)
            .unwrap()
            .into_iter()
            .find_map(|(_, t)| match t.pending {
                Pending::MergeIn { carried, .. } => carried,
                _ => None,
            })
            .expect("step two");
        assert_eq!(store.timer_count(), 0);

        // Its step two comes back to it: the records go back, the alias goes.
        let back = queued(&store, &c, Pending::Logged);
        store.merge_undone(&back, "t", &c, &carried, 5).unwrap();
        assert_eq!(store.alias("t", &c).unwrap(), None);
        assert_eq!(
            store.customer("t", &c).unwrap(),
            Some(fixtures::customer(&c))
        );
        assert_eq!(store.timer_count(), 1);
        assert_eq!(store.enrollments("t", &c).unwrap().len(), 1);
    }
}
