//! A store's changelog (issue 16): every write to a *logged* database, in the order it was
//! applied, so that another database applying the same writes in the same order holds the same
//! records.
//!
//! A cluster node's partition state is a materialised view of its partition's log
//! (`docs/SCALING.md`). What goes into the log is not a record per kind of change (a batch's
//! commit, a timer firing, a delivery attempt, each with code to apply it on a standby) but the
//! physical writes under them, as a Kafka Streams changelog topic holds a state store's puts and
//! deletes: one mechanism covers every writer of the store (the worker, ingest, the scheduler,
//! the delivery committer, the API), and a standby applies writes without knowing what they
//! mean, so it can never apply one differently from the owner.
//!
//! How the order is kept: a logged database ([`super::kv::Db::logged`]) takes its changelog's
//! lock around every write and records the write before letting go, so the order in the log is
//! the order the writes were applied in. A transaction records its writes only once it has
//! committed, all together (a retried or aborted closure records nothing). [`Changelog::take`]
//! hands out everything recorded so far: a prefix of the store's history, made of whole
//! transactions. Applying a set again from the start of a set already applied (a standby that
//! stopped halfway) ends in the same records: each change sets a final value.
//!
//! Sequence numbers (`generate_id`, which numbers queue entries and so the event log) are
//! recorded too: a replica raises its floor past every number its owner handed out, so after
//! a takeover it never hands out one again.

use super::kv::{Batch, Db, IVec, Tree};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One write of a logged database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        tree: IVec,
        key: IVec,
        value: IVec,
    },
    Remove {
        tree: IVec,
        key: IVec,
    },
    /// Every key of the tree removed (`clear`, or the tree dropped).
    Clear {
        tree: IVec,
    },
    /// A sequence number handed out.
    Id(u64),
}

/// The tree [`Changelog`] keeps its own state in, in the database it logs (not itself logged).
pub(crate) const TREE: &str = "__changelog";
const NEXT_ID: &str = "next_id";

/// The tree a copy of a partition keeps its mark in ([`super::Store::copy_mark`]): not logged,
/// not dumped, not in the digest — it says where this copy stands, which is no other copy's.
const COPY_TREE: &str = "__copy";
const COPY_MARK: &str = "mark";

/// The writes of a logged database not yet taken, and the floor of its sequence numbers.
pub struct Changelog {
    pending: Mutex<Vec<Change>>,
    /// No sequence number below this is handed out: one past the highest this database or the
    /// owner whose log it applied handed out.
    next_id: AtomicU64,
    /// Where `next_id` is kept, so a restart keeps the floor.
    own: Tree,
}

impl Changelog {
    /// The changelog of `db`, its floor read back from the database.
    pub(crate) fn open(db: &Db) -> sled::Result<Changelog> {
        let own = db.open_tree(TREE)?;
        let next_id = own
            .get(NEXT_ID)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        Ok(Changelog {
            pending: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(next_id),
            own,
        })
    }

