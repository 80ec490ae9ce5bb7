//! Journey reports: what happened to the customers who entered a journey, measured in
//! outcomes (milestones) rather than messages. Pure: the caller hands in the enrollments.
//!
//! A report has the same [`Funnel`] overall, per version and per experiment arm, so a tenant
//! compares versions and arms by the milestones their customers reached, how fast, and what
//! the customers' actual paths through the milestones were.
//!
//! [`report`] computes a report from the enrollments themselves; the API answers from
//! [`cells`] instead, aggregates kept up to date as triggers commit, which give the same report
//! at a cost independent of the number of enrollments (medians over many customers within 1 %,
//! see [`times`]). [`report`] stays as their specification and test oracle.
//!
//! Not a wire format: the API shows a report as `waymark_api::reports` (`api/dto/`).

pub mod arms; // Issue 13: the `stats` import's arm statistics.
pub mod cells;
pub mod experiments;
pub mod times;

use crate::model::{Enrollment, EnrollmentStatus, Millis, Spec};
use std::collections::BTreeMap;

/// How many of the most common milestone paths a funnel lists.
const TOP_PATHS: usize = 10;

/// One group of enrollments, measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Funnel {
    pub entered: u64,
    pub active: u64,
    pub completed: u64,
    pub exited: u64,
    /// Exited enrollments by their reason.
    pub exited_by_reason: BTreeMap<String, u64>,
    /// Active enrollments stalled right now.
    pub stalled_now: u64,
    /// Enrollments that ever stalled.
    pub stalled_ever: u64,
    /// Declared milestones, in the spec's order.
    pub milestones: Vec<MilestoneStats>,
    /// Messages per channel: sent, suppressed, delivered, failed and engagement.
    pub channels: BTreeMap<String, crate::model::ChannelSummary>,
    /// The most common sequences of milestones customers actually reached (in the order
    /// they reached them), with how many customers took each; `[]` is "no milestone yet".
    pub paths: Vec<PathCount>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MilestoneStats {
    pub name: String,
    pub reached: u64,
    /// `reached` over the previous milestone's `reached` (over `entered` for the first);
    /// `None` when the denominator is zero.
    pub conversion: Option<f64>,
    /// Median time from entering to reaching it, in milliseconds: the lower middle one. From
    /// [`cells`], exact while few customers reached it, else within 1 % ([`times`]).
    pub median_time_to_reach_ms: Option<Millis>,
    /// Active enrollments stalled on it right now (its window passed without it).
    pub stalled_now: u64,
    /// Enrollments that ever stalled on it.
    pub stalled_ever: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathCount {
    pub path: Vec<String>,
    pub customers: u64,
}

/// The whole report of one journey.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub overall: Funnel,
    /// By journey version.
    pub by_version: BTreeMap<u32, Funnel>,
    /// By experiment, then arm; enrollments not (yet) assigned to an experiment's arm are
    /// counted under `unassigned`.
    pub by_arm: BTreeMap<String, BTreeMap<String, Funnel>>,
    /// Each experiment's arms compared: conversion with 95% intervals, the probability that
    /// each arm is best ([`experiments`]).
    pub experiments: BTreeMap<String, experiments::ExperimentStats>,
}

/// Measures `enrollments` (all of one journey) against the latest `spec`: its milestones and
/// experiments define the rows.
pub fn report(spec: &Spec, enrollments: &[Enrollment]) -> Report {
    let all: Vec<&Enrollment> = enrollments.iter().collect();
    let mut by_version: BTreeMap<u32, Vec<&Enrollment>> = BTreeMap::new();
    for e in &all {
        by_version.entry(e.version).or_default().push(e);
    }
    let mut by_arm = BTreeMap::new();
    for experiment in &spec.experiments {
        let mut arms: BTreeMap<String, Vec<&Enrollment>> = experiment
            .arms
            .iter()
            .map(|arm| (arm.clone(), Vec::new()))
            .collect();
        for e in &all {
            let arm = e
                .variants
                .iter()
                .find(|v| v.experiment == experiment.name)
                .map_or("unassigned", |v| v.arm.as_str());
            arms.entry(arm.to_string()).or_default().push(e);
        }
        by_arm.insert(
            experiment.name.clone(),
            arms.into_iter()
                .map(|(arm, group)| (arm, funnel(spec, &group)))
                .collect(),
        );
    }
    Report {
        overall: funnel(spec, &all),
        by_version: by_version
            .into_iter()
            .map(|(v, group)| (v, funnel(spec, &group)))
            .collect(),
        experiments: experiments::compare(spec, &by_arm),
        by_arm,
    }
}

