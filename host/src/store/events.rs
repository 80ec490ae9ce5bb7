//! The event log and its dedup index: ingest, and the one write that appends an event.
//!
//! `events`: `tenant␟sequence (u64 BE)` → the [`Event`] as ingested (the sequence number is the
//! one its queued trigger carries). `event_ids`: `tenant␟event id` → when the id was ingested
//! (time key) followed by its sequence number; values written before ids carried a time are the
//! bare 8-byte sequence number.
//!
//! The dedup window's expiry walks each tenant's log in order from a cursor (`meta`:
//! `expired␟tenant` → the last sequence number examined): the log is in ingest order, so the
//! ids to forget are found without an index of their own (format 1 kept one, `event_id_times`,
//! a write and a key per event; the format 1 → 2 migration drops it).
//!
//! Every event enters through `append`: ingest uses it, and so does task resolution (the
//! `task_resolved` event its caller composes), so both deduplicate by id within the same window.
//!
//! History kept for replay (issue 13): each log entry is a [`LoggedEvent`] — the event's fields
//! plus `at`, the journey time it was ingested, which is when a replay processes it (entries
//! written before carry no `at`; the event's own timestamp stands in). The log is kept for
//! each tenant's history retention (`Limits::history_retention_ms`), separate from the dedup
//! window, and swept oldest first in bounded batches by [`Store::expire_history`], which never
//! passes the dedup window's cursor (the id index must still find an event to forget its id)
//! nor removes an event still queued for its customer's journeys.

use super::keys::{key, prefix, time_from_key, time_key};
use super::kv::Transactional;
use super::kv::TransactionalTree;
use super::queue::{Pending, QueueEntry, QueuedTrigger};
use super::{dec, enc, Store, StoreError, TxResult};
use crate::hash::SEP;
use crate::model::Object;
use crate::model::{Event, Millis};
use serde::{Deserialize, Serialize};

// History kept for replay (issue 13)
/// One entry of the event log as stored: the [`Event`]'s fields (so that readers of a plain
/// `Event` decode it unchanged) plus `at`, when it was ingested (journey time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    pub id: String,
    pub customer: String,
    pub name: String,
    #[serde(default)]
    pub properties: Object,
    pub timestamp: Millis,
    /// When the event was ingested; `None` in entries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Millis>,
}

/// What a replay chooses a logged event by, read without decoding the rest of it: whose and
/// when it is, its name, and of its properties only those an identity merge reads
/// ([`crate::engine::identity::merge_source`]).
#[derive(Debug, Deserialize)]
pub struct LoggedHead<'a> {
    pub customer: &'a str,
    pub name: &'a str,
    pub timestamp: Millis,
    #[serde(default)]
    pub at: Option<Millis>,
    #[serde(default)]
    properties: MergeProperties,
}

/// The properties of an event that name an id it merges into its customer.
#[derive(Debug, Default, Deserialize)]
struct MergeProperties {
    anonymous_id: Option<serde_json::Value>,
    previous_id: Option<serde_json::Value>,
    #[serde(rename = "$segment")]
    segment: Option<serde_json::Value>,
}

impl LoggedHead<'_> {
    /// When a replay processes this event ([`LoggedEvent::replay_at`]).
    pub fn replay_at(&self) -> Millis {
        self.at.unwrap_or(self.timestamp)
    }

    /// The event with only the properties an identity merge reads (and no id): what
    /// `merge_source` makes of it is what it makes of the whole event.
    pub fn merge_view(&self) -> Event {
        let p = &self.properties;
        let properties = [
            ("anonymous_id", &p.anonymous_id),
            ("previous_id", &p.previous_id),
            ("$segment", &p.segment),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
        .collect();
        Event {
            id: String::new(),
            customer: self.customer.to_string(),
            name: self.name.to_string(),
            properties,
            timestamp: self.timestamp,
        }
    }
}

/// What [`Store::history_page`] read: the last sequence number read (`None` past the end), and
/// what its chooser made of the events it chose, with their sequence numbers.
pub type HistoryPage<T> = (Option<u64>, Vec<(u64, T)>);

/// One logged event as [`Store::history_page`] reads it: its head, and the rest on demand.
pub struct Logged<'a> {
    pub head: LoggedHead<'a>,
    bytes: &'a [u8],
}

