//! The store side of the isolated engine that backtests and fidelity checks run (issue 13): a
//! scratch store, a copy of one tenant's setup into it, and the writes a replay makes there.
//!
//! A scratch store is a sled database in temporary mode (on Linux under `/dev/shm`, removed
//! when its last handle drops): its flushes cost no disk sync, and nothing in it outlives the
//! replay. The live store is only ever *read* here ([`Store::copy_setup_into`] reads it, every
//! write goes to the scratch store), which is what keeps a backtest from writing outside its
//! result.

use super::events::{append, EventTrees};
use super::keys::{key, prefix};
use super::kv::Transactional;
use super::{dec, enc, Store, StoreError};
use crate::model::rollout::Rollout;
use crate::model::{Event, Millis};

impl Store {
    /// A fresh, empty scratch store with one queue shard (a replay processes its triggers in
    /// order), its trees in memory ([`super::kv`]): nothing needs a replay's store to outlive
    /// the process, and sled's transactions, page copies and log buffers were most of a
    /// replay's cost.
    pub fn open_scratch() -> Result<Store, StoreError> {
        Store::with_db(super::kv::Db::memory(), 1, None)
    }

    /// Whether this is a scratch store ([`Store::open_scratch`]): the only store in memory.
    pub(super) fn is_scratch(&self) -> bool {
        matches!(self.db, super::kv::Db::Mem(_))
    }

    /// Copies what `tenant`'s journeys run with — the tenant's record (limits and sending
    /// policy), every journey version with its pointers and component, channels and
    /// templates — from this (live) store into `scratch`, record for record. Customers,
    /// enrollments, timers and messages are not copied: the replay makes its own.
    pub fn copy_setup_into(&self, scratch: &Store, tenant: &str) -> Result<(), StoreError> {
        if let Some(record) = self.tenants.get(tenant.as_bytes())? {
            scratch.tenants.insert(tenant.as_bytes(), record)?;
        }
        let tenant_prefix = prefix(&[tenant.as_bytes()]);
        let pairs = [
            (&self.journeys, &scratch.journeys),
            (&self.journey_heads, &scratch.journey_heads),
            (&self.channels, &scratch.channels),
            (&self.templates, &scratch.templates),
            (&self.template_heads, &scratch.template_heads),
        ];
        for (from, to) in pairs {
            for kv in from.scan_prefix(&tenant_prefix) {
                let (k, v) = kv?;
                to.put(k, v)?;
            }
        }
        let mut digests = Vec::new();
        for kv in self.journeys.scan_prefix(&tenant_prefix) {
            let version: super::JourneyVersion = dec(&kv?.1)?;
            digests.push(version.digest);
        }
        for kv in self.channels.scan_prefix(&tenant_prefix) {
            let channel: super::ChannelRecord = dec(&kv?.1)?;
            digests.push(channel.digest);
        }
        for digest in digests {
            if let Some(bytes) = self.components.get(digest.as_bytes())? {
                scratch.components.insert(digest.as_bytes(), bytes)?;
            }
        }
        Ok(())
    }

    /// Sets a journey's version pointers outright (in a scratch store: which version the
    /// replay's new entrants run).
    pub fn set_rollout(
        &self,
        tenant: &str,
        journey: &str,
        rollout: &Rollout,
    ) -> Result<(), StoreError> {
        self.journey_heads
            .insert(key(&[tenant.as_bytes(), journey.as_bytes()]), enc(rollout))?;
        Ok(())
    }

    /// Appends one recorded event to the log and the queue at journey time `at`, deduplicated
    /// within `window` as ingest does, without a flush (a scratch store needs none).
    pub fn append_replayed(
        &self,
        tenant: &str,
        event: &Event,
        at: Millis,
        window: Option<Millis>,
    ) -> Result<super::Ingested, StoreError> {
        let entry = self.stage_event(tenant, event)?;
        let trees = (&self.events, &self.event_ids, &self.queue);
        let ingested = trees.transaction(|(log, ids, queue)| {
            let trees = EventTrees { log, ids, queue };
            append(&trees, tenant, event, &entry, at, window)
        })?;
        Ok(ingested)
    }

