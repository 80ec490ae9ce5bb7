//! Key encoding shared by every record kind: parts joined by [`SEP`], times as order-preserving
//! big-endian bytes, and the shard a customer's triggers are queued under.
//!
//! These bytes are the on-disk format. Each record kind builds its own keys from these pieces
//! (in its own module); nothing here may change without migrating existing data directories.

use crate::hash::SEP;
use crate::model::Millis;

/// The parts joined by [`SEP`].
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
    k
}

/// The parts joined by [`SEP`], with a trailing [`SEP`]: the prefix of every key that starts
/// with exactly these parts (so tenant `a` does not match tenant `ab`).
pub fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(SEP);
    k
}

/// Order-preserving encoding of a signed time: flip the sign bit, big-endian.
pub fn time_key(t: Millis) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time at the start of a key made with [`time_key`]. `b` must hold at least 8 bytes;
/// shorter input reads as if padded with zeros.
pub fn time_from_key(b: &[u8]) -> Millis {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as Millis
}

/// A stored big-endian `u64` (a counter); anything else reads as 0.
pub(crate) fn u64_value(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// A stored big-endian `u32` (a version number); anything else reads as 0.
pub(crate) fn u32_value(v: &[u8]) -> u32 {
    v.try_into().map(u32::from_be_bytes).unwrap_or(0)
}

/// The shard that owns a customer: all of a customer's triggers go through one shard, in order.
/// Persistent: queued triggers are keyed by it, so its output must never change.
pub fn shard_of(tenant: &str, customer: &str, shards: u16) -> u16 {
    let h = crate::hash::fnv1a_joined(&[tenant, customer]);
    (h % u64::from(shards.max(1))) as u16
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

    #[test]
    fn shard_numbers_are_pinned_because_queued_triggers_are_keyed_by_them() {
        // FNV-1a of "acme␟alice" and "acme␟bob", modulo 4, 8, 16 and 1024 shards.
        let shards = |c: &str| [4, 8, 16, 1024].map(|n| shard_of("acme", c, n));
        assert_eq!(shards("alice"), [0, 0, 8, 408]);
        assert_eq!(shards("bob"), [3, 3, 11, 91]);
    }

    #[test]
    fn keys_join_parts_and_prefixes_end_with_the_separator() {
        assert_eq!(key(&[b"t", b"c", b"id"]), b"t\x1fc\x1fid");
        assert_eq!(prefix(&[b"t"]), b"t\x1f");
        assert!(!key(&[b"ab", b"x"]).starts_with(&prefix(&[b"a"])));
    }
}
