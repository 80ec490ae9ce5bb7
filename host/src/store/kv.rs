//! The trees the store keeps its records in: sled's on disk, or ordered maps in memory for a
//! scratch store (issue 13).
//!
//! A backtest's scratch store needs none of what sled is for — nothing in it outlives the
//! replay — and sled's transactions, page copies and log buffers were most of a replay's cost
//! (docs/BENCHMARKS.md, "Backtest throughput"). So the store's modules are written against
//! the types here, which mirror the subset of sled 0.34's API they use (same names, same
//! signatures, sled's own error and value types), and each is either sled's or an in-memory
//! one:
//!
//! - [`Db::Sled`] / [`Tree::Sled`]: sled, unchanged — the live store is always this.
//! - [`Db::Mem`] / [`Tree::Mem`]: a hash map per tree, its keys also kept in order beside it
//!   ([`Map`]). Its consistency is sled 0.34's own
//!   (which takes a process-wide write lock for a transaction and a read lock for every other
//!   operation): a transaction holds its database's write lock while its closure runs and its
//!   writes are applied, so it sees no concurrent write and is seen whole or not at all; every
//!   other operation holds the read lock. A transaction writes straight into the maps and
//!   keeps what each write replaced, to put back if its closure fails (no other thread can
//!   look meanwhile); it never conflicts, so its closure runs once. Iterators are lazy, as
//!   sled's are: a step takes the locks, reads on from the last key it read, and lets go;
//!   like sled's, which read a leaf at a time, a long walk reads ahead a few keys at once
//!   (one, then twice as many each time, up to [`READ_AHEAD`]).
//!
//! The rest of the host never sees these types: they are the store module's seam.

use super::changelog::{Change, Changelog};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionResult, UnabortableTransactionError,
};
pub use sled::IVec;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

type Result<T> = sled::Result<T>;

mod map;
pub use map::Memo;
use map::{Map, Slot};

/// A database: sled's, or one in memory; either may be logged.
#[derive(Clone)]
pub enum Db {
    Sled(sled::Db),
    Mem(Arc<MemDb>),
    /// A database whose every write is recorded in its changelog (issue 16,
    /// [`super::changelog`]).
    Logged(Box<Db>, Arc<Changelog>),
}

/// A tree of a [`Db`]. Cheap to clone (a shared handle).
#[derive(Clone)]
pub enum Tree {
    Sled(sled::Tree),
    Mem(Arc<MemTree>),
    /// A tree of a logged database: the tree, the database's changelog, the tree's name.
    Logged(Box<Tree>, Arc<Changelog>, IVec),
}

/// An in-memory database: its trees, the lock that makes transactions atomic, its id counter.
pub struct MemDb {
    trees: Mutex<HashMap<IVec, Arc<MemTree>>>,
    shared: Arc<Shared>,
}

/// What a memory database's trees share.
struct Shared {
    /// Held for writing by a running transaction, for reading by every other operation.
    commit: RwLock<()>,
    ids: AtomicU64,
    /// What the database's keys and values take, in bytes, plus [`ENTRY_OVERHEAD`] for each
    /// entry ([`Db::memory_used`]).
    bytes: AtomicI64,
}

/// What one entry of an in-memory tree costs beyond its key's and value's bytes: the map's
/// node share and the two values' headers, as an estimate (issue 13: measured against the
/// process's resident memory in docs/BENCHMARKS.md).
const ENTRY_OVERHEAD: i64 = 64;

/// What an entry's key and value take in [`Shared::bytes`], by their lengths.
fn entry_size(key: usize, value: usize) -> i64 {
    (key + value) as i64 + ENTRY_OVERHEAD
}

/// What a memo ([`Memo`]) is counted as in [`Shared::bytes`], in times its value's encoded
/// size: a decoded record's strings, vectors and maps, with their headers, take about twice
/// what MessagePack does.
const MEMO_FACTOR: i64 = 2;

/// What an entry whose key is `key_len` bytes long takes in [`Shared::bytes`], its memo
/// included.
fn slot_size(key_len: usize, slot: &Slot) -> i64 {
    let memo = slot.memo.is_some() as i64 * MEMO_FACTOR * slot.bytes.len() as i64;
    entry_size(key_len, slot.bytes.len()) + memo
}

/// One in-memory tree.
pub struct MemTree {
    #[cfg_attr(not(test), allow(dead_code))]
    name: IVec,
    map: RwLock<Map>,
    shared: Arc<Shared>,
}

thread_local! {
    /// The [`Shared`] whose commit lock this thread holds for writing (a transaction is
    /// running on it), as an address; 0 when none. An operation called inside a transaction's
    /// closure on the same database must not wait for the lock its own thread holds.
    static IN_TRANSACTION: Cell<usize> = const { Cell::new(0) };
}

/// The read side of a database's commit lock, unless this thread's transaction holds it.
enum ReadGuard<'a> {
    Held(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    InTransaction,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `value` at `key` in `map` (removes it for `None`), counting the change in
/// `shared`; what the key held.
fn write_entry(map: &mut Map, shared: &Shared, key: IVec, value: Option<IVec>) -> Option<IVec> {
    let value = value.map(Slot::plain);
    write_slot(map, shared, key, value).map(|old| old.bytes)
}

/// Writes `value` (its bytes and its memo) at `key` in `map` (removes it for `None`),
/// counting the change in `shared`; what the key held.
fn write_slot(map: &mut Map, shared: &Shared, key: IVec, value: Option<Slot>) -> Option<Slot> {
    let size = |slot: Option<&Slot>| slot.map_or(0, |s| slot_size(key.len(), s));
    let new = size(value.as_ref());
    let (key_len, old) = (key.len(), map.put(key, value));
    shared.account(new - old.as_ref().map_or(0, |o| slot_size(key_len, o)));
    old
}

impl Shared {
    /// Counts a write that changed what the database holds by `change` bytes.
    fn account(&self, change: i64) {
        if change != 0 {
            self.bytes.fetch_add(change, Ordering::Relaxed);
        }
    }

    fn address(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    fn reading(self: &Arc<Self>) -> ReadGuard<'_> {
        if IN_TRANSACTION.with(Cell::get) == self.address() {
            ReadGuard::InTransaction
        } else {
            ReadGuard::Held(read(&self.commit))
        }
    }

    /// Runs `f` holding the commit lock for writing (or inside the transaction already
    /// holding it, when transactions nest on one thread).
    fn exclusively<T>(self: &Arc<Self>, f: impl FnOnce() -> T) -> T {
        let address = self.address();
        if IN_TRANSACTION.with(Cell::get) == address {
            return f();
        }
        let _lock = write(&self.commit);
        let outer = IN_TRANSACTION.with(|held| held.replace(address));
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                IN_TRANSACTION.with(|held| held.set(self.0));
            }
        }
        let _restore = Restore(outer);
        f()
    }
}

impl Db {
    /// A new, empty database in memory.
    pub fn memory() -> Db {
        Db::Mem(Arc::new(MemDb {
            trees: Mutex::new(HashMap::new()),
            shared: Arc::new(Shared {
                commit: RwLock::new(()),
                ids: AtomicU64::new(0),
                bytes: AtomicI64::new(0),
            }),
        }))
    }

