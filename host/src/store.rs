//! Durable state in sled, behind a narrow interface: the rest of the host never names a sled type.
//!
//! One tree per kind of record. Keys are byte strings whose parts are joined by `0x1f` (ids may
//! not contain control characters, which ingest refuses), with big-endian numbers where order
//! matters: the inbox by shard and arrival, timers and the outbox's retry index by time.
//! Values are JSON: readable with any sled tool, and cheap enough at this stage.
//!
//! Every state change of one trigger commits in one transaction with the removal of the trigger
//! from the inbox ([`Store::commit_trigger`]), so a crash either applied a trigger wholly or not
//! at all, and an unprocessed trigger is simply processed again after restart.

use crate::model::{
    ChannelStats, Customer, DeliveryReport, Enrollment, Event, Millis, Object, Spec,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;
use std::path::Path;

use crate::hash::SEP;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("cannot make writes durable: {0}")]
    Flush(String),
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

impl From<UnabortableTransactionError> for StoreError {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Storage(e) => StoreError::Sled(e),
            UnabortableTransactionError::Conflict => {
                StoreError::Sled(sled::Error::ReportableBug("transaction conflict".into()))
            }
        }
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub created_at: Millis,
    /// The tenant's departures from the operator's default sandbox limits.
    #[serde(default)]
    pub limits: crate::model::LimitOverrides,
    /// Frequency caps and quiet hours.
    #[serde(default)]
    pub policy: crate::model::SendingPolicy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JourneyVersion {
    pub name: String,
    pub version: u32,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    pub spec: Spec,
    pub uploaded_at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub name: String,
    pub version: u32,
    pub digest: String,
    pub settings: Object,
    pub secrets: Object,
    pub allowed_hosts: Vec<String>,
    pub updated_at: Millis,
}

/// A trigger waiting to be processed for one customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    Event {
        event: Event,
    },
    Timer {
        journey: String,
        run: u32,
        name: String,
        due: Millis,
    },
    Delivery {
        journey: String,
        run: u32,
        report: DeliveryReport,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedTrigger {
    pub tenant: String,
    pub customer: String,
    pub pending: Pending,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Pending,
    Delivered,
    /// Failed permanently or after every retry: a dead letter.
    Dead,
    /// Decided for a customer who may not receive it (unsubscribed or suppressed): recorded,
    /// never delivered.
    Suppressed,
    /// Deferred by the sending policy (a frequency cap, quiet hours) until `release_at`.
    Held,
}

/// A send that was decided and persisted; `deliver` drains it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// The idempotency key.
    pub id: String,
    pub tenant: String,
    pub customer: String,
    pub journey: String,
    pub version: u32,
    pub enrollment: String,
    pub run: u32,
    pub channel: String,
    pub template: String,
    pub payload: serde_json::Value,
    pub status: MessageStatus,
    pub attempts: u32,
    /// Wall-clock time of the next attempt (retries are infrastructure time, not journey time).
    pub next_attempt_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Millis>,
    /// Journey time at which a send the sending policy deferred may go out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_at: Option<Millis>,
}

/// A human handoff in a tenant's queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub tenant: String,
    pub customer: String,
    pub journey: String,
    pub enrollment: String,
    pub queue: String,
    pub reason: String,
    pub priority: u8,
    pub status: crate::model::TaskStatus,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// Why a task could not change as asked.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("no task {0:?}")]
    NotFound(String),
    #[error("task {id:?} is {status}")]
    Conflict {
        id: String,
        status: crate::model::TaskStatus,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything one trigger changes, committed atomically with its removal from the inbox.
#[derive(Debug, Default)]
pub struct TriggerCommit {
    pub tenant: String,
    pub queue_key: Vec<u8>,
    pub customer: Option<Customer>,
    pub enrollments: Vec<Enrollment>,
    pub timers_set: Vec<TimerRecord>,
    pub timers_cancelled: Vec<TimerRecord>,
    pub outbox: Vec<Message>,
    pub tasks: Vec<Task>,
    /// (journey, channel, metric) increments for the `stats` import.
    pub counters: Vec<(String, String, crate::model::Counter)>,
}

/// Result of ingesting one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    Accepted,
    Duplicate,
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    tenants: sled::Tree,
    api_keys: sled::Tree,
    components: sled::Tree,
    journeys: sled::Tree,
    journey_heads: sled::Tree,
    channels: sled::Tree,
    events: sled::Tree,
    /// `tenant␟event id` → when it was ingested (time key) and its place in the log.
    event_ids: sled::Tree,
    /// `ingested at (time key)␟tenant␟event id` → (): the dedup window's expiry order.
    event_id_times: sled::Tree,
    inbox: sled::Tree,
    customers: sled::Tree,
    enrollments: sled::Tree,
    timers: sled::Tree,
    outbox: sled::Tree,
    outbox_due: sled::Tree,
    tasks: sled::Tree,
    counters: sled::Tree,
    /// `tenant␟message id` → outbox key, for every dead letter.
    dead_letters: sled::Tree,
    /// Held messages by release time (journey time): `time␟outbox key` → ().
    held: sled::Tree,
    shards: u16,
    /// Group commit: whoever needs durability queues here and shares the next flush.
    flusher: std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
    k
}

fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(SEP);
    k
}

/// Order-preserving encoding of a signed time: flip the sign bit, big-endian.
fn time_key(t: Millis) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
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

fn time_from_key(b: &[u8]) -> Millis {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as Millis
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain data types cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn enrollment_key(tenant: &str, customer: &str, journey: &str, run: u32) -> Vec<u8> {
    key(&[
        tenant.as_bytes(),
        customer.as_bytes(),
        journey.as_bytes(),
        &run.to_be_bytes(),
    ])
}

fn timer_key(t: &TimerRecord) -> Vec<u8> {
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

fn outbox_key(tenant: &str, customer: &str, id: &str) -> Vec<u8> {
    key(&[tenant.as_bytes(), customer.as_bytes(), id.as_bytes()])
}

fn due_key(at: Millis, outbox_key: &[u8]) -> Vec<u8> {
    let mut k = time_key(at).to_vec();
    k.extend_from_slice(outbox_key);
    k
}

fn counter_key(tenant: &str, journey: &str, channel: &str, metric: &str) -> Vec<u8> {
    key(&[
        tenant.as_bytes(),
        journey.as_bytes(),
        channel.as_bytes(),
        metric.as_bytes(),
    ])
}

fn bump(tree: &TransactionalTree, k: &[u8]) -> TxResult<()> {
    let n = tree
        .get(k)?
        .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
        .unwrap_or(0);
    tree.insert(k, &(n + 1).to_be_bytes())?;
    Ok(())
}

fn inbox_push(
    db: &sled::Db,
    shards: u16,
    item: &QueuedTrigger,
) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let shard = shard_of(&item.tenant, &item.customer, shards);
    let seq = db.generate_id()?;
    let mut k = shard.to_be_bytes().to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    Ok((k, enc(item)))
}

/// The shard that owns a customer: all of a customer's triggers go through one shard, in order.
pub fn shard_of(tenant: &str, customer: &str, shards: u16) -> u16 {
    let h = crate::hash::fnv1a_joined(&[tenant, customer]);
    (h % u64::from(shards.max(1))) as u16
}

/// The group-commit thread: takes every waiting request, flushes once, answers them all.
/// It ends when the last handle of the store is dropped.
fn spawn_flusher(
    db: sled::Db,
) -> Result<std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<Result<(), String>>>();
    std::thread::Builder::new()
        .name("waymark-flush".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut waiting = vec![first];
                waiting.extend(rx.try_iter());
                // Everything these callers wrote was written before they asked, so this one
                // flush covers all of them.
                let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                for w in waiting {
                    let _ = w.send(result.clone());
                }
            }
        })
        .map_err(|e| StoreError::Flush(format!("cannot start the flusher: {e}")))?;
    Ok(tx)
}

impl Store {
    /// Opens (or creates) the database in `dir`, with `cache_bytes` of page cache.
    pub fn open(dir: &Path, shards: u16, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Durability comes from explicit flushes at acknowledgement points, not a timer.
            .flush_every_ms(None)
            .open()?;
        let t = |name: &str| db.open_tree(name);
        Ok(Store {
            meta: t("meta")?,
            tenants: t("tenants")?,
            api_keys: t("api_keys")?,
            components: t("components")?,
            journeys: t("journeys")?,
            journey_heads: t("journey_heads")?,
            channels: t("channels")?,
            events: t("events")?,
            event_ids: t("event_ids")?,
            event_id_times: t("event_id_times")?,
            inbox: t("inbox")?,
            customers: t("customers")?,
            enrollments: t("enrollments")?,
            timers: t("timers")?,
            outbox: t("outbox")?,
            outbox_due: t("outbox_due")?,
            tasks: t("tasks")?,
            counters: t("counters")?,
            dead_letters: t("dead_letters")?,
            held: t("held")?,
            shards,
            flusher: spawn_flusher(db.clone())?,
            db,
        })
    }

    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// Makes everything written so far durable. Concurrent callers share flushes (group
    /// commit): one flush runs at a time, and everyone who asked while it ran is served by the
    /// next, so a burst of requests costs a couple of fsyncs, not one each.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.flusher
            .send(done)
            .map_err(|_| StoreError::Flush("the flusher has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Flush("the flusher has stopped".into()))?
            .map_err(StoreError::Flush)
    }

    // --- clock -----------------------------------------------------------------------------

    pub fn manual_clock(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.meta.get("manual_clock")?.map(|v| time_from_key(&v)))
    }

