//! Tenant-global data in a cluster of several partitions (issue 16, `docs/SCALING.md`
//! "Several partitions, as built"): partition 0 is where tenants, keys, components, journeys,
//! channels, templates and signing secrets are written ([`crate::store::GLOBAL_TREES`]), and the
//! owner of every other partition mirrors them from partition 0's log into its own copy.
//!
//! A mirror reads partition 0's log as a standby does — the same chain, the same flushes in
//! pieces — keeps only the changes to the global trees, and writes them into its partition's
//! store as the partition's own writes, so they reach the partition's log and its standbys
//! with everything else, and a new owner finds them in its copy. Where it stands is written in
//! the partition's `meta` after the changes it covers ([`Store::set_mirror_mark`]; only with
//! changes, or every [`MARK_EVERY`] records of partition 0 read without any); an owner
//! that dies between the two mirrors the same changes again, which writes the same final
//! values. It is Kafka Streams' global table, kept inside each partition's state.
//!
//! A mirror whose position partition 0's log has purged since (a snapshot of partition 0 was
//! taken while this partition was not mirrored) starts again from partition 0's snapshot: its
//! global trees cleared, then filled from the snapshot's.

use super::log::{Chain, PartitionLog, Verdict};
use super::replica::{mark, read_mark, Partial};
use super::snapshot::Snapshots;
use super::ClusterError;
use crate::store::changelog::Change;
use crate::store::{Store, GLOBAL_TREES};
use std::collections::BTreeSet;

/// What a round of mirroring changed: the tenants whose records it wrote (the first part of
/// each key), or everything (a global tree cleared).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Tenants (or keys' first parts) whose global records changed.
    pub tenants: BTreeSet<String>,
    /// A whole global tree changed.
    pub everything: bool,
}

impl Touched {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.everything && self.tenants.is_empty()
    }

    fn add(&mut self, change: &Change) {
        match change {
            Change::Put { key, .. } | Change::Remove { key, .. } => {
                let first = key.split(|b| *b == 0x1f).next().unwrap_or(key);
                self.tenants
                    .insert(String::from_utf8_lossy(first).into_owned());
            }
            Change::Clear { .. } => self.everything = true,
            Change::Id(_) => {}
        }
    }
}

/// Whether `change` writes a tenant-global tree.
fn is_global(change: &Change) -> bool {
    match change {
        Change::Put { tree, .. } | Change::Remove { tree, .. } | Change::Clear { tree } => {
            GLOBAL_TREES.iter().any(|t| t.as_bytes() == tree.as_ref())
        }
        Change::Id(_) => false,
    }
}

/// A partition's mirror of partition 0's tenant-global trees.
pub struct Mirror {
    /// Partition 0's log.
    log: PartitionLog,
    chain: Chain,
    partial: Partial,
    /// Records read since the mark was last written.
    unmarked: u64,
}

/// How many of partition 0's records a mirror reads past its mark, at most, when none of
/// them changed a global tree: partition 0's every flush would otherwise be a write (and a
/// record) on every other partition; after a restart the mirror reads these again, changing
/// nothing.
const MARK_EVERY: u64 = 1_024;

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("chain", &self.chain)
            .finish()
    }
}

impl Mirror {
    /// The mirror kept in `store` (a partition's copy, its owner's), reading `log` (partition
    /// 0's) from where the store's mark says; from the log's start when it has none, or one of
    /// another incarnation of the stream (the global trees are then filled again from scratch).
    pub fn open(store: &Store, log: PartitionLog) -> Result<Mirror, ClusterError> {
        let stored = store
            .mirror_mark()
            .map_err(|e| ClusterError::Corrupt(format!("the mirror's mark: {e}")))?;
        let chain = match stored.as_deref().and_then(read_mark) {
            Some((chain, stream)) if stream == log.identity() => chain,
            Some(_) => {
                clear_global(store)?;
                Chain::default()
            }
            None => Chain::default(),
        };
        Ok(Mirror {
            log,
            chain,
            partial: Partial::default(),
            unmarked: 0,
        })
    }

    /// Where the mirror's reading of partition 0's log stands.
    pub fn position(&self) -> u64 {
        self.chain.previous
    }

    /// Mirrors every record of partition 0 appended after the mirror's position into `store`;
    /// answers what changed. A position purged from the log starts the mirror again from
    /// partition 0's latest snapshot in `snapshots`.
    pub async fn follow(
        &mut self,
        store: &Store,
        snapshots: &Snapshots,
    ) -> Result<Touched, ClusterError> {
        let mut touched = Touched::default();
        loop {
            let entries = self.log.read_after(self.chain.previous, 256).await?;
            if entries.is_empty() {
                return Ok(touched);
            }
            let mut recorded = false;
            self.unmarked += entries.len() as u64;
            for entry in &entries {
                let mut next = self.chain.clone();
                match next.judge(entry) {
                    Verdict::Apply => {
                        if let Some(changes) = self.partial.complete(entry, &self.chain)? {
                            let global: Vec<Change> =
                                changes.into_iter().filter(is_global).collect();
                            if !global.is_empty() {
                                store.record_changes(&global).map_err(|e| {
                                    ClusterError::Corrupt(format!(
                                        "partition 0's record {} not mirrored: {e}",
                                        entry.seq
                                    ))
                                })?;
                                global.iter().for_each(|c| touched.add(c));
                                recorded = true;
                            }
                        }
                    }
                    Verdict::Missing => {
                        self.restore(store, snapshots).await?;
                        touched.everything = true;
                        // Read on from the snapshot's position.
                        break;
                    }
                    _ => {}
                }
                self.chain = next;
            }
            if recorded || self.unmarked >= MARK_EVERY {
                self.mark(store)?;
            }
        }
    }

    /// Starts the mirror again from partition 0's latest snapshot: the global trees cleared,
    /// then the snapshot's written.
    async fn restore(&mut self, store: &Store, snapshots: &Snapshots) -> Result<(), ClusterError> {
        tracing::info!("partition 0's log was purged past this mirror: starting from its snapshot");
        clear_global(store)?;
        let chain = snapshots
            .read_with(0, |changes| {
                let global: Vec<Change> = changes.into_iter().filter(is_global).collect();
                store.record_changes(&global)
            })
            .await?
            .unwrap_or_default();
        self.chain = chain;
        self.partial = Partial::default();
        self.mark(store)
    }

    /// Writes where the mirror stands (before a flush it is still reading) after what it wrote.
    fn mark(&mut self, store: &Store) -> Result<(), ClusterError> {
        self.unmarked = 0;
        let at = self.partial.before.as_ref().unwrap_or(&self.chain);
        store
            .set_mirror_mark(&mark(at, self.log.identity()))
            .map_err(|e| ClusterError::Corrupt(format!("the mirror's mark: {e}")))
    }
}

/// Clears every global tree of `store`, as its own writes.
fn clear_global(store: &Store) -> Result<(), ClusterError> {
    let clears: Vec<Change> = GLOBAL_TREES
        .iter()
        .map(|t| Change::Clear {
            tree: t.as_bytes().into(),
        })
        .collect();
    store
        .record_changes(&clears)
        .map_err(|e| ClusterError::Corrupt(format!("the global trees not cleared: {e}")))
}
