//! Forwards between partitions (issue 16, `docs/SCALING.md` "Crossing partitions"): a trigger
//! one partition's commit queues for a customer of another partition — a member's event for
//! their account's journeys, a `group` call's change for the account, an account's new traits
//! for its members — is written in the same transaction as everything else the commit writes,
//! into a transactional outbox, and taken into the other partition's queue exactly once.
//!
//! All of it lives in the queue tree, under two-byte prefixes no shard uses (shards are at most
//! 4,096), so every transaction that queues a trigger can queue a forward instead:
//!
//! - [`OUTGOING`] `seq` → [`QueuedTrigger`]: staged by [`Store::queue_entry`] for a customer of
//!   another partition, in the writer's transaction. Sequence numbers are handed out before
//!   transactions commit, so these may commit out of order: they are not yet sent.
//! - [`NUMBERED`] `target` `n` → [`QueuedTrigger`]: the forwarder ([`Store::number_forwards`],
//!   one task per running partition) moves outgoing entries here in one transaction, numbering
//!   them from [`NEXT`] in the order it read them; a trigger for this partition's own customers
//!   (an account of this partition) goes straight into its shard's queue instead. Only
//!   numbered entries that the log has are sent, in order of `n`, to their target partition.
//! - [`TAKEN`] `source` → the highest `n` taken in from partition `source`: written by
//!   [`Store::take_forwards`] in the transaction that queues what it took, so a forward sent
//!   again (the sender's acknowledgement lost, a new owner sending what its copy still holds)
//!   is dropped. No time window: numbers only grow, and a partition sends its forwards to a
//!   target in their order.
//!
//! Every entry is an ordinary write of the partition's store, so its log carries them and a new
//! owner's copy holds whatever was not yet sent.

use super::keys::shard_of;
use super::queue::{QueueEntry, QueuedTrigger};
use super::{dec, Store, StoreError};
use std::sync::Arc;

/// Staged forwards, by sequence number.
pub(super) const OUTGOING: [u8; 2] = [0xFF, 0xFF];
/// Numbered forwards, by target partition and number.
const NUMBERED: [u8; 2] = [0xFF, 0xFE];
/// The next forward's number.
const NEXT: [u8; 2] = [0xFF, 0xFD];
/// The highest number taken in, by source partition.
const TAKEN: [u8; 2] = [0xFF, 0xFC];

/// Where a store's partition sits in a cluster of several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub partition: u16,
    pub partitions: u16,
}