    /// `db`, logged: every write from now on is recorded in its changelog, in the order the
    /// writes are applied.
    pub fn logged(db: Db) -> Result<Db> {
        let log = Changelog::open(&db)?;
        Ok(Db::Logged(Box::new(db), Arc::new(log)))
    }

    /// A logged database's changelog.
    pub fn changelog(&self) -> Option<&Arc<Changelog>> {
        match self {
            Db::Logged(_, log) => Some(log),
            _ => None,
        }
    }

    /// Applies another database's changes, in order, to this logged database, without
    /// recording them; for any other database, an error.
    pub fn apply_changes(&self, changes: &[Change]) -> Result<()> {
        match self {
            Db::Logged(db, log) => log.apply(db, changes),
            _ => Err(sled::Error::Unsupported(
                "changes are applied to a logged database".into(),
            )),
        }
    }

    /// Applies another database's changes, in order, to this logged database, recording
    /// them as its own writes (its next flush publishes them); for any other database, an
    /// error.
    pub fn record_changes(&self, changes: &[Change]) -> Result<()> {
        match self {
            Db::Logged(db, log) => log.apply_as(db, changes, true),
            _ => Err(sled::Error::Unsupported(
                "changes are recorded by a logged database".into(),
            )),
        }
    }

    pub fn open_tree<V: AsRef<[u8]>>(&self, name: V) -> Result<Tree> {
        match self {
            Db::Logged(db, log) => Ok(Tree::Logged(
                Box::new(db.open_tree(name.as_ref())?),
                log.clone(),
                IVec::from(name.as_ref()),
            )),
            Db::Sled(db) => db.open_tree(name).map(Tree::Sled),
            Db::Mem(db) => {
                let name = IVec::from(name.as_ref());
                let mut trees = db.trees.lock().unwrap_or_else(PoisonError::into_inner);
                let tree = trees.entry(name.clone()).or_insert_with(|| {
                    Arc::new(MemTree {
                        name,
                        map: RwLock::new(Map::default()),
                        shared: db.shared.clone(),
                    })
                });
                Ok(Tree::Mem(tree.clone()))
            }
        }
    }

    /// Drops a tree and its contents; whether it existed.
    pub fn drop_tree<V: AsRef<[u8]>>(&self, name: V) -> Result<bool> {
        match self {
            Db::Logged(db, log) => {
                let mut held = log.hold();
                let dropped = db.drop_tree(name.as_ref())?;
                if dropped {
                    held.push(Change::Clear {
                        tree: IVec::from(name.as_ref()),
                    });
                }
                Ok(dropped)
            }
            Db::Sled(db) => db.drop_tree(name),
            Db::Mem(db) => {
                let mut trees = db.trees.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(match trees.remove(name.as_ref()) {
                    Some(tree) => {
                        let _commit = db.shared.reading();
                        let mut map = write(&tree.map);
                        for (k, v) in map.take() {
                            db.shared.account(-slot_size(k.len(), &v));
                        }
                        true
                    }
                    None => false,
                })
            }
        }
    }

    /// Tree `name` written around the log of a logged database (a copy's own bookkeeping,
    /// which no other copy applies); any other database's tree `name`.
    pub fn unlogged_tree<V: AsRef<[u8]>>(&self, name: V) -> Result<Tree> {
        match self {
            Db::Logged(db, _) => db.open_tree(name),
            other => other.open_tree(name),
        }
    }

    /// The names of the trees the database holds.
    pub fn tree_names(&self) -> Vec<IVec> {
        match self {
            Db::Logged(db, _) => db.tree_names(),
            Db::Sled(db) => db.tree_names(),
            Db::Mem(db) => {
                let trees = db.trees.lock().unwrap_or_else(PoisonError::into_inner);
                trees.keys().cloned().collect()
            }
        }
    }

