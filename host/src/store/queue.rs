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
    #[serde(deserialize_with = "tag_first::pending")]
    pub pending: Pending,
}

/// Decoding a queued [`Pending`] by its tag first.
///
/// Serde's derived decoding of an internally tagged enum cannot know where in a map the tag
/// is, so it first copies the whole entry into a buffer of its own values, then decodes the
/// variant from that: about a third of a queued trigger's decoding, for every trigger. This
/// store writes the tag first (serde serialises it first), so the kinds a worker sees most
/// (timers, deliveries, logged events) are decoded here straight from their fields; any other
/// kind, or an entry with its tag elsewhere, goes to the derived decoding, with what was read
/// put back in front. The result is the derived decoding's, whichever path it takes.
mod tag_first {
    use super::Pending;
    use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
    use serde::de::{self, DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    pub(super) fn pending<'de, D: Deserializer<'de>>(d: D) -> Result<Pending, D::Error> {
        d.deserialize_map(TagFirst)
    }

    struct TagFirst;

    impl<'de> Visitor<'de> for TagFirst {
        type Value = Pending;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a queued trigger: its kind and its fields")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pending, A::Error> {
            let derived = |key: String, value: Option<String>, rest: A| {
                let map = Prepend {
                    key: Some(key),
                    value,
                    rest,
                };
                Pending::deserialize(MapAccessDeserializer::new(map))
            };
            let Some(first) = map.next_key::<String>()? else {
                return Err(de::Error::missing_field("kind"));
            };
            if first != "kind" {
                return derived(first, None, map);
            }
            let kind: String = map.next_value()?;
            match kind.as_str() {
                "logged" => {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Pending::Logged)
                }
                "timer" => timer(map),
                "delivery" => delivery(map),
                _ => derived(first, Some(kind), map),
            }
        }

        // The derived decoding also takes a sequence (the tag its first element).
        fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Pending, A::Error> {
            Pending::deserialize(SeqAccessDeserializer::new(seq))
        }
    }

    fn required<T, E: de::Error>(field: Option<T>, name: &'static str) -> Result<T, E> {
        field.ok_or_else(|| de::Error::missing_field(name))
    }

    fn timer<'de, A: MapAccess<'de>>(mut map: A) -> Result<Pending, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            Journey,
            Run,
            Name,
            Due,
            #[serde(other)]
            Other,
        }
        let (mut journey, mut run, mut name, mut due) = (None, None, None, None);
        while let Some(field) = map.next_key()? {
            match field {
                Field::Journey => journey = Some(map.next_value()?),
                Field::Run => run = Some(map.next_value()?),
                Field::Name => name = Some(map.next_value()?),
                Field::Due => due = Some(map.next_value()?),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Pending::Timer {
            journey: required(journey, "journey")?,
            run: required(run, "run")?,
            name: required(name, "name")?,
            due: required(due, "due")?,
        })
    }

    fn delivery<'de, A: MapAccess<'de>>(mut map: A) -> Result<Pending, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            Journey,
            Run,
            Report,
            #[serde(other)]
            Other,
        }
        let (mut journey, mut run, mut report) = (None, None, None);
        while let Some(field) = map.next_key()? {
            match field {
                Field::Journey => journey = Some(map.next_value()?),
                Field::Run => run = Some(map.next_value()?),
                Field::Report => report = Some(map.next_value()?),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Pending::Delivery {
            journey: required(journey, "journey")?,
            run: required(run, "run")?,
            report: required(report, "report")?,
        })
    }

    /// A map with an entry already read put back in front: its key, and its value unless
    /// that is still to be read from `rest`.
    struct Prepend<A> {
        key: Option<String>,
        value: Option<String>,
        rest: A,
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for Prepend<A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            match self.key.take() {
                Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
                None => self.rest.next_key_seed(seed),
            }
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, A::Error> {
            match self.value.take() {
                Some(value) => seed.deserialize(value.into_deserializer()),
                None => self.rest.next_value_seed(seed),
            }
        }
    }
}

/// A trigger ready to be written into the queue: its key (with a fresh sequence number) and
/// its stored value. Staged outside a transaction, because sled hands out sequence numbers
/// outside transactions; a staged entry that is never written leaves a harmless gap.
pub(super) struct QueueEntry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// In a scratch store, the trigger itself beside its bytes (`kv::Memo`): the worker takes
    /// it instead of decoding them ([`Store::queued`]).
    pub memo: Option<super::kv::Memo>,
}

impl QueueEntry {
    /// `trigger` at `key`, kept decoded too when `keep`.
    pub(super) fn new(key: Vec<u8>, trigger: &QueuedTrigger, keep: bool) -> QueueEntry {
        QueueEntry {
            key,
            value: enc(trigger),
            memo: keep.then(|| super::memo(trigger)),
        }
    }

    /// The sequence number part of the key: unique in the database, increasing.
    pub fn seq(&self) -> &[u8] {
        &self.key[2..]
    }

    /// Writes the entry into `queue`, with its memo if it has one.
    pub(super) fn put(
        &self,
        queue: &super::kv::TransactionalTree,
    ) -> Result<(), sled::transaction::UnabortableTransactionError> {
        match &self.memo {
            Some(memo) => queue.put_memo(self.key.as_slice(), self.value.as_slice(), memo.clone()),
            None => queue.put(self.key.as_slice(), self.value.as_slice()),
        }
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
        Ok(QueueEntry::new(key, trigger, self.is_scratch()))
    }

