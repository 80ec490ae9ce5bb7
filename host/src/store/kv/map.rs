//! One memory tree's entries ([`Map`]): what a scratch store's trees hold (issue 13).

use sled::IVec;
use std::any::Any;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// The record a value was encoded from, kept beside its bytes by the write that encoded it
/// (issue 13): a scratch store's reader takes it instead of decoding the bytes again.
pub type Memo = Arc<dyn Any + Send + Sync>;

/// A value: its bytes, and the record they were encoded from when the writer kept it. Any
/// write replaces both, so a memo is never older than its bytes.
pub(super) struct Slot {
    pub(super) bytes: IVec,
    pub(super) memo: Option<Memo>,
}

impl Slot {
    /// A value with no memo.
    pub(super) fn plain(bytes: IVec) -> Slot {
        Slot { bytes, memo: None }
    }
}

/// One in-memory tree's entries: the values by key in a hash map, for point reads and for
/// writes to keys already there (most of a replay's: one lookup, where a search down an ordered
/// map of hundreds of thousands of keys missed the cache at every level), and the keys in
/// order beside it, for walks and for writes that add or remove a key.
///
/// The keys are put in order only once the tree is first walked ([`Map::order`]): a tree
/// only ever read by key never pays for ordering them. In a replay that is a third of the new
/// keys (event ids, logged events, customers; messages until the sends are read back at the
/// end), each of whose insertions into the order missed the cache on the way down.
#[derive(Default)]
pub(super) struct Map {
    values: HashMap<IVec, Slot, foldhash::fast::RandomState>,
    /// `None` until the tree is first walked.
    keys: Option<BTreeSet<OrdKey>>,
}

/// How many of a key's first bytes an [`OrdKey`] holds inline.
const HEAD: usize = 32;

/// A key in a tree's order: its first [`HEAD`] bytes inline (zero-padded), where most
/// comparisons end without reading the key's own bytes elsewhere in memory, and the key.
/// Keys of one tree share long prefixes (a due time, the tenant, `c` of a customer id):
/// comparing them through `IVec`s missed the cache on every step of a search. The head is
/// held as big-endian words, so that it compares as integers do, word by word, rather than
/// through a call to `memcmp` at every step of a search.
#[derive(Clone)]
struct OrdKey {
    head: [u64; HEAD / 8],
    key: IVec,
}

impl OrdKey {
    fn new(key: IVec) -> OrdKey {
        let mut bytes = [0; HEAD];
        let n = key.len().min(HEAD);
        bytes[..n].copy_from_slice(&key[..n]);
        let mut head = [0; HEAD / 8];
        for (word, chunk) in head.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_be_bytes(chunk.try_into().unwrap_or_default());
        }
        OrdKey { head, key }
    }
}

impl Ord for OrdKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Big-endian words order as their bytes do. Zero padding never orders two heads
        // against their keys' order: a key that is a prefix of another pads with zeros, which
        // no byte is below; equal heads compare the keys.
        self.head
            .cmp(&other.head)
            .then_with(|| self.key.as_ref().cmp(other.key.as_ref()))
    }
}

impl PartialOrd for OrdKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for OrdKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for OrdKey {}