    /// A number never handed out before by this database.
    pub fn generate_id(&self) -> Result<u64> {
        match self {
            Db::Logged(db, log) => {
                let mut held = log.hold();
                log.id(db.generate_id()?, &mut held)
            }
            Db::Sled(db) => db.generate_id(),
            Db::Mem(db) => Ok(db.shared.ids.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// For a database in memory, about how much memory its trees hold, in bytes: their keys
    /// and values plus an estimate of each entry's overhead. `None` for sled's.
    pub fn memory_used(&self) -> Option<u64> {
        match self {
            Db::Logged(db, _) => db.memory_used(),
            Db::Sled(_) => None,
            Db::Mem(db) => Some(db.shared.bytes.load(Ordering::Relaxed).max(0) as u64),
        }
    }

    /// Writes what sled has buffered to its log; nothing to do in memory.
    pub fn flush(&self) -> Result<usize> {
        match self {
            Db::Logged(db, _) => db.flush(),
            Db::Sled(db) => db.flush(),
            Db::Mem(_) => Ok(0),
        }
    }
}

/// Inserts and removals applied together ([`Tree::apply_batch`]); later writes of a key win.
#[derive(Default)]
pub struct Batch {
    writes: Vec<(IVec, Option<IVec>)>,
}

impl Batch {
    pub fn insert<K: Into<IVec>, V: Into<IVec>>(&mut self, key: K, value: V) {
        self.writes.push((key.into(), Some(value.into())));
    }

    pub fn remove<K: Into<IVec>>(&mut self, key: K) {
        self.writes.push((key.into(), None));
    }

    fn into_sled(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        batch
    }
}

/// A logged write of `value` (a removal for `None`) at `key` of `tree`.
fn change(tree: &IVec, key: &[u8], value: Option<IVec>) -> Change {
    let (tree, key) = (tree.clone(), IVec::from(key));
    match value {
        Some(value) => Change::Put { tree, key, value },
        None => Change::Remove { tree, key },
    }
}

fn owned(bound: Bound<&impl AsRef<[u8]>>) -> Bound<IVec> {
    match bound {
        Bound::Included(k) => Bound::Included(IVec::from(k.as_ref())),
        Bound::Excluded(k) => Bound::Excluded(IVec::from(k.as_ref())),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether no key lies between `lo` and `hi` (`BTreeMap::range` panics on such bounds).
fn collapsed(lo: &Bound<IVec>, hi: &Bound<IVec>) -> bool {
    use Bound::{Excluded, Included};
    match (lo, hi) {
        (Included(a), Included(b)) => a > b,
        (Included(a), Excluded(b)) | (Excluded(a), Included(b)) | (Excluded(a), Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
}

/// The upper bound of the keys starting with `prefix`, as sled computes it.
fn prefix_end(prefix: &[u8]) -> Bound<IVec> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Bound::Excluded(IVec::from(upper));
        }
    }
    Bound::Unbounded
}

impl MemTree {
    fn get(&self, key: &[u8]) -> Option<IVec> {
        let _commit = self.shared.reading();
        read(&self.map).get(key).cloned()
    }

    fn set(&self, key: IVec, value: Option<IVec>) -> Option<IVec> {
        let _commit = self.shared.reading();
        write_entry(&mut write(&self.map), &self.shared, key, value)
    }

    fn get_memo(&self, key: &[u8], take: bool) -> Option<(IVec, Option<Memo>)> {
        let _commit = self.shared.reading();
        if !take {
            let map = read(&self.map);
            let slot = map.slot(key)?;
            return Some((slot.bytes.clone(), slot.memo.clone()));
        }
        let (bytes, memo) = write(&self.map).take_memo(key)?;
        if memo.is_some() {
            self.shared.account(-MEMO_FACTOR * bytes.len() as i64);
        }
        Some((bytes, memo))
    }

    fn iter(self: &Arc<Self>, lo: Bound<IVec>, hi: Bound<IVec>) -> Iter {
        Iter::Mem(MemIter {
            tree: self.clone(),
            lo,
            hi,
            front: VecDeque::new(),
            back: VecDeque::new(),
            ahead: 1,
        })
    }
}

impl Tree {
    pub fn insert<K: AsRef<[u8]>, V: Into<IVec>>(&self, key: K, value: V) -> Result<Option<IVec>> {
        match self {
            Tree::Logged(t, log, tree) => {
                let mut held = log.hold();
                let value: IVec = value.into();
                let old = t.insert(key.as_ref(), value.clone())?;
                held.push(Change::Put {
                    tree: tree.clone(),
                    key: IVec::from(key.as_ref()),
                    value,
                });
                Ok(old)
            }
            Tree::Sled(t) => t.insert(key, value),
            Tree::Mem(t) => Ok(t.set(IVec::from(key.as_ref()), Some(value.into()))),
        }
    }

    /// Sets `key` to `value`, not reading what it held.
    pub fn put<K: AsRef<[u8]>, V: Into<IVec>>(&self, key: K, value: V) -> Result<()> {
        self.insert(key, value).map(drop)
    }

    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        match self {
            Tree::Logged(t, ..) => t.get(key),
            Tree::Sled(t) => t.get(key),
            Tree::Mem(t) => Ok(t.get(key.as_ref())),
        }
    }

    /// What `key` holds and, in memory, the record it was encoded from if its writer kept one
    /// ([`TransactionalTree::put_memo`]): taken out of the tree with `take` (for a reader
    /// about to write the key again: nothing is copied), shared otherwise.
    pub fn get_memo<K: AsRef<[u8]>>(
        &self,
        key: K,
        take: bool,
    ) -> Result<Option<(IVec, Option<Memo>)>> {
        match self {
            Tree::Mem(t) => Ok(t.get_memo(key.as_ref(), take)),
            other => Ok(other.get(key)?.map(|v| (v, None))),
        }
    }

    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> Result<bool> {
        self.get(key).map(|v| v.is_some())
    }

    pub fn remove<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        match self {
            Tree::Logged(t, log, tree) => {
                let mut held = log.hold();
                let old = t.remove(key.as_ref())?;
                if old.is_some() {
                    held.push(Change::Remove {
                        tree: tree.clone(),
                        key: IVec::from(key.as_ref()),
                    });
                }
                Ok(old)
            }
            Tree::Sled(t) => t.remove(key),
            Tree::Mem(t) => Ok(t.set(IVec::from(key.as_ref()), None)),
        }
    }

    /// Sets `key` to `new` if it holds `old` (absent for `None`), as one step.
    pub fn compare_and_swap<K, OV, NV>(
        &self,
        key: K,
        old: Option<OV>,
        new: Option<NV>,
    ) -> Result<std::result::Result<(), sled::CompareAndSwapError>>
    where
        K: AsRef<[u8]>,
        OV: AsRef<[u8]>,
        NV: Into<IVec>,
    {
        match self {
            Tree::Logged(t, log, tree) => {
                let mut held = log.hold();
                let new: Option<IVec> = new.map(Into::into);
                let swapped = t.compare_and_swap(key.as_ref(), old, new.clone())?;
                if swapped.is_ok() {
                    held.push(change(tree, key.as_ref(), new));
                }
                Ok(swapped)
            }
            Tree::Sled(t) => t.compare_and_swap(key, old, new),
            Tree::Mem(t) => {
                let _commit = t.shared.reading();
                let mut map = write(&t.map);
                let current = map.get(key.as_ref());
                let new = new.map(Into::into);
                if current.map(|c| c.as_ref()) != old.as_ref().map(AsRef::as_ref) {
                    return Ok(Err(sled::CompareAndSwapError {
                        current: current.cloned(),
                        proposed: new,
                    }));
                }
                write_entry(&mut map, &t.shared, IVec::from(key.as_ref()), new);
                Ok(Ok(()))
            }
        }
    }

    /// Replaces `key`'s value with what `f` makes of it, as one step; the new value.
    pub fn update_and_fetch<K, V, F>(&self, key: K, mut f: F) -> Result<Option<IVec>>
    where
        K: AsRef<[u8]>,
        F: FnMut(Option<&[u8]>) -> Option<V>,
        V: Into<IVec>,
    {
        match self {
            Tree::Logged(t, log, tree) => {
                let mut held = log.hold();
                let next = t.update_and_fetch(key.as_ref(), f)?;
                held.push(change(tree, key.as_ref(), next.clone()));
                Ok(next)
            }
            Tree::Sled(t) => t.update_and_fetch(key, f),
            Tree::Mem(t) => {
                let _commit = t.shared.reading();
                let mut map = write(&t.map);
                let next = f(map.get(key.as_ref()).map(AsRef::as_ref)).map(Into::into);
                write_entry(&mut map, &t.shared, IVec::from(key.as_ref()), next.clone());
                Ok(next)
            }
        }
    }

    /// Applies every write of `batch` at once.
    pub fn apply_batch(&self, batch: Batch) -> Result<()> {
        match self {
            Tree::Logged(t, log, tree) => {
                let mut held = log.hold();
                let changes: Vec<Change> = batch
                    .writes
                    .iter()
                    .map(|(k, v)| change(tree, k, v.clone()))
                    .collect();
                t.apply_batch(batch)?;
                held.extend(changes);
                Ok(())
            }
            Tree::Sled(t) => t.apply_batch(batch.into_sled()),
            Tree::Mem(t) => {
                let _commit = t.shared.reading();
                let mut map = write(&t.map);
                for (k, v) in batch.writes {
                    write_entry(&mut map, &t.shared, k, v);
                }
                Ok(())
            }
        }
    }

    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }

    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        match self {
            Tree::Logged(t, ..) => t.range(range),
            Tree::Sled(t) => Iter::Sled(t.range(range)),
            Tree::Mem(t) => t.iter(owned(range.start_bound()), owned(range.end_bound())),
        }
    }

    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Iter {
        match self {
            Tree::Logged(t, ..) => t.scan_prefix(prefix),
            Tree::Sled(t) => Iter::Sled(t.scan_prefix(prefix)),
            Tree::Mem(t) => t.iter(
                Bound::Included(IVec::from(prefix.as_ref())),
                prefix_end(prefix.as_ref()),
            ),
        }
    }

    pub fn first(&self) -> Result<Option<(IVec, IVec)>> {
        self.iter().next().transpose()
    }