fn funnel(spec: &Spec, group: &[&Enrollment]) -> Funnel {
    let mut f = Funnel {
        entered: group.len() as u64,
        ..Funnel::default()
    };
    let mut paths: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for e in group {
        match e.status {
            EnrollmentStatus::Active => f.active += 1,
            EnrollmentStatus::Completed => f.completed += 1,
            EnrollmentStatus::Exited => {
                f.exited += 1;
                let reason = e.exit_reason.clone().unwrap_or_else(|| "unknown".into());
                *f.exited_by_reason.entry(reason).or_default() += 1;
            }
        }
        if e.is_active() && e.stalled_on.is_some() {
            f.stalled_now += 1;
        }
        if !e.stalls.is_empty() {
            f.stalled_ever += 1;
        }
        for (channel, s) in &e.channels {
            let total = f.channels.entry(channel.clone()).or_default();
            total.sent += s.sent;
            total.delivered += s.delivered;
            total.failed += s.failed;
            total.suppressed += s.suppressed;
            total.opened += s.opened;
            total.clicked += s.clicked;
            total.replied += s.replied;
            total.bounced += s.bounced;
            total.unsubscribed += s.unsubscribed;
        }
        let mut hits: Vec<_> = e.milestones.iter().collect();
        hits.sort_by_key(|m| m.at);
        *paths
            .entry(hits.iter().map(|m| m.name.clone()).collect())
            .or_default() += 1;
    }
    let mut previous = f.entered;
    for m in &spec.milestones {
        let mut times: Vec<Millis> = group
            .iter()
            .filter_map(|e| e.milestone(&m.name).map(|hit| hit.at - e.entered_at))
            .collect();
        times.sort_unstable();
        let reached = times.len() as u64;
        let stalled_now = group
            .iter()
            .filter(|e| e.is_active() && e.stalled_on.as_deref() == Some(m.name.as_str()))
            .count() as u64;
        let stalled_ever = group
            .iter()
            .filter(|e| e.stalls.iter().any(|s| s.name == m.name))
            .count() as u64;
        f.milestones.push(MilestoneStats {
            name: m.name.clone(),
            reached,
            conversion: (previous > 0).then(|| reached as f64 / previous as f64),
            median_time_to_reach_ms: median(&times),
            stalled_now,
            stalled_ever,
        });
        previous = reached;
    }
    let mut paths: Vec<PathCount> = paths
        .into_iter()
        .map(|(path, customers)| PathCount { path, customers })
        .collect();
    paths.sort_by(|a, b| b.customers.cmp(&a.customers).then(a.path.cmp(&b.path)));
    paths.truncate(TOP_PATHS);
    f.paths = paths;
    f
}

