//! What the `stats` import's `by-arm` tells a journey about its experiments' arms (issue 13):
//! per arm, the enrollments first assigned it and how many of them reached the experiment's
//! goal, over every version of the journey.
//!
//! **As of the start of the stats period** (`model::STATS_PERIOD_MS`, an hour of journey
//! time): only entries and goal milestones *before* the period's start count. Those are facts
//! about the past that no later trigger changes, so every trigger of the period reads the same
//! numbers however the host batched its triggers, and a replay (a backtest, the fidelity check,
//! `waymark simulate`), which runs the same worker code over its own scratch store, computes the
//! same numbers from the enrollments it rebuilt: a journey that adapts to its arms replays
//! exactly. (An arm counts an enrollment from its first assignment of the experiment; one
//! assigned only after the period started may count in that period's numbers or not depending
//! on which trigger first read them, so assign arms on entry — as the SDK's `thompson_arm`
//! helper does — and the guarantee holds.)
//!
//! The numbers are computed once per journey version and period ([`ArmStatsCache`]): one scan
//! of the journey's enrollments an hour at most, never a scan per trigger; journeys without
//! experiments never scan.

use crate::model::{
    stats_period_start, ArmStats, Enrollment, EnrollmentStatus, Millis, Spec, StatsSnapshot,
};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The milestone an experiment's arms are compared on: its declared goal, else the journey's
/// goal, else its last milestone; `completed` without milestones (as the report's metric).
pub fn goal_of(spec: &Spec, experiment: &crate::model::ExperimentSpec) -> String {
    experiment
        .allocation
        .goal()
        .map(str::to_owned)
        .or_else(|| spec.goal.clone())
        .or_else(|| spec.milestones.last().map(|m| m.name.clone()))
        .unwrap_or_else(|| "completed".into())
}

/// Every arm of every experiment of `spec`, in declaration order, counted over `enrollments`
/// as of `before` (entries and goals strictly before it).
pub fn arm_stats<'a>(
    spec: &Spec,
    enrollments: impl IntoIterator<Item = &'a Enrollment>,
    before: Millis,
) -> Vec<ArmStats> {
    let mut out: Vec<ArmStats> = spec
        .experiments
        .iter()
        .flat_map(|x| {
            let goal = goal_of(spec, x);
            x.arms.iter().map(move |arm| ArmStats {
                experiment: x.name.clone(),
                arm: arm.clone(),
                goal: goal.clone(),
                entered: 0,
                converted: 0,
            })
        })
        .collect();
    for e in enrollments {
        if e.entered_at >= before {
            continue;
        }
        for stats in out.iter_mut() {
            let first = e.variants.iter().find(|v| v.experiment == stats.experiment);
            if first.is_none_or(|v| v.arm != stats.arm) {
                continue;
            }
            stats.entered += 1;
            let converted = if stats.goal == "completed" {
                e.status == EnrollmentStatus::Completed && e.ended_at.is_some_and(|t| t < before)
            } else {
                e.milestones
                    .iter()
                    .any(|m| m.name == stats.goal && m.at < before)
            };
            stats.converted += u64::from(converted);
        }
    }
    out
}

/// Tenant, journey and version.
type VersionKey = (String, String, u32);
/// The period an entry was computed for, and the arms then.
type Entries = HashMap<VersionKey, (Millis, Arc<Vec<ArmStats>>)>;

/// Arm statistics per tenant, journey and version, for the current period.
#[derive(Default)]
pub struct ArmStatsCache {
    entries: Mutex<Entries>,
}

impl ArmStatsCache {
    /// The `stats` snapshot of a trigger of `version` at journey time `now`: `channels` as
    /// given, and the arms as of the start of `now`'s period.
    pub fn snapshot(
        &self,
        store: &Store,
        tenant: &str,
        version: &crate::store::JourneyVersion,
        now: Millis,
        channels: Vec<crate::model::ChannelStats>,
    ) -> Result<StatsSnapshot, StoreError> {
        self.snapshot_keeping(store, tenant, version, now, channels, true)
    }

