//! Reports: [`crate::report`]'s measurements as the API shows them.

use super::all;
use crate::report::{Funnel, MilestoneStats, PathCount, Report};
use waymark_api::reports as api;

impl From<Report> for api::Report {
    fn from(report: Report) -> Self {
        let Report {
            overall,
            by_version,
            by_arm,
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
        }
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
        } = stats;
        api::MilestoneStats {
            name,
            reached,
            conversion,
            median_time_to_reach_ms,
        }
    }
}

impl From<PathCount> for api::PathCount {
    fn from(path: PathCount) -> Self {
        let PathCount { path, customers } = path;
        api::PathCount { path, customers }
    }
}
