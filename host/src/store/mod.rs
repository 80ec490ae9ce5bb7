//! Durable state in sled, behind a narrow interface: the rest of the host never names a sled type
//! (and a backtest's scratch store keeps the same records in memory, [`kv`]).
//!
//! One module per kind of record, each holding its key encoding, its record type and its
//! operations (Restate's `storage-api` has one module per table for the same reason: a reader
//! finds everything about timers in `timers.rs`):
//!
//! | module | records |
//! | --- | --- |
//! | [`keys`] | key encoding shared by every kind; [`shard_of`] |
//! | [`kv`] | the trees themselves: sled's, or in memory for a backtest's scratch store |
//! | [`tenants`] | tenants and their API keys |
//! | [`components`] | component bytes by digest |
//! | [`journeys`] | journey versions and each journey's latest version |
//! | [`channels`] | channel registrations |
//! | [`events`] | the event log and its dedup index: ingest, and the one dedup-and-append write |
//! | [`queue`] | the trigger queue: triggers waiting for their customer's shard worker |
//! | [`customers`] | customer profiles |
//! | [`enrollments`] | one customer in one journey run |
//! | [`timers`] | pending timers, ordered by due time |
//! | [`outbox`] | messages, their delivery index, held messages and dead letters |
//! | [`counters`] | per journey and channel delivery counters |
//! | [`tasks`] | human handoffs |
//! | [`templates`] | message templates: immutable versions and each template's head |
//! | [`reports`] | report aggregates: the cells a journey's report adds up |
//! | [`trigger`] | [`Store::commit_trigger`], the one write that spans kinds |
//! | [`access_keys`] | tenants' scoped API keys (issue 12) |
//! | [`sessions`] | dashboard sessions (issue 14) |
//! | [`customer_events`] | each customer's processed events, for the dashboard's timeline (issue 14) |
//! | [`accounts`] | accounts: traits, members, each customer's account (issue 12) |
//! | [`identity`] | merged ids (`alias`, `identify`) and the merge's one write (issue 12) |
//! | [`inbox`] | the in-app inbox: customers' delivered `inapp` messages and their marks (issue 11) |
//! | [`signing_secrets`] | tenants' secrets for inbox tokens and unsubscribe links (issue 11) |
//! | [`feedback`] | provider feedback: the message index webhooks look up, suppressed addresses (issue 11) |
//! | [`backtests`] | backtest jobs: plan, state, progress, result, a candidate's bytes (issue 13) |
//!
//! Keys are byte strings whose parts are joined by `0x1f` (ids may not contain control
//! characters, which ingest refuses), with big-endian numbers where order matters: the trigger
//! queue by shard and arrival, timers and the outbox's delivery index by time. Records are
//! MessagePack with named fields ([`enc`]): self-describing like the JSON they replaced (the
//! model's JSON values and tagged enums round-trip unchanged, and a field is found by name, so
//! adding one with `#[serde(default)]` stays compatible), at about two thirds of the size and a
//! fraction of the parse cost. The tree names, keys and values are the on-disk format, numbered
//! in [`format`]: a directory of an older format is migrated at open, one of a newer format is
//! refused, none is misread.
//!
//! The store knows no journey semantics: it never composes an event, a report delta or a
//! counter name; the caller hands it finished records (and report deltas, which it adds to the
//! cells they name) and it writes them atomically.
//!
//! Every state change of one trigger commits in one transaction with the removal of the trigger
//! from the queue ([`Store::commit_trigger`]), so a crash either applied a trigger wholly or not
//! at all, and an unprocessed trigger is simply processed again after restart.

