//! The store's key encoding: parts joined by the separator split back into the same parts
//! (when no part holds the separator, which ids and names never do), a prefix matches exactly
//! the keys of its parts, and time keys sort like times and decode to them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waymark_host::hash::SEP;
use waymark_host::store::keys::{key, prefix, time_from_key, time_key};

fuzz_target!(|input: (Vec<Vec<u8>>, i64, i64)| {
    let (parts, a, b) = input;
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let k = key(&parts);
    if !parts.is_empty() && parts.iter().all(|p| !p.contains(&SEP)) {
        let split: Vec<&[u8]> = k.split(|b| *b == SEP).collect();
        assert_eq!(split, parts, "a key splits into its parts");
        // The prefix of all but the last part matches this key, and not a key whose first
        // parts merely start alike.
        let head = prefix(&parts[..parts.len() - 1]);
        if parts.len() > 1 {
            assert!(k.starts_with(&head));
            let mut longer = parts[0].to_vec();
            longer.push(b'x');
            let mut other: Vec<&[u8]> = parts.clone();
            other[0] = &longer;
            assert!(!key(&other).starts_with(&prefix(&parts[..1])));
        }
    }
    assert_eq!(time_from_key(&time_key(a)), a);
    assert_eq!(
        a.cmp(&b),
        time_key(a).cmp(&time_key(b)),
        "time keys sort like times"
    );
});