/// A walk's bound as an [`OrdKey`] bound.
fn ord_bound(bound: Bound<IVec>) -> Bound<OrdKey> {
    match bound {
        Bound::Included(k) => Bound::Included(OrdKey::new(k)),
        Bound::Excluded(k) => Bound::Excluded(OrdKey::new(k)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Map {
    pub(super) fn get(&self, key: &[u8]) -> Option<&IVec> {
        self.values.get(key).map(|slot| &slot.bytes)
    }

    /// What `key` holds, with its memo if it has one.
    pub(super) fn slot(&self, key: &[u8]) -> Option<&Slot> {
        self.values.get(key)
    }

    /// What `key` holds, its memo taken out of the map (whoever takes it means to write the
    /// key again; until then a reader decodes the bytes).
    pub(super) fn take_memo(&mut self, key: &[u8]) -> Option<(IVec, Option<Memo>)> {
        self.values
            .get_mut(key)
            .map(|slot| (slot.bytes.clone(), slot.memo.take()))
    }

    pub(super) fn insert(&mut self, key: IVec, value: Slot) -> Option<Slot> {
        // One probe of the hash map whether the key is new or not.
        match self.values.entry(key) {
            Entry::Occupied(mut held) => Some(held.insert(value)),
            Entry::Vacant(new) => {
                if let Some(keys) = &mut self.keys {
                    keys.insert(OrdKey::new(new.key().clone()));
                }
                new.insert(value);
                None
            }
        }
    }

    /// Sets `key` to `value`, or removes it for `None`; what it held.
    pub(super) fn put(&mut self, key: IVec, value: Option<Slot>) -> Option<Slot> {
        match value {
            Some(v) => self.insert(key, v),
            None => self.remove(&key),
        }
    }

    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let (key, old) = self.values.remove_entry(key)?;
        if let Some(keys) = &mut self.keys {
            keys.remove(&OrdKey::new(key));
        }
        Some(old)
    }

    /// Whether the keys are in order: a walk ([`Map::range`]) needs them to be.
    pub(super) fn ordered(&self) -> bool {
        self.keys.is_some()
    }

    /// Puts the keys in order (all at once, a sort), and keeps them so from now on.
    pub(super) fn order(&mut self) {
        if self.keys.is_none() {
            self.keys = Some(self.values.keys().cloned().map(OrdKey::new).collect());
        }
    }

    /// The entries between the bounds, in order; none before [`Map::order`] (a walk orders
    /// the keys first).
    pub(super) fn range(
        &self,
        (lo, hi): (Bound<IVec>, Bound<IVec>),
    ) -> impl DoubleEndedIterator<Item = (&IVec, &IVec)> {
        self.keys
            .iter()
            .flat_map(move |keys| keys.range((ord_bound(lo.clone()), ord_bound(hi.clone()))))
            .map(|k| (&k.key, &self.values[k.key.as_ref()].bytes))
    }

    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every entry, leaving the map empty.
    pub(super) fn take(&mut self) -> impl Iterator<Item = (IVec, Slot)> {
        self.keys = None;
        std::mem::take(&mut self.values).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_put_in_order_at_the_first_walk_and_kept_in_order_after() {
        let all = || (Bound::Unbounded, Bound::Unbounded);
        let walk =
            |map: &Map| -> Vec<Vec<u8>> { map.range(all()).map(|(k, _)| k.to_vec()).collect() };
        let mut map = Map::default();
        for k in ["c", "a", "d", "b"] {
            map.insert(IVec::from(k), Slot::plain(IVec::from(k)));
        }
        map.remove(b"d");
        assert!(!map.ordered());
        map.order();
        assert!(map.ordered());
        assert_eq!(walk(&map), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        map.insert(IVec::from("ab"), Slot::plain(IVec::from("ab")));
        map.remove(b"b");
        map.put(IVec::from("c"), Some(Slot::plain(IVec::from("again"))));
        assert_eq!(walk(&map), [b"a".to_vec(), b"ab".to_vec(), b"c".to_vec()]);
        assert_eq!(map.get(b"c").map(|v| v.to_vec()), Some(b"again".to_vec()));
        // Emptied, it orders its keys again at the next walk.
        assert_eq!(map.take().count(), 3);
        assert!(!map.ordered());
    }

    proptest! {
        /// Keys with their heads inline order as their bytes do, whatever their lengths and
        /// however much of their heads they share (zeros included).
        #[test]
        fn keys_with_inline_heads_order_as_their_bytes(
            shared in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xff]), 0..40),
            a in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xff]), 0..8),
            b in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xff]), 0..8),
        ) {
            let (a, b) = ([&shared[..], &a[..]].concat(), [&shared[..], &b[..]].concat());
            let (x, y) = (OrdKey::new(IVec::from(&a[..])), OrdKey::new(IVec::from(&b[..])));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
        }
    }
}