pub mod access_keys; // Scoped keys (issue 12)
pub mod accounts; // Accounts (issue 12)
pub mod audience; // Audience triggers (issue 12)
pub mod backlog; // Work not yet taken up, for /metrics
pub mod backtests; // Backtest jobs (issue 13)
pub mod changelog; // A partition's state through its log (issue 16)
pub mod channels;
pub mod components;
pub mod counters;
pub mod customer_events; // Dashboard (issue 14)
pub mod customers;
pub mod dead_letters;
pub mod enrollments;
pub mod events;
pub mod feedback; // Provider feedback (issue 11)
pub mod format;
pub mod forwards; // Forwards between partitions (issue 16)
pub mod identity; // Identity merge (issue 12)
pub mod inbox; // In-app inbox (issue 11)
pub mod journeys;
pub mod keys;
pub(crate) mod kv; // The trees: sled's, or in memory for a scratch store (issue 13)
pub mod migrations;
pub mod outbox;
pub mod queue;
pub mod replay; // Backtests (issue 13)
pub mod reports;
pub mod sessions; // Dashboard (issue 14)
pub mod signing_secrets; // Inbox tokens and unsubscribe links (issue 11)
pub mod tasks;
pub mod templates;
pub mod tenants;
pub mod timers;
pub mod trigger;

#[cfg(test)]
mod compat;
#[cfg(test)]
pub(crate) mod fixtures;

pub use access_keys::{AccessKey, Scope}; // Scoped keys (issue 12)
pub use accounts::{Account, AccountChange, AccountWrite}; // Accounts (issue 12, 16)
pub use audience::AudienceWrite; // Audience triggers (issue 12)
pub use channels::{ChannelAdapter, ChannelRecord};
pub use events::Extras; // Identity merge and accounts (issue 12)
pub use events::Ingested;
pub use events::KeptHistory; // Issue 13: a backtest's history, read once
pub use identity::MergeCommit; // Identity merge (issue 12)
pub use journeys::{JourneyVersion, LiveJourney};
pub use keys::shard_of;
pub use migrations::{Migration, MigrationOutcome, Outcome as MigrationResult};
pub use outbox::{Message, MessageStatus};
pub use queue::{Pending, QueuedTrigger};
pub use replay::SentRecord; // Backtests (issue 13)
pub use sessions::UiSession; // Dashboard (issue 14)
pub use tasks::{Task, TaskError};
pub use templates::{TemplateHead, TemplateVersion};
pub use tenants::Tenant;
pub use timers::TimerRecord;
pub use trigger::TriggerCommit;

use crate::model::Millis;
use keys::{time_from_key, time_key};
use serde::Serialize;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, UnabortableTransactionError,
};
use std::path::Path;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed to read or write.
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    /// The file system failed around the database (e.g. creating its directory).
    #[error("storage i/o failure: {0}")]
    Io(#[from] std::io::Error),
    /// A transaction met a concurrent write and gave up; trying again may succeed.
    #[error("transaction conflict")]
    Conflict,
    /// A stored value does not decode as its record type.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// A record that must be new exists already.
    #[error("{0} already exists")]
    Exists(String),
    /// Writes could not be made durable.
    #[error("cannot make writes durable: {0}")]
    Flush(String),
    /// The data directory is in a format this binary does not read.
    #[error("{0}")]
    Format(String),
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
            UnabortableTransactionError::Conflict => StoreError::Conflict,
        }
    }
}

/// What a transaction closure returns: aborting with a [`StoreError`] undoes its writes.
type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Aborts a transaction with `e`.
fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

