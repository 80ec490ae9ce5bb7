//! The event log and its dedup index: ingest, and the one write that appends an event.
//!
//! `events`: `tenant␟sequence (u64 BE)` → the [`Event`] as ingested (the sequence number is the
//! one its queued trigger carries). `event_ids`: `tenant␟event id` → when the id was ingested
//! (time key) followed by its sequence number; values written before ids carried a time are the
//! bare 8-byte sequence number. `event_id_times`: `ingested at (time key)␟tenant␟event id` → ():
//! the dedup window's expiry order.
//!
//! Every event enters through `append`: ingest uses it, and so does task resolution (the
//! `task_resolved` event its caller composes), so both deduplicate by id within the same window.

use super::keys::{key, time_from_key, time_key};
use super::queue::{Pending, QueueEntry, QueuedTrigger};
use super::{enc, Store, StoreError, TxResult};
use crate::model::{Event, Millis};
use sled::transaction::TransactionalTree;
use sled::Transactional;

/// Result of ingesting one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// New: logged and queued for its customer's journeys.
    Accepted,
    /// Its id was seen within the dedup window: dropped.
    Duplicate,
}

/// An `event_ids` value: when the id was ingested, then the event's log sequence number.
fn id_value(at: Millis, seq: &[u8]) -> Vec<u8> {
    let mut v = time_key(at).to_vec();
    v.extend_from_slice(seq);
    v
}

/// When an id was ingested; `None` for values written before ids carried a time (the bare
/// 8-byte sequence number), which are remembered for ever.
fn id_seen_at(value: &[u8]) -> Option<Millis> {
    (value.len() == 16).then(|| time_from_key(value))
}

/// The trees an event is appended to, inside one transaction.
pub(super) struct EventTrees<'a> {
    pub log: &'a TransactionalTree,
    pub ids: &'a TransactionalTree,
    pub times: &'a TransactionalTree,
    pub queue: &'a TransactionalTree,
}

/// Dedup-check-and-append, the one copy: unless `event`'s id was ingested within `window`
/// before `now` (journey time; `None`: ever), remembers the id from `now`, appends the event to
/// the log and writes its staged queue `entry`. Ids written earlier in the same transaction
/// count, so a batch holding one id twice keeps the first.
pub(super) fn append(
    trees: &EventTrees<'_>,
    tenant: &str,
    event: &Event,
    entry: &QueueEntry,
    now: Millis,
    window: Option<Millis>,
) -> TxResult<Ingested> {
    let id_key = key(&[tenant.as_bytes(), event.id.as_bytes()]);
    if let Some(seen) = trees.ids.get(&id_key)? {
        let live = match (id_seen_at(&seen), window) {
            (Some(at), Some(window)) => at > now.saturating_sub(window),
            // Remembered for ever, or written before ids carried a time.
            _ => true,
        };
        if live {
            return Ok(Ingested::Duplicate);
        }
    }
    // The queue key's sequence number doubles as the event's place in the log.
    let seq = entry.seq();
    trees.ids.insert(id_key.as_slice(), id_value(now, seq))?;
    trees.times.insert(key(&[&time_key(now), &id_key]), &[])?;
    trees
        .log
        .insert(key(&[tenant.as_bytes(), seq]), enc(event))?;
    trees
        .queue
        .insert(entry.key.as_slice(), entry.value.as_slice())?;
    Ok(Ingested::Accepted)
}

impl Store {
    /// Stages `event` for the queue of its customer's shard.
    pub(super) fn stage_event(
        &self,
        tenant: &str,
        event: &Event,
    ) -> Result<QueueEntry, StoreError> {
        self.queue_entry(&QueuedTrigger {
            tenant: tenant.to_string(),
            customer: event.customer.clone(),
            pending: Pending::Logged,
        })
    }