    /// How many keys the tree holds (sled counts them one by one).
    pub fn len(&self) -> usize {
        match self {
            Tree::Logged(t, ..) => t.len(),
            Tree::Sled(t) => t.len(),
            Tree::Mem(t) => {
                let _commit = t.shared.reading();
                read(&t.map).len()
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Tree::Logged(t, ..) => t.is_empty(),
            Tree::Sled(t) => t.is_empty(),
            Tree::Mem(t) => {
                let _commit = t.shared.reading();
                read(&t.map).is_empty()
            }
        }
    }

    pub fn clear(&self) -> Result<()> {
        match self {
            Tree::Logged(t, log, tree) => {
                let mut held = log.hold();
                t.clear()?;
                held.push(Change::Clear { tree: tree.clone() });
                Ok(())
            }
            Tree::Sled(t) => t.clear(),
            Tree::Mem(t) => {
                let _commit = t.shared.reading();
                let mut map = write(&t.map);
                for (k, v) in map.take() {
                    t.shared.account(-slot_size(k.len(), &v));
                }
                Ok(())
            }
        }
    }

    /// Writes what sled has buffered to its log; nothing to do in memory.
    pub fn flush(&self) -> Result<usize> {
        match self {
            Tree::Logged(t, ..) => t.flush(),
            Tree::Sled(t) => t.flush(),
            Tree::Mem(_) => Ok(0),
        }
    }

    #[cfg(test)]
    pub fn name(&self) -> IVec {
        match self {
            Tree::Logged(_, _, name) => name.clone(),
            Tree::Sled(t) => t.name(),
            Tree::Mem(t) => t.name.clone(),
        }
    }

    /// A transaction over this tree alone ([`Transactional`]).
    pub fn transaction<F, A, E>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&TransactionalTree) -> ConflictableTransactionResult<A, E>,
    {
        (self,).transaction(|(tree,)| f(tree))
    }
}

/// An iterator over a tree's keys and values in key order (or, from the back, reversed).
pub enum Iter {
    Sled(sled::Iter),
    Mem(MemIter),
}

/// The most keys a [`MemIter`] step reads ahead.
const READ_AHEAD: usize = 64;

/// A lazy walk over a [`MemTree`]: the bounds of what is still to be read, and what was read
/// ahead from either end and not yet returned.
pub struct MemIter {
    tree: Arc<MemTree>,
    lo: Bound<IVec>,
    hi: Bound<IVec>,
    /// Read from the front, in key order.
    front: VecDeque<(IVec, IVec)>,
    /// Read from the back, in reverse key order.
    back: VecDeque<(IVec, IVec)>,
    /// How many keys the next read from the tree takes.
    ahead: usize,
}

impl MemIter {
    fn step(&mut self, back: bool) -> Option<(IVec, IVec)> {
        let (mine, theirs) = if back {
            (&mut self.back, &mut self.front)
        } else {
            (&mut self.front, &mut self.back)
        };
        if let Some(found) = mine.pop_front() {
            return Some(found);
        }
        if !collapsed(&self.lo, &self.hi) {
            let _commit = self.tree.shared.reading();
            if !read(&self.tree.map).ordered() {
                write(&self.tree.map).order();
            }
            let map = read(&self.tree.map);
            let range = map.range((self.lo.clone(), self.hi.clone()));
            let take = |(k, v): (&IVec, &IVec)| (k.clone(), v.clone());
            if back {
                mine.extend(range.rev().take(self.ahead).map(take));
            } else {
                mine.extend(range.take(self.ahead).map(take));
            }
            self.ahead = (self.ahead * 2).min(READ_AHEAD);
            match mine.back() {
                Some((last, _)) if back => self.hi = Bound::Excluded(last.clone()),
                Some((last, _)) => self.lo = Bound::Excluded(last.clone()),
                // Nothing left between the bounds: what is left was read ahead by the
                // other end.
                None => {
                    self.lo = Bound::Excluded(IVec::default());
                    self.hi = Bound::Excluded(IVec::default());
                }
            }
            if let Some(found) = mine.pop_front() {
                return Some(found);
            }
        }
        theirs.pop_back()
    }
}

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(i) => i.next(),
            Iter::Mem(i) => i.step(false).map(Ok),
        }
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(i) => i.next_back(),
            Iter::Mem(i) => i.step(true).map(Ok),
        }
    }
}

impl Iter {
    pub fn keys(self) -> impl DoubleEndedIterator<Item = Result<IVec>> {
        self.map(|r| r.map(|(k, _)| k))
    }
}

/// One tree inside a transaction: sled's, or an in-memory tree with the transaction's
/// pending writes over it (reads see them; they are applied when the closure succeeds).
#[derive(Clone)]
pub enum TransactionalTree {
    Sled(sled::transaction::TransactionalTree),
    Mem(MemTransaction),
    /// A logged tree in a transaction: the tree, the writes the transaction made so far (to
    /// every tree of it, in order), the tree's name.
    Logged(Box<TransactionalTree>, Rc<RefCell<Vec<Change>>>, IVec),
}

/// An in-memory tree in a transaction: its writes go straight into the tree (the transaction
/// holds its database's commit lock, so no other thread sees them before it ends), each with
/// what it replaced, to be put back if the closure fails ([`Undo`]).
#[derive(Clone)]
pub struct MemTransaction {
    tree: Arc<MemTree>,
    /// The tree's place in the transaction's tuple.
    place: usize,
    undo: Undo,
}

/// What a memory transaction's writes replaced, shared by its trees: the tree's place in the
/// transaction's tuple, the key, the value it held. Put back in reverse order when the closure
/// fails; dropped when it succeeds.
type Undo = Rc<RefCell<Vec<(usize, IVec, Option<Slot>)>>>;

thread_local! {
    /// The undo log of the memory transactions running on this thread, one after the other
    /// from where each started (a transaction run inside another's closure adds its entries
    /// after the outer's, and takes them off before the outer goes on). One buffer, kept
    /// between transactions: a batch's commit replaces thousands of values, and a log of that
    /// size allocated anew each time was a large block for the allocator to hand back to the
    /// system and fault in again, transaction after transaction.
    static UNDO_LOG: Undo = Rc::default();
}

type TxResult<T> = std::result::Result<T, UnabortableTransactionError>;

impl MemTransaction {
    fn get(&self, key: &[u8]) -> Option<IVec> {
        // The commit lock is this thread's: read the map directly.
        read(&self.tree.map).get(key).cloned()
    }

    /// Writes `value` at `key` (removes it for `None`) at once; what it held.
    fn set(&self, key: IVec, value: Option<Slot>) -> Option<IVec> {
        let map = &mut write(&self.tree.map);
        let old = write_slot(map, &self.tree.shared, key.clone(), value);
        let bytes = old.as_ref().map(|o| o.bytes.clone());
        self.undo.borrow_mut().push((self.place, key, old));
        bytes
    }
}