    /// [`Store::append_replayed`] for events ingested at the same journey time `at`, in order,
    /// in one transaction (as one ingest request of them is): an id seen earlier in `events`
    /// is a duplicate as it would be one request later. Returns each event's outcome.
    pub fn append_replayed_all(
        &self,
        tenant: &str,
        events: &[Event],
        at: Millis,
        window: Option<Millis>,
    ) -> Result<Vec<super::Ingested>, StoreError> {
        let entries = events
            .iter()
            .map(|event| self.stage_event(tenant, event))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let trees = (&self.events, &self.event_ids, &self.queue);
        let ingested = trees.transaction(|(log, ids, queue)| {
            let trees = EventTrees { log, ids, queue };
            events
                .iter()
                .zip(&entries)
                .map(|(event, entry)| append(&trees, tenant, event, entry, at, window))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(ingested)
    }

    /// Empties the trigger queue: for the backtest bench, whose recorded history is written
    /// with [`Store::append_replayed`] (which queues) but never processed live.
    #[doc(hidden)]
    pub fn clear_queue_for_bench(&self) -> Result<(), StoreError> {
        self.queue.clear()?;
        Ok(())
    }

    /// Every message decided for `tenant`'s customers, by customer then id.
    pub fn tenant_messages(&self, tenant: &str) -> Result<Vec<super::Message>, StoreError> {
        self.outbox
            .scan_prefix(prefix(&[tenant.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    /// Every message decided for `tenant`'s customers in `journey`, by customer then id, read
    /// only as far as a backtest reports it ([`SentRecord`]): a replay's sends are read back
    /// in the hundreds of thousands, and decoding each whole message, its payload built into
    /// JSON values, was a twentieth of a replay (docs/BENCHMARKS.md).
    pub fn journey_sends(
        &self,
        tenant: &str,
        journey: &str,
    ) -> Result<Vec<SentRecord>, StoreError> {
        let mut sends = Vec::new();
        for kv in self.outbox.scan_prefix(prefix(&[tenant.as_bytes()])) {
            let sent: SentRecord = dec(&kv?.1)?;
            if sent.journey == journey {
                sends.push(sent);
            }
        }
        Ok(sends)
    }
}

/// What a backtest reports of one message ([`Store::journey_sends`]): these fields of its
/// [`super::Message`] record, decoded from it by name; the others (its payload among them)
/// are skipped unread.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SentRecord {
    pub id: String,
    pub customer: String,
    pub journey: String,
    pub channel: String,
    pub template: String,
    pub status: super::MessageStatus,
    pub created_at: Millis,
    #[serde(default)]
    pub delivered_at: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    #[tokio::test]
    async fn a_scratch_store_gets_the_tenants_setup_and_nothing_of_another_tenant() {
        let (_dir, live) = temp_store();
        for tenant in ["t", "u"] {
            live.create_tenant(
                &super::super::Tenant {
                    id: tenant.into(),
                    created_at: 0,
                    limits: Default::default(),
                    policy: Default::default(),
                },
                tenant,
            )
            .await
            .unwrap();
            live.add_journey_version(
                tenant,
                "welcome",
                "d1",
                b"bytes",
                &super::super::fixtures::spec(),
                crate::model::rollout::Stage::Live,
                0,
            )
            .await
            .unwrap();
        }
        let scratch = Store::open_scratch().unwrap();
        live.copy_setup_into(&scratch, "t").unwrap();
        assert!(scratch.tenant("t").unwrap().is_some());
        assert!(scratch.tenant("u").unwrap().is_none());
        assert_eq!(scratch.journey_versions("t", "welcome").unwrap().len(), 1);
        assert!(scratch.journey_versions("u", "welcome").unwrap().is_empty());
        assert_eq!(
            scratch.component("d1").unwrap().as_deref(),
            Some(&b"bytes"[..])
        );
        // A replayed event is logged and queued there, not in the live store.
        let event = Event {
            id: "e".into(),
            customer: "c".into(),
            name: "seen".into(),
            properties: Default::default(),
            timestamp: 0,
        };
        scratch.append_replayed("t", &event, 5, None).unwrap();
        assert_eq!(scratch.history("t").count(), 1);
        assert_eq!(live.history("t").count(), 0);
    }

    #[test]
    fn a_journeys_sends_are_its_messages_read_down_to_what_a_backtest_reports() {
        use super::super::fixtures;
        use super::super::outbox::{Message, MessageStatus};
        let store = Store::open_scratch().unwrap();
        let mut commit = fixtures::commit(&store, "t", "alice");
        let with = |id: &str, journey: &str, status, edit: fn(&mut Message)| {
            let mut m = fixtures::message(id, "email", status, 10);
            m.journey = journey.into();
            m.created_at = 7;
            edit(&mut m);
            m
        };
        commit.outbox = vec![
            with("m1", "welcome", MessageStatus::Delivered, |m| {
                m.delivered_at = Some(9);
                m.payload = serde_json::json!({"subject": "hi", "lines": [1, 2, {"a": null}]});
                m.receipt = Some(serde_json::json!({"segments": 2}));
                m.provider_id = Some("p-1".into());
            }),
            with("m2", "welcome", MessageStatus::Held, |m| {
                m.release_at = Some(50)
            }),
            with("m3", "renewal", MessageStatus::Pending, |_| {}),
        ];
        store.commit_trigger(&commit).unwrap();
        let projected: Vec<SentRecord> = store
            .tenant_messages("t")
            .unwrap()
            .into_iter()
            .filter(|m| m.journey == "welcome")
            .map(|m| SentRecord {
                id: m.id,
                customer: m.customer,
                journey: m.journey,
                channel: m.channel,
                template: m.template,
                status: m.status,
                created_at: m.created_at,
                delivered_at: m.delivered_at,
            })
            .collect();
        let sends = store.journey_sends("t", "welcome").unwrap();
        assert_eq!(sends, projected);
        assert_eq!(
            sends
                .iter()
                .map(|s| (s.id.as_str(), s.status, s.delivered_at))
                .collect::<Vec<_>>(),
            [
                ("m1", MessageStatus::Delivered, Some(9)),
                ("m2", MessageStatus::Held, None)
            ]
        );
        assert!(store.journey_sends("u", "welcome").unwrap().is_empty());
    }
}