/// A store's place, set once its partition runs in a cluster of several partitions.
#[derive(Debug, Clone)]
pub(super) struct Placing {
    place: Arc<std::sync::OnceLock<Place>>,
    /// Outgoing forwards were committed: the forwarder has work.
    written: Arc<tokio::sync::Notify>,
    /// Passes asked for ([`Store::forwarded`]): each asks for a whole pass that starts after it.
    asked: Arc<std::sync::atomic::AtomicU64>,
    /// The last ask that a whole pass answered: every forward committed before it was taken.
    passed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Placing {
    fn default() -> Self {
        Placing {
            place: Arc::default(),
            written: Arc::default(),
            asked: Arc::default(),
            passed: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

/// The partition of `customer` among `partitions` (the cluster's routing: the customer's id
/// alone, `crate::cluster::partitions::partition_of`).
pub fn partition_of(customer: &str, partitions: u16) -> u16 {
    shard_of("", customer, partitions)
}

fn numbered_key(target: u16, n: u64) -> Vec<u8> {
    let mut k = NUMBERED.to_vec();
    k.extend_from_slice(&target.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn taken_key(source: u16) -> Vec<u8> {
    [&TAKEN[..], &source.to_be_bytes()].concat()
}

fn number(v: Option<super::kv::IVec>) -> Result<Option<u64>, StoreError> {
    v.map(|v| {
        <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("a forward's number is not 8 bytes".into()))
    })
    .transpose()
}

/// What [`Store::number_forwards`] did.
#[derive(Debug, Default)]
pub struct Numbered {
    /// Outgoing forwards read (numbered, or queued here).
    pub read: usize,
    /// Shards of this partition given triggers (forwards to its own customers).
    pub shards: Vec<u16>,
}

impl Store {
    /// Cluster mode (issue 16): this store is `place.partition` of `place.partitions`. From
    /// now on a trigger staged for a customer of another partition becomes a forward.
    pub fn place_in(&self, place: Place) {
        if place.partitions > 1 {
            let _ = self.placing.place.set(place);
        }
    }

    /// Where this store's partition sits, if in a cluster of several partitions.
    pub fn place(&self) -> Option<Place> {
        self.placing.place.get().copied()
    }

    /// The partition of `customer` when it is not this store's (a trigger for them is a
    /// forward); `None` on a single node or for this partition's own customers.
    pub fn elsewhere(&self, customer: &str) -> Option<u16> {
        let place = self.place()?;
        let target = partition_of(customer, place.partitions);
        (target != place.partition).then_some(target)
    }

    /// A key for a forward whose customer is known only inside a transaction (the forwarder
    /// queues it here if it turns out to be this partition's).
    pub(super) fn forward_slot(&self) -> Result<Vec<u8>, StoreError> {
        let seq = self.db.generate_id()?;
        Ok([&OUTGOING[..], &seq.to_be_bytes()].concat())
    }

    /// Tells the forwarder that `entries`, just committed, held forwards.
    pub(super) fn note_forwards<'a>(&self, mut entries: impl Iterator<Item = &'a QueueEntry>) {
        if entries.any(|e| e.key.starts_with(&OUTGOING)) {
            self.poke_forwarder();
        }
    }

    /// Tells the forwarder that forwards were committed.
    pub(super) fn poke_forwarder(&self) {
        self.placing.written.notify_one();
    }

    /// Resolves when forwards were committed since the forwarder last looked.
    pub async fn forwards_written(&self) {
        self.placing.written.notified().await;
    }

    /// Waits, up to `patience`, until every forward committed so far has been taken in by
    /// its target (a pass of the forwarder that started after this call went through);
    /// answers whether it was. A `group` call's answer waits for it, so a client's next
    /// request finds the account told, as on one node.
    pub async fn forwarded(&self, patience: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering;
        let ticket = self.placing.asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.poke_forwarder();
        let mut passed = self.placing.passed.subscribe();
        tokio::time::timeout(patience, passed.wait_for(|done| *done >= ticket))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The forwarder starts a pass: answers the asks it will answer once it went through.
    pub fn forwarding_pass(&self) -> u64 {
        self.placing.asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The forwarder's pass that started at `ticket` went through: every forward committed
    /// before it was taken.
    pub fn forwarding_passed(&self, ticket: u64) {
        self.placing.passed.send_if_modified(|done| {
            let newer = ticket > *done;
            if newer {
                *done = ticket;
            }
            newer
        });
    }

    /// Numbers up to `limit` outgoing forwards, in the order of their sequence numbers, in
    /// one transaction; those for this partition's own customers go into their shards' queues.
    /// The caller flushes before sending any.
    pub fn number_forwards(&self, limit: usize) -> Result<Numbered, StoreError> {
        let Some(place) = self.place() else {
            return Ok(Numbered::default());
        };
        let mut read = Vec::new();
        for kv in self.queue.scan_prefix(OUTGOING).take(limit) {
            let (k, v) = kv?;
            let trigger: QueuedTrigger = dec(&v)?;
            let target = partition_of(&trigger.customer, place.partitions);
            // Staged outside the transaction, as every queue entry is.
            let local = if target == place.partition {
                Some(self.local_entry(&trigger)?)
            } else {
                None
            };
            read.push((k, v, target, local));
        }
        if read.is_empty() {
            return Ok(Numbered::default());
        }
        self.queue.transaction(|queue| {
            let mut next = number(queue.get(NEXT)?).map_err(super::abort)?.unwrap_or(1);
            for (k, v, target, local) in &read {
                queue.delete(k.as_ref())?;
                match local {
                    Some(entry) => queue.put(entry.key.as_slice(), entry.value.as_slice())?,
                    None => {
                        queue.put(numbered_key(*target, next), v.as_ref())?;
                        next += 1;
                    }
                }
            }
            queue.put(&NEXT[..], &next.to_be_bytes()[..])?;
            Ok(())
        })?;
        let mut shards: Vec<u16> = read
            .iter()
            .filter_map(|(_, _, _, local)| local.as_ref())
            .map(|e| super::queue::shard_of_key(&e.key))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        Ok(Numbered {
            read: read.len(),
            shards,
        })
    }

    /// The partitions that numbered forwards wait for.
    pub fn forward_targets(&self) -> Result<Vec<u16>, StoreError> {
        let mut targets = Vec::new();
        let mut from = NUMBERED.to_vec();
        while let Some(k) = self.queue.range(from.as_slice()..).keys().next() {
            let k = k?;
            let Some(target) = k
                .strip_prefix(&NUMBERED[..])
                .and_then(|rest| rest.get(..2))
                .map(|t| u16::from_be_bytes([t[0], t[1]]))
            else {
                break;
            };
            targets.push(target);
            match target.checked_add(1) {
                Some(next) => from = [&NUMBERED[..], &next.to_be_bytes()].concat(),
                None => break,
            }
        }
        Ok(targets)
    }

    /// Forwards committed here and not yet taken in by their partitions (outgoing and
    /// numbered), counted up to `limit`.
    pub fn forwards_waiting(&self, limit: usize) -> Result<usize, StoreError> {
        // Numbered ([FF FE]) and outgoing ([FF FF]) are the last two prefixes of the tree.
        let mut count = 0;
        for k in self.queue.range(&NUMBERED[..]..).keys().take(limit) {
            k?;
            count += 1;
        }
        Ok(count)
    }

    /// Up to `limit` numbered forwards for `target`, in order: (number, trigger).
    pub fn numbered_forwards(
        &self,
        target: u16,
        limit: usize,
    ) -> Result<Vec<(u64, QueuedTrigger)>, StoreError> {
        let start = [&NUMBERED[..], &target.to_be_bytes()].concat();
        self.queue
            .scan_prefix(&start)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                let n = number(Some(k.subslice(start.len(), 8)))?.unwrap_or_default();
                Ok((n, dec(&v)?))
            })
            .collect()
    }

    /// `target` took in every forward to it numbered up to `through`: they are removed (not
    /// flushed: if the removal is lost, they are sent again and dropped there).
    pub fn forwards_taken(&self, target: u16, through: u64) -> Result<(), StoreError> {
        let start = [&NUMBERED[..], &target.to_be_bytes()].concat();
        let end = numbered_key(target, through.saturating_add(1));
        let keys: Vec<_> = self
            .queue
            .range(start.as_slice()..end.as_slice())
            .keys()
            .collect::<Result<_, _>>()?;
        self.queue.transaction(|queue| {
            for k in &keys {
                queue.delete(k.as_ref())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Takes in forwards from partition `source`, in order of their numbers: each one above the
    /// highest taken from `source` before is queued for its customer, in one transaction with
    /// the new highest. Answers the highest taken and the shards given triggers; the caller
    /// flushes before acknowledging, and has checked that every customer is this partition's
    /// ([`Store::elsewhere`]).
    pub fn take_forwards(
        &self,
        source: u16,
        forwards: &[(u64, QueuedTrigger)],
    ) -> Result<(u64, Vec<u16>), StoreError> {
        let staged = forwards
            .iter()
            .map(|(n, trigger)| Ok((*n, self.local_entry(trigger)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let key = taken_key(source);
        let taken = self.queue.transaction(|queue| {
            let before = number(queue.get(&key)?).map_err(super::abort)?.unwrap_or(0);
            let mut highest = before;
            let mut shards = Vec::new();
            for (n, entry) in &staged {
                if *n > highest {
                    queue.put(entry.key.as_slice(), entry.value.as_slice())?;
                    shards.push(super::queue::shard_of_key(&entry.key));
                    highest = *n;
                }
            }
            if highest > before {
                queue.put(key.as_slice(), &highest.to_be_bytes()[..])?;
            }
            Ok((highest, shards))
        })?;
        Ok(taken)
    }

    /// Stages `trigger` in its shard's queue here, whatever partition its customer is in.
    pub(super) fn local_entry(&self, trigger: &QueuedTrigger) -> Result<QueueEntry, StoreError> {
        let shard = shard_of(&trigger.tenant, &trigger.customer, self.shards);
        let seq = self.db.generate_id()?;
        let mut key = shard.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        Ok(QueueEntry::new(key, trigger, self.is_scratch()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::Pending;
    use super::super::{fixtures, temp_store};
    use super::*;

    /// A customer id of `partition` among two.
    fn of(partition: u16, stem: &str) -> String {
        (0..)
            .map(|i| format!("{stem}{i}"))
            .find(|c| partition_of(c, 2) == partition)
            .unwrap()
    }

    fn all_queued(store: &Store) -> Vec<QueuedTrigger> {
        (0..store.shards())
            .flat_map(|s| store.queued(s, 100).unwrap())
            .map(|(_, t)| t)
            .collect()
    }

    fn changed(customer: &str, account: &str) -> QueuedTrigger {
        QueuedTrigger {
            tenant: "t".into(),
            customer: customer.into(),
            pending: Pending::AccountChanged {
                account: account.into(),
            },
        }
    }

    #[test]
    fn a_commits_forward_is_numbered_sent_in_order_and_taken_once() {
        let ((_a, source), (_b, target)) = (temp_store(), temp_store());
        source.place_in(Place {
            partition: 0,
            partitions: 2,
        });
        target.place_in(Place {
            partition: 1,
            partitions: 2,
        });
        let (here, there) = (of(0, "h"), of(1, "t"));
        // One commit queues for a customer of each partition.
        let mut commit = fixtures::commit(&source, "t", &here);
        commit.queued.push(changed(&there, "acme"));
        commit.queued.push(changed(&here, "acme"));
        source.commit_trigger(&commit).unwrap();
        // This partition's own is queued at once; the other's waits, unnumbered.
        let mine = all_queued(&source);
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].customer, here);
        assert!(source.forward_targets().unwrap().is_empty());

        let numbered = source.number_forwards(100).unwrap();
        assert_eq!(numbered.read, 1);
        assert_eq!(source.forward_targets().unwrap(), [1]);
        let sent = source.numbered_forwards(1, 100).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 1);
        assert_eq!(sent[0].1.customer, there);

        let (through, shards) = target.take_forwards(0, &sent).unwrap();
        assert_eq!(through, 1);
        assert_eq!(shards, [shard_of("t", &there, target.shards())]);
        // Sent again (the acknowledgement lost): dropped.
        assert_eq!(target.take_forwards(0, &sent).unwrap(), (1, vec![]));
        assert_eq!(all_queued(&target).len(), 1);
        source.forwards_taken(1, through).unwrap();
        assert!(source.forward_targets().unwrap().is_empty());

        // The next forward is numbered after it, and taken.
        let mut commit = fixtures::commit(&source, "t", &here);
        commit.queued.push(changed(&there, "globex"));
        source.commit_trigger(&commit).unwrap();
        source.number_forwards(100).unwrap();
        let next = source.numbered_forwards(1, 100).unwrap();
        assert_eq!(next[0].0, 2);
        assert_eq!(target.take_forwards(0, &next).unwrap().0, 2);
        let taken: Vec<_> = all_queued(&target)
            .into_iter()
            .map(|t| match t.pending {
                Pending::AccountChanged { account } => account,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(taken, ["acme", "globex"]);
    }

    #[tokio::test]
    async fn a_group_call_tells_the_accounts_partition_and_the_one_it_left() {
        let (_dir, store) = temp_store();
        store.place_in(Place {
            partition: 0,
            partitions: 2,
        });
        let member = of(0, "m");
        // Account ids whose subject keys are in partition 1 and in partition 0.
        let far = (0..)
            .map(|i| format!("far{i}"))
            .find(|a| partition_of(&crate::engine::accounts::subject(a), 2) == 1)
            .unwrap();
        let near = (0..)
            .map(|i| format!("near{i}"))
            .find(|a| partition_of(&crate::engine::accounts::subject(a), 2) == 0)
            .unwrap();
        let group = |id: &str, account: &str| {
            let event = crate::model::Event {
                id: id.into(),
                customer: member.clone(),
                name: "group".into(),
                properties: Default::default(),
                timestamp: 0,
            };
            let traits: crate::model::Object =
                serde_json::from_value(serde_json::json!({"plan": id})).unwrap();
            let change = super::super::AccountChange {
                account: account.into(),
                customer: member.clone(),
                traits,
            };
            (event, change)
        };
        // No forwarder runs here: answer every ask for a pass, so ingest does not wait.
        store.forwarding_passed(u64::MAX);
        for (id, account) in [("g1", &far), ("g2", &near)] {
            fixtures::ingest_groups(&store, &[group(id, account)], 5).await;
        }
        // The member's membership is here; the accounts' traits and members are not.
        assert_eq!(
            store.customer_account("t", &member).unwrap().as_deref(),
            Some(near.as_str())
        );
        assert!(store.account("t", &far).unwrap().is_none());
        store.number_forwards(100).unwrap();
        // To partition 1: joined `far`, then left it.
        let sent: Vec<_> = store
            .numbered_forwards(1, 100)
            .unwrap()
            .into_iter()
            .map(|(_, t)| (t.customer, t.pending))
            .collect();
        assert!(
            matches!(&sent[..], [
                (a, Pending::Grouped { member: m, traits, .. }),
                (b, Pending::Left { member: l }),
            ] if *a == crate::engine::accounts::subject(&far) && *b == *a
                && *m == member && *l == member && traits["plan"] == "g1"),
            "{sent:?}"
        );
        // Joining `near`, this partition's own account, is queued here.
        assert!(all_queued(&store).iter().any(|t| matches!(
            &t.pending,
            Pending::Grouped { traits, .. } if traits["plan"] == "g2"
        ) && t.customer
            == crate::engine::accounts::subject(&near)));
    }
}