/// Puts back what a failed memory transaction's writes replaced, last write first; `trees` are
/// the transaction's trees in its tuple's order.
fn undo(undo: &Undo, from: usize, trees: &[&Arc<MemTree>]) {
    let written = undo.borrow_mut().split_off(from);
    for (place, key, old) in written.into_iter().rev() {
        let tree = trees[place];
        write_slot(&mut write(&tree.map), &tree.shared, key, old);
    }
}

impl TransactionalTree {
    pub fn insert<K, V>(&self, key: K, value: V) -> TxResult<Option<IVec>>
    where
        K: AsRef<[u8]> + Into<IVec>,
        V: Into<IVec>,
    {
        match self {
            TransactionalTree::Logged(t, writes, tree) => {
                let (key, value): (IVec, IVec) = (key.into(), value.into());
                let old = t.insert(key.clone(), value.clone())?;
                writes.borrow_mut().push(change(tree, &key, Some(value)));
                Ok(old)
            }
            TransactionalTree::Sled(t) => t.insert(key, value),
            TransactionalTree::Mem(t) => Ok(t.set(key.into(), Some(Slot::plain(value.into())))),
        }
    }

    pub fn remove<K>(&self, key: K) -> TxResult<Option<IVec>>
    where
        K: AsRef<[u8]> + Into<IVec>,
    {
        match self {
            TransactionalTree::Logged(t, writes, tree) => {
                let key: IVec = key.into();
                let old = t.remove(key.clone())?;
                writes.borrow_mut().push(change(tree, &key, None));
                Ok(old)
            }
            TransactionalTree::Sled(t) => t.remove(key),
            TransactionalTree::Mem(t) => Ok(t.set(key.into(), None)),
        }
    }

    /// Sets `key` to `value` without reading what it held: a write to the transaction's
    /// pending writes alone, in memory and in sled (the vendored sled's blind write; its
    /// `insert` looks the key up in the tree to return the old value). Most writes of a commit
    /// never look at the old value: reading it was a sixth of a replay in memory, and about a
    /// tenth of the server's CPU while the onboarding bench enrolled.
    pub fn put<K, V>(&self, key: K, value: V) -> TxResult<()>
    where
        K: AsRef<[u8]> + Into<IVec>,
        V: Into<IVec>,
    {
        match self {
            TransactionalTree::Logged(t, writes, tree) => {
                let (key, value): (IVec, IVec) = (key.into(), value.into());
                t.put(key.clone(), value.clone())?;
                writes.borrow_mut().push(change(tree, &key, Some(value)));
                Ok(())
            }
            TransactionalTree::Sled(t) => {
                t.put(key, value);
                Ok(())
            }
            TransactionalTree::Mem(t) => {
                t.set(key.into(), Some(Slot::plain(value.into())));
                Ok(())
            }
        }
    }

    /// [`put`](Self::put), keeping `memo` (the record `value` was encoded from) beside it in
    /// memory ([`Tree::get_memo`]); sled keeps the bytes alone.
    pub fn put_memo<K, V>(&self, key: K, value: V, memo: Memo) -> TxResult<()>
    where
        K: AsRef<[u8]> + Into<IVec>,
        V: Into<IVec>,
    {
        match self {
            TransactionalTree::Mem(t) => {
                let bytes = value.into();
                t.set(
                    key.into(),
                    Some(Slot {
                        bytes,
                        memo: Some(memo),
                    }),
                );
                Ok(())
            }
            other => other.put(key, value),
        }
    }

    /// Removes `key` without reading what it held.
    pub fn delete<K>(&self, key: K) -> TxResult<()>
    where
        K: AsRef<[u8]> + Into<IVec>,
    {
        match self {
            TransactionalTree::Logged(t, writes, tree) => {
                let key: IVec = key.into();
                t.delete(key.clone())?;
                writes.borrow_mut().push(change(tree, &key, None));
                Ok(())
            }
            TransactionalTree::Sled(t) => {
                t.delete(key);
                Ok(())
            }
            TransactionalTree::Mem(t) => {
                t.set(key.into(), None);
                Ok(())
            }
        }
    }

    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> TxResult<Option<IVec>> {
        match self {
            TransactionalTree::Logged(t, ..) => t.get(key),
            TransactionalTree::Sled(t) => t.get(key),
            TransactionalTree::Mem(t) => Ok(t.get(key.as_ref())),
        }
    }
}

/// Trees that can be written in one transaction: a tuple of `&Tree`s of one database. The
/// closure sees a tuple of [`TransactionalTree`]s in the same order; it returns
/// `Err(ConflictableTransactionError::Abort(e))` to undo everything it wrote.
pub trait Transactional<E> {
    type View;

    fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>;
}

/// A transaction over a tuple of trees that are not all of one kind: a programming error.
fn mixed<T>() -> Result<T> {
    Err(sled::Error::Unsupported(
        "a transaction's trees must all be in one database".into(),
    ))
}

macro_rules! transactional_tuple {
    ($($t:ident $i:tt),+) => {
        impl<E> Transactional<E> for ($(transactional_tuple!(@tree $t),)+) {
            type View = ($(transactional_tuple!(@view $t),)+);

            fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
            where
                F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>,
            {
                match self.0 {
                    // The trees under the logging, in a transaction of their own; its writes
                    // recorded, all together, once it committed, with the log held throughout
                    // so no other write comes between its commit and its record.
                    Tree::Logged(_, log, _) => {
                        let inner = ($(match self.$i {
                            Tree::Logged(t, l, _) if Arc::ptr_eq(l, log) => &**t,
                            _ => return mixed().map_err(TransactionError::Storage),
                        },)+);
                        let mut held = log.hold();
                        let writes: Rc<RefCell<Vec<Change>>> = Rc::default();
                        // As a trait object, so the inner transaction's type does not grow
                        // with every closure (its own logged arm is never taken).
                        let logging: &dyn Fn(&Self::View) -> ConflictableTransactionResult<A, E> =
                            &|($($t,)+)| {
                                // A closure run again (a conflict) starts from a clean slate.
                                writes.borrow_mut().clear();
                                f(&($(TransactionalTree::Logged(
                                    Box::new($t.clone()),
                                    writes.clone(),
                                    match self.$i {
                                        Tree::Logged(_, _, name) => name.clone(),
                                        _ => IVec::default(),
                                    },
                                ),)+))
                            };
                        let result = inner.transaction(logging)?;
                        held.extend(writes.take());
                        Ok(result)
                    }
                    Tree::Sled(_) => {
                        let trees = ($(match self.$i {
                            Tree::Sled(t) => t,
                            _ => return mixed().map_err(TransactionError::Storage),
                        },)+);
                        sled::Transactional::transaction(&trees, |($($t,)+)| {
                            f(&($(TransactionalTree::Sled($t.clone()),)+))
                        })
                    }
                    Tree::Mem(first) => {
                        let shared = first.shared.clone();
                        let trees = [$(match self.$i {
                            Tree::Mem(t) if Arc::ptr_eq(&t.shared, &shared) => t,
                            _ => return mixed().map_err(TransactionError::Storage),
                        },)+];
                        let undone: Undo = UNDO_LOG.with(Rc::clone);
                        let view = ($(TransactionalTree::Mem(MemTransaction {
                            tree: trees[$i].clone(),
                            place: $i,
                            undo: undone.clone(),
                        }),)+);
                        shared.exclusively(|| loop {
                            let from = undone.borrow().len();
                            let error = match f(&view) {
                                Ok(result) => {
                                    undone.borrow_mut().truncate(from);
                                    return Ok(result);
                                }
                                Err(ConflictableTransactionError::Abort(e)) => {
                                    TransactionError::Abort(e)
                                }
                                Err(ConflictableTransactionError::Storage(e)) => {
                                    TransactionError::Storage(e)
                                }
                                // Nothing conflicts in memory; a closure that says so anyway
                                // runs again from a clean slate, as sled would run it.
                                Err(ConflictableTransactionError::Conflict) => {
                                    undo(&undone, from, &trees);
                                    continue;
                                }
                            };
                            undo(&undone, from, &trees);
                            return Err(error);
                        })
                    }
                }
            }
        }
    };
    (@view $t:ident) => { TransactionalTree };
    (@tree $t:ident) => { &Tree };
}

