//! A node's copies of partitions (issue 16, [`super::node`]): one [`Replica`] per partition it
//! holds or stands by for, each in a directory of its own under the node's copies' directory,
//! followed every tick, snapshotted by the standby; what a previous run of the node left there
//! is reopened where it stood when the node stands by for its partition again.

use super::node::NodeCounters;
use super::replica::{Replica, Snapshots};
use super::{ClusterError, Nats};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a standby snapshots its copy by default ([`super::node::Node::snapshot_every`]).
const SNAPSHOT_EVERY: (u64, Duration) = (10_000, Duration::from_secs(600));

/// The page cache of each partition's copy.
const COPY_CACHE: u64 = 32 << 20;

/// The copies of the partitions a node holds or stands by for.
#[derive(Debug)]
pub(super) struct Copies {
    nats: Nats,
    copies: BTreeMap<u16, Replica>,
    /// Where the copies are kept, each in a directory of its own.
    dir: PathBuf,
    /// How many copies this node opened, for their directories' names.
    opened: u64,
    /// Copies a previous run of this node left (standing by when it stopped, if they kept
    /// their mark), by partition: each is reopened when the node stands by for its partition
    /// again, and removed if it is not by `leftovers_until`.
    leftovers: BTreeMap<u16, PathBuf>,
    leftovers_until: Instant,
    /// Where copies start from, and where standbys write theirs.
    snapshots: Snapshots,
    /// The copies' queue shards and page cache ([`super::node::Node::copies_with`]).
    pub(super) shards: u16,
    pub(super) cache: u64,
    /// A standby snapshots its copy after this many records applied, or this long after its
    /// last with at least one applied.
    pub(super) snapshot_every: (u64, Duration),
    counters: NodeCounters,
}

impl Copies {
    /// The copies kept under `dir` (created if missing), with what a previous run left there
    /// kept for `2 × period` to be reopened.
    pub(super) fn open(
        nats: Nats,
        dir: &Path,
        partitions: u16,
        period: Duration,
        snapshots: Snapshots,
    ) -> std::io::Result<Copies> {
        std::fs::create_dir_all(dir)?;
        let (leftovers, opened) = leftovers(dir, partitions)?;
        Ok(Copies {
            nats,
            copies: BTreeMap::new(),
            dir: dir.to_owned(),
            opened,
            leftovers,
            leftovers_until: Instant::now() + 2 * period,
            snapshots,
            shards: 1,
            cache: COPY_CACHE,
            snapshot_every: SNAPSHOT_EVERY,
            counters: NodeCounters::default(),
        })
    }

    /// The same, counting snapshots and copies made in `counters`.
    pub(super) fn counted_by(self, counters: NodeCounters) -> Copies {
        Copies { counters, ..self }
    }

    /// Where each standby copy has read its log to.
    pub(super) fn standing_at(&self) -> BTreeMap<u16, u64> {
        self.copies
            .iter()
            .filter(|(_, copy)| !copy.is_owner())
            .map(|(p, copy)| (*p, copy.chain().previous))
            .collect()
    }

    /// The store of `partition`'s copy, if there is one.
    pub(super) fn store(&self, partition: u16) -> Option<Store> {
        self.copies.get(&partition).map(|c| c.store().clone())
    }

    /// `partition`'s copy to take the partition over with: the standby's, up to where it
    /// followed the log, else one from the partition's latest snapshot (or a fresh one), which
    /// reads the log from there. Put back once taken over ([`Copies::put_back`]).
    pub(super) async fn take(&mut self, partition: u16) -> Result<Replica, String> {
        if let Some(copy) = self.copies.remove(&partition) {
            return Ok(copy);
        }
        let dir = self.next_dir(partition);
        let log = self.nats.log(partition).await.map_err(|e| e.to_string())?;
        let copy = Replica::restore(&dir, log, self.shards, self.cache, &self.snapshots)
            .await
            .map_err(|e| e.to_string())?;
        self.counters.copies_restored.inc();
        Ok(copy)
    }

    /// Keeps `copy` as `partition`'s (an owner's, dropped once the partition is not held).
    pub(super) fn put_back(&mut self, partition: u16, copy: Replica) {
        self.copies.insert(partition, copy);
    }

    /// A directory for a new copy of `partition`.
    fn next_dir(&mut self, partition: u16) -> PathBuf {
        self.opened += 1;
        self.dir.join(format!("p{partition}-{}", self.opened))
    }

