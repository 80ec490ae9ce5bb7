//! The trigger queue: triggers (events, fired timers, delivery outcomes) waiting for the worker
//! of their customer's shard.
//!
//! Tree `inbox` (its on-disk name, kept from before the in-app inbox existed): the shard
//! (u16 BE) immediately followed by a database-wide sequence number (u64 BE), no separator, →
//! [`QueuedTrigger`]. A shard's triggers therefore read back in arrival order, which is what
//! keeps one customer's triggers in order.
//!
//! Entries are written by [`events`](super::events) (ingest), [`timers`](super::timers) (a timer
//! fires), [`outbox`](super::outbox) (a delivery outcome) and removed by
//! [`commit_trigger`](super::Store::commit_trigger) once processed.

use super::keys::shard_of;
use super::{dec, enc, Store, StoreError};
use crate::model::{Customer, DeliveryReport, Event, Millis};
use serde::{Deserialize, Serialize};

/// Why a customer's journeys must run: the kind of a queued trigger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// An ingested event, carried in the entry (as format-1 directories queued events; still
    /// read).
    Event { event: Event },
    /// An ingested event, read from the event log: it is logged under the same sequence number
    /// as this entry's key ([`Store::logged_event`]), so the queue does not store it twice.
    Logged,
    /// A timer of one enrollment run came due.
    Timer {
        journey: String,
        run: u32,
        name: String,
        due: Millis,
    },
    /// The final outcome of a message one enrollment run sent.
    Delivery {
        journey: String,
        run: u32,
        report: DeliveryReport,
    },
    /// Move one enrollment run from version `from` to `to` ([`super::migrations`]).
    Migrate {
        journey: String,
        run: u32,
        from: u32,
        to: u32,
        migration: String,
    },
    // Identity merge (issue 12): see `store/identity.rs`.
    /// Step one of merging this (anonymous) customer into `into`, queued on this customer's
    /// shard behind their earlier triggers: records the alias and queues [`Pending::MergeIn`].
    MergeOut { into: String },
    /// Step two, on the known customer's shard: moves `from`'s profile and enrollments here.
    /// From a merged id of another partition (issue 16) it carries `from`'s records, which
    /// that partition took out of its store in step one.
    MergeIn {
        from: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        carried: Option<Box<super::identity::Carried>>,
    },
    /// Step three of a merge across partitions (issue 16), back on the merged id's partition:
    /// the runs of this customer that moved to `into` (removed here), and the ones the merge
    /// ended (written here, where their report cells are).
    MergeBack {
        into: String,
        moved: Vec<(String, u32)>,
        ended: Vec<crate::model::Enrollment>,
    },
    /// A trigger of `from`, an id merged into this customer, passed on to this customer's shard.
    Forwarded { from: String, inner: Box<Pending> },
    // Account journeys (issue 12, accounts slice): see `engine/accounts.rs`.
    /// A member's event, for the account journeys of the account whose subject key is this
    /// trigger's customer; queued by the member's trigger's commit (`TriggerCommit::queued`),
    /// with the member as they were when their event was processed.
    Account { event: Event, member: Customer },
    // Audience triggers (issue 12): see `store/audience.rs`.
    /// The due entry (at `due`) of this customer's watch of audience trigger `trigger` of
    /// `journey` was fired by the scheduler.
    Audience {
        journey: String,
        trigger: String,
        due: Millis,
    },
    // Account traits re-evaluated for every member (issue 12, polish).
    /// Another member's `group` call changed the traits of `account`, which this customer
    /// belongs to: their audience watches of conditions that read `account.*` are evaluated
    /// again. Queued by that member's trigger's commit (`TriggerCommit::queued`).
    AccountChanged { account: String },
    // Accounts over several partitions (issue 16): see `store/forwards.rs`.
    /// A `group` call of `member`, taken in on the member's partition, for the account whose
    /// subject key is this trigger's customer: the account's partition keeps its traits (the
    /// call's merged in, as of `at`) and its members.
    Grouped {
        member: String,
        traits: crate::model::Object,
        at: Millis,
    },
    /// `member` left the account whose subject key is this trigger's customer (joined another,
    /// or was merged into an id of another account).
    Left { member: String },
    /// The traits of `account`, which this customer belongs to, as its partition keeps them
    /// after a member's `group` call: this customer's partition keeps them as its copy, and
    /// evaluates their watches that read `account.*` again (as [`Pending::AccountChanged`]).
    AccountTraits {
        account: String,
        traits: crate::model::Object,
    },
}

