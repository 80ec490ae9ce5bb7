//! Pending timers, ordered by due time: `timers`: `due (time key)␟tenant␟customer␟journey␟run
//! (u32 BE)␟name` → [`TimerRecord`] (note the empty part after the time: the time key is
//! followed by a separator). Set and cancelled by
//! [`commit_trigger`](super::Store::commit_trigger); [`Store::fire_due_timers`] moves due ones
//! into the trigger queue.

use super::keys::{key, time_from_key, time_key};
use super::kv::Transactional;
use super::queue::{Pending, QueuedTrigger};
use super::{Store, StoreError};
use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// A pending timer of one enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRecord {
    pub tenant: String,
    pub customer: String,
    pub journey: String,
    pub run: u32,
    pub name: String,
    pub due: Millis,
}

/// A timer's key: its due time first, so the earliest timer is the first key.
pub(super) fn timer_key(t: &TimerRecord) -> Vec<u8> {
    let mut k = time_key(t.due).to_vec();
    k.extend(key(&[
        b"",
        t.tenant.as_bytes(),
        t.customer.as_bytes(),
        t.journey.as_bytes(),
        &t.run.to_be_bytes(),
        t.name.as_bytes(),
    ]));
    k
}

impl Store {
    /// When the earliest pending timer is due.
    pub fn next_timer_due(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.timers.first()?.map(|(k, _)| time_from_key(&k)))
    }

    /// Moves up to `limit` timers due at or before `now` into their customers' queue shards, in
    /// one transaction: a timer is either pending or queued, never both, never neither.
    /// Returns how many due timers it found.
    pub fn fire_due_timers(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        let end = time_key(now.saturating_add(1));
        // Each is about to leave the tree.
        let due: Vec<(Vec<u8>, TimerRecord)> = self
            .timers
            .range(..end.to_vec())
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), self.dec_taking(&self.timers, &k, &v)?))
            })
            .collect::<Result<_, StoreError>>()?;
        let fired = due
            .into_iter()
            .map(|(k, t)| {
                let trigger = QueuedTrigger {
                    tenant: t.tenant,
                    customer: t.customer,
                    pending: Pending::Timer {
                        journey: t.journey,
                        run: t.run,
                        name: t.name,
                        due: t.due,
                    },
                };
                Ok((k, self.queue_entry(&trigger)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        (&self.timers, &self.queue).transaction(|(timers, queue)| {
            for (timer_k, entry) in &fired {
                // A timer cancelled since it was read is not fired.
                if timers.remove(timer_k.as_slice())?.is_some() {
                    entry.put(queue)?;
                }
            }
            Ok(())
        })?;
        Ok(fired.len())
    }

    /// How many timers are pending.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};
    use super::*;

    fn set(store: &Store, timers: &[TimerRecord]) {
        let mut commit = fixtures::commit(store, "t", "alice");
        commit.timers_set.extend_from_slice(timers);
        store.commit_trigger(&commit).unwrap();
    }

    fn queued_timers(store: &Store) -> Vec<String> {
        (0..store.shards())
            .flat_map(|shard| store.queued(shard, 100).unwrap())
            .filter_map(|(_, q)| match q.pending {
                Pending::Timer { name, .. } => Some(name),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_timer_is_either_pending_or_queued_never_both_never_neither() {
        let (_dir, store) = temp_store();
        set(
            &store,
            &[
                fixtures::timer("alice", "early", 100),
                fixtures::timer("alice", "on_time", 200),
                fixtures::timer("alice", "late", 300),
            ],
        );
        assert_eq!(store.timer_count(), 3);
        assert_eq!(store.next_timer_due().unwrap(), Some(100));

        assert_eq!(store.fire_due_timers(200, 100).unwrap(), 2);
        assert_eq!(store.timer_count(), 1);
        assert_eq!(queued_timers(&store), ["early", "on_time"]);
        assert_eq!(store.next_timer_due().unwrap(), Some(300));

        // Firing again at the same time finds nothing more: no timer is queued twice.
        assert_eq!(store.fire_due_timers(200, 100).unwrap(), 0);
        assert_eq!(queued_timers(&store), ["early", "on_time"]);
    }

    #[test]
    fn timers_fire_earliest_first_in_bounded_batches() {
        let (_dir, store) = temp_store();
        set(
            &store,
            &[
                fixtures::timer("alice", "b", 20),
                fixtures::timer("alice", "a", 10),
                fixtures::timer("alice", "c", 30),
            ],
        );
        assert_eq!(store.fire_due_timers(1_000, 2).unwrap(), 2);
        assert_eq!(queued_timers(&store), ["a", "b"]);
        assert_eq!(store.fire_due_timers(1_000, 2).unwrap(), 1);
        assert_eq!(queued_timers(&store), ["a", "b", "c"]);
        assert_eq!(store.next_timer_due().unwrap(), None);
    }

    #[test]
    fn a_cancelled_timer_never_fires() {
        let (_dir, store) = temp_store();
        let timer = fixtures::timer("alice", "reminder", 50);
        set(&store, std::slice::from_ref(&timer));
        let mut cancel = fixtures::commit(&store, "t", "alice");
        cancel.timers_cancelled.push(timer);
        store.commit_trigger(&cancel).unwrap();
        assert_eq!(store.fire_due_timers(1_000, 10).unwrap(), 0);
        assert!(queued_timers(&store).is_empty());
    }

    /// Every queued trigger of every shard, in shard and queue order.
    fn all_queued(store: &Store) -> Vec<String> {
        (0..store.shards())
            .flat_map(|shard| store.queued(shard, 100).unwrap())
            .map(|(_, q)| format!("{q:?}"))
            .collect()
    }

    #[test]
    fn a_scratch_store_fires_its_timers_kept_decoded_as_a_sled_store_fires_them() {
        let (_dir, live) = temp_store();
        let scratch = Store::open_scratch().unwrap();
        for store in [&live, &scratch] {
            set(
                store,
                &[
                    fixtures::timer("alice", "nudge", 100),
                    fixtures::timer("alice", "later", 300),
                ],
            );
            assert_eq!(store.fire_due_timers(200, 10).unwrap(), 1);
        }
        let fired = all_queued(&live);
        assert_eq!(fired.len(), 1);
        assert!(fired[0].contains("nudge"), "{fired:?}");
        // Taken decoded, then (the memo gone) decoded from the bytes: the same trigger.
        assert_eq!(all_queued(&scratch), fired);
        assert_eq!(all_queued(&scratch), fired);
        assert_eq!(scratch.fire_due_timers(300, 10).unwrap(), 1);
        assert_eq!(live.fire_due_timers(300, 10).unwrap(), 1);
        assert_eq!(all_queued(&scratch), all_queued(&live));
    }
}