/// A request for durability: answered once a flush that covers it has finished.
type FlushRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// The database: one sled tree per kind of record. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Store {
    db: kv::Db,
    /// Host-wide settings that must survive a restart (the manual clock).
    meta: kv::Tree,
    tenants: kv::Tree,
    /// API key digest → tenant id.
    api_keys: kv::Tree,
    components: kv::Tree,
    /// `tenant␟journey␟version` → [`JourneyVersion`].
    journeys: kv::Tree,
    /// `tenant␟journey` → the latest version number.
    journey_heads: kv::Tree,
    channels: kv::Tree,
    /// Registrations decoded once, beside the bytes they were decoded from.
    channel_memo: std::sync::Arc<channels::ChannelMemo>,
    /// `tenant␟sequence` → the event, as ingested.
    events: kv::Tree,
    /// `tenant␟event id` → when it was ingested (time key) and its place in the log.
    event_ids: kv::Tree,
    /// The trigger queue, shard (u16 BE) then sequence number (u64 BE) → [`QueuedTrigger`]. Its
    /// tree is named `"inbox"` on disk (the name predates the in-app inbox) and keeps that name,
    /// so that existing data directories still open.
    queue: kv::Tree,
    customers: kv::Tree,
    enrollments: kv::Tree,
    timers: kv::Tree,
    /// `tenant␟customer␟message id` → [`Message`].
    outbox: kv::Tree,
    /// Pending messages by next attempt (wall clock): `time␟outbox key` → outbox key.
    outbox_due: kv::Tree,
    tasks: kv::Tree,
    counters: kv::Tree,
    /// Report aggregates: cells and their milestones' times ([`reports`]).
    report_cells: kv::Tree,
    /// `tenant␟message id` → outbox key, for every dead letter.
    dead_letters: kv::Tree,
    /// Migrations between journey versions and their outcomes ([`migrations`]).
    migrations: kv::Tree,
    /// Held messages by release time (journey time): `time␟outbox key` → outbox key.
    held: kv::Tree,
    // Scoped keys (issue 12): digest → record; `tenant␟prefix` → digest.
    access_keys: kv::Tree,
    access_key_prefixes: kv::Tree,
    /// Message templates: `tenant␟name␟version` → [`TemplateVersion`] ([`templates`]).
    templates: kv::Tree,
    /// `tenant␟name` → [`TemplateHead`].
    template_heads: kv::Tree,
    /// Dashboard sessions (issue 14): SHA-256 of the session id → [`UiSession`].
    ui_sessions: kv::Tree,
    /// `tenant␟customer␟sequence` → nothing: each customer's processed events (issue 14).
    customer_events: kv::Tree,
    /// Identity merge (issue 12): `tenant␟merged id` → the id it was merged into ([`identity`]).
    aliases: kv::Tree,
    /// Accounts (issue 12): their traits and members ([`accounts`]).
    accounts: kv::Tree,
    /// Audience triggers (issue 12): customers' watches and their due index ([`audience`]).
    audience: kv::Tree,
    // In-app inbox and signing secrets (issue 11): see [`inbox`] and [`signing_secrets`].
    inapp_inbox: kv::Tree,
    inapp_inbox_ids: kv::Tree,
    signing_secrets: kv::Tree,
    // Provider feedback (issue 11): see [`feedback`].
    message_refs: kv::Tree,
    suppressions: kv::Tree,
    /// Backtest jobs (issue 13): see [`backtests`].
    backtests: kv::Tree,
    shards: u16,
    /// Group commit: whoever needs durability queues here and shares the next flush. `None`
    /// for a store in memory, where there is nothing to make durable.
    flusher: Option<std::sync::mpsc::Sender<FlushRequest>>,
    /// The earliest due time (the `outbox_due` key's time) written since the delivery feeder
    /// last took it ([`Store::take_due_written`]); `Millis::MAX` for none. In memory only: a
    /// restarted feeder reads the whole due index anyway.
    due_written: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Cluster mode (issue 16): the partition this store is, once it runs in a cluster of
    /// several ([`forwards`]).
    placing: forwards::Placing,
}

/// sled's log segment (and write buffer) size for a new directory: a buffer is written and
/// synced whenever it fills, so under sustained writes a larger one means fewer syncs. sled
/// fixes it when a directory is created and refuses another value later, so an existing
/// directory keeps the one recorded in its `conf` file (512 KiB, sled's default, for every
/// directory created before this setting).
const SEGMENT_SIZE: usize = 8 << 20;

fn segment_size(dir: &Path) -> usize {
    // The file is text lines followed by a binary checksum.
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|conf| {
            String::from_utf8_lossy(&conf)
                .lines()
                .find_map(|line| line.strip_prefix("segment_size: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(SEGMENT_SIZE)
}

/// Encodes a record as it is stored: MessagePack, structs as maps of named fields.
pub(crate) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // Most records fit: an enrollment or a message is a few hundred bytes, and growing the
    // buffer twice on the way copied each.
    let mut out = Vec::with_capacity(512);
    // Serialising our own plain data types into a Vec cannot fail.
    let _ = v.serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map());
    out
}

/// Decodes a stored record (or, into a type that borrows from its bytes, part of one).
pub(crate) fn dec<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A copy of `record` to keep beside its bytes in a scratch store ([`kv::Memo`]): the commit
/// that wrote it is the worker's until it is cleared.
fn memo<T: Clone + Send + Sync + 'static>(record: &T) -> kv::Memo {
    std::sync::Arc::new(record.clone())
}

