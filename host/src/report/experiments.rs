//! Experiment statistics: each arm's conversion to every milestone with a 95% interval, and
//! the probability that each arm is the best on the experiment's metric, so a tenant can tell
//! a difference from noise before acting on it.
//!
//! - Conversion here is from entry: the share of the arm's enrollments that reached the
//!   milestone (the funnel's `conversion` is step to step). Active enrollments count in the
//!   sample; a young experiment understates every arm alike.
//! - The interval is Wilson's score interval at 95% (z = 1.96): unlike the normal
//!   approximation it stays inside [0, 1] and is honest for small samples and rates near 0 or 1.
//! - The probability of being best is Bayesian: each arm's rate has the posterior
//!   Beta(1 + reached, 1 + entered − reached) of a uniform prior and a binomial likelihood,
//!   and P(arm i best) = ∫ fᵢ(x) ∏ⱼ≠ᵢ Fⱼ(x) dx, integrated numerically on a grid over the
//!   region where the posteriors have mass. Deterministic: the same counts give the same
//!   answer, so reports are reproducible.
//! - The metric is the experiment's own goal when it allocates adaptively (issue 13), else the
//!   journey's goal milestone; without a goal, its last milestone; without milestones,
//!   completion.
//!
//! Enrollments not yet assigned (`unassigned`) are no arm and are left out of the comparison.

use super::Funnel;
use crate::model::Spec;
use std::collections::BTreeMap;

/// z of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;
/// Points of the integration grid.
const GRID: usize = 4096;
/// How many posterior standard deviations around each mean the grid covers.
const SPREAD: f64 = 10.0;

/// One experiment compared arm by arm.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentStats {
    /// The milestone the arms are compared on (`completed` when the journey has none).
    pub metric: String,
    /// How the journey allocates the experiment (issue 13): `fixed` or `thompson`.
    pub allocation: &'static str,
    pub arms: BTreeMap<String, ArmStats>,
}

/// One arm of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmStats {
    /// Enrollments assigned to the arm.
    pub sample_size: u64,
    /// Of which reached the metric.
    pub converted: u64,
    /// `converted / sample_size`, with its 95% interval; `None` with no sample.
    pub conversion: Option<Rate>,
    /// The probability that this arm's rate on the metric is the highest; `None` when fewer
    /// than two arms have a sample.
    pub probability_best: Option<f64>,
    /// Conversion from entry to every declared milestone, in the spec's order.
    pub milestones: Vec<MilestoneRate>,
}

/// A rate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// Conversion from entry to one milestone.
#[derive(Debug, Clone, PartialEq)]
pub struct MilestoneRate {
    pub name: String,
    pub reached: u64,
    pub conversion: Option<Rate>,
}