    /// Appends events to the log and the queue, dropping ids seen before (in earlier requests
    /// within the dedup window, or earlier in this batch), and flushes before returning: what
    /// returns `Accepted` is durable. An id is remembered from `now` (journey time) until
    /// `now + window`; after that the same id is a new event. `None` remembers ids for ever.
    pub async fn ingest(
        &self,
        tenant: &str,
        events: &[Event],
        now: Millis,
        window: Option<Millis>,
    ) -> Result<Vec<Ingested>, StoreError> {
        let staged = events
            .iter()
            .map(|event| Ok((event, self.stage_event(tenant, event)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let trees = (
            &self.events,
            &self.event_ids,
            &self.event_id_times,
            &self.queue,
        );
        let results = trees.transaction(|(log, ids, times, queue)| {
            let trees = EventTrees {
                log,
                ids,
                times,
                queue,
            };
            staged
                .iter()
                .map(|(event, entry)| append(&trees, tenant, event, entry, now, window))
                .collect::<TxResult<Vec<_>>>()
        })?;
        self.flush().await?;
        Ok(results)
    }

    /// Forgets up to `limit` event ids ingested before `cutoff` (journey time), oldest first,
    /// so a retry after the dedup window is a new event and the id index stays bounded. The
    /// events themselves stay in the log. Returns how many ids were forgotten.
    pub fn expire_event_ids(&self, cutoff: Millis, limit: usize) -> Result<usize, StoreError> {
        let mut batch = Vec::new();
        for kv in self.event_id_times.range(..time_key(cutoff)).take(limit) {
            batch.push(kv?.0);
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let forgotten = (&self.event_ids, &self.event_id_times).transaction(|(ids, times)| {
            let mut forgotten = 0;
            for time_entry in &batch {
                let id_key = &time_entry[9..];
                // An id ingested again after it expired has a newer time: keep that one.
                if let Some(seen) = ids.get(id_key)? {
                    if id_seen_at(&seen).is_none_or(|at| at < cutoff) {
                        ids.remove(id_key)?;
                        forgotten += 1;
                    }
                }
                times.remove(time_entry)?;
            }
            Ok(forgotten)
        })?;
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            customer: "c".into(),
            name: "seen".into(),
            properties: Default::default(),
            timestamp: 0,
        }
    }

    #[tokio::test]
    async fn an_event_id_is_a_duplicate_only_within_the_window() {
        let (_dir, store) = temp_store();
        let window = Some(1_000);
        let ingest = |at: Millis| {
            let store = store.clone();
            async move { store.ingest("t", &[event("a")], at, window).await.unwrap()[0] }
        };
        assert_eq!(ingest(0).await, Ingested::Accepted);
        assert_eq!(ingest(999).await, Ingested::Duplicate);
        // Expired but not yet forgotten: the lookup alone decides.
        assert_eq!(ingest(1_000).await, Ingested::Accepted);
        assert_eq!(ingest(1_500).await, Ingested::Duplicate);
        // Forgetting what was ingested before 500 drops the first time entry but keeps the id,
        // which was ingested again at 1,000.
        assert_eq!(store.expire_event_ids(500, 100).unwrap(), 0);
        assert_eq!(ingest(1_900).await, Ingested::Duplicate);
        assert_eq!(store.expire_event_ids(1_001, 100).unwrap(), 1);
        assert!(store.event_ids.is_empty());
        assert!(store.event_id_times.is_empty());
        assert_eq!(ingest(2_000).await, Ingested::Accepted);
        // Both accepted copies are in the log and the queue.
        assert_eq!(store.events.len(), 3);
        assert_eq!(store.queue.len(), 3);
    }

    #[tokio::test]
    async fn without_a_window_ids_are_remembered_for_ever() {
        let (_dir, store) = temp_store();
        let batch = [event("a"), event("b"), event("a")];
        let first = store.ingest("t", &batch, 0, None).await.unwrap();
        assert_eq!(
            first,
            [Ingested::Accepted, Ingested::Accepted, Ingested::Duplicate]
        );
        let later = store
            .ingest("t", &batch[..1], i64::MAX / 2, None)
            .await
            .unwrap();
        assert_eq!(later, [Ingested::Duplicate]);
        // Another tenant's ids are its own.
        let other = store.ingest("u", &batch[..1], 0, None).await.unwrap();
        assert_eq!(other, [Ingested::Accepted]);
    }

    #[tokio::test]
    async fn forgetting_works_in_bounded_batches_oldest_first() {
        let (_dir, store) = temp_store();
        for i in 0..10 {
            let id = format!("e{i}");
            store
                .ingest("t", &[event(&id)], i * 100, Some(10_000))
                .await
                .unwrap();
        }
        assert_eq!(store.expire_event_ids(450, 3).unwrap(), 3);
        assert_eq!(store.expire_event_ids(450, 3).unwrap(), 2);
        assert_eq!(store.expire_event_ids(450, 3).unwrap(), 0);
        assert_eq!(store.event_ids.len(), 5);
        // e5.. are still duplicates within their window, e0..e4 are new again.
        let again = store
            .ingest("t", &[event("e4"), event("e5")], 600, Some(10_000))
            .await
            .unwrap();
        assert_eq!(again, [Ingested::Accepted, Ingested::Duplicate]);
    }

    #[tokio::test]
    async fn an_accepted_event_is_logged_under_its_queue_sequence_number() {
        let (_dir, store) = temp_store();
        store.ingest("t", &[event("a")], 7, None).await.unwrap();
        let (queue_key, queued) = store.queue.first().unwrap().unwrap();
        let seq = &queue_key[2..];
        let logged = store.events.get(key(&[b"t", seq])).unwrap().unwrap();
        assert_eq!(super::super::dec::<Event>(&logged).unwrap(), event("a"));
        let queued: QueuedTrigger = super::super::dec(&queued).unwrap();
        assert!(matches!(queued.pending, Pending::Logged));
        assert_eq!(
            store.logged_event("t", &queue_key).unwrap(),
            Some(event("a"))
        );
        // The id remembers when it was ingested and where the event is.
        let seen = store.event_ids.get(key(&[b"t", b"a"])).unwrap().unwrap();
        assert_eq!(id_seen_at(&seen), Some(7));
        assert_eq!(&seen[8..], seq);
    }

    #[test]
    fn ids_stored_before_they_carried_a_time_are_remembered_for_ever() {
        assert_eq!(id_seen_at(&[0; 8]), None);
        assert_eq!(id_seen_at(&id_value(-3, &[0; 8])), Some(-3));
    }
}