/// Decodes a record read with its memo ([`kv::Tree::get_memo`]): the memo when it holds a
/// `T` (taken out of the tree, it is moved, not copied), the bytes otherwise.
fn dec_memo<T>((bytes, memo): (kv::IVec, Option<kv::Memo>)) -> Result<T, StoreError>
where
    T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    match memo.map(|m| m.downcast::<T>()) {
        Some(Ok(record)) => Ok(std::sync::Arc::unwrap_or_clone(record)),
        _ => dec(&bytes),
    }
}

impl Store {
    /// Decodes `bytes`, read from `tree` at `key` by a scan whose reader is about to remove or
    /// rewrite the key: in a scratch store the record kept decoded beside them is taken
    /// instead (`kv::Memo`); one written without it is decoded.
    fn dec_taking<T>(&self, tree: &kv::Tree, key: &[u8], bytes: &[u8]) -> Result<T, StoreError>
    where
        T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if self.is_scratch() {
            if let Some(kept) = tree.get_memo(key, true)? {
                return dec_memo(kept);
            }
        }
        dec(bytes)
    }
}

/// Under load, flushes start at most this often: requests that arrive meanwhile share the next
/// one. On this kind of machine a flush (sealing sled's log buffer, writing it, waiting for the
/// disk, waking every waiter) costs far more CPU than the wait costs latency, and an idle
/// store still flushes at once, because the wait is measured from the previous flush's start.
const FLUSH_SPACING: std::time::Duration = std::time::Duration::from_millis(8);

/// What makes a flushed log durable on its disk ([`Store::open`]); `None` for a temporary
/// store, which nothing needs to outlive.
type LogSync = Option<Box<dyn FnMut() -> std::io::Result<()> + Send>>;

/// The group-commit thread: takes every waiting request, flushes once, answers them all.
/// It ends when the last handle of the store is dropped.
///
/// A flush is sled's `flush` (its log buffers written, each with a `sync_file_range`) followed
/// by `sync`: sled 0.34 never calls `fsync` on its log when asked to flush (only a periodic
/// thread does, which this store turns off), and `sync_file_range` writes data pages back but
/// neither the file's size nor the disk's write cache — so without `sync`, what a flush
/// covered could be lost to a power cut while surviving any crash of the process. A request
/// is answered with the result of both.
fn spawn_flusher(mut step: FlushStep) -> Result<std::sync::mpsc::Sender<FlushRequest>, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel::<FlushRequest>();
    std::thread::Builder::new()
        .name("waymark-flush".into())
        .spawn(move || {
            let mut last_start: Option<std::time::Instant> = None;
            while let Ok(first) = rx.recv() {
                if let Some(wait) = last_start
                    .map(|at| FLUSH_SPACING.saturating_sub(at.elapsed()))
                    .filter(|wait| !wait.is_zero())
                {
                    std::thread::sleep(wait);
                }
                let mut waiting = vec![first];
                waiting.extend(rx.try_iter());
                last_start = Some(std::time::Instant::now());
                // Everything these callers wrote was written before they asked, so this one
                // flush covers all of them.
                let result = step();
                for w in waiting {
                    let _ = w.send(result.clone());
                }
            }
        })
        .map_err(|e| StoreError::Flush(format!("cannot start the flusher: {e}")))?;
    Ok(tx)
}

/// What one flush does: make everything written before it durable.
type FlushStep = Box<dyn FnMut() -> Result<(), String> + Send>;

/// A flush of sled's own: its log written, then `sync`.
fn sled_flush(db: sled::Db, mut sync: LogSync) -> FlushStep {
    Box::new(move || {
        db.flush()
            .map(|_| ())
            .map_err(|e| e.to_string())
            .and_then(|()| match sync.as_mut() {
                Some(sync) => sync().map_err(|e| format!("fdatasync of the log: {e}")),
                None => Ok(()),
            })
    })
}