transactional_tuple!(t0 0);
transactional_tuple!(t0 0, t1 1);
transactional_tuple!(t0 0, t1 1, t2 2);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5, t6 6);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5, t6 6, t7 7);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5, t6 6, t7 7, t8 8);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5, t6 6, t7 7, t8 8, t9 9);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5, t6 6, t7 7, t8 8, t9 9, t10 10);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5, t6 6, t7 7, t8 8, t9 9, t10 10, t11 11);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5, t6 6, t7 7, t8 8, t9 9, t10 10, t11 11, t12 12);
transactional_tuple!(t0 0, t1 1, t2 2, t3 3, t4 4, t5 5, t6 6, t7 7, t8 8, t9 9, t10 10, t11 11, t12 12, t13 13);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A write in a transaction: to the first tree or the second, blind or not, key, value.
    type TxWrite = (bool, bool, Vec<u8>, Option<Vec<u8>>);

    /// One step of a script run against both kinds of tree.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>, Vec<u8>),
        Remove(Vec<u8>),
        Get(Vec<u8>),
        Cas(Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>),
        Range(Vec<u8>, Vec<u8>, bool),
        Prefix(Vec<u8>, bool),
        Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
        /// Writes in a transaction over both trees (to the first or the second; reading the
        /// old value or blind); aborted after them when the flag is set.
        Transaction(Vec<TxWrite>, bool),
        Len,
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // Few distinct bytes, so keys collide, share prefixes and meet 0xff.
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0xfe, 0xff]), 0..4)
    }

    fn op() -> impl Strategy<Value = Op> {
        let value = prop::collection::vec(any::<u8>(), 0..3);
        prop_oneof![
            (key(), value.clone()).prop_map(|(k, v)| Op::Insert(k, v)),
            key().prop_map(Op::Remove),
            key().prop_map(Op::Get),
            (
                key(),
                prop::option::of(value.clone()),
                prop::option::of(value.clone())
            )
                .prop_map(|(k, o, n)| Op::Cas(k, o, n)),
            (key(), key(), any::<bool>()).prop_map(|(a, b, rev)| Op::Range(a, b, rev)),
            (key(), any::<bool>()).prop_map(|(p, rev)| Op::Prefix(p, rev)),
            prop::collection::vec((key(), prop::option::of(value.clone())), 0..4)
                .prop_map(Op::Batch),
            (
                prop::collection::vec(
                    (any::<bool>(), any::<bool>(), key(), prop::option::of(value)),
                    0..4
                ),
                any::<bool>()
            )
                .prop_map(|(w, abort)| Op::Transaction(w, abort)),
            Just(Op::Len),
        ]
    }

    type Seen = Vec<(Vec<u8>, Vec<u8>)>;

    fn pairs(i: impl Iterator<Item = Result<(IVec, IVec)>>) -> Seen {
        i.map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
    }

    /// Runs `op` on the trees `a` and `b` of one database; what it observed, as text.
    fn run(a: &Tree, b: &Tree, op: &Op) -> String {
        let opt = |v: Option<IVec>| v.map(|v| v.to_vec());
        match op {
            Op::Insert(k, v) => format!("{:?}", opt(a.insert(k, v.as_slice()).unwrap())),
            Op::Remove(k) => format!("{:?}", opt(a.remove(k).unwrap())),
            Op::Get(k) => format!(
                "{:?} {}",
                opt(a.get(k).unwrap()),
                a.contains_key(k).unwrap()
            ),
            Op::Cas(k, old, new) => {
                let r = a
                    .compare_and_swap(k, old.as_ref(), new.as_ref().map(|v| v.as_slice()))
                    .unwrap();
                format!("{:?}", r.map_err(|e| (opt(e.current), opt(e.proposed))))
            }
            Op::Range(lo, hi, rev) => {
                let it = a.range(lo.as_slice()..hi.as_slice());
                let mut seen = if *rev { pairs(it.rev()) } else { pairs(it) };
                // Both ends of one iterator, alternating.
                let mut both = a.range(lo.as_slice()..=hi.as_slice());
                let mut turn = false;
                while let Some(next) = if turn { both.next_back() } else { both.next() } {
                    let (k, v) = next.unwrap();
                    seen.push((k.to_vec(), v.to_vec()));
                    turn = !turn;
                }
                format!("{seen:?}")
            }
            Op::Prefix(p, rev) => {
                let it = a.scan_prefix(p);
                let seen = if *rev { pairs(it.rev()) } else { pairs(it) };
                let keys: Vec<_> = a
                    .scan_prefix(p)
                    .keys()
                    .map(|k| k.unwrap().to_vec())
                    .collect();
                format!("{seen:?} {keys:?} {:?}", a.first().unwrap())
            }
            Op::Batch(writes) => {
                let mut batch = Batch::default();
                for (k, v) in writes {
                    match v {
                        Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                        None => batch.remove(k.as_slice()),
                    }
                }
                a.apply_batch(batch).unwrap();
                String::new()
            }
            Op::Transaction(writes, abort) => {
                let result: TransactionResult<String, String> = (a, b).transaction(|(ta, tb)| {
                    let mut seen = String::new();
                    for (first, blind, k, v) in writes {
                        let t = if *first { ta } else { tb };
                        let old = match (v, blind) {
                            (Some(v), false) => t.insert(k.as_slice(), v.as_slice())?,
                            (None, false) => t.remove(k.as_slice())?,
                            (Some(v), true) => t.put(k.as_slice(), v.as_slice()).map(|()| None)?,
                            (None, true) => t.delete(k.as_slice()).map(|()| None)?,
                        };
                        // Reads inside see the transaction's own writes.
                        seen += &format!("{:?} {:?};", opt(old), opt(t.get(k)?));
                    }
                    if *abort {
                        return Err(ConflictableTransactionError::Abort(seen));
                    }
                    Ok(seen)
                });
                format!("{result:?}")
            }
            Op::Len => format!("{} {} {}", a.len(), a.is_empty(), b.len()),
        }
    }

    proptest! {
        /// The memory tree answers every operation the store uses exactly as sled does.
        #[test]
        fn memory_trees_behave_as_sled_trees(ops in prop::collection::vec(op(), 1..40)) {
            let sled_db = Db::Sled(sled::Config::new().temporary(true).open().unwrap());
            let mem_db = Db::memory();
            let (sa, sb) = (sled_db.open_tree("a").unwrap(), sled_db.open_tree("b").unwrap());
            let (ma, mb) = (mem_db.open_tree("a").unwrap(), mem_db.open_tree("b").unwrap());
            for op in &ops {
                prop_assert_eq!(run(&sa, &sb, op), run(&ma, &mb, op), "after {:?}", op);
                prop_assert_eq!(pairs(sa.iter()), pairs(ma.iter()));
                prop_assert_eq!(pairs(sb.iter()), pairs(mb.iter()));
                // The memory database knows what it holds.
                let held: i64 = pairs(ma.iter())
                    .into_iter()
                    .chain(pairs(mb.iter()))
                    .map(|(k, v)| entry_size(k.len(), v.len()))
                    .sum();
                prop_assert_eq!(mem_db.memory_used(), Some(held as u64));
            }
            prop_assert_eq!(sled_db.memory_used(), None);
        }
    }

    proptest! {
        /// A walk that reads ahead returns what a walk of the map returns, from either end in
        /// any order, each key once.
        #[test]
        fn a_walk_from_both_ends_meets_in_the_middle(
            keys in prop::collection::btree_set(prop::collection::vec(any::<u8>(), 0..3), 0..200),
            lo in prop::collection::vec(any::<u8>(), 0..2),
            ends in prop::collection::vec(any::<bool>(), 0..250),
        ) {
            let db = Db::memory();
            let tree = db.open_tree("a").unwrap();
            for k in &keys {
                tree.insert(k, k.clone()).unwrap();
            }
            let mut model = keys.range(lo.clone()..).cloned();
            let mut walk = tree.range(lo..);
            for back in ends {
                let expected = if back { model.next_back() } else { model.next() };
                let got = if back { walk.next_back() } else { walk.next() };
                prop_assert_eq!(got.map(|r| r.unwrap().0.to_vec()), expected);
            }
        }
    }

    proptest! {
        /// Issue 16: a logged database's changes, taken at any points, encoded and applied in
        /// order to another logged database (of the other kind), leave it holding exactly what
        /// the first holds; an aborted transaction records nothing; the copy never hands out a
        /// sequence number the first did.
        #[test]
        fn a_logged_databases_changes_rebuild_it_elsewhere(
            ops in prop::collection::vec((op(), any::<bool>()), 1..40),
            in_memory: bool,
        ) {
            use crate::store::changelog::{decode, encode};
            let open = |memory: bool| {
                let db = if memory {
                    Db::memory()
                } else {
                    Db::Sled(sled::Config::new().temporary(true).open().unwrap())
                };
                Db::logged(db).unwrap()
            };
            let (db, copy) = (open(in_memory), open(!in_memory));
            let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
            let mut ids = Vec::new();
            let ship = || {
                let changes = db.changelog().unwrap().take();
                copy.apply_changes(&decode(&encode(&changes)).unwrap()).unwrap();
            };
            for (i, (op, cut)) in ops.iter().enumerate() {
                run(&a, &b, op);
                match i % 7 {
                    3 => ids.push(db.generate_id().unwrap()),
                    5 if *cut => b.clear().unwrap(),
                    _ => {}
                }
                if *cut {
                    ship();
                }
            }
            ship();
            for name in ["a", "b"] {
                let tree = copy.open_tree(name).unwrap();
                prop_assert_eq!(pairs(tree.iter()), pairs(db.open_tree(name).unwrap().iter()));
            }
            let next = copy.generate_id().unwrap();
            prop_assert!(ids.iter().all(|id| *id < next), "{:?} then {}", ids, next);
            // Nothing left to take, and applying records nothing.
            prop_assert!(copy.changelog().unwrap().take().len() == 1); // its own id
            prop_assert!(db.changelog().unwrap().take().is_empty());
        }
    }

    /// Opens the sled directory `dir` once the previous handle's flusher thread has let go of
    /// its lock (it does a moment after the handle is dropped).
    fn open_sled(dir: &std::path::Path) -> sled::Db {
        let open = || sled::Config::new().path(dir).open();
        crate::store::open_unlocked(dir, open, |_| true).unwrap()
    }

    /// Issue 16: a sequence number's floor survives the copy's reopening.
    #[test]
    fn a_logged_copy_keeps_its_sequence_floor_across_a_restart() {
        use crate::store::changelog::Change;
        let dir = tempfile::tempdir().unwrap();
        let open = || Db::logged(Db::Sled(open_sled(dir.path())));
        {
            let copy = open().unwrap();
            copy.apply_changes(&[Change::Id(1_000)]).unwrap();
            copy.flush().unwrap();
        }
        assert!(open().unwrap().generate_id().unwrap() > 1_000);
        // Only a logged database takes changes.
        assert!(Db::memory().apply_changes(&[Change::Id(1)]).is_err());
    }

    /// The vendored sled applies a transaction's or a batch's writes leaf by leaf
    /// (`vendor/sled/WAYMARK.md`): runs of keys in order and scattered keys, inserts and
    /// removals, across leaf splits and merges, read back as written and again after the
    /// directory is reopened (recovered from sled's log).
    #[test]
    fn sled_writes_applied_leaf_by_leaf_read_back_and_survive_reopening() {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().unwrap();
        let open = || Db::Sled(open_sled(dir.path()));
        let mut model: [BTreeMap<Vec<u8>, Vec<u8>>; 2] = Default::default();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let check = |a: &Tree, b: &Tree, model: &[BTreeMap<Vec<u8>, Vec<u8>>; 2], when: &str| {
            for (tree, m) in [a, b].into_iter().zip(model) {
                let seen: BTreeMap<_, _> = pairs(tree.iter()).into_iter().collect();
                assert_eq!(&seen, m, "{when}");
                assert_eq!(pairs(tree.iter().rev()).len(), m.len(), "{when}");
            }
        };
        {
            let db = open();
            let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
            let mut appended = 0u64;
            for round in 0..40u64 {
                // A run appended in order (like the event log), scattered keys in both trees
                // (like customers), values long and short, and removals of earlier runs'
                // keys in order (like a queue drained), which leaves leaves to merge.
                let mut writes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
                for _ in 0..(50 + next() % 400) {
                    let v = vec![round as u8; (next() % 70) as usize];
                    writes.push((0, appended.to_be_bytes().to_vec(), Some(v)));
                    appended += 1;
                }
                for _ in 0..(next() % 60) {
                    let k = format!("c{:05}", next() % 3_000).into_bytes();
                    let v = (next() % 3 > 0).then(|| vec![round as u8; (next() % 40) as usize]);
                    writes.push(((next() % 2) as usize, k, v));
                }
                let drained = appended.saturating_sub(600);
                for k in drained.saturating_sub(next() % 300)..drained {
                    writes.push((0, k.to_be_bytes().to_vec(), None));
                }
                if round % 4 == 3 {
                    let mut batch = Batch::default();
                    for (_, k, v) in writes.iter().filter(|w| w.0 == 0) {
                        match v {
                            Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                            None => batch.remove(k.as_slice()),
                        }
                    }
                    a.apply_batch(batch).unwrap();
                    writes.retain(|w| w.0 == 0);
                } else {
                    let r: TransactionResult<(), ()> = (&a, &b).transaction(|(ta, tb)| {
                        for (i, k, v) in &writes {
                            let t = if *i == 0 { ta } else { tb };
                            match v {
                                Some(v) => t.put(k.as_slice(), v.as_slice())?,
                                None => t.delete(k.as_slice())?,
                            }
                        }
                        Ok(())
                    });
                    r.unwrap();
                }
                for (i, k, v) in writes {
                    match v {
                        Some(v) => model[i].insert(k, v),
                        None => model[i].remove(&k),
                    };
                }
                check(&a, &b, &model, &format!("after round {round}"));
            }
            db.flush().unwrap();
        }
        let db = open();
        let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
        check(&a, &b, &model, "after reopening");
    }

    #[test]
    fn a_memory_transaction_inside_another_undoes_only_its_own_writes() {
        let db = Db::memory();
        let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
        a.insert("k", "before").unwrap();
        let outer: TransactionResult<(), ()> = (&a,).transaction(|(ta,)| {
            ta.insert(&b"k"[..], &b"outer"[..])?;
            // An inner transaction that fails leaves the outer's write in place…
            let inner: TransactionResult<(), ()> = (&b,).transaction(|(tb,)| {
                tb.insert(&b"k"[..], &b"inner"[..])?;
                Err(ConflictableTransactionError::Abort(()))
            });
            assert!(matches!(inner, Err(TransactionError::Abort(()))));
            assert_eq!(ta.get(b"k").unwrap().as_deref(), Some(&b"outer"[..]));
            // …and one that succeeds stays, whatever the outer does next.
            let kept: TransactionResult<(), ()> = (&b,).transaction(|(tb,)| {
                tb.insert(&b"k"[..], &b"kept"[..])?;
                Ok(())
            });
            kept.unwrap();
            Err(ConflictableTransactionError::Abort(()))
        });
        assert!(matches!(outer, Err(TransactionError::Abort(()))));
        assert_eq!(a.get("k").unwrap().as_deref(), Some(&b"before"[..]));
        assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"kept"[..]));
        UNDO_LOG.with(|log| assert!(log.borrow().is_empty()));
    }

    #[test]
    fn a_memo_is_handed_out_with_its_bytes_until_the_key_is_written_again() {
        let (mem, sled_db) = (Db::memory(), sled::Config::new().temporary(true).open());
        let sled_tree = Db::Sled(sled_db.unwrap()).open_tree("t").unwrap();
        let tree = mem.open_tree("t").unwrap();
        let memo = |s: &str| -> Memo { Arc::new(s.to_string()) };
        let put = |tree: &Tree, v: &str| {
            let r: TransactionResult<(), ()> = (tree,).transaction(|(t,)| {
                t.put_memo(&b"k"[..], v.as_bytes(), memo(v))?;
                Ok(())
            });
            r.unwrap();
        };
        let held = |m: Option<Memo>| m.map(|m| m.downcast::<String>().unwrap().to_string());
        put(&tree, "one");
        // Counted with the memo, and the memo shared by a plain read.
        assert_eq!(mem.memory_used(), Some((1 + 3 + 3 * 2 + 64) as u64));
        let (bytes, kept) = tree.get_memo("k", false).unwrap().unwrap();
        assert_eq!(
            (&bytes[..], held(kept).as_deref()),
            (&b"one"[..], Some("one"))
        );
        // Taken, it is gone from the tree (and its count); the bytes stay.
        let (_, taken) = tree.get_memo("k", true).unwrap().unwrap();
        assert_eq!(held(taken).as_deref(), Some("one"));
        assert_eq!(mem.memory_used(), Some((1 + 3 + 64) as u64));
        let (bytes, none) = tree.get_memo("k", true).unwrap().unwrap();
        assert_eq!((&bytes[..], none.is_none()), (&b"one"[..], true));
        // A write without a memo leaves none behind from the write before it.
        put(&tree, "two");
        tree.insert("k", "three").unwrap();
        let (bytes, none) = tree.get_memo("k", false).unwrap().unwrap();
        assert_eq!((&bytes[..], none.is_none()), (&b"three"[..], true));
        // An undone write puts the memo it replaced back with its bytes.
        put(&tree, "four");
        let r: TransactionResult<(), ()> = (&tree,).transaction(|(t,)| {
            t.insert(&b"k"[..], &b"five"[..])?;
            Err(ConflictableTransactionError::Abort(()))
        });
        assert!(r.is_err());
        let (bytes, kept) = tree.get_memo("k", false).unwrap().unwrap();
        assert_eq!(
            (&bytes[..], held(kept).as_deref()),
            (&b"four"[..], Some("four"))
        );
        // Sled keeps the bytes alone.
        put(&sled_tree, "one");
        let (bytes, none) = sled_tree.get_memo("k", false).unwrap().unwrap();
        assert_eq!((&bytes[..], none.is_none()), (&b"one"[..], true));
        tree.remove("k").unwrap();
        assert_eq!(mem.memory_used(), Some(0));
    }

    #[test]
    fn a_memory_transaction_is_seen_whole_and_may_use_its_trees_inside() {
        let db = Db::memory();
        let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
        let reader = {
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                // Each transaction writes the same value to both trees; a reader taking one
                // key of each between two of its own reads never sees them differ unless a
                // commit fell between them, and a commit is never seen half-applied.
                for _ in 0..2_000 {
                    let (x, y) = (a.get("k").unwrap(), b.get("k").unwrap());
                    let x2 = a.get("k").unwrap();
                    if x == x2 {
                        assert!(
                            x.as_deref() <= y.as_deref() || y.is_none(),
                            "b behind a: {x:?} {y:?}"
                        );
                    }
                }
            })
        };
        for i in 0u32..2_000 {
            let v = i.to_be_bytes();
            let r: TransactionResult<(), ()> = (&a, &b).transaction(|(ta, tb)| {
                ta.insert(&b"k"[..], &v[..])?;
                // A plain read of another tree inside the closure does not wait for the lock
                // the transaction holds.
                let _ = a.get("other").unwrap();
                tb.insert(&b"k"[..], &v[..])?;
                Ok(())
            });
            r.unwrap();
        }
        reader.join().unwrap();
        assert_eq!(a.get("k").unwrap(), b.get("k").unwrap());
        // Trees of different databases cannot share a transaction.
        let other = Db::memory().open_tree("c").unwrap();
        let r: TransactionResult<(), ()> = (&a, &other).transaction(|_| Ok(()));
        assert!(matches!(r, Err(TransactionError::Storage(_))));
        assert_ne!(db.generate_id().unwrap(), db.generate_id().unwrap());
        assert!(db.drop_tree("a").unwrap());
        assert!(db.open_tree("a").unwrap().is_empty());
    }
}