impl Logged<'_> {
    /// The whole event.
    pub fn whole(&self) -> Result<LoggedEvent, StoreError> {
        dec(self.bytes)
    }
}

/// Logged events kept undecoded, in the order they were [`KeptHistory::keep`]t, their bytes
/// copied end to end into one buffer: a backtest reads the history once and hands each part
/// of its replay the events it takes, decoded by the part.
#[derive(Debug, Default)]
pub struct KeptHistory {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl KeptHistory {
    pub fn keep(&mut self, logged: &Logged<'_>) {
        self.bytes.extend_from_slice(logged.bytes);
        self.ends.push(self.bytes.len());
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// How much memory it takes, about.
    pub fn size(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * std::mem::size_of::<usize>()
    }

    /// The `i`th event kept, decoded.
    ///
    /// # Panics
    /// If it holds no more than `i` events.
    pub fn get(&self, i: usize) -> Result<LoggedEvent, StoreError> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        dec(&self.bytes[start..self.ends[i]])
    }
}

impl LoggedEvent {
    fn new(event: &Event, at: Millis) -> LoggedEvent {
        LoggedEvent {
            id: event.id.clone(),
            customer: event.customer.clone(),
            name: event.name.clone(),
            properties: event.properties.clone(),
            timestamp: event.timestamp,
            at: Some(at),
        }
    }

    /// When a replay processes this event: when it was ingested, else its own timestamp.
    pub fn replay_at(&self) -> Millis {
        self.at.unwrap_or(self.timestamp)
    }

    /// The event as journeys see it.
    pub fn into_event(self) -> Event {
        Event {
            id: self.id,
            customer: self.customer,
            name: self.name,
            properties: self.properties,
            timestamp: self.timestamp,
        }
    }
}

/// How long an answer to `group` calls waits for their accounts' partitions to be told
/// (issue 16, [`Store::forwarded`]).
const FORWARD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Result of ingesting one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// New: logged and queued for its customer's journeys.
    Accepted,
    /// Its id was seen within the dedup window: dropped.
    Duplicate,
}

/// What [`Store::ingest_with`] ingests: `events` of `tenant` received at `now` (dedup
/// `window` as for [`Store::ingest`]), and, beside event `i` if it is accepted, in the same
/// transaction (issue 12):
///
/// - `merges[i]`: an id the event merges into its customer: a [`Pending::MergeOut`] is queued
///   on that id's shard, behind its earlier triggers (`store/identity.rs`);
/// - `accounts[i]`: the account change of a `group` event (`store/accounts.rs`).
///
/// Missing entries are none.
pub struct Extras<'a> {
    pub tenant: &'a str,
    pub events: &'a [Event],
    pub merges: &'a [Option<String>],
    pub accounts: &'a [Option<super::accounts::AccountChange>],
    pub now: Millis,
    pub window: Option<Millis>,
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

/// Whether an `event_ids` value still names a seen id at `now`, with the dedup `window`.
fn remembered(seen: &[u8], now: Millis, window: Option<Millis>) -> bool {
    match (id_seen_at(seen), window) {
        (Some(at), Some(window)) => at > now.saturating_sub(window),
        // Remembered for ever, or written before ids carried a time.
        _ => true,
    }
}

/// The trees an event is appended to, inside one transaction.
pub(super) struct EventTrees<'a> {
    pub log: &'a TransactionalTree,
    pub ids: &'a TransactionalTree,
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
        if remembered(&seen, now, window) {
            return Ok(Ingested::Duplicate);
        }
    }
    // The queue key's sequence number doubles as the event's place in the log.
    let seq = entry.seq();
    trees.ids.put(id_key.as_slice(), id_value(now, seq))?;
    let (log_key, logged) = (
        key(&[tenant.as_bytes(), seq]),
        enc(&LoggedEvent::new(event, now)),
    );
    // An entry kept decoded (a scratch store's) has its event kept decoded too, for the
    // worker to take (`Store::logged_event`).
    match &entry.memo {
        Some(_) => trees.log.put_memo(log_key, logged, super::memo(event))?,
        None => trees.log.put(log_key, logged)?,
    }
    entry.put(trees.queue)?;
    Ok(Ingested::Accepted)
}