    /// Holds the log: writes made while it is held are recorded in the order they are made.
    ///
    /// A write to a logged database from inside one of its own transactions' closures would
    /// wait for the lock its own thread holds: that is a programming error, and it panics
    /// rather than hanging.
    pub(crate) fn hold(&self) -> Held<'_> {
        let address = self as *const Changelog as usize;
        HOLDING.with(|held| {
            assert_ne!(
                held.get(),
                address,
                "a write to a logged database inside one of its own transactions"
            );
            held.set(address);
        });
        Held(self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Everything recorded since the last call, in order.
    pub fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.hold())
    }

    /// One past the highest sequence number handed out or applied.
    pub fn next_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }

    /// Puts `changes` (taken, then not published) back in front of what was recorded since.
    pub fn restore(&self, mut changes: Vec<Change>) {
        let mut held = self.hold();
        changes.append(&mut held);
        *held = changes;
    }

    /// Hands out a sequence number: `generated` (the database's own) unless the floor is
    /// above it. Called with the log held.
    pub(crate) fn id(&self, generated: u64, log: &mut Held<'_>) -> sled::Result<u64> {
        let id = generated.max(self.next_id.load(Ordering::Relaxed));
        self.raise(id + 1)?;
        log.push(Change::Id(id));
        Ok(id)
    }

    fn raise(&self, next: u64) -> sled::Result<()> {
        if self.next_id.fetch_max(next, Ordering::Relaxed) < next {
            self.own.put(NEXT_ID, &next.to_be_bytes())?;
        }
        Ok(())
    }

    /// Applies `changes` (another database's, in its order) to `db`, the database this
    /// changelog logs, without recording them: they are that other database's history.
    pub(crate) fn apply(&self, db: &Db, changes: &[Change]) -> sled::Result<()> {
        self.apply_as(db, changes, false)
    }

    /// [`Changelog::apply`], and with `record` the changes recorded too, as this database's
    /// own writes (published by its next flush): what a partition mirrors of another's.
    pub(crate) fn apply_as(&self, db: &Db, changes: &[Change], record: bool) -> sled::Result<()> {
        let mut held = self.hold();
        // Consecutive writes to one tree go in one batch (later writes of a key win, as in the
        // log); a clear applies the tree's batch before it.
        let mut batches: Vec<(IVec, Batch)> = Vec::new();
        let apply = |batches: &mut Vec<(IVec, Batch)>, tree: Option<&IVec>| -> sled::Result<()> {
            let mut rest = Vec::new();
            for (name, batch) in batches.drain(..) {
                if tree.is_none_or(|t| *t == name) {
                    db.open_tree(&name)?.apply_batch(batch)?;
                } else {
                    rest.push((name, batch));
                }
            }
            *batches = rest;
            Ok(())
        };
        let batch = |batches: &mut Vec<(IVec, Batch)>, tree: &IVec| -> usize {
            match batches.iter().position(|(t, _)| t == tree) {
                Some(i) => i,
                None => {
                    batches.push((tree.clone(), Batch::default()));
                    batches.len() - 1
                }
            }
        };
        for change in changes {
            match change {
                Change::Put { tree, key, value } => {
                    let i = batch(&mut batches, tree);
                    batches[i].1.insert(key.clone(), value.clone());
                }
                Change::Remove { tree, key } => {
                    let i = batch(&mut batches, tree);
                    batches[i].1.remove(key.clone());
                }
                Change::Clear { tree } => {
                    apply(&mut batches, Some(tree))?;
                    db.open_tree(tree)?.clear()?;
                }
                Change::Id(id) => self.raise(id + 1)?,
            }
        }
        apply(&mut batches, None)?;
        if record {
            held.extend(changes.iter().cloned());
        }
        Ok(())
    }
}

thread_local! {
    /// The changelog this thread holds, as an address; 0 when none.
    static HOLDING: Cell<usize> = const { Cell::new(0) };
}

/// A held changelog ([`Changelog::hold`]): its pending writes.
pub(crate) struct Held<'a>(MutexGuard<'a, Vec<Change>>);

impl std::ops::Deref for Held<'_> {
    type Target = Vec<Change>;

    fn deref(&self) -> &Vec<Change> {
        &self.0
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Vec<Change> {
        &mut self.0
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        HOLDING.with(|held| held.set(0));
    }
}

impl super::Store {
    /// The tree `name` of the store's database, for tests that write trees of their own.
    #[cfg(test)]
    pub(crate) fn db_tree_for_tests(&self, name: &str) -> super::kv::Tree {
        self.db.open_tree(name).unwrap()
    }

    /// Every record the store holds (sled's tree, the changelog's and the copy's own aside) as
    /// changes that build the same store in an empty logged one, handed to `emit` in chunks of
    /// about `chunk_bytes` of keys and values; the sequence number floor comes last. The store
    /// must not be written meanwhile (a standby's copy between two reads of its log).
    pub fn dump(
        &self,
        chunk_bytes: usize,
        mut emit: impl FnMut(Vec<Change>) -> Result<(), super::StoreError>,
    ) -> Result<(), super::StoreError> {
        let mut names = self.db.tree_names();
        names.retain(|n| {
            ![
                b"__sled__default".as_slice(),
                TREE.as_bytes(),
                COPY_TREE.as_bytes(),
            ]
            .contains(&n.as_ref())
        });
        names.sort();
        let (mut chunk, mut size) = (Vec::new(), 0);
        for tree in names {
            for entry in self.db.open_tree(&tree)?.iter() {
                let (key, value) = entry?;
                size += key.len() + value.len();
                chunk.push(Change::Put {
                    tree: tree.clone(),
                    key,
                    value,
                });
                if size >= chunk_bytes {
                    emit(std::mem::take(&mut chunk))?;
                    size = 0;
                }
            }
        }
        let next = match self.db.changelog() {
            Some(log) => log.next_id(),
            None => self.db.generate_id()?,
        };
        if next > 0 {
            chunk.push(Change::Id(next - 1));
        }
        emit(chunk)
    }

    /// The mark a copy of a partition left in this store ([`Store::set_copy_mark`]), if any.
    pub fn copy_mark(&self) -> Result<Option<Vec<u8>>, super::StoreError> {
        let tree = self.db.unlogged_tree(COPY_TREE)?;
        Ok(tree.get(COPY_MARK)?.map(|v| v.to_vec()))
    }

    /// Marks this store as a copy of a partition standing at `mark` (the copy's to interpret),
    /// around the log: applied changes written before it are in the database before it, so
    /// after a crash the mark is never ahead of what the copy holds.
    pub fn set_copy_mark(&self, mark: &[u8]) -> Result<(), super::StoreError> {
        self.db.unlogged_tree(COPY_TREE)?.put(COPY_MARK, mark)?;
        Ok(())
    }