/// A trigger waiting to be processed for one customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedTrigger {
    pub tenant: String,
    pub customer: String,
    pub pending: Pending,
}

/// A trigger ready to be written into the queue: its key (with a fresh sequence number) and
/// its stored value. Staged outside a transaction, because sled hands out sequence numbers
/// outside transactions; a staged entry that is never written leaves a harmless gap.
pub(super) struct QueueEntry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl QueueEntry {
    /// The sequence number part of the key: unique in the database, increasing.
    pub fn seq(&self) -> &[u8] {
        &self.key[2..]
    }
}

/// The shard a queue key belongs to (its first two bytes).
pub(super) fn shard_of_key(queue_key: &[u8]) -> u16 {
    queue_key
        .get(..2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

impl Store {
    /// Stages `trigger` for the queue of its customer's shard; in a cluster of several
    /// partitions, one for a customer of another partition is staged as a forward to it
    /// ([`super::forwards`]).
    pub(super) fn queue_entry(&self, trigger: &QueuedTrigger) -> Result<QueueEntry, StoreError> {
        let seq = self.db.generate_id()?;
        let mut key = match self.elsewhere(&trigger.customer) {
            Some(_) => super::forwards::OUTGOING.to_vec(),
            None => shard_of(&trigger.tenant, &trigger.customer, self.shards)
                .to_be_bytes()
                .to_vec(),
        };
        key.extend_from_slice(&seq.to_be_bytes());
        Ok(QueueEntry {
            key,
            value: enc(trigger),
        })
    }

    /// The oldest unprocessed triggers of one shard, with their queue keys.
    pub fn queued(
        &self,
        shard: u16,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, QueuedTrigger)>, StoreError> {
        self.queue
            .scan_prefix(shard.to_be_bytes())
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), dec(&v)?))
            })
            .collect()
    }

    /// How many triggers wait in `shard`'s queue, counted up to `bound + 1` (reads at most that
    /// many keys): more than `bound` is all the API's backpressure (`api::edge`) needs to know.
    pub fn queue_length_up_to(&self, shard: u16, bound: usize) -> Result<usize, StoreError> {
        let mut seen = 0;
        for key in self
            .queue
            .scan_prefix(shard.to_be_bytes())
            .keys()
            .take(bound.saturating_add(1))
        {
            key?;
            seen += 1;
        }
        Ok(seen)
    }

    /// The event a [`Pending::Logged`] entry at `queue_key` stands for.
    /// Like [`Store::queued`], but passes over the triggers for which `skip` is true (they
    /// stay queued, in place): up to `limit` others, in order. A worker skips the customers
    /// whose earlier trigger is deferred, so that their order holds and everyone else's
    /// triggers go on; it reads (and decodes) every skipped entry to find them.
    pub fn queued_except(
        &self,
        shard: u16,
        limit: usize,
        skip: &dyn Fn(&QueuedTrigger) -> bool,
    ) -> Result<Vec<(Vec<u8>, QueuedTrigger)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.queue.scan_prefix(shard.to_be_bytes()) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            let trigger: QueuedTrigger = dec(&v)?;
            if !skip(&trigger) {
                out.push((k.to_vec(), trigger));
            }
        }
        Ok(out)
    }

    pub fn logged_event(
        &self,
        tenant: &str,
        queue_key: &[u8],
    ) -> Result<Option<Event>, StoreError> {
        let seq = queue_key.get(2..).unwrap_or_default();
        self.events
            .get(super::keys::key(&[tenant.as_bytes(), seq]))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// Drops an unprocessable trigger from the queue (an event stays in the event log).
    pub fn discard(&self, queue_key: &[u8]) -> Result<(), StoreError> {
        self.queue.remove(queue_key)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn timer(customer: &str, name: &str) -> QueuedTrigger {
        QueuedTrigger {
            tenant: "t".into(),
            customer: customer.into(),
            pending: Pending::Timer {
                journey: "j".into(),
                run: 1,
                name: name.into(),
                due: 0,
            },
        }
    }

    fn push(store: &Store, trigger: &QueuedTrigger) {
        let entry = store.queue_entry(trigger).unwrap();
        store.queue.insert(entry.key, entry.value).unwrap();
    }

    fn timer_name(trigger: &QueuedTrigger) -> &str {
        match &trigger.pending {
            Pending::Timer { name, .. } => name,
            other => panic!("not a timer: {other:?}"),
        }
    }

    #[test]
    fn a_queue_is_counted_up_to_one_past_the_bound() {
        let (_dir, store) = temp_store();
        let shard = shard_of("t", "alice", store.shards());
        assert_eq!(store.queue_length_up_to(shard, 0).unwrap(), 0);
        for name in ["a", "b", "c"] {
            push(&store, &timer("alice", name));
        }
        assert_eq!(store.queue_length_up_to(shard, 1).unwrap(), 2);
        assert_eq!(store.queue_length_up_to(shard, 2).unwrap(), 3);
        assert_eq!(store.queue_length_up_to(shard, 3).unwrap(), 3);
        assert_eq!(store.queue_length_up_to(shard, 50_000).unwrap(), 3);
        let other = (shard + 1) % store.shards();
        if other != shard {
            assert_eq!(store.queue_length_up_to(other, 0).unwrap(), 0);
        }
    }

    #[test]
    fn a_shard_reads_its_triggers_in_arrival_order() {
        let (_dir, store) = temp_store();
        for name in ["first", "second", "third"] {
            push(&store, &timer("alice", name));
        }
        let shard = shard_of("t", "alice", store.shards());
        let names: Vec<String> = store
            .queued(shard, 10)
            .unwrap()
            .iter()
            .map(|(_, q)| timer_name(q).to_string())
            .collect();
        assert_eq!(names, ["first", "second", "third"]);
        assert_eq!(store.queued(shard, 2).unwrap().len(), 2);
    }

    #[test]
    fn a_shard_read_can_pass_over_some_customers_keeping_the_rest_in_order() {
        let (_dir, store) = temp_store();
        let shard = shard_of("t", "alice", store.shards());
        let bob = (0..1000)
            .map(|i| format!("bob{i}"))
            .find(|b| shard_of("t", b, store.shards()) == shard)
            .unwrap();
        for (who, name) in [
            ("alice", "a1"),
            (bob.as_str(), "b1"),
            ("alice", "a2"),
            (bob.as_str(), "b2"),
        ] {
            push(&store, &timer(who, name));
        }
        let names = |read: Vec<(Vec<u8>, QueuedTrigger)>| {
            read.iter()
                .map(|(_, q)| timer_name(q).to_string())
                .collect::<Vec<_>>()
        };
        let not_alice = store
            .queued_except(shard, 10, &|q| q.customer == "alice")
            .unwrap();
        assert_eq!(names(not_alice), ["b1", "b2"]);
        assert_eq!(
            names(store.queued_except(shard, 3, &|_| false).unwrap()),
            ["a1", "b1", "a2"]
        );
        assert_eq!(
            store.queued(shard, 10).unwrap().len(),
            4,
            "skipped triggers stay queued"
        );
    }

    #[test]
    fn a_queue_key_is_the_shard_then_the_sequence_number() {
        let (_dir, store) = temp_store();
        let entry = store.queue_entry(&timer("alice", "x")).unwrap();
        let shard = shard_of("t", "alice", store.shards());
        assert_eq!(entry.key.len(), 10);
        assert_eq!(entry.key[..2], shard.to_be_bytes());
        assert_eq!(entry.seq(), &entry.key[2..]);
        let later = store.queue_entry(&timer("alice", "y")).unwrap();
        assert!(later.key > entry.key);
    }

    #[test]
    fn a_discarded_trigger_is_no_longer_queued() {
        let (_dir, store) = temp_store();
        push(&store, &timer("alice", "x"));
        let shard = shard_of("t", "alice", store.shards());
        let (key, _) = store.queued(shard, 1).unwrap().remove(0);
        store.discard(&key).unwrap();
        assert!(store.queued(shard, 10).unwrap().is_empty());
    }
}
