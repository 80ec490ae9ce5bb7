//! Deterministic experiment assignment.
//!
//! [`assign_arm`] is a pure function of its inputs: no randomness, no clock, no host call. The
//! same customer always lands in the same arm of the same experiment, on every trigger, in
//! every replay and on every machine, which keeps replays honest and reports stable.
//!
//! The hash is 64-bit FNV-1a over the inputs, finished with the SplitMix64 mixer so that nearby
//! customer ids spread evenly, and mapped onto the arms by multiply-shift. **It is frozen:**
//! changing it would move customers between arms of running experiments, so the tests pin
//! known outputs.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// SplitMix64's finaliser: FNV-1a alone leaves the high bits weakly mixed for short inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stable 64-bit hash behind [`assign_arm`], exposed for journeys that bucket customers
/// themselves (e.g. a 10% holdout: `bucket(..) % 100 < 10`).
///
/// Each input is length-prefixed, so `("ab", "c")` and `("a", "bc")` hash differently.
pub fn bucket(experiment: &str, customer_id: &str, salt: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for part in [experiment, customer_id, salt] {
        h = fnv1a(h, &(part.len() as u64).to_le_bytes());
        h = fnv1a(h, part.as_bytes());
    }
    mix(h)
}

/// Picks the arm of `experiment` for `customer_id`, deterministically.
///
/// `salt` re-shuffles the assignment: pass `""` (or a fixed string such as the journey's name)
/// for an arm that depends only on the experiment and the customer, or something that varies,
/// such as `&ctx.seed.to_string()`, for a pick that is still reproducible in replay but
/// independent per trigger. Record the pick with [`Decision::assign`](crate::Decision::assign)
/// so the host splits reports by arm; [`Context::arm`](crate::Context::arm) reads a recorded
/// arm back before picking.
///
/// Arms are equally likely. To weight them, repeat an arm (`&["a", "a", "b"]` is 2:1).
/// Empty `arms` give `""`.
///
/// ```
/// use waymark_guest::assign_arm;
///
/// let arms = ["control", "short_copy"];
/// let arm = assign_arm("welcome_copy", "c-42", "", &arms);
/// assert!(arms.contains(&arm));
/// // Pure: the same inputs always give the same arm.
/// assert_eq!(arm, assign_arm("welcome_copy", "c-42", "", &arms));
/// ```
pub fn assign_arm<'a>(
    experiment: &str,
    customer_id: &str,
    salt: &str,
    arms: &[&'a str],
) -> &'a str {
    if arms.is_empty() {
        return "";
    }
    // Multiply-shift maps the hash onto 0..len without modulo bias worth mentioning.
    let index =
        ((u128::from(bucket(experiment, customer_id, salt)) * arms.len() as u128) >> 64) as usize;
    arms[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_stable_for_the_same_inputs() {
        let arms = ["a", "b", "c"];
        for i in 0..100 {
            let id = format!("customer-{i}");
            assert_eq!(
                assign_arm("exp", &id, "", &arms),
                assign_arm("exp", &id, "", &arms)
            );
        }
    }

    #[test]
    fn the_hash_is_frozen() {
        // Changing these moves customers between arms of running experiments.
        assert_eq!(bucket("", "", ""), 0x6d68_8654_e983_4407);
        assert_eq!(bucket("welcome_copy", "c-42", ""), 0xead7_2d7a_4ed9_904d);
        assert_eq!(
            assign_arm("welcome_copy", "c-42", "", &["a", "b", "c"]),
            "c"
        );
    }

    #[test]
    fn arms_are_roughly_balanced() {
        let arms = ["a", "b", "c", "d"];
        let mut counts = [0usize; 4];
        let n = 20_000;
        for i in 0..n {
            let arm = assign_arm("welcome_copy", &format!("user_{i}"), "", &arms);
            counts[arms.iter().position(|a| *a == arm).unwrap()] += 1;
        }
        for c in counts {
            // Each arm expects 5000; allow ±5%.
            assert!((4750..=5250).contains(&c), "unbalanced: {counts:?}");
        }
    }

    #[test]
    fn experiments_are_independent() {
        // The same customers split differently in two experiments: roughly half agree.
        let arms = ["a", "b"];
        let n = 10_000;
        let agree = (0..n)
            .filter(|i| {
                let id = format!("user_{i}");
                assign_arm("exp_one", &id, "", &arms) == assign_arm("exp_two", &id, "", &arms)
            })
            .count();
        assert!(
            (4700..=5300).contains(&agree),
            "correlated experiments: {agree}"
        );
    }

    #[test]
    fn salt_reshuffles() {
        let arms = ["a", "b"];
        let differ = (0..1_000)
            .filter(|i| {
                let id = format!("user_{i}");
                assign_arm("exp", &id, "", &arms) != assign_arm("exp", &id, "salt", &arms)
            })
            .count();
        assert!(
            (400..=600).contains(&differ),
            "salt had no effect: {differ}"
        );
    }

    #[test]
    fn inputs_are_length_prefixed() {
        assert_ne!(bucket("ab", "c", ""), bucket("a", "bc", ""));
    }

    #[test]
    fn edge_cases_do_not_panic() {
        assert_eq!(assign_arm("exp", "c", "", &[]), "");
        assert_eq!(assign_arm("exp", "c", "", &["only"]), "only");
    }
}