    /// Removes the mark: this store is no longer a copy that stands anywhere (an owner's,
    /// which holds writes the log may not have).
    pub fn clear_copy_mark(&self) -> Result<(), super::StoreError> {
        self.db.unlogged_tree(COPY_TREE)?.remove(COPY_MARK)?;
        Ok(())
    }

    /// A digest of every record the store holds, tree by tree (sled's and the copy's own trees
    /// aside), each
    /// key and value length-prefixed: two copies of a partition that applied the same records
    /// have the same digest, and a difference anywhere changes it.
    pub fn digest(&self) -> Result<u64, super::StoreError> {
        let mut names = self.db.tree_names();
        names.retain(|n| n.as_ref() != b"__sled__default" && n.as_ref() != COPY_TREE.as_bytes());
        names.sort();
        let mut h = crate::hash::fnv1a(b"");
        let add = |h: &mut u64, b: &[u8]| {
            *h = crate::hash::fnv1a_continue(*h, &(b.len() as u64).to_be_bytes());
            *h = crate::hash::fnv1a_continue(*h, b);
        };
        for name in names {
            add(&mut h, &name);
            for entry in self.db.open_tree(&name)?.iter() {
                let (k, v) = entry?;
                add(&mut h, &k);
                add(&mut h, &v);
            }
        }
        Ok(h)
    }
}

/// The encoding's version: a record of another version is refused, never misread.
const VERSION: u8 = 1;

const PUT: u8 = 0;
const REMOVE: u8 = 1;
const CLEAR: u8 = 2;
const ID: u8 = 3;