    // Dry-run decide (issue 13)
    /// As [`snapshot`](Self::snapshot), for a dry-run `decide`: the cached arms when the
    /// cache holds `now`'s period, else counted afresh and not cached — a dry run at another
    /// hour never changes what live triggers read.
    pub fn snapshot_uncached(
        &self,
        store: &Store,
        tenant: &str,
        version: &crate::store::JourneyVersion,
        now: Millis,
        channels: Vec<crate::model::ChannelStats>,
    ) -> Result<StatsSnapshot, StoreError> {
        self.snapshot_keeping(store, tenant, version, now, channels, false)
    }

    /// The snapshot; arms counted afresh are cached when `keep`.
    fn snapshot_keeping(
        &self,
        store: &Store,
        tenant: &str,
        version: &crate::store::JourneyVersion,
        now: Millis,
        channels: Vec<crate::model::ChannelStats>,
        keep: bool,
    ) -> Result<StatsSnapshot, StoreError> {
        if version.spec.experiments.is_empty() {
            return Ok(channels.into());
        }
        let period = stats_period_start(now);
        let key = (tenant.to_string(), version.name.clone(), version.version);
        let cached = self
            .lock()
            .get(&key)
            .filter(|(at, _)| *at == period)
            .map(|(_, arms)| arms.clone());
        let arms = match cached {
            Some(arms) => arms,
            None => {
                let enrollments = store.journey_enrollments(tenant, &version.name)?;
                let arms = Arc::new(arm_stats(&version.spec, &enrollments, period));
                if keep {
                    self.lock().insert(key, (period, arms.clone()));
                }
                arms
            }
        };
        Ok(StatsSnapshot {
            channels,
            arms: arms.as_ref().clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Allocation, ExperimentSpec, MilestoneHit, MilestoneSpec, VariantAssignment,
    };

    fn spec() -> Spec {
        let mut spec = crate::store::fixtures::spec();
        spec.milestones = vec![
            MilestoneSpec {
                name: "opened".into(),
                stall_after: None,
            },
            MilestoneSpec {
                name: "bought".into(),
                stall_after: None,
            },
        ];
        spec.goal = None;
        spec.experiments = vec![ExperimentSpec {
            name: "copy".into(),
            arms: vec!["a".into(), "b".into()],
            allocation: Allocation::Thompson {
                goal: Some("opened".into()),
            },
        }];
        spec
    }

    fn enrollment(
        customer: &str,
        entered_at: Millis,
        arm: &str,
        opened: Option<Millis>,
    ) -> Enrollment {
        let mut e = crate::store::fixtures::enrollment(customer, "welcome", 1);
        e.entered_at = entered_at;
        e.variants = vec![VariantAssignment {
            experiment: "copy".into(),
            arm: arm.into(),
        }];
        e.milestones = opened
            .map(|at| MilestoneHit {
                name: "opened".into(),
                at,
            })
            .into_iter()
            .collect();
        e
    }

    #[test]
    fn arms_count_entries_and_goals_before_the_period_only() {
        let enrollments = [
            enrollment("c1", 10, "a", Some(20)),
            enrollment("c2", 10, "a", Some(150)),
            enrollment("c3", 10, "b", None),
            enrollment("c4", 120, "b", Some(130)),
        ];
        let stats = arm_stats(&spec(), &enrollments, 100);
        let got: Vec<(&str, &str, u64, u64)> = stats
            .iter()
            .map(|s| (s.arm.as_str(), s.goal.as_str(), s.entered, s.converted))
            .collect();
        // c2's goal and c4's entry are after the period started: not yet.
        assert_eq!(got, [("a", "opened", 2, 1), ("b", "opened", 1, 0)]);
    }

    #[test]
    fn an_experiment_without_a_declared_goal_uses_the_journeys() {
        let mut spec = spec();
        spec.experiments[0].allocation = Allocation::Fixed;
        assert_eq!(goal_of(&spec, &spec.experiments[0]), "bought");
        spec.goal = Some("opened".into());
        assert_eq!(goal_of(&spec, &spec.experiments[0]), "opened");
        spec.goal = None;
        spec.milestones.clear();
        assert_eq!(goal_of(&spec, &spec.experiments[0]), "completed");
    }
}