/// The median of sorted values (the lower middle one for an even count, so it is a time some
/// customer actually took).
fn median(sorted: &[Millis]) -> Option<Millis> {
    if sorted.is_empty() {
        None
    } else {
        Some(sorted[(sorted.len() - 1) / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::enroll;
    use crate::model::{ExperimentSpec, MilestoneHit, MilestoneSpec, Reentry, VariantAssignment};

    fn spec() -> Spec {
        Spec {
            description: "onboarding".into(),
            entry: vec![],
            exit_on: vec![],
            milestones: ["first_login", "first_value"]
                .iter()
                .map(|n| MilestoneSpec {
                    name: n.to_string(),
                    stall_after: None,
                })
                .collect(),
            goal: Some("first_value".into()),
            reentry: Reentry::Never,
            channels: vec!["webhook".into()],
            experiments: vec![ExperimentSpec {
                name: "copy".into(),
                arms: vec!["a".into(), "b".into()],
                allocation: Default::default(),
            }],
            audience: Default::default(),
        }
    }

    fn customer(id: &str, version: u32, arm: Option<&str>, hits: &[(&str, Millis)]) -> Enrollment {
        let mut e = enroll("onboarding", version, id, 1, None, 1_000);
        e.milestones = hits
            .iter()
            .map(|(name, at)| MilestoneHit {
                name: name.to_string(),
                at: *at,
            })
            .collect();
        if let Some(arm) = arm {
            e.variants.push(VariantAssignment {
                experiment: "copy".into(),
                arm: arm.into(),
            });
        }
        e
    }

    #[test]
    fn a_funnel_counts_outcomes_conversions_and_median_times() {
        let mut done = customer(
            "a",
            1,
            Some("a"),
            &[("first_login", 1_100), ("first_value", 1_500)],
        );
        done.status = EnrollmentStatus::Completed;
        let mut gone = customer("b", 1, Some("b"), &[]);
        gone.status = EnrollmentStatus::Exited;
        gone.exit_reason = Some("exit_event:deleted".into());
        let mut stuck = customer("c", 2, Some("a"), &[("first_login", 1_300)]);
        stuck.stalled_on = Some("first_value".into());
        stuck.stalls.push(MilestoneHit {
            name: "first_value".into(),
            at: 5_000,
        });
        stuck.channels.entry("webhook".into()).or_default().sent = 2;
        let waiting = customer("d", 2, None, &[]);

        let r = report(&spec(), &[done, gone, stuck, waiting]);
        let f = &r.overall;
        assert_eq!((f.entered, f.active, f.completed, f.exited), (4, 2, 1, 1));
        assert_eq!(f.exited_by_reason["exit_event:deleted"], 1);
        assert_eq!((f.stalled_now, f.stalled_ever), (1, 1));
        assert_eq!(f.milestones[0].reached, 2);
        assert_eq!(f.milestones[0].conversion, Some(0.5));
        assert_eq!(f.milestones[0].median_time_to_reach_ms, Some(100));
        assert_eq!(f.milestones[1].reached, 1);
        assert_eq!(f.milestones[1].conversion, Some(0.5));
        assert_eq!(f.milestones[1].median_time_to_reach_ms, Some(500));
        let stalls = |m: &MilestoneStats| (m.stalled_now, m.stalled_ever);
        assert_eq!(stalls(&f.milestones[0]), (0, 0));
        assert_eq!(
            stalls(&f.milestones[1]),
            (1, 1),
            "c is stalled on first_value"
        );
        assert_eq!(f.channels["webhook"].sent, 2);
        assert_eq!(
            f.paths[0],
            PathCount {
                path: vec![],
                customers: 2
            }
        );
        assert_eq!(f.paths.len(), 3);

        assert_eq!(r.by_version[&1].entered, 2);
        assert_eq!(r.by_version[&2].stalled_now, 1);
        let arms = &r.by_arm["copy"];
        assert_eq!(arms["a"].entered, 2);
        assert_eq!(arms["a"].completed, 1);
        assert_eq!(arms["b"].exited, 1);
        assert_eq!(arms["unassigned"].entered, 1);
    }

    #[test]
    fn an_empty_journey_reports_zeros_without_dividing_by_zero() {
        let r = report(&spec(), &[]);
        assert_eq!(r.overall.entered, 0);
        assert_eq!(r.overall.milestones[0].conversion, None);
        assert_eq!(r.overall.milestones[0].median_time_to_reach_ms, None);
        assert_eq!(
            r.by_arm["copy"]["a"].entered, 0,
            "declared arms are always listed"
        );
    }

    #[test]
    fn paths_follow_the_order_customers_reached_milestones_in() {
        let skipped = customer(
            "a",
            1,
            None,
            &[("first_value", 1_200), ("first_login", 1_400)],
        );
        let r = report(&spec(), &[skipped]);
        assert_eq!(r.overall.paths[0].path, ["first_value", "first_login"]);
    }
}
