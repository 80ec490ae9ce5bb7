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
//! A standby's copy marks where it stands in its own store ([`Store::set_copy_mark`]: the chain
//! before any flush it is still reading, and the stream's identity) as it follows, so a node
//! that restarts goes on from its copy ([`Replica::reopen`]) rather than from the snapshot.
//! A copy that took the partition over loses its mark first: an owner's copy holds writes the
//! log may never have had, and is never reused.

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
    /// A flush whose pieces are being read.
    partial: Partial,
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

/// A record's first byte: whether the flush's changes go on in the next record, and whether
/// this record is the flush's first.
const MORE: u8 = 1;
const FIRST: u8 = 2;

/// How many bytes of a flush's encoded changes one record carries: a flush's changes are cut
/// into records under NATS's default `max_payload` (1 MiB), so a batch of any size (or a
/// component several MiB large) goes through the log.
const CHUNK: usize = 768 << 10;

/// A flush's changes, as records: each carries a piece of the encoded changes after a byte
/// saying whether more follow. Readers apply the changes once the last piece is read, so a
/// flush is applied whole or not at all (an owner that died between its pieces left none
/// applied: its successor's `Took` discards them). A flush whose append failed halfway is
/// published again whole, with whatever was written since, by the next flush: its first piece
/// discards the unfinished one's.
fn pieces(record: &[u8]) -> Vec<Bytes> {
    let mut chunks: Vec<&[u8]> = record.chunks(CHUNK).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut piece = Vec::with_capacity(chunk.len() + 1);
            let more = if i + 1 < count { MORE } else { 0 };
            piece.push(more | if i == 0 { FIRST } else { 0 });
            piece.extend_from_slice(chunk);
            Bytes::from(piece)
        })
        .collect()
}

/// A reader's flush in progress: the pieces read so far, and where the chain stood before the
/// first (a snapshot taken meanwhile covers only what was applied).
#[derive(Debug, Default)]
pub(super) struct Partial {
    bytes: Vec<u8>,
    pub(super) before: Option<Chain>,
}

impl Partial {
    /// Takes an applied log record (`chain` the position before it): a piece is kept, a last
    /// piece completes the flush, whose changes are applied to `store`; any other record
    /// discards a flush left unfinished (its owner is gone).
    fn take(&mut self, store: &Store, entry: &Entry, chain: &Chain) -> Result<(), ClusterError> {
        let Some(changes) = self.complete(entry, chain)? else {
            return Ok(());
        };
        store
            .apply_changes(&changes)
            .map_err(|e| ClusterError::Corrupt(format!("record {}: not applied: {e}", entry.seq)))
    }

    /// [`Partial::take`] without applying: the changes of the flush `entry` completes, if it
    /// completes one.
    pub(super) fn complete(
        &mut self,
        entry: &Entry,
        chain: &Chain,
    ) -> Result<Option<Vec<changelog::Change>>, ClusterError> {
        if entry.kind != Kind::Record {
            *self = Partial::default();
            return Ok(None);
        }
        let corrupt = |why: String| ClusterError::Corrupt(format!("record {}: {why}", entry.seq));
        let (&flag, piece) = entry
            .payload
            .split_first()
            .ok_or_else(|| corrupt("empty".into()))?;
        if flag & FIRST != 0 {
            // A new flush: one left unfinished is published again within it.
            self.bytes.clear();
            self.before = None;
        }
        self.before.get_or_insert_with(|| chain.clone());
        self.bytes.extend_from_slice(piece);
        if flag & MORE != 0 {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.bytes);
        self.before = None;
        changelog::decode(&bytes).map(Some).map_err(corrupt)
    }
}

/// The version of a copy's mark: then the chain (last record read, highest epoch applied) and
/// the stream's identity.
const MARK_V1: u8 = 1;

pub(super) fn mark(chain: &Chain, stream: i128) -> Vec<u8> {
    let mut mark = vec![MARK_V1];
    mark.extend_from_slice(&chain.previous.to_be_bytes());
    mark.extend_from_slice(&chain.epoch.to_be_bytes());
    mark.extend_from_slice(&stream.to_be_bytes());
    mark
}

pub(super) fn read_mark(mark: &[u8]) -> Option<(Chain, i128)> {
    let (&MARK_V1, rest) = mark.split_first()? else {
        return None;
    };
    let previous = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let epoch = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
    let stream = i128::from_be_bytes(rest.get(16..32)?.try_into().ok()?);
    Some((Chain { previous, epoch }, stream))
}