    /// Keeps the copies a node needs, holding `holds` and standing by for `standing_by`: a
    /// copy of a partition it held and no longer holds is dropped (it may hold writes its log
    /// refused); each partition it stands by for has a copy (reopened from the last run's, or
    /// restored from the snapshot), brought up to its log's end and snapshotted when due; the
    /// others' are dropped.
    pub(super) async fn keep(
        &mut self,
        holds: &BTreeSet<u16>,
        standing_by: BTreeSet<u16>,
    ) -> Result<(), ClusterError> {
        let keep = |p: &u16, copy: &Replica| {
            if copy.is_owner() {
                holds.contains(p)
            } else {
                standing_by.contains(p)
            }
        };
        let dropped: Vec<u16> = self
            .copies
            .iter()
            .filter(|(p, copy)| !keep(p, copy))
            .map(|(p, _)| *p)
            .collect();
        for partition in dropped {
            self.drop_copy(partition);
        }
        for partition in standing_by {
            if !self.copies.contains_key(&partition) {
                let copy = self.reopen_or_restore(partition).await?;
                self.copies.insert(partition, copy);
            }
            let copy = self.copies.get_mut(&partition).expect("just made");
            match copy.follow().await {
                Ok(_) => {}
                // Purged past the copy, or unreadable: the next tick starts from the snapshot.
                Err(e @ (ClusterError::Missing(_) | ClusterError::Corrupt(_))) => {
                    tracing::warn!(partition, error = %e, "dropping a copy");
                    self.drop_copy(partition);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "following the log failed");
                    continue;
                }
            }
            let (records, every) = self.snapshot_every;
            if copy.snapshot_due(records, every) {
                match copy.take_snapshot(&self.snapshots).await {
                    Ok(at) => {
                        self.counters.snapshots.inc();
                        tracing::info!(partition, through = at.previous, "snapshot written")
                    }
                    Err(e) => {
                        self.counters.snapshot_failures.inc();
                        tracing::warn!(partition, error = %e, "a snapshot failed")
                    }
                }
            }
        }
        if Instant::now() >= self.leftovers_until {
            for (partition, dir) in std::mem::take(&mut self.leftovers) {
                remove_copy_dir(partition, &dir);
            }
        }
        Ok(())
    }

    /// A standby's copy of `partition`: the one the last run left, where it stood, if it can go
    /// on from there; else one restored from the partition's snapshot.
    async fn reopen_or_restore(&mut self, partition: u16) -> Result<Replica, ClusterError> {
        let log = self.nats.log(partition).await?;
        if let Some(dir) = self.leftovers.remove(&partition) {
            match Replica::reopen(&dir, log.clone(), self.shards, self.cache).await {
                Ok(Some(copy)) => {
                    tracing::info!(
                        partition,
                        from = copy.chain().previous,
                        "going on from the copy left by the last run"
                    );
                    self.counters.copies_reopened.inc();
                    return Ok(copy);
                }
                Ok(None) | Err(ClusterError::Config(_)) => remove_copy_dir(partition, &dir),
                // NATS unreachable: the copy waits for the next tick.
                Err(error) => {
                    self.leftovers.insert(partition, dir);
                    return Err(error);
                }
            }
        }
        let dir = self.next_dir(partition);
        let copy = Replica::restore(&dir, log, self.shards, self.cache, &self.snapshots).await?;
        self.counters.copies_restored.inc();
        Ok(copy)
    }

    /// Drops a partition's copy and its directory.
    fn drop_copy(&mut self, partition: u16) {
        if let Some(copy) = self.copies.remove(&partition) {
            let dir = copy.dir().to_owned();
            drop(copy);
            remove_copy_dir(partition, &dir);
        }
    }
}

/// The copies a previous run of a node left in `dir` (named `p<partition>-<n>`), the latest of
/// each partition below `partitions`, and the highest `n` seen; anything else in `dir` is
/// removed (older copies, partitions no longer in the cluster, what is not a copy).
fn leftovers(
    dir: &Path,
    partitions: u16,
) -> std::io::Result<(std::collections::BTreeMap<u16, std::path::PathBuf>, u64)> {
    let mut latest: std::collections::BTreeMap<u16, (u64, std::path::PathBuf)> = Default::default();
    let mut opened = 0;
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let copy = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('p')?.split_once('-'))
            .and_then(|(p, n)| Some((p.parse::<u16>().ok()?, n.parse::<u64>().ok()?)))
            .filter(|(p, _)| *p < partitions && path.is_dir());
        let Some((partition, n)) = copy else {
            stale.push(path);
            continue;
        };
        opened = opened.max(n);
        match latest.get(&partition) {
            Some((m, _)) if *m > n => stale.push(path),
            _ => {
                if let Some((_, older)) = latest.insert(partition, (n, path)) {
                    stale.push(older);
                }
            }
        }
    }
    for path in stale {
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    let copies = latest.into_iter().map(|(p, (_, path))| (p, path)).collect();
    Ok((copies, opened))
}

/// Removes a copy's directory (the copy dropped first), saying so if it cannot.
pub(super) fn remove_copy_dir(partition: u16, dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(partition, error = %e, dir = %dir.display(), "removing a copy failed");
    }
}