/// Cluster mode (issue 16): what makes a logged store's writes durable, given an encoded
/// changelog record ([`changelog::encode`]): its append to the partition's log, answering once
/// the log has it. Shared and replaceable: empty while the node only stands by for the
/// partition, when a flush fails.
pub type Publisher =
    std::sync::Arc<std::sync::Mutex<Option<Box<dyn FnMut(Vec<u8>) -> Result<(), String> + Send>>>>;

/// A flush of a logged store: the changes recorded since the last one, published as one
/// record. A record that could not be published goes back in front of the changes recorded
/// meanwhile, and the next flush publishes them all: if the failed append was stored after
/// all (its answer lost), the log holds those changes twice in a row, which applies as once.
fn publishing_flush(log: std::sync::Arc<changelog::Changelog>, publisher: Publisher) -> FlushStep {
    Box::new(move || {
        let changes = log.take();
        if changes.is_empty() {
            return Ok(());
        }
        let record = changelog::encode(&changes);
        let published = match publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            Some(publish) => publish(record),
            None => Err("this node does not own the partition".into()),
        };
        if published.is_err() {
            log.restore(changes);
        }
        published
    })
}

/// Opens sled's log file (`db` in the data directory) for [`spawn_flusher`]'s `fdatasync`
/// (which covers the file whichever descriptor asks), and makes the file's directory entry
/// durable once, as a newly created directory's would not be.
fn log_sync(dir: &Path) -> Result<LogSync, StoreError> {
    let log = std::fs::File::open(dir.join("db"))?;
    log.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(Some(Box::new(move || log.sync_data())))
}

/// sled's database in `dir`, with `cache_bytes` of page cache.
fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    Ok(sled::Config::new()
        .path(dir)
        .segment_size(segment_size(dir))
        .cache_capacity(cache_bytes)
        // Durability comes from explicit flushes at acknowledgement points, not a timer.
        .flush_every_ms(None)
        .open()?)
}

/// The trees of tenant-global data — tenants and their keys, components, journeys, channels,
/// templates, signing secrets — as opposed to the records of customers. In a cluster of several
/// partitions (issue 16, `docs/SCALING.md` "Tenant-global data") partition 0 is where they are
/// written, and every other partition mirrors them from partition 0's log.
pub const GLOBAL_TREES: [&str; 11] = [
    "tenants",
    "api_keys",
    "components",
    "journeys",
    "journey_heads",
    "channels",
    "access_keys",
    "access_key_prefixes",
    "templates",
    "template_heads",
    "signing_secrets",
];

impl Store {
    /// Opens (or creates) the database in `dir`, with `cache_bytes` of page cache.
    pub fn open(dir: &Path, shards: u16, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = open_sled(dir, cache_bytes)?;
        let flush = sled_flush(db.clone(), log_sync(dir)?);
        Store::with_db(kv::Db::Sled(db), shards, Some(flush))
    }

    /// Cluster mode (issue 16): opens (or creates) a partition's copy in `dir`, its database
    /// logged ([`changelog`]): its flushes publish what was written through `publisher` rather
    /// than syncing the disk (the partition's log is what makes a write durable), and the
    /// copy takes another's changes with [`Store::apply_changes`].
    pub fn open_logged(
        dir: &Path,
        shards: u16,
        cache_bytes: u64,
        publisher: Publisher,
    ) -> Result<Store, StoreError> {
        let db = kv::Db::logged(kv::Db::Sled(open_sled(dir, cache_bytes)?))?;
        let log = db.changelog().cloned().expect("a logged database");
        Store::with_db(db, shards, Some(publishing_flush(log, publisher)))
    }

    /// A logged store's changelog ([`Store::open_logged`]); `None` for any other.
    pub fn changelog(&self) -> Option<&std::sync::Arc<changelog::Changelog>> {
        self.db.changelog()
    }

    /// Applies another copy's changes ([`changelog::decode`] of its records, in their order)
    /// to this logged store, without publishing them.
    pub fn apply_changes(&self, changes: &[changelog::Change]) -> Result<(), StoreError> {
        Ok(self.db.apply_changes(changes)?)
    }

    /// Applies another partition's changes to this logged store as its own writes (its next
    /// flush publishes them): a partition's mirror of the tenant-global trees
    /// ([`GLOBAL_TREES`]) of partition 0.
    pub fn record_changes(&self, changes: &[changelog::Change]) -> Result<(), StoreError> {
        Ok(self.db.record_changes(changes)?)
    }

