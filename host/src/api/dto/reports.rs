//! Reports: [`crate::report`]'s measurements as the API shows them.

use super::all;
use crate::report::experiments::{ExperimentStats, Rate};
use crate::report::{Funnel, MilestoneStats, PathCount, Report};
use waymark_api::reports as api;

impl From<Report> for api::Report {
    fn from(report: Report) -> Self {
        let Report {
            overall,
            by_version,
            by_arm,
            experiments,
        } = report;
        api::Report {
            overall: overall.into(),
            by_version: by_version
                .into_iter()
                .map(|(version, funnel)| (version, funnel.into()))
                .collect(),
            by_arm: by_arm
                .into_iter()
                .map(|(experiment, arms)| {
                    let arms = arms
                        .into_iter()
                        .map(|(arm, funnel)| (arm, funnel.into()))
                        .collect();
                    (experiment, arms)
                })
                .collect(),
            experiments: experiments
                .into_iter()
                .map(|(name, stats)| (name, stats.into()))
                .collect(),
        }
    }
}

impl From<ExperimentStats> for api::ExperimentStats {
    fn from(stats: ExperimentStats) -> Self {
        api::ExperimentStats {
            metric: stats.metric,
            allocation: stats.allocation.to_string(),
            arms: stats
                .arms
                .into_iter()
                .map(|(arm, a)| {
                    let arm_stats = api::ArmStats {
                        sample_size: a.sample_size,
                        converted: a.converted,
                        conversion: a.conversion.map(rate),
                        probability_best: a.probability_best,
                        milestones: a
                            .milestones
                            .into_iter()
                            .map(|m| api::MilestoneRate {
                                name: m.name,
                                reached: m.reached,
                                conversion: m.conversion.map(rate),
                            })
                            .collect(),
                    };
                    (arm, arm_stats)
                })
                .collect(),
        }
    }
}

fn rate(r: Rate) -> api::Rate {
    api::Rate {
        rate: r.rate,
        low: r.low,
        high: r.high,
    }
}

impl From<Funnel> for api::Funnel {
    fn from(funnel: Funnel) -> Self {
        let Funnel {
            entered,
            active,
            completed,
            exited,
            exited_by_reason,
            stalled_now,
            stalled_ever,
            milestones,
            channels,
            paths,
        } = funnel;
        api::Funnel {
            entered,
            active,
            completed,
            exited,
            exited_by_reason,
            stalled_now,
            stalled_ever,
            milestones: all(milestones),
            channels: channels
                .into_iter()
                .map(|(channel, summary)| (channel, summary.into()))
                .collect(),
            paths: all(paths),
        }
    }
}

impl From<MilestoneStats> for api::MilestoneStats {
    fn from(stats: MilestoneStats) -> Self {
        let MilestoneStats {
            name,
            reached,
            conversion,
            median_time_to_reach_ms,
            stalled_now,
            stalled_ever,
        } = stats;
        api::MilestoneStats {
            name,
            reached,
            conversion,
            median_time_to_reach_ms,
            stalled_now,
            stalled_ever,
        }
    }
}

impl From<PathCount> for api::PathCount {
    fn from(path: PathCount) -> Self {
        let PathCount { path, customers } = path;
        api::PathCount { path, customers }
    }
}
