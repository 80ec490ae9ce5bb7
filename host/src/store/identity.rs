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

use super::customers::customer_key;
use super::enrollments::enrollment_key;
use super::keys::key;
use super::kv::Transactional;
use super::queue::{shard_of_key, Pending, QueuedTrigger};
use super::timers::{timer_key, TimerRecord};
use super::{enc, Store, StoreError};
use crate::model::{Customer, Enrollment};
use crate::report::cells::CellDelta;

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
}

fn alias_key(tenant: &str, id: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), id.as_bytes()])
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
    /// of merges) the id it ends in.
    pub fn resolve(&self, tenant: &str, id: &str) -> Result<String, StoreError> {
        let mut at = id.to_string();
        for _ in 0..MAX_HOPS {
            match self.alias(tenant, &at)? {
                Some(next) if next != at => at = next,
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
        let into = self.resolve(tenant, into)?;
        let entry = self.queue_entry(&QueuedTrigger {
            tenant: tenant.to_string(),
            customer: into.clone(),
            pending: Pending::MergeIn {
                from: from.to_string(),
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

    /// Moves the trigger at `queue_key` to the queue of `trigger`'s customer (a merged id's
    /// trigger passed on), in one transaction. Returns the shard it went to.
    pub fn forward(&self, queue_key: &[u8], trigger: &QueuedTrigger) -> Result<u16, StoreError> {
        let entry = self.queue_entry(trigger)?;
        self.queue.transaction(|queue| {
            queue.delete(queue_key)?;
            queue.put(entry.key.as_slice(), entry.value.as_slice())?;
            Ok(())
        })?;
        Ok(shard_of_key(&entry.key))
    }

    /// Step two of a merge: writes `c` and removes its trigger, in one transaction (report
    /// deltas under the committing shard, as [`Store::commit_triggers`] adds them). Does not
    /// flush.
    pub fn commit_merge(&self, c: &MergeCommit) -> Result<(), StoreError> {
        let shard = shard_of_key(&c.queue_key);
        let deltas = crate::report::cells::merge(&c.report_deltas);
        let merged_key = customer_key(&c.tenant, &c.merged);
        (
            &self.queue,
            &self.customers,
            &self.enrollments,
            &self.timers,
            &self.report_cells,
            &self.audience,
        )
            .transaction(|(queue, customers, enrollments, timers, cells, audience)| {
                queue.delete(c.queue_key.as_slice())?;
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
            })?;
        Ok(())
    }
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
        let shard = store.forward(&k, &moved).unwrap();
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
}