    /// Where this partition's mirror of partition 0's tenant-global trees stands (the mirror's
    /// to interpret), written with what it mirrored; `None` before it mirrored anything.
    pub fn mirror_mark(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get("mirror")?.map(|v| v.to_vec()))
    }

    /// Records where this partition's mirror stands, after the changes it covers.
    pub fn set_mirror_mark(&self, mark: &[u8]) -> Result<(), StoreError> {
        self.meta.insert("mirror", mark)?;
        Ok(())
    }

    /// The store over an opened database: its format checked, its trees opened; `flush` is
    /// what makes its writes durable (`None`: nothing to, a store in memory).
    fn with_db(db: kv::Db, shards: u16, flush: Option<FlushStep>) -> Result<Store, StoreError> {
        format::ensure(&db)?;
        let t = |name: &str| db.open_tree(name);
        let store = Store {
            meta: t("meta")?,
            tenants: t("tenants")?,
            api_keys: t("api_keys")?,
            components: t("components")?,
            journeys: t("journeys")?,
            journey_heads: t("journey_heads")?,
            channels: t("channels")?,
            channel_memo: Default::default(),
            events: t("events")?,
            event_ids: t("event_ids")?,
            // The trigger queue's on-disk name: see the field.
            queue: t("inbox")?,
            customers: t("customers")?,
            enrollments: t("enrollments")?,
            timers: t("timers")?,
            outbox: t("outbox")?,
            outbox_due: t("outbox_due")?,
            tasks: t("tasks")?,
            counters: t("counters")?,
            report_cells: t("report_cells")?,
            dead_letters: t("dead_letters")?,
            migrations: t("migrations")?,
            held: t("held")?,
            access_keys: t("access_keys")?, // Scoped keys (issue 12)
            access_key_prefixes: t("access_key_prefixes")?,
            templates: t("templates")?,
            template_heads: t("template_heads")?,
            ui_sessions: t("ui_sessions")?, // Dashboard (issue 14)
            customer_events: t("customer_events")?,
            aliases: t("aliases")?,         // Identity merge (issue 12)
            accounts: t("accounts")?,       // Accounts (issue 12)
            audience: t("audience")?,       // Audience triggers (issue 12)
            inapp_inbox: t("inapp_inbox")?, // In-app inbox (issue 11)
            inapp_inbox_ids: t("inapp_inbox_ids")?,
            signing_secrets: t("signing_secrets")?,
            message_refs: t("message_refs")?, // Provider feedback (issue 11)
            suppressions: t("suppressions")?,
            backtests: t("backtests")?, // Backtest jobs (issue 13)
            shards,
            flusher: flush.map(spawn_flusher).transpose()?,
            due_written: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(Millis::MAX)),
            placing: forwards::Placing::default(),
            db,
        };
        store.ensure_report_aggregates()?;
        Ok(store)
    }

    /// For a store in memory (a backtest's scratch store), about how much memory its records
    /// take, in bytes; `None` for one on disk.
    pub fn memory_used(&self) -> Option<u64> {
        self.db.memory_used()
    }

    /// How many shards the trigger queue is split into.
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// Makes everything written so far durable. Concurrent callers share flushes (group
    /// commit): one flush runs at a time, and everyone who asked while it ran is served by the
    /// next, so a burst of requests costs a couple of fsyncs, not one each.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_requested().await
    }

    /// Whether a write needs a flush to be durable: `false` for a store that has nothing to
    /// flush (a scratch store), where [`Store::flush_requested`] resolves at once.
    pub fn flushes(&self) -> bool {
        self.flusher.is_some()
    }

    /// Asks for a flush covering everything written so far, now, and returns what resolves once
    /// it is done: the caller may go on writing meanwhile (later writes are not covered).
    pub fn flush_requested(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = match &self.flusher {
            Some(flusher) => flusher.send(done),
            None => {
                // Nothing to make durable: answered at once.
                let _ = done.send(Ok(()));
                Ok(())
            }
        };
        async move {
            sent.map_err(|_| StoreError::Flush("the flusher has stopped".into()))?;
            wait.await
                .map_err(|_| StoreError::Flush("the flusher has stopped".into()))?
                .map_err(StoreError::Flush)
        }
    }

    /// Where the manual clock stood when it was last saved; `None` if it never ran.
    pub fn manual_clock(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.meta.get("manual_clock")?.map(|v| time_from_key(&v)))
    }

    /// Saves the manual clock's time durably, so a restart resumes from it. Each time is
    /// also kept as a *clock stop* (issue 13): on a manual clock, timers fire only where the
    /// clock stood, so a replay that is to reproduce what ran moves its clock through the same
    /// stops ([`Store::manual_clock_stops`]).
    pub async fn save_manual_clock(&self, now: Millis) -> Result<(), StoreError> {
        self.meta.insert("manual_clock", &time_key(now))?;
        self.meta
            .insert(keys::key(&[b"clock_stop", &time_key(now)]), &[])?;
        self.flush().await
    }

    // Backtests (issue 13)
    /// The times a manual clock stood at (started or was advanced to), in order; empty when
    /// the clock never was manual.
    pub fn manual_clock_stops(&self) -> Result<Vec<Millis>, StoreError> {
        let stop_prefix = keys::prefix(&[b"clock_stop"]);
        self.meta
            .scan_prefix(&stop_prefix)
            .keys()
            .map(|k| Ok(time_from_key(&k?[stop_prefix.len()..])))
            .collect()
    }
}