/// `successes` of `trials` with Wilson's 95% score interval; `None` with no trial.
pub fn wilson(successes: u64, trials: u64) -> Option<Rate> {
    if trials == 0 {
        return None;
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Some(Rate {
        rate: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

/// For arms of `(successes, trials)`, the probability that each one's rate is the highest
/// under independent Beta(1 + s, 1 + t − s) posteriors. The probabilities sum to 1.
pub fn probability_best(arms: &[(u64, u64)]) -> Vec<f64> {
    if arms.is_empty() {
        return Vec::new();
    }
    let params: Vec<(f64, f64)> = arms
        .iter()
        .map(|&(s, t)| {
            let s = s.min(t) as f64;
            (1.0 + s, 1.0 + t as f64 - s)
        })
        .collect();
    // The grid spans every posterior's bulk: mean ± SPREAD standard deviations.
    let (mut lo, mut hi) = (1.0f64, 0.0f64);
    for &(a, b) in &params {
        let mean = a / (a + b);
        let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
        lo = lo.min(mean - SPREAD * sd);
        hi = hi.max(mean + SPREAD * sd);
    }
    let (lo, hi) = (lo.max(0.0), hi.min(1.0));
    let step = (hi - lo) / GRID as f64;
    let xs: Vec<f64> = (0..GRID).map(|i| lo + (i as f64 + 0.5) * step).collect();
    // Each posterior's density on the grid, normalised over it (its mass outside is
    // negligible by construction), and its CDF at each point's middle.
    let mut densities = Vec::with_capacity(params.len());
    let mut cdfs = Vec::with_capacity(params.len());
    for &(a, b) in &params {
        let logs: Vec<f64> = xs
            .iter()
            .map(|&x| (a - 1.0) * x.ln() + (b - 1.0) * (1.0 - x).ln())
            .collect();
        let peak = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut density: Vec<f64> = logs.iter().map(|l| (l - peak).exp()).collect();
        let total: f64 = density.iter().sum();
        density.iter_mut().for_each(|d| *d /= total);
        let mut below = 0.0;
        let cdf: Vec<f64> = density
            .iter()
            .map(|d| {
                // Half of this cell's own mass lies below its middle.
                let at = below + d / 2.0;
                below += d;
                at
            })
            .collect();
        densities.push(density);
        cdfs.push(cdf);
    }
    let mut best: Vec<f64> = (0..params.len())
        .map(|i| {
            (0..GRID)
                .map(|k| {
                    let others: f64 = (0..params.len())
                        .filter(|&j| j != i)
                        .map(|j| cdfs[j][k])
                        .product();
                    densities[i][k] * others
                })
                .sum()
        })
        .collect();
    // The grid's discretisation leaves the sum a hair off 1 (ties within a cell).
    let total: f64 = best.iter().sum();
    if total > 0.0 {
        best.iter_mut().for_each(|p| *p /= total);
    }
    best
}

/// The experiments of `spec` compared arm by arm from their funnels.
pub fn compare(
    spec: &Spec,
    by_arm: &BTreeMap<String, BTreeMap<String, Funnel>>,
) -> BTreeMap<String, ExperimentStats> {
    spec.experiments
        .iter()
        .filter_map(|experiment| {
            // An adaptive experiment's own goal (issue 13), else the journey's metric.
            let metric = Some(super::arms::goal_of(spec, experiment))
                .filter(|m| spec.milestones.iter().any(|s| &s.name == m));
            let funnels = by_arm.get(&experiment.name)?;
            let arms: Vec<(&String, &Funnel)> = funnels
                .iter()
                .filter(|(arm, _)| experiment.arms.contains(arm))
                .collect();
            let converted = |f: &Funnel| match &metric {
                Some(m) => f
                    .milestones
                    .iter()
                    .find(|s| &s.name == m)
                    .map_or(0, |s| s.reached),
                None => f.completed,
            };
            let samples: Vec<(u64, u64)> = arms
                .iter()
                .map(|(_, f)| (converted(f), f.entered))
                .collect();
            let with_sample = samples.iter().filter(|(_, n)| *n > 0).count();
            let best = (with_sample >= 2).then(|| probability_best(&samples));
            let stats = arms
                .iter()
                .zip(&samples)
                .enumerate()
                .map(|(i, ((arm, funnel), &(converted, entered)))| {
                    let milestones = funnel
                        .milestones
                        .iter()
                        .map(|m| MilestoneRate {
                            name: m.name.clone(),
                            reached: m.reached,
                            conversion: wilson(m.reached, entered),
                        })
                        .collect();
                    let stats = ArmStats {
                        sample_size: entered,
                        converted,
                        conversion: wilson(converted, entered),
                        probability_best: best.as_ref().map(|b| b[i]),
                        milestones,
                    };
                    ((*arm).clone(), stats)
                })
                .collect();
            Some((
                experiment.name.clone(),
                ExperimentStats {
                    metric: metric.clone().unwrap_or_else(|| "completed".into()),
                    allocation: experiment.allocation.as_str(),
                    arms: stats,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, within: f64) -> bool {
        (a - b).abs() <= within
    }

    #[test]
    fn wilson_matches_published_values() {
        // Wilson (1927) / Newcombe (1998) table: 81 of 263 → 0.2553 to 0.3662.
        let r = wilson(81, 263).unwrap();
        assert!(close(r.rate, 0.30798, 1e-4), "{r:?}");
        assert!(
            close(r.low, 0.2553, 1e-4) && close(r.high, 0.3662, 1e-4),
            "{r:?}"
        );
        // Edges stay in [0, 1]: 0 of 10 → 0 to 0.2775, 10 of 10 → 0.7225 to 1.
        let none = wilson(0, 10).unwrap();
        assert!(
            close(none.low, 0.0, 1e-12) && close(none.high, 0.2775, 1e-4),
            "{none:?}"
        );
        let all = wilson(10, 10).unwrap();
        assert!(
            close(all.low, 0.7225, 1e-4) && close(all.high, 1.0, 1e-12),
            "{all:?}"
        );
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn probability_best_agrees_with_exact_values() {
        // Equal evidence: a coin toss.
        let p = probability_best(&[(50, 100), (50, 100)]);
        assert!(close(p[0], 0.5, 1e-3), "{p:?}");
        // No data: uniform posteriors, each of three arms equally likely best.
        let p = probability_best(&[(0, 0), (0, 0), (0, 0)]);
        assert!(p.iter().all(|&x| close(x, 1.0 / 3.0, 1e-3)), "{p:?}");
        // Exact for Beta(2,1) vs Beta(1,2): X ~ Beta(2,1) has CDF x², Y ~ Beta(1,2) has
        // density 2(1 − y), so P(X > Y) = ∫ 2(1 − y)(1 − y²) dy = 5/6.
        let p = probability_best(&[(1, 1), (0, 1)]);
        assert!(close(p[0], 5.0 / 6.0, 2e-3), "{p:?}");
        // A clear winner with large samples; the probabilities sum to 1.
        let p = probability_best(&[(1200, 10_000), (1000, 10_000)]);
        assert!(p[0] > 0.999, "{p:?}");
        assert!(close(p.iter().sum::<f64>(), 1.0, 1e-9));
        // Deterministic.
        assert_eq!(
            probability_best(&[(7, 40), (9, 41)]),
            probability_best(&[(7, 40), (9, 41)])
        );
    }

    #[test]
    fn a_normal_approximation_check_at_moderate_samples() {
        // 120/1000 vs 100/1000: the difference 0.02 over its standard error
        // sqrt(.12·.88/1000 + .1·.9/1000) = 0.01398 is z = 1.43, so P ≈ Φ(1.43) = 0.924.
        let p = probability_best(&[(120, 1000), (100, 1000)]);
        assert!(close(p[0], 0.924, 0.01), "{p:?}");
    }
}