impl Replica {
    /// Opens a fresh copy of `log`'s partition in `dir` (an empty directory), standing by at
    /// the log's start.
    /// `shards` is the store's queue shard count: the same on every node of a cluster (the
    /// queue's keys carry it).
    pub fn open(
        dir: &Path,
        log: PartitionLog,
        shards: u16,
        cache_bytes: u64,
    ) -> Result<Replica, StoreError> {
        let publisher = Publisher::default();
        let store = Store::open_logged(dir, shards, cache_bytes, publisher.clone())?;
        let copy = Replica::over(store, publisher, dir, log, Chain::default());
        copy.mark()?;
        Ok(copy)
    }

    /// The copy a node left in `dir` when it stopped, standing by where its mark says, if it
    /// can go on following `log` from there: `None` (the directory is the caller's to clear)
    /// for a copy without a mark (it took the partition over, or never marked a position),
    /// of another incarnation of the stream, or ahead of the log. A copy whose position the log
    /// has purged since is answered too: following it finds [`ClusterError::Missing`].
    pub async fn reopen(
        dir: &Path,
        log: PartitionLog,
        shards: u16,
        cache_bytes: u64,
    ) -> Result<Option<Replica>, ClusterError> {
        let unusable =
            |e: StoreError| ClusterError::Config(format!("a copy in {}: {e}", dir.display()));
        // The process that left it may still be letting go of its lock (a quick restart): a
        // little patience before calling the copy unusable.
        let mut patience = 20;
        let publisher = Publisher::default();
        let store = loop {
            match Store::open_logged(dir, shards, cache_bytes, publisher.clone()) {
                // sled reports its lock held as an `Other` I/O error saying so.
                Err(StoreError::Sled(sled::Error::Io(e)))
                    if e.to_string().contains("could not acquire lock") && patience > 0 =>
                {
                    patience -= 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                opened => break opened.map_err(unusable)?,
            }
        };
        let mark = store.copy_mark().map_err(unusable)?;
        let Some((chain, stream)) = mark.as_deref().and_then(read_mark) else {
            return Ok(None);
        };
        if stream != log.identity() || chain.previous > log.last().await? {
            return Ok(None);
        }
        Ok(Some(Replica::over(store, publisher, dir, log, chain)))
    }

    /// A copy kept in `store` (opened in `dir`, publishing through `publisher`) over `log`,
    /// standing by at `chain`.
    fn over(
        store: Store,
        publisher: Publisher,
        dir: &Path,
        log: PartitionLog,
        chain: Chain,
    ) -> Replica {
        // What opening wrote (the format's marks) every copy writes alike: not published.
        if let Some(log) = store.changelog() {
            log.take();
        }
        Replica {
            store,
            dir: dir.to_owned(),
            log,
            chain,
            publisher,
            owned: None,
            since_snapshot: (0, std::time::Instant::now()),
            partial: Partial::default(),
        }
    }

    /// Marks where this standby's copy stands: before a flush it is still reading (whose
    /// pieces are only in memory), else where it read to.
    fn mark(&self) -> Result<(), StoreError> {
        let at = self.partial.before.as_ref().unwrap_or(&self.chain);
        self.store.set_copy_mark(&mark(at, self.log.identity()))
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
                        self.partial.take(&self.store, entry, &self.chain)?;
                        self.since_snapshot.0 += 1;
                    }
                    Verdict::Missing => return Err(ClusterError::Missing(self.log.partition())),
                    _ => {}
                }
                self.chain = next;
            }
            self.mark()
                .map_err(|e| ClusterError::Corrupt(format!("the copy's mark: {e}")))?;
        }
    }

    /// Takes the partition over for a freshly acquired lease: applies the records appended
    /// since the copy's position, appends `Took`, and from then on the copy's flushes append
    /// through the new owner. A record that cannot be applied gives the partition up (its
    /// guard fenced): the copy would no longer be the log's.
    pub async fn take_over(&mut self, holding: Holding) -> Result<Guard, AppendError> {
        let guard = holding.guard.clone();
        // From here on the copy is an owner's: never reused after a restart.
        if let Err(e) = self.store.clear_copy_mark() {
            guard.fence();
            return Err(ClusterError::Corrupt(format!("the copy's mark: {e}")).into());
        }
        let mut failed = None;
        let store = &self.store;
        let partial = &mut self.partial;
        // The chain before each record, for a flush's first piece (kept alongside, as
        // `Owned::take_over` moves its own).
        let mut before = self.chain.clone();
        let owned = Owned::take_over(holding, self.log.clone(), self.chain.clone(), |entry| {
            if failed.is_none() {
                failed = partial.take(store, entry, &before).err();
            }
            before = Chain {
                previous: entry.seq,
                epoch: entry.epoch.max(before.epoch),
            };
        })
        .await?;
        // Pieces of a flush its owner never finished: discarded (the `Took` would too).
        self.partial = Partial::default();
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
                    for piece in pieces(&record) {
                        owned
                            .append(Kind::Record, piece)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
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

pub use super::snapshot::{Snapshots, SNAPSHOTS};

impl Replica {
    /// Writes a snapshot of this standby's copy to `to` (every record, and the position in
    /// the log it covers; [`super::snapshot`]), then purges the log's records before that
    /// position. Answers the position. An owner's copy is written while it would be read:
    /// refused.
    pub async fn snapshot(&self, to: &Snapshots) -> Result<Chain, ClusterError> {
        if self.is_owner() {
            return Err(ClusterError::Config(
                "an owner's copy is written while a snapshot would read it".into(),
            ));
        }
        // A flush being read is not in the copy yet: the snapshot covers what was applied.
        let chain = self
            .partial
            .before
            .clone()
            .unwrap_or_else(|| self.chain.clone());
        to.write(self.log.partition(), &chain, self.store.clone())
            .await?;
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
    /// latest snapshot in `from`, read a frame at a time, standing by at the position it
    /// covers; a fresh copy when there is none. A snapshot that cannot be read whole leaves no
    /// copy behind (the directory is removed).
    pub async fn restore(
        dir: &Path,
        log: PartitionLog,
        shards: u16,
        cache_bytes: u64,
        from: &Snapshots,
    ) -> Result<Replica, ClusterError> {
        let partition = log.partition();
        let mut copy = Replica::open(dir, log, shards, cache_bytes)
            .map_err(|e| ClusterError::Config(format!("a copy in {}: {e}", dir.display())))?;
        let chain = match from.read_into(partition, &copy.store).await {
            Ok(Some(chain)) => chain,
            Ok(None) => return Ok(copy),
            // Half restored: nobody may take it for a copy.
            Err(e) => {
                drop(copy);
                super::copies::remove_copy_dir(partition, dir);
                return Err(e);
            }
        };
        copy.chain = chain;
        copy.mark()
            .map_err(|e| ClusterError::Corrupt(format!("the copy's mark: {e}")))?;
        Ok(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::changelog::Change;

    fn entry(seq: u64, kind: Kind, payload: Bytes) -> Entry {
        Entry {
            seq,
            after: seq - 1,
            epoch: 1,
            kind,
            payload,
        }
    }

    /// A flush of `n` puts of `size`-byte values into tree `t`, keys from `from`, encoded.
    fn flush(from: u32, n: u32, size: usize) -> Vec<u8> {
        let changes: Vec<Change> = (from..from + n)
            .map(|i| Change::Put {
                tree: "t".into(),
                key: i.to_be_bytes().to_vec().into(),
                value: vec![i as u8; size].into(),
            })
            .collect();
        changelog::encode(&changes)
    }

    /// A flush larger than a record goes out in pieces and is applied once its last piece is
    /// read; an unfinished flush is discarded by the next flush's first piece (which carries
    /// its changes again) or by another owner's `Took`.
    #[test]
    fn a_flush_in_pieces_is_applied_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_logged(dir.path(), 1, 8 << 20, Publisher::default()).unwrap();
        let tree = store.db_tree_for_tests("t");
        let big = flush(0, 40, 50_000); // about 2 MB: three pieces
        let first = pieces(&big);
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|p| p.len() <= CHUNK + 1));
        let mut partial = Partial::default();
        let mut seq = 0;
        let mut read = |partial: &mut Partial, kind: Kind, payload: Bytes| {
            seq += 1;
            let chain = Chain {
                previous: seq - 1,
                epoch: 1,
            };
            partial.take(&store, &entry(seq, kind, payload), &chain)
        };
        read(&mut partial, Kind::Record, first[0].clone()).unwrap();
        read(&mut partial, Kind::Record, first[1].clone()).unwrap();
        assert_eq!(tree.len(), 0, "applied before its last piece");
        assert_eq!(partial.before.as_ref().map(|c| c.previous), Some(0));
        // Published again whole (the last piece's append failed): the first attempt is dropped.
        for piece in &first {
            read(&mut partial, Kind::Record, piece.clone()).unwrap();
        }
        assert_eq!(tree.len(), 40);
        assert!(partial.before.is_none());
        // An owner dies halfway: its successor's Took discards what it left.
        let next = pieces(&flush(100, 40, 50_000));
        read(&mut partial, Kind::Record, next[0].clone()).unwrap();
        read(&mut partial, Kind::Took, Bytes::from("n2")).unwrap();
        read(
            &mut partial,
            Kind::Record,
            pieces(&flush(200, 1, 10))[0].clone(),
        )
        .unwrap();
        assert_eq!(tree.len(), 41);
        assert!(tree.get(100u32.to_be_bytes()).unwrap().is_none());
        // A small flush is one piece.
        assert_eq!(super::pieces(&flush(0, 1, 10)).len(), 1);
    }
}
