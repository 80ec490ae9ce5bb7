//! A partition's local state kept through its log (issue 16, `docs/SCALING.md` "What goes
//! through the log"): a node's copy of a partition is a logged [`Store`]
//! ([`crate::store::changelog`]). As the partition's owner, the copy's flushes append what was
//! written since the last one to the partition's log, as a [`Kind::Record`], through the
//! owner's [`Owned`] (so every append checks the lease guard and the fencing chain); a write is
//! durable once the log has it, as it is on one node once sled's log is synced. As a standby,
//! the copy applies the records its owner appended, in the chain's order; when the owner dies
//! it takes the partition over from where it stands, reading only the records it had not
//! applied yet.
//!
//! The copy's position (the chain) is kept in memory: a node that restarts starts a fresh copy
//! from the start of the log (snapshots, which would bound that, are not built yet).

use super::lease::{Guard, Holding};
use super::log::{AppendError, Chain, Entry, Kind, PartitionLog, Verdict};
use super::{ClusterError, Owned};
use crate::store::{changelog, Publisher, Store, StoreError};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;

/// A node's copy of one partition: a standby's until [`Replica::take_over`], an owner's after.
pub struct Replica {
    store: Store,
    /// Where the copy is kept.
    dir: std::path::PathBuf,
    log: PartitionLog,
    /// The copy's position while it stands by; an owner's is its [`Owned`]'s.
    chain: Chain,
    publisher: Publisher,
    /// While this node owns the partition: the owner its flushes append through.
    owned: Option<Arc<tokio::sync::Mutex<Owned>>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("partition", &self.log.partition())
            .field("chain", &self.chain)
            .field("owner", &self.owned.is_some())
            .finish()
    }
}

/// Applies a log record to `store`: a [`Kind::Record`]'s changes; nothing for the others.
fn apply(store: &Store, entry: &Entry) -> Result<(), ClusterError> {
    if entry.kind != Kind::Record {
        return Ok(());
    }
    let changes = changelog::decode(&entry.payload)
        .map_err(|e| ClusterError::Corrupt(format!("record {}: {e}", entry.seq)))?;
    store
        .apply_changes(&changes)
        .map_err(|e| ClusterError::Corrupt(format!("record {} not applied: {e}", entry.seq)))
}

impl Replica {
    /// Opens a fresh copy of `log`'s partition in `dir` (an empty directory: a copy's position
    /// is not kept across restarts), standing by.
    pub fn open(dir: &Path, log: PartitionLog, cache_bytes: u64) -> Result<Replica, StoreError> {
        let publisher = Publisher::default();
        let store = Store::open_logged(dir, 1, cache_bytes, publisher.clone())?;
        // What opening wrote (the format's marks) every copy writes alike: not published.
        if let Some(log) = store.changelog() {
            log.take();
        }
        Ok(Replica {
            store,
            dir: dir.to_owned(),
            log,
            chain: Chain::default(),
            publisher,
            owned: None,
        })
    }

    /// The copy. Only an owner's may be written to; its flushes append to the log.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the copy is kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the copy's reading of the log stands (a standby's; an owner's moves with its
    /// appends).
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// As a standby: applies every record appended after the copy's position, in the chain's
    /// order; answers how many records it read.
    pub async fn follow(&mut self) -> Result<usize, ClusterError> {
        if self.owned.is_some() {
            return Ok(0);
        }
        let mut read = 0;
        loop {
            let entries = self.log.read_after(self.chain.previous, 256).await?;
            if entries.is_empty() {
                return Ok(read);
            }
            read += entries.len();
            for entry in &entries {
                // The chain moves past a record it skips; one it applies must be applied here
                // before the position passes it.
                let mut next = self.chain.clone();
                if next.judge(entry) == Verdict::Apply {
                    apply(&self.store, entry)?;
                }
                self.chain = next;
            }
        }
    }

    /// Takes the partition over for a freshly acquired lease: applies the records appended
    /// since the copy's position, appends `Took`, and from then on the copy's flushes append
    /// through the new owner. A record that cannot be applied gives the partition up (its
    /// guard fenced): the copy would no longer be the log's.
    pub async fn take_over(&mut self, holding: Holding) -> Result<Guard, AppendError> {
        let guard = holding.guard.clone();
        let mut failed = None;
        let store = &self.store;
        let owned = Owned::take_over(holding, self.log.clone(), self.chain.clone(), |entry| {
            if failed.is_none() {
                failed = apply(store, entry).err();
            }
        })
        .await?;
        if let Some(e) = failed {
            guard.fence();
            return Err(e.into());
        }
        self.chain = owned.chain().clone();
        let owned = Arc::new(tokio::sync::Mutex::new(owned));
        let runtime = tokio::runtime::Handle::current();
        let appender = owned.clone();
        // Runs on the store's flusher thread, which is not the runtime's: it may block on the
        // append.
        *self
            .publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Box::new(move |record: Vec<u8>| {
                runtime.block_on(async {
                    let mut owned = appender.lock().await;
                    owned
                        .append(Kind::Record, Bytes::from(record))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            }));
        self.owned = Some(owned);
        Ok(guard)
    }

    /// Whether this copy is its partition's owner's (it took over), rather than a standby's.
    pub fn is_owner(&self) -> bool {
        self.owned.is_some()
    }

    /// While this node owns the partition: the guard every action for it checks.
    pub async fn guard(&self) -> Option<Guard> {
        match &self.owned {
            Some(owned) => Some(owned.lock().await.guard().clone()),
            None => None,
        }
    }
}
