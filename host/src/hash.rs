//! The host's hash families: FNV-1a (64-bit) and the SplitMix64 mixer for fast, persistent,
//! non-adversarial hashing, and SHA-256 over length-prefixed parts where a collision would be
//! a correctness bug a tenant could provoke (idempotency keys, [`parts_digest`]).
//!
//! Every value computed here is persistent or must replay identically: shard numbers prefix the
//! queued-trigger keys on disk, decision seeds and task ids are derived from triggers, and
//! retry jitter is a function of the message id. Changing any function in this file changes
//! what a data directory means or what a replay decides, so the golden tests below pin their
//! outputs. Nobody "tidies" these: add a new function instead.

/// FNV-1a's offset basis (64-bit).
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's prime (64-bit).
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// The separator between the parts of a composite key or hash input (the store's key separator
/// too; ids may not contain control characters, so it cannot occur inside a part).
pub const SEP: u8 = 0x1f;

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_continue(FNV_OFFSET, bytes)
}

/// Continues an FNV-1a hash from state `h` over `bytes`.
pub fn fnv1a_continue(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV-1a over `parts`, each followed by [`SEP`]: the hash of a tuple of strings, where
/// `("ab", "c")` and `("a", "bc")` differ.
pub fn fnv1a_terminated(parts: &[&str]) -> u64 {
    parts.iter().fold(FNV_OFFSET, |h, part| {
        fnv1a_continue(fnv1a_continue(h, part.as_bytes()), &[SEP])
    })
}

/// FNV-1a over `parts` joined by [`SEP`] (no trailing separator).
pub fn fnv1a_joined(parts: &[&str]) -> u64 {
    let mut h = FNV_OFFSET;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h = fnv1a_continue(h, &[SEP]);
        }
        h = fnv1a_continue(h, part.as_bytes());
    }
    h
}

/// SHA-256 of a tuple of byte strings, each prefixed by its length (eight bytes, little
/// endian), with the number of parts first: an injective encoding of the tuple, so distinct
/// tuples hash alike only through a SHA-256 collision, whatever bytes the parts contain
/// (separators, control characters, other parts' encodings).
pub fn parts_digest(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((parts.len() as u64).to_le_bytes());
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The SplitMix64 step: advances `state` and returns the next mixed output. A good mixer for
/// expanding a small seed into key material.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden values: computed once and frozen. If one of these fails, the change broke the
    // meaning of existing data directories or of replays; revert it.

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite (64-bit FNV-1a).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn continuing_is_hashing_the_concatenation() {
        assert_eq!(fnv1a_continue(fnv1a(b"foo"), b"bar"), fnv1a(b"foobar"));
    }

    #[test]
    fn tuple_hashes_are_frozen_and_tell_part_boundaries_apart() {
        assert_eq!(fnv1a_terminated(&["ab", "c"]), fnv1a(b"ab\x1fc\x1f"));
        assert_eq!(fnv1a_joined(&["ab", "c"]), fnv1a(b"ab\x1fc"));
        assert_ne!(fnv1a_joined(&["ab", "c"]), fnv1a_joined(&["a", "bc"]));
        assert_eq!(
            fnv1a_terminated(&["acme", "ada"]),
            0x54ff_0ac6_1841_2cc9_u64
        );
        assert_eq!(fnv1a_joined(&["acme", "ada"]), 0xa4aa_5dd9_0687_818c_u64);
    }

    #[test]
    fn parts_digests_are_frozen_and_tell_part_boundaries_apart() {
        assert_eq!(
            hex::encode(parts_digest(&[b"acme", b"ada"])),
            "e325f195768310e62501c32e4ed6a2dc8d2bd18c4d16cb1cf2b3379e37f96225"
        );
        assert_ne!(parts_digest(&[b"ab", b"c"]), parts_digest(&[b"a", b"bc"]));
        assert_ne!(
            parts_digest(&[b"a\x1f", b""]),
            parts_digest(&[b"a", b"\x1f"])
        );
        assert_ne!(parts_digest(&[b""]), parts_digest(&[]));
        assert_ne!(parts_digest(&[b"", b""]), parts_digest(&[b""]));
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut state), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(splitmix64(&mut state), 0x06c4_5d18_8009_454f);
    }
}