impl Store {
    /// Whether ingest would take `tenant`'s event `id` at `now` as a duplicate (seen within the
    /// dedup `window`, as [`Store::ingest`] reads it). Cluster mode (issue 16) asks before
    /// passing an event on to another partition (`api::events`).
    pub fn event_seen(
        &self,
        tenant: &str,
        id: &str,
        now: Millis,
        window: Option<Millis>,
    ) -> Result<bool, StoreError> {
        let seen = self
            .event_ids
            .get(key(&[tenant.as_bytes(), id.as_bytes()]))?;
        Ok(seen.is_some_and(|seen| remembered(&seen, now, window)))
    }

    /// Stages `event` for the queue of its customer's shard (here, always: the entry stands
    /// for the event in this store's log).
    pub(super) fn stage_event(
        &self,
        tenant: &str,
        event: &Event,
    ) -> Result<QueueEntry, StoreError> {
        self.local_entry(&QueuedTrigger {
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
        self.ingest_with(Extras {
            tenant,
            events,
            merges: &[],
            accounts: &[],
            now,
            window,
        })
        .await
    }

    /// [`Store::ingest`] with what accepted events carry beside them (issue 12, see [`Extras`]).
    pub async fn ingest_with(&self, x: Extras<'_>) -> Result<Vec<Ingested>, StoreError> {
        let Extras {
            tenant,
            events,
            merges,
            accounts,
            now,
            window,
        } = x;
        let staged = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let entry = self.stage_event(tenant, event)?;
                // Staged after the event: its sequence number is the larger.
                let merge = match merges.get(i) {
                    Some(Some(from)) => Some(self.queue_entry(&QueuedTrigger {
                        tenant: tenant.to_string(),
                        customer: from.clone(),
                        pending: Pending::MergeOut {
                            into: event.customer.clone(),
                        },
                    })?),
                    _ => None,
                };
                let account = accounts.get(i).and_then(Option::as_ref);
                let spread = match account {
                    Some(change) if self.place().is_some() => {
                        Some(self.account_forwards(tenant, change, now)?)
                    }
                    _ => None,
                };
                Ok((event, entry, merge, account.map(|a| (a, spread))))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let trees = (&self.events, &self.event_ids, &self.queue, &self.accounts);
        let results = trees.transaction(|(log, ids, queue, accounts_t)| {
            let trees = EventTrees { log, ids, queue };
            staged
                .iter()
                .map(|(event, entry, merge, account)| {
                    let result = append(&trees, tenant, event, entry, now, window)?;
                    if result == Ingested::Accepted {
                        if let Some(merge) = merge {
                            queue.put(merge.key.as_slice(), merge.value.as_slice())?;
                        }
                        if let Some((change, spread)) = account {
                            let whole = spread.is_none();
                            let left =
                                super::accounts::apply(accounts_t, tenant, change, now, whole)?;
                            // Over several partitions the account's own partition hears of it.
                            if let Some((grouped, slot)) = spread {
                                queue.put(grouped.key.as_slice(), grouped.value.as_slice())?;
                                if let Some(old) = left {
                                    let left = enc(&QueuedTrigger {
                                        tenant: tenant.to_string(),
                                        customer: crate::engine::accounts::subject(&old),
                                        pending: Pending::Left {
                                            member: change.customer.clone(),
                                        },
                                    });
                                    queue.put(slot.as_slice(), left)?;
                                }
                            }
                        }
                    }
                    Ok(result)
                })
                .collect::<TxResult<Vec<_>>>()
        })?;
        self.flush().await?;
        // Identity merges across partitions (issue 16): a merge's first step is a forward.
        self.note_forwards(staged.iter().filter_map(|(_, _, merge, _)| merge.as_ref()));
        let spread = staged
            .iter()
            .any(|(_, _, _, a)| a.as_ref().is_some_and(|(_, spread)| spread.is_some()));
        if spread && !self.forwarded(FORWARD_PATIENCE).await {
            // Accepted and durable all the same: the forwarder sends them when it can.
            tracing::warn!(
                tenant,
                "a group call's account was not told in time; it will be"
            );
        }
        Ok(results)
    }

    /// Cluster mode (issue 16): what a `group` call taken in here queues for its account's
    /// partition — the call itself, and a slot (a forward's key) for the member's leaving of
    /// the account they were in, known only inside the transaction.
    fn account_forwards(
        &self,
        tenant: &str,
        change: &super::accounts::AccountChange,
        now: Millis,
    ) -> Result<(QueueEntry, Vec<u8>), StoreError> {
        let grouped = self.queue_entry(&QueuedTrigger {
            tenant: tenant.to_string(),
            customer: crate::engine::accounts::subject(&change.account),
            pending: Pending::Grouped {
                member: change.customer.clone(),
                traits: change.traits.clone(),
                at: now,
            },
        })?;
        Ok((grouped, self.forward_slot()?))
    }

    /// Forgets the ids of events ingested before `cutoff` (journey time), oldest first per
    /// tenant, examining at most `limit` logged events, so a retry after the dedup window is a
    /// new event and the id index stays bounded. The events themselves stay in the log.
    /// Returns how many ids were forgotten.
    pub fn expire_event_ids(&self, cutoff: Millis, limit: usize) -> Result<usize, StoreError> {
        let mut forgotten = 0;
        let mut budget = limit;
        // Every tenant with a log, found by skipping from one tenant's prefix to the next.
        let mut from = Vec::new();
        while budget > 0 {
            let Some(first) = self.events.range(from.as_slice()..).keys().next() else {
                break;
            };
            let first = first?;
            let tenant = first.split(|b| *b == SEP).next().unwrap_or_default();
            let (n, examined) = self.expire_tenant_ids(tenant, cutoff, budget)?;
            forgotten += n;
            budget -= examined;
            from = [tenant, &[SEP + 1]].concat();
        }
        Ok(forgotten)
    }

    /// [`Store::expire_event_ids`] for one tenant: walks its log from the cursor until an event
    /// whose id is still live. Returns (ids forgotten, events examined).
    fn expire_tenant_ids(
        &self,
        tenant: &[u8],
        cutoff: Millis,
        budget: usize,
    ) -> Result<(usize, usize), StoreError> {
        let cursor_key = key(&[b"expired", tenant]);
        let log_prefix = prefix(&[tenant]);
        let start = match self.meta.get(&cursor_key)? {
            // Just after the last examined entry.
            Some(last) => [key(&[tenant, &last]), vec![0]].concat(),
            None => log_prefix.clone(),
        };
        let mut forget: Vec<(Vec<u8>, super::kv::IVec)> = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        let mut examined = 0;
        for kv in self.events.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&log_prefix) || examined == budget {
                break;
            }
            let seq = &k[log_prefix.len()..];
            let event: Event = dec(&v)?;
            let id_key = key(&[tenant, event.id.as_bytes()]);
            if let Some(seen) = self.event_ids.get(&id_key)? {
                // The id points at this entry: it is forgotten once it has expired, and the walk
                // stops at the first that has not. Otherwise the id was ingested again later
                // (its entry comes later in the log), forgotten already, or is one remembered
                // for ever (written before ids carried a time): nothing to do here.
                if seen.len() == 16 && &seen[8..] == seq {
                    if id_seen_at(&seen).is_some_and(|at| at >= cutoff) {
                        break;
                    }
                    forget.push((id_key, seen));
                }
            }
            examined += 1;
            last = Some(seq.to_vec());
        }
        let Some(last) = last else {
            return Ok((0, 0));
        };
        let forgotten = (&self.event_ids, &self.meta).transaction(|(ids, meta)| {
            let mut forgotten = 0;
            for (id_key, seen) in &forget {
                // Unless it was ingested again since it was read.
                if ids.get(id_key)?.as_ref() == Some(seen) {
                    ids.delete(id_key.as_slice())?;
                    forgotten += 1;
                }
            }
            meta.put(cursor_key.as_slice(), last.as_slice())?;
            Ok(forgotten)
        })?;
        Ok((forgotten, examined))
    }
}