/// A store in a fresh temporary directory, for the tests of every record kind. The directory
/// lives as long as the returned guard.
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 4, 8 << 20).unwrap();
    (dir, store)
}

/// For tests that reopen a sled directory: runs `open` until the dropped handle's flusher
/// thread has let go of the directory's lock (it does a moment after the drop), for up to 5 s.
/// An error that `locked` does not take for the lock is returned at once.
#[cfg(test)]
pub(crate) fn open_unlocked<T, E: std::fmt::Debug>(
    dir: &Path,
    mut open: impl FnMut() -> Result<T, E>,
    locked: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut last = None;
    for _ in 0..250 {
        match open() {
            Ok(opened) => return Ok(opened),
            Err(e) if locked(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the database in {dir:?} stayed locked: {last:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `dir` again once the previous handle's flusher thread has let go of it.
    pub(super) fn reopen(dir: &Path) -> Store {
        open_unlocked(dir, || Store::open(dir, 2, 8 << 20), |_| true).unwrap()
    }

    #[tokio::test]
    async fn the_manual_clock_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 2, 8 << 20).unwrap();
            assert_eq!(store.manual_clock().unwrap(), None);
            store.save_manual_clock(-42).await.unwrap();
        }
        let store = reopen(dir.path());
        assert_eq!(store.manual_clock().unwrap(), Some(-42));
    }

    #[tokio::test]
    async fn a_flush_is_answered_only_after_the_log_is_synced() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        // Every flush runs the sync after sled's own flush, and waits for it.
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = syncs.clone();
        let with_sync = |sync: LogSync| {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let flush = sled_flush(db.clone(), sync);
            Store::with_db(kv::Db::Sled(db), 1, Some(flush)).unwrap()
        };
        let store = with_sync(Some(Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })));
        store.meta.insert("k", "v").unwrap();
        store.flush().await.unwrap();
        assert!(syncs.load(Ordering::SeqCst) >= 1);
        // A failed sync fails the flush: nothing waiting on it is told it is durable.
        let failing = with_sync(Some(Box::new(|| {
            Err(std::io::Error::other("the disk went away"))
        })));
        match failing.flush().await {
            Err(StoreError::Flush(why)) => assert!(why.contains("the disk went away"), "{why}"),
            other => panic!("a flush whose sync failed answered {other:?}"),
        }
        // On disk, the sync is an fdatasync of sled's log file, which exists once it is open.
        let (dir, store) = temp_store();
        assert!(dir.path().join("db").is_file());
        store.flush().await.unwrap();
    }

    #[test]
    fn the_trigger_queue_keeps_its_on_disk_tree_name() {
        let (_dir, store) = temp_store();
        assert_eq!(&*store.queue.name(), b"inbox");
    }
}