    /// The oldest unprocessed triggers of one shard, with their queue keys.
    pub fn queued(
        &self,
        shard: u16,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, QueuedTrigger)>, StoreError> {
        // Each is about to be processed and removed; one put back after a failure has no memo.
        self.queue
            .scan_prefix(shard.to_be_bytes())
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), self.dec_taking(&self.queue, &k, &v)?))
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
            .get_memo(super::keys::key(&[tenant.as_bytes(), seq]), true)?
            .map(super::dec_memo)
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
    fn a_scratch_store_hands_a_replayed_event_and_its_trigger_back_kept_decoded_or_not() {
        let store = Store::open_scratch().unwrap();
        let event = Event {
            id: "e1".into(),
            customer: "ada".into(),
            name: "signed_up".into(),
            properties: [("plan".to_string(), serde_json::json!("pro"))]
                .into_iter()
                .collect(),
            timestamp: 5,
        };
        store.append_replayed("t", &event, 10, None).unwrap();
        // Taken decoded first, then (the memos gone) decoded from the bytes: the same.
        for _ in 0..2 {
            let queued = store.queued(0, 10).unwrap();
            assert_eq!(queued.len(), 1);
            let (key, trigger) = &queued[0];
            assert_eq!(
                (trigger.tenant.as_str(), trigger.customer.as_str()),
                ("t", "ada")
            );
            assert!(matches!(trigger.pending, Pending::Logged));
            assert_eq!(store.logged_event("t", key).unwrap(), Some(event.clone()));
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

    /// Decoded as serde's derived decoding decodes it (the reference).
    #[derive(Deserialize)]
    struct Derived {
        tenant: String,
        customer: String,
        pending: Pending,
    }

    fn both(bytes: &[u8]) -> (Result<String, String>, Result<String, String>) {
        let show = |r: Result<_, rmp_serde::decode::Error>| {
            r.map(|p: Pending| format!("{p:?}"))
                .map_err(|e| e.to_string())
        };
        (
            show(rmp_serde::from_slice::<QueuedTrigger>(bytes).map(|q| q.pending)),
            show(rmp_serde::from_slice::<Derived>(bytes).map(|q| {
                assert_eq!((q.tenant.as_str(), q.customer.as_str()), ("t", "alice"));
                q.pending
            })),
        )
    }

    #[test]
    fn a_queued_trigger_decodes_by_its_tag_first_as_the_derived_decoding_does() {
        use crate::model::{DeliveryOutcome, DeliveryReport};
        let report = |outcome| DeliveryReport {
            message_id: "k1-ab-0".into(),
            channel: "email".into(),
            template: "welcome".into(),
            outcome,
        };
        let delivery = |outcome| Pending::Delivery {
            journey: "j".into(),
            run: 2,
            report: report(outcome),
        };
        let event = Event {
            id: "e1".into(),
            customer: "alice".into(),
            name: "signed_up".into(),
            properties: [("plan".to_string(), serde_json::json!({"tier": [1, 2.5]}))]
                .into_iter()
                .collect(),
            timestamp: 7,
        };
        let kinds = [
            Pending::Logged,
            timer("alice", "remind").pending,
            delivery(DeliveryOutcome::Delivered { provider_id: None }),
            delivery(DeliveryOutcome::Delivered {
                provider_id: Some("p-1".into()),
            }),
            delivery(DeliveryOutcome::Failed {
                reason: "bounced".into(),
            }),
            Pending::Event {
                event: event.clone(),
            },
            Pending::Migrate {
                journey: "j".into(),
                run: 1,
                from: 1,
                to: 2,
                migration: "m1".into(),
            },
            Pending::MergeOut { into: "bob".into() },
            Pending::Forwarded {
                from: "anon".into(),
                inner: Box::new(timer("anon", "x").pending),
            },
        ];
        for pending in kinds {
            let queued = QueuedTrigger {
                tenant: "t".into(),
                customer: "alice".into(),
                pending,
            };
            let bytes = enc(&queued);
            let (fast, derived) = both(&bytes);
            assert!(fast.is_ok(), "{fast:?}");
            assert_eq!(fast, derived);
            assert_eq!(fast, Ok(format!("{:?}", queued.pending)));
        }

        // Written otherwise: the tag after other fields (keys in sorted order), fields this
        // version does not know, a field missing, a tag no variant has.
        let written = |pending: serde_json::Value| {
            let queued =
                serde_json::json!({"tenant": "t", "customer": "alice", "pending": pending});
            let mut out = Vec::new();
            queued
                .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
                .unwrap();
            out
        };
        let cases = [
            serde_json::json!({"due": 5, "journey": "j", "kind": "timer", "name": "n", "run": 1}),
            serde_json::json!({"kind": "timer", "journey": "j", "run": 1, "name": "n", "due": 5, "later": [1]}),
            serde_json::json!({"kind": "delivery", "journey": "j", "run": 1}),
            serde_json::json!({"kind": "logged", "extra": true}),
            serde_json::json!({"kind": "merge_out", "into": "bob"}),
            serde_json::json!({"kind": "someday"}),
            serde_json::json!({"journey": "j"}),
            serde_json::json!({}),
        ];
        for case in cases {
            let (fast, derived) = both(&written(case.clone()));
            assert_eq!(
                fast.is_ok(),
                derived.is_ok(),
                "{case}: {fast:?} / {derived:?}"
            );
            if fast.is_ok() {
                assert_eq!(fast, derived, "{case}");
            }
        }
        assert!(both(&written(
            serde_json::json!({"kind": "delivery", "journey": "j", "run": 1})
        ))
        .0
        .is_err_and(|e| e.contains("report")));
    }
}