// History kept for replay (issue 13)
impl Store {
    /// Removes logged events older than their tenant's history retention, oldest first,
    /// examining at most `limit` entries. `cutoff(tenant)` is the journey time before which
    /// that tenant's events go (`None`: kept for ever). When `ids_expire` (the dedup window is
    /// finite), the sweep stops at the dedup expiry's cursor, so every id is forgotten before its
    /// event is removed; it always stops at an event still queued. Returns how many went.
    pub fn expire_history(
        &self,
        cutoff: &dyn Fn(&str) -> Option<Millis>,
        ids_expire: bool,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut budget = limit;
        let mut from = Vec::new();
        while budget > 0 {
            let Some(first) = self.events.range(from.as_slice()..).keys().next() else {
                break;
            };
            let first = first?;
            let tenant = first.split(|b| *b == SEP).next().unwrap_or_default();
            if let Some(cutoff) = std::str::from_utf8(tenant).ok().and_then(cutoff) {
                let (n, examined) =
                    self.expire_tenant_history(tenant, cutoff, ids_expire, budget)?;
                removed += n;
                budget = budget.saturating_sub(examined.max(1));
            }
            from = [tenant, &[SEP + 1]].concat();
        }
        Ok(removed)
    }

    /// [`Store::expire_history`] for one tenant. Returns (removed, examined).
    fn expire_tenant_history(
        &self,
        tenant: &[u8],
        cutoff: Millis,
        ids_expire: bool,
        budget: usize,
    ) -> Result<(usize, usize), StoreError> {
        let log_prefix = prefix(&[tenant]);
        let ids_cursor = if ids_expire {
            match self.meta.get(key(&[b"expired", tenant]))? {
                Some(last) => Some(last.to_vec()),
                // The dedup expiry has examined nothing of this tenant yet.
                None => return Ok((0, 0)),
            }
        } else {
            None
        };
        let mut batch = super::kv::Batch::default();
        let (mut removed, mut examined) = (0, 0);
        for kv in self.events.scan_prefix(&log_prefix) {
            if examined == budget {
                break;
            }
            let (k, v) = kv?;
            examined += 1;
            let seq = &k[log_prefix.len()..];
            if ids_cursor.as_deref().is_some_and(|last| seq > last) {
                break;
            }
            let logged: LoggedEvent = dec(&v)?;
            if logged.replay_at() >= cutoff {
                break;
            }
            let tenant_str = String::from_utf8_lossy(tenant);
            let shard = super::keys::shard_of(&tenant_str, &logged.customer, self.shards);
            let queue_key = [&shard.to_be_bytes()[..], seq].concat();
            if self.queue.contains_key(queue_key)? {
                break;
            }
            batch.remove(k);
            removed += 1;
        }
        self.events.apply_batch(batch)?;
        Ok((removed, examined))
    }

