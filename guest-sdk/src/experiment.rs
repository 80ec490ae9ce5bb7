//! Deterministic experiment assignment: a fixed split ([`assign_arm`]) or adaptive allocation
//! by Thompson sampling ([`thompson_arm`], contract 0.1.2).
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

/// Picks the arm of an adaptive `experiment` for this trigger by **Thompson sampling** on the
/// arms' conversion to the experiment's goal, as the host reports it through the `stats`
/// import ([`arm_stats`](crate::arm_stats)): each arm's rate is drawn from its posterior
/// Beta(1 + converted, 1 + entered − converted) and the highest draw wins, so an arm is picked
/// about as often as it is likely to be the best — better arms get more customers as evidence
/// grows, and every arm keeps some while it is uncertain.
///
/// Deterministic: the draws come from a PRNG seeded by the trigger's seed (`ctx.seed`) and the
/// experiment's name, never from std's randomness, and the host hands every trigger of an hour
/// the same arm statistics, so a retry or a replay picks the same arm. An arm already recorded
/// on the enrollment ([`Decision::assign`](crate::Decision::assign)) is returned as it is:
/// record the pick on entry. `None` when the deciding version declares no arm of `experiment`
/// (declare it with [`Spec::adaptive_experiment`](crate::Spec::adaptive_experiment)).
pub fn thompson_arm(ctx: &crate::Context, experiment: &str) -> Option<String> {
    if let Some(arm) = ctx.enrollment.variant(experiment) {
        return Some(arm.to_string());
    }
    let stats = crate::stats::arm_stats();
    thompson_pick(experiment, &stats, ctx.seed).map(str::to_owned)
}

/// The pure core of [`thompson_arm`]: the arm of `experiment` among `arms` (the statistics of
/// every experiment; other experiments' are skipped) whose Beta posterior draw is highest,
/// with draws seeded by `seed`. Ties go to the first arm.
pub fn thompson_pick<'a>(
    experiment: &str,
    arms: &'a [crate::ArmStats],
    seed: u64,
) -> Option<&'a str> {
    let mut rng = SplitMix64(seed ^ bucket(experiment, "", "thompson"));
    let mut best: Option<(&str, f64)> = None;
    for arm in arms.iter().filter(|a| a.experiment == experiment) {
        let converted = arm.converted.min(arm.entered) as f64;
        let failed = arm.entered as f64 - converted;
        let draw = rng.beta(1.0 + converted, 1.0 + failed);
        if best.is_none_or(|(_, b)| draw > b) {
            best = Some((arm.arm.as_str(), draw));
        }
    }
    best.map(|(arm, _)| arm)
}

/// SplitMix64 (Steele, Lea & Flood, 2014): a tiny, well-mixed PRNG, enough for sampling
/// posteriors, and pure integer arithmetic, so the same seed gives the same draws everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in (0, 1]: never 0, so its logarithm is finite.
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal, by Box–Muller.
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (core::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1) for shape ≥ 1, by Marsaglia & Tsang (2000), "A simple method for
    /// generating gamma variables".
    fn gamma(&mut self, shape: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.unit();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    /// Beta(a, b) for a, b ≥ 1, as X / (X + Y) of X ~ Gamma(a), Y ~ Gamma(b).
    fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }
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

    fn arm(experiment: &str, arm: &str, entered: u64, converted: u64) -> crate::ArmStats {
        crate::ArmStats {
            experiment: experiment.into(),
            arm: arm.into(),
            goal: "bought".into(),
            entered,
            converted,
        }
    }

    #[test]
    fn thompson_picks_are_deterministic_per_seed() {
        let arms = [arm("copy", "a", 20, 5), arm("copy", "b", 20, 6)];
        for seed in 0..200 {
            assert_eq!(
                thompson_pick("copy", &arms, seed),
                thompson_pick("copy", &arms, seed)
            );
        }
        // Different seeds explore: both arms come up with this little evidence.
        let picks: std::collections::HashSet<_> = (0..200)
            .map(|seed| thompson_pick("copy", &arms, seed))
            .collect();
        assert_eq!(picks.len(), 2, "{picks:?}");
    }

    #[test]
    fn with_lopsided_stats_the_better_arm_is_picked_nearly_always() {
        let arms = [
            arm("copy", "worse", 100, 10),
            arm("copy", "better", 100, 40),
            arm("other", "x", 100, 100),
        ];
        let better = (0..1_000u64)
            .filter(|seed| thompson_pick("copy", &arms, *seed) == Some("better"))
            .count();
        // P(Beta(41, 61) < Beta(11, 91)) is about 1e-6.
        assert!(better >= 995, "better picked {better} times of 1000");
    }

    #[test]
    fn without_evidence_the_arms_are_picked_about_equally() {
        let arms = [arm("copy", "a", 0, 0), arm("copy", "b", 0, 0)];
        let a = (0..4_000u64)
            .filter(|seed| thompson_pick("copy", &arms, *seed) == Some("a"))
            .count();
        assert!((1_800..=2_200).contains(&a), "a picked {a} times of 4000");
    }

    #[test]
    fn beta_draws_have_the_posterior_mean() {
        // Beta(3, 7) has mean 0.3 and variance 0.01909: 20,000 draws' mean is within 0.005.
        let mut rng = SplitMix64(7);
        let n = 20_000;
        let mean = (0..n).map(|_| rng.beta(3.0, 7.0)).sum::<f64>() / n as f64;
        assert!((mean - 0.3).abs() < 0.005, "mean {mean}");
    }

    #[test]
    fn an_experiment_with_no_arms_picks_none_and_a_recorded_arm_stays() {
        assert_eq!(thompson_pick("copy", &[arm("other", "x", 1, 1)], 1), None);
        let mut ctx = crate::Context::new(crate::Trigger::Timer("t".into()));
        ctx.enrollment.variants.push(crate::VariantAssignment {
            experiment: "copy".into(),
            arm: "b".into(),
        });
        assert_eq!(thompson_arm(&ctx, "copy").as_deref(), Some("b"));
    }
}
