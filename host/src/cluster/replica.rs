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
    /// Records applied since the copy was opened or its last snapshot, and when that was.
    since_snapshot: (u64, std::time::Instant),
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
            since_snapshot: (0, std::time::Instant::now()),
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
                match next.judge(entry) {
                    Verdict::Apply => {
                        apply(&self.store, entry)?;
                        self.since_snapshot.0 += 1;
                    }
                    Verdict::Missing => return Err(ClusterError::Missing(self.log.partition())),
                    _ => {}
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

/// The object store bucket of the partitions' snapshots: one object per partition, `p<n>`,
/// replaced by each new snapshot.
pub const SNAPSHOTS: &str = "wm-snapshots";

/// A snapshot's first bytes: what it is and the version of its layout.
const MAGIC: &[u8; 8] = b"WMSNAP01";

/// How many bytes of records go in one frame of a snapshot.
const FRAME_BYTES: usize = 1 << 20;

/// The partitions' snapshots ([`super::Nats::snapshots`]).
#[derive(Clone)]
pub struct Snapshots(pub(super) async_nats::jetstream::object_store::ObjectStore);

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(SNAPSHOTS)
    }
}

fn object_name(partition: u16) -> String {
    format!("p{partition}")
}

impl Replica {
    /// Writes a snapshot of this standby's copy to `to` — every record, and the position in
    /// the log it covers (`MAGIC`, the chain's last record and epoch, then frames of encoded
    /// changes, each length-prefixed) — then purges the log's records before that position.
    /// Answers the position. An owner's copy is written while it would be read: refused.
    ///
    /// The snapshot is built in memory before it is written (the object store chunks it); a
    /// partition of a few hundred MiB of records is the bound of that (docs/SCALING.md).
    pub async fn snapshot(&self, to: &Snapshots) -> Result<Chain, ClusterError> {
        if self.is_owner() {
            return Err(ClusterError::Config(
                "an owner's copy is written while a snapshot would read it".into(),
            ));
        }
        let chain = self.chain.clone();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&chain.previous.to_be_bytes());
        bytes.extend_from_slice(&chain.epoch.to_be_bytes());
        self.store
            .dump(FRAME_BYTES, |changes| {
                let frame = changelog::encode(&changes);
                bytes.extend_from_slice(&(frame.len() as u64).to_be_bytes());
                bytes.extend_from_slice(&frame);
                Ok(())
            })
            .map_err(|e| ClusterError::Corrupt(format!("the copy could not be read: {e}")))?;
        let name = object_name(self.log.partition());
        to.0.put(name.as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| ClusterError::nats("write a snapshot", e))?;
        // The record at the position stays: the stream checks an append's expectation against
        // the subject's last record, which must not vanish under the owner.
        self.log.purge_before(chain.previous).await?;
        Ok(chain)
    }

    /// Whether a standby's copy is due a snapshot: `records` applied since its last one (or
    /// its opening), or at least one applied and `every` gone by.
    pub fn snapshot_due(&self, records: u64, every: std::time::Duration) -> bool {
        let (applied, since) = self.since_snapshot;
        !self.is_owner() && (applied >= records || (applied > 0 && since.elapsed() >= every))
    }

    /// [`Replica::snapshot`], counted as the copy's last.
    pub async fn take_snapshot(&mut self, to: &Snapshots) -> Result<Chain, ClusterError> {
        let chain = self.snapshot(to).await?;
        self.since_snapshot = (0, std::time::Instant::now());
        Ok(chain)
    }

    /// Opens a copy of `log`'s partition in `dir` (an empty directory) from the partition's
    /// latest snapshot in `from`, standing by at the position it covers; a fresh copy when
    /// there is none.
    pub async fn restore(
        dir: &Path,
        log: PartitionLog,
        cache_bytes: u64,
        from: &Snapshots,
    ) -> Result<Replica, ClusterError> {
        use async_nats::jetstream::object_store::GetErrorKind;
        use tokio::io::AsyncReadExt as _;
        let partition = log.partition();
        let mut copy = Replica::open(dir, log, cache_bytes)
            .map_err(|e| ClusterError::Config(format!("a copy in {}: {e}", dir.display())))?;
        let mut object = match from.0.get(object_name(partition)).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(copy),
            Err(e) => return Err(ClusterError::nats("read a snapshot", e)),
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| ClusterError::nats("read a snapshot", e))?;
        let corrupt =
            |why: &str| ClusterError::Corrupt(format!("partition {partition}'s snapshot: {why}"));
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| corrupt("not a snapshot of this version"))?;
        let number = |b: &[u8]| -> Result<u64, ClusterError> {
            b.get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt("cut short"))
        };
        let chain = Chain {
            previous: number(rest)?,
            epoch: number(&rest[8..])?,
        };
        let mut rest = &rest[16..];
        while !rest.is_empty() {
            let len = usize::try_from(number(rest)?).map_err(|_| corrupt("a frame too long"))?;
            let frame = rest.get(8..8 + len).ok_or_else(|| corrupt("cut short"))?;
            let changes = changelog::decode(frame).map_err(|e| corrupt(&e))?;
            copy.store
                .apply_changes(&changes)
                .map_err(|e| corrupt(&e.to_string()))?;
            rest = &rest[8 + len..];
        }
        copy.chain = chain;
        Ok(copy)
    }
}