    /// Reads up to `limit` of a tenant's logged events in log order (ingest order) after
    /// sequence number `after` (from the first when `None`): what a replay reads, a page at a
    /// time. Each is first read as far as its [`LoggedHead`]; `choose` says from that what to
    /// make of it (decoding the rest with [`Logged::whole`] only if it wants), and what it
    /// makes is returned with the event's sequence number. Also returns the last sequence
    /// number read (`None` past the end), where the next page starts.
    pub fn history_page<T>(
        &self,
        tenant: &str,
        after: Option<u64>,
        limit: usize,
        mut choose: impl FnMut(&Logged<'_>) -> Result<Option<T>, StoreError>,
    ) -> Result<HistoryPage<T>, StoreError> {
        let log_prefix = prefix(&[tenant.as_bytes()]);
        let start = match after {
            Some(seq) => [key(&[tenant.as_bytes(), &seq.to_be_bytes()]), vec![0]].concat(),
            None => log_prefix.clone(),
        };
        let (mut read, mut last) = (0, None);
        let mut out = Vec::with_capacity(limit.min(4096));
        for kv in self.events.range(start..) {
            if read == limit {
                break;
            }
            let (k, v) = kv?;
            let Some(seq) = k.strip_prefix(log_prefix.as_slice()) else {
                break;
            };
            let seq = <[u8; 8]>::try_from(seq)
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            (read, last) = (read + 1, Some(seq));
            let logged = Logged {
                head: dec(&v)?,
                bytes: &v,
            };
            if let Some(made) = choose(&logged)? {
                out.push((seq, made));
            }
        }
        Ok((last, out))
    }

    /// A tenant's logged events in log order (ingest order) with their sequence numbers, read
    /// lazily.
    pub fn history(
        &self,
        tenant: &str,
    ) -> impl Iterator<Item = Result<(u64, LoggedEvent), StoreError>> + '_ {
        let log_prefix = prefix(&[tenant.as_bytes()]);
        let skip = log_prefix.len();
        self.events.scan_prefix(log_prefix).map(move |kv| {
            let (k, v) = kv?;
            let seq = k
                .get(skip..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Ok((seq, dec(&v)?))
        })
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
    async fn each_tenant_forgets_its_own_expired_ids_from_its_own_cursor() {
        let (_dir, store) = temp_store();
        let window = Some(1_000);
        // Tenant "t" and tenant "t2" (whose name extends the first's) interleaved in time.
        store.ingest("t", &[event("a")], 0, window).await.unwrap();
        store.ingest("t2", &[event("a")], 10, window).await.unwrap();
        store.ingest("t", &[event("b")], 500, window).await.unwrap();
        store
            .ingest("t2", &[event("b")], 600, window)
            .await
            .unwrap();
        assert_eq!(store.expire_event_ids(100, 100).unwrap(), 2);
        let left = |tenant: &str, id: &str| {
            store
                .event_ids
                .get(key(&[tenant.as_bytes(), id.as_bytes()]))
                .unwrap()
                .is_some()
        };
        assert!(!left("t", "a") && !left("t2", "a"));
        assert!(left("t", "b") && left("t2", "b"));
        // The cursors moved past what was examined: nothing is forgotten twice, and the rest
        // follows once it expires.
        assert_eq!(store.expire_event_ids(100, 100).unwrap(), 0);
        assert_eq!(store.expire_event_ids(601, 100).unwrap(), 2);
        assert!(store.event_ids.is_empty());
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

    // History kept for replay (issue 13)
    #[tokio::test]
    async fn logged_events_carry_their_ingest_time_and_read_as_plain_events() {
        let (_dir, store) = temp_store();
        store.ingest("t", &[event("a")], 42, None).await.unwrap();
        let history: Vec<_> = store.history("t").map(Result::unwrap).collect();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].1.at, Some(42));
        assert_eq!(history[0].1.clone().into_event(), event("a"));
        let (_, raw) = store.events.first().unwrap().unwrap();
        assert_eq!(super::super::dec::<Event>(&raw).unwrap(), event("a"));
        // An entry written before `at` existed reads with the event's timestamp instead.
        let old: LoggedEvent = super::super::dec(&super::super::enc(&event("b"))).unwrap();
        assert_eq!((old.at, old.replay_at()), (None, 0));
    }

    #[tokio::test]
    async fn a_history_page_reads_heads_and_returns_what_its_chooser_makes_of_them() {
        use serde_json::json;
        let (_dir, store) = temp_store();
        let with = |id: &str, customer: &str, name: &str, properties: serde_json::Value| Event {
            customer: customer.into(),
            name: name.into(),
            properties: properties.as_object().cloned().unwrap_or_default(),
            ..event(id)
        };
        let events = [
            with(
                "a",
                "ada",
                "identify",
                json!({"anonymous_id": "anon-1", "plan": "pro"}),
            ),
            with("b", "bob", "alias", json!({"previous_id": 7, "x": [1, 2]})),
            with(
                "c",
                "ada",
                "seen",
                json!({"$segment": {"anonymousId": "s-1"}}),
            ),
            with("d", "cy", "seen", json!({})),
        ];
        store.ingest("t", &events, 42, None).await.unwrap();
        store
            .ingest("other", &[event("z")], 43, None)
            .await
            .unwrap();
        let whole: Vec<LoggedEvent> = store.history("t").map(|e| e.unwrap().1).collect();
        // Pages of three: the head of every event, and the whole of only the ones chosen (ada's).
        let mut heads = Vec::new();
        let read = |after, heads: &mut Vec<_>| {
            store
                .history_page("t", after, 3, |logged| {
                    let h = &logged.head;
                    heads.push((h.customer.to_string(), h.name.to_string(), h.replay_at()));
                    // What a merge makes of the head is what it makes of the whole event.
                    let all = logged.whole()?.into_event();
                    assert_eq!(
                        crate::engine::identity::merge_source(&h.merge_view()),
                        crate::engine::identity::merge_source(&all)
                    );
                    (h.customer == "ada").then(|| logged.whole()).transpose()
                })
                .unwrap()
        };
        let (last, first) = read(None, &mut heads);
        assert_eq!(
            first.iter().map(|(_, e)| e).collect::<Vec<_>>(),
            [&whole[0], &whole[2]]
        );
        let (end, second) = read(last, &mut heads);
        assert!(second.is_empty());
        assert_eq!(read(end, &mut heads), (None, vec![]));
        let names: Vec<_> = heads
            .iter()
            .map(|(c, n, at)| (c.as_str(), n.as_str(), *at))
            .collect();
        assert_eq!(
            names,
            [
                ("ada", "identify", 42),
                ("bob", "alias", 42),
                ("ada", "seen", 42),
                ("cy", "seen", 42)
            ]
        );
    }

    #[tokio::test]
    async fn events_kept_from_a_history_page_decode_as_the_page_reads_them() {
        let (_dir, store) = temp_store();
        let events: Vec<Event> = (0..5)
            .map(|i| Event {
                properties: serde_json::json!({"n": i, "pad": "x".repeat(i * 10)})
                    .as_object()
                    .cloned()
                    .unwrap(),
                ..event(&format!("e{i}"))
            })
            .collect();
        store.ingest("t", &events, 42, None).await.unwrap();
        let mut kept = KeptHistory::default();
        let (_, odd) = store
            .history_page("t", None, 10, |logged| {
                let whole = logged.whole()?;
                Ok((whole.properties["n"].as_u64() == Some(1)
                    || whole.properties["n"].as_u64() == Some(3))
                .then(|| {
                    kept.keep(logged);
                    whole
                }))
            })
            .unwrap();
        assert_eq!((kept.len(), odd.len()), (2, 2));
        assert!(kept.size() >= 2 * 8);
        for (i, (_, whole)) in odd.iter().enumerate() {
            assert_eq!(&kept.get(i).unwrap(), whole);
        }
        assert!(!kept.is_empty() && KeptHistory::default().is_empty());
    }

    #[tokio::test]
    async fn history_is_swept_past_its_retention_in_bounded_batches_behind_the_dedup_cursor() {
        let (_dir, store) = temp_store();
        for i in 0..10 {
            let id = format!("e{i}");
            store
                .ingest("t", &[event(&id)], i * 100, Some(1_000))
                .await
                .unwrap();
            store
                .ingest("keep", &[event(&id)], i * 100, Some(1_000))
                .await
                .unwrap();
        }
        store.queue.clear().unwrap();
        let cutoff = |tenant: &str| (tenant == "t").then_some(450);
        // The dedup expiry has not looked at the log yet: nothing goes.
        assert_eq!(store.expire_history(&cutoff, true, 100).unwrap(), 0);
        assert_eq!(store.expire_event_ids(250, 100).unwrap(), 6);
        // Only what the id expiry examined (e0..e2 of each tenant), and only "t"'s.
        assert_eq!(store.expire_history(&cutoff, true, 100).unwrap(), 3);
        assert_eq!(store.expire_event_ids(10_000, 100).unwrap(), 14);
        assert_eq!(store.expire_history(&cutoff, true, 1).unwrap(), 1);
        assert_eq!(store.expire_history(&cutoff, true, 100).unwrap(), 1);
        assert_eq!(store.expire_history(&cutoff, true, 100).unwrap(), 0);
        let left: Vec<_> = store
            .history("t")
            .map(|e| e.unwrap().1.id)
            .collect::<Vec<_>>();
        assert_eq!(left, ["e5", "e6", "e7", "e8", "e9"]);
        assert_eq!(store.history("keep").count(), 10);
    }

    #[tokio::test]
    async fn a_queued_event_is_kept_whatever_its_age() {
        let (_dir, store) = temp_store();
        store.ingest("t", &[event("a")], 0, None).await.unwrap();
        let cutoff = |_: &str| Some(1_000);
        assert_eq!(store.expire_history(&cutoff, false, 100).unwrap(), 0);
        store.queue.clear().unwrap();
        assert_eq!(store.expire_history(&cutoff, false, 100).unwrap(), 1);
        assert_eq!(store.history("t").count(), 0);
    }
}