    pub async fn save_manual_clock(&self, now: Millis) -> Result<(), StoreError> {
        self.meta.insert("manual_clock", &time_key(now))?;
        self.flush().await
    }

    // --- tenants ---------------------------------------------------------------------------

    /// Creates a tenant with the digest of its API key; refuses an existing id.
    pub async fn create_tenant(&self, tenant: &Tenant, key_digest: &str) -> Result<(), StoreError> {
        let value = enc(tenant);
        (&self.tenants, &self.api_keys).transaction(|(tenants, keys)| {
            if tenants.get(tenant.id.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(StoreError::Exists(
                    format!("tenant {:?}", tenant.id),
                )));
            }
            tenants.insert(tenant.id.as_bytes(), value.as_slice())?;
            keys.insert(key_digest.as_bytes(), tenant.id.as_bytes())?;
            Ok(())
        })?;
        self.flush().await
    }

    pub fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.tenants
            .get(id.as_bytes())?
            .map(|v| dec(&v))
            .transpose()
    }

    /// Replaces a tenant's limit overrides; `Ok(None)` when there is no such tenant.
    pub async fn set_tenant_limits(
        &self,
        id: &str,
        limits: crate::model::LimitOverrides,
    ) -> Result<Option<Tenant>, StoreError> {
        let updated = self.tenants.transaction(|tenants| {
            let Some(current) = tenants.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut tenant: Tenant = dec(&current).map_err(ConflictableTransactionError::Abort)?;
            tenant.limits = limits;
            tenants.insert(id.as_bytes(), enc(&tenant))?;
            Ok(Some(tenant))
        })?;
        self.flush().await?;
        Ok(updated)
    }

    pub fn tenant_by_key_digest(&self, digest: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .api_keys
            .get(digest.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    // --- components, journeys, channels ----------------------------------------------------

    pub fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.components.get(digest.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Stores a new journey version (and its component, by digest) and returns its number.
    pub async fn add_journey_version(
        &self,
        tenant: &str,
        name: &str,
        digest: &str,
        bytes: &[u8],
        spec: &Spec,
        now: Millis,
    ) -> Result<JourneyVersion, StoreError> {
        let head_key = key(&[tenant.as_bytes(), name.as_bytes()]);
        let version = (&self.components, &self.journeys, &self.journey_heads).transaction(
            |(components, journeys, heads)| {
                let version = heads
                    .get(&head_key)?
                    .map(|v| u32::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 4])))
                    .unwrap_or(0)
                    + 1;
                let record = JourneyVersion {
                    name: name.to_string(),
                    version,
                    digest: digest.to_string(),
                    spec: spec.clone(),
                    uploaded_at: now,
                };
                components.insert(digest.as_bytes(), bytes)?;
                journeys.insert(
                    key(&[tenant.as_bytes(), name.as_bytes(), &version.to_be_bytes()]),
                    enc(&record),
                )?;
                heads.insert(head_key.as_slice(), &version.to_be_bytes())?;
                Ok(record)
            },
        )?;
        self.flush().await?;
        Ok(version)
    }

    pub fn journey_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<JourneyVersion>, StoreError> {
        let k = key(&[tenant.as_bytes(), name.as_bytes(), &version.to_be_bytes()]);
        self.journeys.get(k)?.map(|v| dec(&v)).transpose()
    }

    /// Every version of one journey, oldest first.
    pub fn journey_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<JourneyVersion>, StoreError> {
        self.journeys
            .scan_prefix(prefix(&[tenant.as_bytes(), name.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    /// The latest version of every journey of a tenant, by name.
    pub fn latest_journeys(&self, tenant: &str) -> Result<Vec<JourneyVersion>, StoreError> {
        let mut latest = Vec::new();
        for kv in self.journey_heads.scan_prefix(prefix(&[tenant.as_bytes()])) {
            let (k, v) = kv?;
            let name = &k[tenant.len() + 1..];
            let version = u32::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 4]));
            let jk = key(&[tenant.as_bytes(), name, &version.to_be_bytes()]);
            if let Some(record) = self.journeys.get(jk)? {
                latest.push(dec(&record)?);
            }
        }
        Ok(latest)
    }

    /// Registers (or replaces) a channel; returns the stored record with its version.
    pub async fn put_channel(
        &self,
        tenant: &str,
        record: ChannelRecord,
        bytes: &[u8],
    ) -> Result<ChannelRecord, StoreError> {
        let k = key(&[tenant.as_bytes(), record.name.as_bytes()]);
        let record = (&self.components, &self.channels).transaction(|(components, channels)| {
            let previous: Option<ChannelRecord> = channels
                .get(&k)?
                .map(|v| dec(&v))
                .transpose()
                .map_err(ConflictableTransactionError::Abort)?;
            let mut record = record.clone();
            record.version = previous.map_or(1, |p| p.version + 1);
            components.insert(record.digest.as_bytes(), bytes)?;
            channels.insert(k.as_slice(), enc(&record))?;
            Ok(record)
        })?;
        self.flush().await?;
        Ok(record)
    }

    pub fn channel(&self, tenant: &str, name: &str) -> Result<Option<ChannelRecord>, StoreError> {
        let k = key(&[tenant.as_bytes(), name.as_bytes()]);
        self.channels.get(k)?.map(|v| dec(&v)).transpose()
    }

    pub fn channels(&self, tenant: &str) -> Result<Vec<ChannelRecord>, StoreError> {
        self.channels
            .scan_prefix(prefix(&[tenant.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    // --- ingest ----------------------------------------------------------------------------

    /// Appends events to the log and the inbox, dropping ids seen before (in earlier requests
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
        let mut staged = Vec::with_capacity(events.len());
        for event in events {
            let item = QueuedTrigger {
                tenant: tenant.to_string(),
                customer: event.customer.clone(),
                pending: Pending::Event {
                    event: event.clone(),
                },
            };
            let (queue_key, inbox_value) = inbox_push(&self.db, self.shards, &item)?;
            staged.push((event, queue_key, inbox_value));
        }
        let expired_before = window.map(|w| now.saturating_sub(w));
        let trees = (
            &self.events,
            &self.event_ids,
            &self.event_id_times,
            &self.inbox,
        );
        let results = trees.transaction(|(log, ids, times, inbox)| {
            let mut results = Vec::with_capacity(staged.len());
            for (event, queue_key, inbox_value) in &staged {
                let id_key = key(&[tenant.as_bytes(), event.id.as_bytes()]);
                if let Some(seen) = ids.get(&id_key)? {
                    let live = match (id_seen_at(&seen), expired_before) {
                        (Some(at), Some(cutoff)) => at > cutoff,
                        // Remembered for ever, or written before ids carried a time.
                        _ => true,
                    };
                    if live {
                        results.push(Ingested::Duplicate);
                        continue;
                    }
                }
                // The inbox key's sequence number doubles as the event's place in the log.
                let seq = &queue_key[2..];
                ids.insert(id_key.as_slice(), id_value(now, seq))?;
                times.insert(key(&[&time_key(now), &id_key]), &[])?;
                log.insert(key(&[tenant.as_bytes(), seq]), enc(*event))?;
                inbox.insert(queue_key.as_slice(), inbox_value.as_slice())?;
                results.push(Ingested::Accepted);
            }
            Ok(results)
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

    /// The oldest unprocessed triggers of one shard.
    pub fn queued(
        &self,
        shard: u16,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, QueuedTrigger)>, StoreError> {
        self.inbox
            .scan_prefix(shard.to_be_bytes())
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), dec(&v)?))
            })
            .collect()
    }

    /// Drops an unprocessable trigger from the inbox (it stays in the event log).
    pub fn discard(&self, queue_key: &[u8]) -> Result<(), StoreError> {
        self.inbox.remove(queue_key)?;
        Ok(())
    }

    // --- customers and enrollments ---------------------------------------------------------

    pub fn customer(&self, tenant: &str, id: &str) -> Result<Option<Customer>, StoreError> {
        let k = key(&[tenant.as_bytes(), id.as_bytes()]);
        self.customers.get(k)?.map(|v| dec(&v)).transpose()
    }

    /// Every enrollment of a customer, in every journey and run.
    pub fn enrollments(&self, tenant: &str, customer: &str) -> Result<Vec<Enrollment>, StoreError> {
        self.enrollments
            .scan_prefix(prefix(&[tenant.as_bytes(), customer.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    pub fn enrollment(
        &self,
        tenant: &str,
        customer: &str,
        journey: &str,
        run: u32,
    ) -> Result<Option<Enrollment>, StoreError> {
        let k = enrollment_key(tenant, customer, journey, run);
        self.enrollments.get(k)?.map(|v| dec(&v)).transpose()
    }

    /// Every message decided for a customer, oldest key first.
    /// Every enrollment of one journey of a tenant (a scan of the tenant's enrollments: for
    /// reports, not for the hot path).
    pub fn journey_enrollments(
        &self,
        tenant: &str,
        journey: &str,
    ) -> Result<Vec<Enrollment>, StoreError> {
        let mut out = Vec::new();
        for kv in self.enrollments.scan_prefix(prefix(&[tenant.as_bytes()])) {
            let enrollment: Enrollment = dec(&kv?.1)?;
            if enrollment.journey == journey {
                out.push(enrollment);
            }
        }
        Ok(out)
    }

    /// One message of a customer, by id.
    pub fn message(
        &self,
        tenant: &str,
        customer: &str,
        id: &str,
    ) -> Result<Option<Message>, StoreError> {
        self.outbox
            .get(outbox_key(tenant, customer, id))?
            .map(|v| dec(&v))
            .transpose()
    }

    pub fn messages(&self, tenant: &str, customer: &str) -> Result<Vec<Message>, StoreError> {
        let mut messages: Vec<Message> = self
            .outbox
            .scan_prefix(prefix(&[tenant.as_bytes(), customer.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect::<Result<_, _>>()?;
        messages.sort_by_key(|m| m.created_at);
        Ok(messages)
    }

    pub fn channel_stats(
        &self,
        tenant: &str,
        journey: &str,
    ) -> Result<Vec<ChannelStats>, StoreError> {
        let mut stats: Vec<ChannelStats> = Vec::new();
        for kv in self
            .counters
            .scan_prefix(prefix(&[tenant.as_bytes(), journey.as_bytes()]))
        {
            let (k, v) = kv?;
            let rest = &k[tenant.len() + journey.len() + 2..];
            let mut parts = rest.split(|b| *b == SEP);
            let channel = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let metric = parts.next().unwrap_or_default();
            let n = u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]));
            if stats.last().is_none_or(|s| s.channel != channel) {
                stats.push(ChannelStats {
                    channel,
                    sent: 0,
                    delivered: 0,
                    failed: 0,
                });
            }
            if let Some(s) = stats.last_mut() {
                match metric {
                    b"sent" => s.sent = n,
                    b"delivered" => s.delivered = n,
                    b"failed" => s.failed = n,
                    _ => {}
                }
            }
        }
        Ok(stats)
    }

    /// Commits every effect of one trigger together with its removal from the inbox. Outbox
    /// entries already present (a replay after a crash between commit and flush cannot produce
    /// one, but a retried trigger might) are left as they are: the outbox never holds a duplicate.
    pub fn commit_trigger(&self, c: &TriggerCommit) -> Result<(), StoreError> {
        let tenant = c.tenant.as_bytes();
        let customer_value = c
            .customer
            .as_ref()
            .map(|cu| (key(&[tenant, cu.id.as_bytes()]), enc(cu)));
        let enrollments: Vec<_> = c
            .enrollments
            .iter()
            .map(|e| {
                (
                    enrollment_key(&c.tenant, &e.customer, &e.journey, e.run),
                    enc(e),
                )
            })
            .collect();
        let outbox: Vec<_> = c
            .outbox
            .iter()
            .map(|o| {
                let k = outbox_key(&o.tenant, &o.customer, &o.id);
                let due = match (o.status, o.release_at) {
                    (MessageStatus::Pending, _) => Some((false, due_key(o.next_attempt_at, &k))),
                    (MessageStatus::Held, Some(at)) => Some((true, due_key(at, &k))),
                    _ => None,
                };
                (due, k, enc(o))
            })
            .collect();
        let tasks: Vec<_> = c
            .tasks
            .iter()
            .map(|t| (key(&[tenant, t.id.as_bytes()]), enc(t)))
            .collect();
        let counters: Vec<_> = c
            .counters
            .iter()
            .map(|(j, ch, m)| counter_key(&c.tenant, j, ch, m.as_str()))
            .collect();
        (
            &self.inbox,
            &self.customers,
            &self.enrollments,
            &self.timers,
            &self.outbox,
            &self.outbox_due,
            &self.tasks,
            &self.counters,
            &self.held,
        )
            .transaction(
                |(
                    inbox,
                    customers,
                    enrollments_t,
                    timers,
                    outbox_t,
                    due,
                    tasks_t,
                    counters_t,
                    held,
                )| {
                    inbox.remove(c.queue_key.as_slice())?;
                    if let Some((k, v)) = &customer_value {
                        customers.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &enrollments {
                        enrollments_t.insert(k.as_slice(), v.as_slice())?;
                    }
                    for t in &c.timers_cancelled {
                        timers.remove(timer_key(t))?;
                    }
                    for t in &c.timers_set {
                        timers.insert(timer_key(t), enc(t))?;
                    }
                    for (due_k, k, v) in &outbox {
                        if outbox_t.get(k)?.is_none() {
                            outbox_t.insert(k.as_slice(), v.as_slice())?;
                            match due_k {
                                Some((false, due_k)) => {
                                    due.insert(due_k.as_slice(), k.as_slice())?;
                                }
                                Some((true, held_k)) => {
                                    held.insert(held_k.as_slice(), k.as_slice())?;
                                }
                                None => {}
                            }
                        }
                    }
                    for (k, v) in &tasks {
                        tasks_t.insert(k.as_slice(), v.as_slice())?;
                    }
                    for k in &counters {
                        bump(counters_t, k)?;
                    }
                    Ok(())
                },
            )?;
        Ok(())
    }

    // --- timers ----------------------------------------------------------------------------

    /// When the earliest pending timer is due.
    pub fn next_timer_due(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.timers.first()?.map(|(k, _)| time_from_key(&k)))
    }

    /// Moves up to `limit` timers due at or before `now` into their customers' inbox shards, in
    /// one transaction each: a timer is either pending or queued, never both, never neither.
    pub fn fire_due_timers(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        let end = time_key(now.saturating_add(1));
        let due: Vec<(Vec<u8>, TimerRecord)> = self
            .timers
            .range(..end.to_vec())
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), dec(&v)?))
            })
            .collect::<Result<_, StoreError>>()?;
        for (timer_k, t) in &due {
            let item = QueuedTrigger {
                tenant: t.tenant.clone(),
                customer: t.customer.clone(),
                pending: Pending::Timer {
                    journey: t.journey.clone(),
                    run: t.run,
                    name: t.name.clone(),
                    due: t.due,
                },
            };
            let (ik, iv) = inbox_push(&self.db, self.shards, &item)?;
            (&self.timers, &self.inbox).transaction(|(timers, inbox)| {
                if timers.remove(timer_k.as_slice())?.is_some() {
                    inbox.insert(ik.as_slice(), iv.as_slice())?;
                }
                Ok(())
            })?;
        }
        Ok(due.len())
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    // --- outbox ----------------------------------------------------------------------------

    /// Pending messages whose next attempt is due at wall-clock `now`.
    pub fn due_messages(&self, now: Millis, limit: usize) -> Result<Vec<Message>, StoreError> {
        let end = time_key(now.saturating_add(1));
        let mut out = Vec::new();
        for kv in self.outbox_due.range(..end.to_vec()).take(limit) {
            let (_, outbox_k) = kv?;
            if let Some(v) = self.outbox.get(&outbox_k)? {
                out.push(dec(&v)?);
            }
        }
        Ok(out)
    }

    /// Releases held messages whose time (journey time) has come: they join the delivery
    /// queue at wall-clock `wall`. Returns how many were released.
    pub fn release_held(
        &self,
        now: Millis,
        wall: Millis,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let end = time_key(now.saturating_add(1));
        let due: Vec<(Vec<u8>, Vec<u8>)> = self
            .held
            .range(..end.to_vec())
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()?;
        for (held_k, outbox_k) in &due {
            (&self.held, &self.outbox, &self.outbox_due).transaction(|(held, outbox, due)| {
                if held.remove(held_k.as_slice())?.is_none() {
                    return Ok(());
                }
                let Some(v) = outbox.get(outbox_k)? else {
                    return Ok(());
                };
                let mut entry: Message = dec(&v).map_err(ConflictableTransactionError::Abort)?;
                entry.status = MessageStatus::Pending;
                entry.next_attempt_at = wall;
                outbox.insert(outbox_k.as_slice(), enc(&entry))?;
                due.insert(due_key(wall, outbox_k), outbox_k.as_slice())?;
                Ok(())
            })?;
        }
        Ok(due.len())
    }

    /// When the earliest held message may go out (journey time).
    pub fn next_held_release(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.held.first()?.map(|(k, _)| time_from_key(&k)))
    }

    /// Replaces a tenant's sending policy; `Ok(None)` when there is no such tenant.
    pub async fn set_tenant_policy(
        &self,
        id: &str,
        policy: crate::model::SendingPolicy,
    ) -> Result<Option<Tenant>, StoreError> {
        let updated = self.tenants.transaction(|tenants| {
            let Some(current) = tenants.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut tenant: Tenant = dec(&current).map_err(ConflictableTransactionError::Abort)?;
            tenant.policy = policy.clone();
            tenants.insert(id.as_bytes(), enc(&tenant))?;
            Ok(Some(tenant))
        })?;
        self.flush().await?;
        Ok(updated)
    }

    /// When the earliest pending message is due (wall clock).
    pub fn next_message_due(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.outbox_due.first()?.map(|(k, _)| time_from_key(&k)))
    }

    /// Records one delivery attempt: writes `after` in place of `before`, queues `report` and
    /// bumps `counter`, in one transaction. Does not flush.
    pub fn record_attempt(
        &self,
        before: &Message,
        after: &Message,
        report: Option<&QueuedTrigger>,
        counter: Option<(&str, &str, crate::model::Counter)>,
    ) -> Result<(), StoreError> {
        let entry = before;
        let updated = after;
        let k = outbox_key(&entry.tenant, &entry.customer, &entry.id);
        let old_due = due_key(entry.next_attempt_at, &k);
        let new_due = (updated.status == MessageStatus::Pending)
            .then(|| due_key(updated.next_attempt_at, &k));
        let report_item = match report {
            Some(item) => Some(inbox_push(&self.db, self.shards, item)?),
            None => None,
        };
        let metric = counter;
        let counter = metric.map(|(j, c, m)| counter_key(&entry.tenant, j, c, m.as_str()));
        let value = enc(updated);
        let dead = (updated.status == MessageStatus::Dead)
            .then(|| key(&[entry.tenant.as_bytes(), entry.id.as_bytes()]));
        (
            &self.outbox,
            &self.outbox_due,
            &self.inbox,
            &self.counters,
            &self.dead_letters,
        )
            .transaction(|(outbox, due, inbox, counters, dead_letters)| {
                outbox.insert(k.as_slice(), value.as_slice())?;
                if let Some(d) = &dead {
                    dead_letters.insert(d.as_slice(), k.as_slice())?;
                }
                due.remove(old_due.as_slice())?;
                if let Some(d) = &new_due {
                    due.insert(d.as_slice(), k.as_slice())?;
                }
                if let Some((ik, iv)) = &report_item {
                    inbox.insert(ik.as_slice(), iv.as_slice())?;
                }
                if let Some(ck) = &counter {
                    bump(counters, ck)?;
                }
                Ok(())
            })?;
        Ok(())
    }

    /// A tenant's dead letters, oldest message id first, at most `limit`.
    pub fn dead_letters(&self, tenant: &str, limit: usize) -> Result<Vec<Message>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .dead_letters
            .scan_prefix(prefix(&[tenant.as_bytes()]))
            .take(limit)
        {
            let (_, outbox_k) = kv?;
            if let Some(v) = self.outbox.get(&outbox_k)? {
                out.push(dec(&v)?);
            }
        }
        Ok(out)
    }

    /// Puts dead letters back in the delivery queue with a fresh attempt budget, due at `now`
    /// (wall clock). `ids` empty means every dead letter of the tenant; `channel` narrows it.
    /// Returns the entries requeued; ids that are not dead letters are skipped.
    pub async fn retry_dead_letters(
        &self,
        tenant: &str,
        ids: &[String],
        channel: Option<&str>,
        now: Millis,
    ) -> Result<Vec<Message>, StoreError> {
        let dead_keys: Vec<Vec<u8>> = if ids.is_empty() {
            self.dead_letters
                .scan_prefix(prefix(&[tenant.as_bytes()]))
                .keys()
                .map(|k| k.map(|k| k.to_vec()))
                .collect::<Result<_, _>>()?
        } else {
            ids.iter()
                .map(|id| key(&[tenant.as_bytes(), id.as_bytes()]))
                .collect()
        };
        let mut requeued = Vec::new();
        for dead_key in dead_keys {
            let entry = (&self.dead_letters, &self.outbox, &self.outbox_due).transaction(
                |(dead_letters, outbox, due)| {
                    let Some(outbox_k) = dead_letters.get(&dead_key)? else {
                        return Ok(None);
                    };
                    let Some(v) = outbox.get(&outbox_k)? else {
                        return Ok(None);
                    };
                    let mut entry: Message =
                        dec(&v).map_err(ConflictableTransactionError::Abort)?;
                    if channel.is_some_and(|c| c != entry.channel) {
                        return Ok(None);
                    }
                    entry.status = MessageStatus::Pending;
                    entry.attempts = 0;
                    entry.next_attempt_at = now;
                    dead_letters.remove(dead_key.as_slice())?;
                    outbox.insert(outbox_k.as_ref(), enc(&entry))?;
                    due.insert(due_key(now, &outbox_k), outbox_k.as_ref())?;
                    Ok(Some(entry))
                },
            )?;
            requeued.extend(entry);
        }
        self.flush().await?;
        Ok(requeued)
    }

    pub fn task(&self, tenant: &str, id: &str) -> Result<Option<Task>, StoreError> {
        self.tasks
            .get(key(&[tenant.as_bytes(), id.as_bytes()]))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// Claims an open task for `assignee`.
    pub async fn claim_task(
        &self,
        tenant: &str,
        id: &str,
        assignee: &str,
        now: Millis,
    ) -> Result<Task, TaskError> {
        let k = key(&[tenant.as_bytes(), id.as_bytes()]);
        let claimed = self
            .tasks
            .transaction(|tasks| {
                let Some(v) = tasks.get(&k)? else {
                    return Ok(Err(TaskError::NotFound(id.to_string())));
                };
                let mut task: Task = dec(&v).map_err(ConflictableTransactionError::Abort)?;
                if task.status != crate::model::TaskStatus::Open {
                    return Ok(Err(TaskError::Conflict {
                        id: id.to_string(),
                        status: task.status,
                    }));
                }
                task.status = crate::model::TaskStatus::Claimed;
                task.assignee = Some(assignee.to_string());
                task.claimed_at = Some(now);
                tasks.insert(k.as_slice(), enc(&task))?;
                Ok(Ok(task))
            })
            .map_err(StoreError::from)??;
        self.flush().await?;
        Ok(claimed)
    }

    /// Resolves an open or claimed task and, in the same transaction, queues the event that
    /// tells the customer's journeys: `task_resolved` with the task, its queue, the resolution
    /// and `properties`. The event's id is `{task id}:resolved`, so it happens once.
    pub async fn resolve_task(
        &self,
        tenant: &str,
        id: &str,
        resolution: &str,
        event: &Event,
        now: Millis,
        _window: Option<Millis>,
    ) -> Result<Task, TaskError> {
        let k = key(&[tenant.as_bytes(), id.as_bytes()]);
        let (queue_key, inbox_value) = inbox_push(
            &self.db,
            self.shards,
            &QueuedTrigger {
                tenant: tenant.to_string(),
                customer: event.customer.clone(),
                pending: Pending::Event {
                    event: event.clone(),
                },
            },
        )?;
        let trees = (
            &self.tasks,
            &self.events,
            &self.event_ids,
            &self.event_id_times,
            &self.inbox,
        );
        let resolved = trees
            .transaction(|(tasks, log, ids, times, inbox)| {
                let Some(v) = tasks.get(&k)? else {
                    return Ok(Err(TaskError::NotFound(id.to_string())));
                };
                let mut task: Task = dec(&v).map_err(ConflictableTransactionError::Abort)?;
                if task.status == crate::model::TaskStatus::Resolved {
                    return Ok(Err(TaskError::Conflict {
                        id: id.to_string(),
                        status: task.status,
                    }));
                }
                task.status = crate::model::TaskStatus::Resolved;
                task.resolved_at = Some(now);
                task.resolution = Some(resolution.to_string());
                tasks.insert(k.as_slice(), enc(&task))?;
                let id_key = key(&[tenant.as_bytes(), event.id.as_bytes()]);
                if ids.get(&id_key)?.is_none() {
                    ids.insert(id_key.as_slice(), id_value(now, &queue_key[2..]))?;
                    times.insert(key(&[&time_key(now), &id_key]), &[])?;
                    log.insert(key(&[tenant.as_bytes(), &queue_key[2..]]), enc(event))?;
                    inbox.insert(queue_key.as_slice(), inbox_value.as_slice())?;
                }
                Ok(Ok(task))
            })
            .map_err(StoreError::from)??;
        self.flush().await?;
        Ok(resolved)
    }

    pub fn tasks(&self, tenant: &str) -> Result<Vec<Task>, StoreError> {
        self.tasks
            .scan_prefix(prefix(&[tenant.as_bytes()]))
            .map(|kv| dec(&kv?.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_like_times() {
        let times = [-5_000i64, -1, 0, 1, 86_400_000, i64::MAX - 1];
        let keys: Vec<_> = times.iter().map(|t| time_key(*t)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for t in times {
            assert_eq!(time_from_key(&time_key(t)), t);
        }
    }

    #[test]
    fn a_customer_always_maps_to_the_same_shard() {
        assert_eq!(shard_of("t", "c", 8), shard_of("t", "c", 8));
        assert!(shard_of("t", "c", 8) < 8);
        assert_eq!(shard_of("t", "c", 0), 0);
    }

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
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 2, 8 << 20).unwrap();
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
        // Both accepted copies are in the log and the inbox.
        assert_eq!(store.events.len(), 3);
        assert_eq!(store.inbox.len(), 3);
    }

    #[tokio::test]
    async fn without_a_window_ids_are_remembered_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 2, 8 << 20).unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 2, 8 << 20).unwrap();
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
}