/// `changes` as bytes: the version, the trees' names once each, then each change with its
/// tree's index; lengths and numbers as LEB128 varints.
pub fn encode(changes: &[Change]) -> Vec<u8> {
    let mut trees: Vec<&IVec> = Vec::new();
    for c in changes {
        if let Change::Put { tree, .. } | Change::Remove { tree, .. } | Change::Clear { tree } = c {
            if !trees.contains(&tree) {
                trees.push(tree);
            }
        }
    }
    let index = |tree: &IVec| trees.iter().position(|t| *t == tree).unwrap_or(0) as u64;
    let mut out = vec![VERSION];
    varint(&mut out, trees.len() as u64);
    for t in &trees {
        bytes(&mut out, t);
    }
    for c in changes {
        match c {
            Change::Put { tree, key, value } => {
                out.push(PUT);
                varint(&mut out, index(tree));
                bytes(&mut out, key);
                bytes(&mut out, value);
            }
            Change::Remove { tree, key } => {
                out.push(REMOVE);
                varint(&mut out, index(tree));
                bytes(&mut out, key);
            }
            Change::Clear { tree } => {
                out.push(CLEAR);
                varint(&mut out, index(tree));
            }
            Change::Id(id) => {
                out.push(ID);
                varint(&mut out, *id);
            }
        }
    }
    out
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads what [`encode`] wrote; an error says what is wrong with it.
pub fn decode(input: &[u8]) -> Result<Vec<Change>, String> {
    let mut r = Reader(input);
    match r.byte()? {
        VERSION => {}
        v => {
            return Err(format!(
                "a changelog record of version {v} (this host reads {VERSION})"
            ))
        }
    }
    let count = r.varint()?;
    let mut trees = Vec::new();
    for _ in 0..count {
        trees.push(IVec::from(r.bytes()?));
    }
    let tree = |r: &mut Reader| -> Result<IVec, String> {
        let i = r.varint()?;
        trees
            .get(i as usize)
            .cloned()
            .ok_or_else(|| format!("tree {i} of {} named", trees.len()))
    };
    let mut changes = Vec::new();
    while !r.0.is_empty() {
        changes.push(match r.byte()? {
            PUT => Change::Put {
                tree: tree(&mut r)?,
                key: r.bytes()?.into(),
                value: r.bytes()?.into(),
            },
            REMOVE => Change::Remove {
                tree: tree(&mut r)?,
                key: r.bytes()?.into(),
            },
            CLEAR => Change::Clear {
                tree: tree(&mut r)?,
            },
            ID => Change::Id(r.varint()?),
            tag => return Err(format!("unknown change kind {tag}")),
        });
    }
    Ok(changes)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let (&b, rest) = self.0.split_first().ok_or("a changelog record cut short")?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err("a number too long in a changelog record".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()? as usize;
        if len > self.0.len() {
            return Err("a changelog record cut short".into());
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{self, customer, enrollment, message, task, timer};
    use crate::store::outbox::{AttemptRecord, MessageStatus};
    use crate::store::{Publisher, Store, StoreError};
    use std::sync::{Arc, Mutex};

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    /// Every tree of `store` but sled's own, as (name, entries).
    fn contents(store: &Store) -> Vec<(Vec<u8>, Entries)> {
        let mut names = store.db.tree_names();
        names.sort();
        names
            .into_iter()
            .filter(|n| n.as_ref() != b"__sled__default")
            .map(|n| {
                let entries = store
                    .db
                    .open_tree(&n)
                    .unwrap()
                    .iter()
                    .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                    .collect();
                (n.to_vec(), entries)
            })
            .collect()
    }

    /// A store's writes through the real paths — ingest (which flushes), a batch's commit, due
    /// timers fired, delivery attempts recorded — reach its publisher as records that a copy
    /// applies to hold exactly the same records, tree for tree; a failed publish loses nothing
    /// (the next flush carries its changes); a copy without a publisher cannot flush.
    #[tokio::test]
    async fn a_copy_applying_a_logged_stores_records_holds_the_same_records() {
        let records = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let publish = |records: Arc<Mutex<Vec<Vec<u8>>>>| -> Publisher {
            Arc::new(Mutex::new(Some(Box::new(move |r: Vec<u8>| {
                records.lock().unwrap().push(r);
                Ok(())
            }))))
        };
        let publisher = publish(records.clone());
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let owner = Store::open_logged(d1.path(), 1, 8 << 20, publisher.clone()).unwrap();
        let copy = Store::open_logged(d2.path(), 1, 8 << 20, Arc::default()).unwrap();

        let events: Vec<_> = (0..20)
            .map(|i| crate::model::Event {
                id: format!("e{i}"),
                customer: format!("c{}", i % 4),
                name: "seen".into(),
                properties: Default::default(),
                timestamp: i,
            })
            .collect();
        owner.ingest("t", &events, 100, None).await.unwrap();
        let mut c = fixtures::logged_commit(&owner, "t", "e-last", "alice").await;
        c.customer = Some(customer("alice"));
        c.enrollments = vec![enrollment("alice", "welcome", 1)];
        c.timers_set = vec![timer("alice", "nudge", 50), timer("alice", "later", 5_000)];
        let pending = message("m1", "email", MessageStatus::Pending, 10);
        c.outbox = vec![pending.clone()];
        c.tasks = vec![task("k1")];
        c.event_customer = Some("alice".into());
        owner.commit_triggers(&[c]).unwrap();
        owner.flush().await.unwrap();
        assert_eq!(owner.fire_due_timers(1_000, 10).unwrap(), 1);
        let delivered = crate::store::outbox::Message {
            status: MessageStatus::Delivered,
            attempts: 1,
            delivered_at: Some(20),
            ..pending.clone()
        };
        owner
            .record_attempts(&[AttemptRecord {
                before: pending,
                after: delivered,
                report: None,
                counter: None,
            }])
            .unwrap();
        owner.flush().await.unwrap();

        // A publish that fails fails the flush, and the next one carries its changes.
        *publisher.lock().unwrap() = Some(Box::new(|_| Err("no quorum".into())));
        owner.save_manual_clock(7).await.unwrap_err();
        *publisher.lock().unwrap() = publish(records.clone()).lock().unwrap().take();
        owner.flush().await.unwrap();

        let records = records.lock().unwrap().clone();
        // What opening wrote (the format's marks) is the copy's own; applying records nothing.
        copy.db.changelog().unwrap().take();
        assert!(records.len() >= 4, "{} records", records.len());
        for r in &records {
            copy.apply_changes(&decode(r).unwrap()).unwrap();
        }
        assert_eq!(copy.manual_clock().unwrap(), Some(7));
        assert_eq!(contents(&copy), contents(&owner));
        assert!(copy.db.changelog().unwrap().take().is_empty());
        match copy.flush().await {
            Ok(()) => {} // nothing written: nothing to publish
            Err(e) => panic!("an empty flush failed: {e}"),
        }
        copy.meta.insert("k", "v").unwrap();
        assert!(matches!(copy.flush().await, Err(StoreError::Flush(_))));
    }

    #[test]
    fn records_of_another_version_or_cut_short_are_refused() {
        let changes = vec![
            Change::Put {
                tree: "a".into(),
                key: vec![0; 300].into(),
                value: "v".into(),
            },
            Change::Remove {
                tree: "b".into(),
                key: "k".into(),
            },
            Change::Clear { tree: "a".into() },
            Change::Id(u64::MAX),
        ];
        let bytes = encode(&changes);
        assert_eq!(decode(&bytes).unwrap(), changes);
        for cut in 1..bytes.len() {
            if let Ok(read) = decode(&bytes[..cut]) {
                assert!(read.len() < changes.len(), "cut at {cut} read whole");
            }
        }
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(decode(&other).unwrap_err().contains("version 2"));
    }
}
