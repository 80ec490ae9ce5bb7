//! `GET /v1/journeys/{name}/report` (tenant): a journey's funnel — overall, per version and
//! per experiment arm — measured in milestones, not messages.

use crate::customers::ChannelSummary;
use crate::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The answer to `GET /v1/journeys/{name}/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JourneyReport {
    /// The journey.
    pub name: String,
    /// Its latest version, whose spec defines the rows.
    pub latest_version: u32,
    /// What the report counts (account journeys, issue 12): customers, or accounts (one
    /// enrollment each), as the latest version's spec declares.
    #[serde(default)]
    pub subject: crate::journeys::Subject,
    /// The report.
    pub report: Report,
}

/// The whole report (the host's `report::Report`, same shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Report {
    /// Every enrollment.
    pub overall: Funnel,
    /// By journey version (keys are the versions, as JSON strings).
    pub by_version: BTreeMap<u32, Funnel>,
    /// By experiment, then arm; enrollments not yet assigned count under `unassigned`.
    pub by_arm: BTreeMap<String, BTreeMap<String, Funnel>>,
    /// By experiment: its arms compared on its metric.
    #[serde(default)]
    pub experiments: BTreeMap<String, ExperimentStats>,
}

/// One experiment's arms compared (enrollments not yet assigned are left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExperimentStats {
    /// The milestone the arms are compared on: the journey's goal, else its last milestone,
    /// else `completed`.
    pub metric: String,
    /// How the journey allocates customers to arms (issue 13): `fixed` (a hash of the
    /// customer), or `thompson` (Thompson sampling on its goal milestone, declared through the
    /// `allocation` export). Reports stored before it read `fixed`.
    #[serde(default = "fixed")]
    pub allocation: String,
    /// By arm.
    pub arms: BTreeMap<String, ArmStats>,
}

/// One arm of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ArmStats {
    /// Enrollments assigned to the arm.
    pub sample_size: u64,
    /// Of which reached the metric.
    pub converted: u64,
    /// `converted / sample_size` with its 95% interval (Wilson); `null` with no sample.
    pub conversion: Option<Rate>,
    /// The probability that this arm's rate on the metric is the highest (Beta-Binomial
    /// posteriors, uniform prior); `null` while fewer than two arms have a sample.
    pub probability_best: Option<f64>,
    /// Conversion from entry to every declared milestone, with 95% intervals.
    pub milestones: Vec<MilestoneRate>,
}

/// A rate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rate {
    /// The observed rate.
    pub rate: f64,
    /// The interval's lower end.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
}

/// Conversion from entry to one milestone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MilestoneRate {
    /// The milestone.
    pub name: String,
    /// How many of the arm reached it.
    pub reached: u64,
    /// `reached / sample_size` with its 95% interval; `null` with no sample.
    pub conversion: Option<Rate>,
}

/// One group of enrollments, measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Funnel {
    /// Enrollments in the group.
    pub entered: u64,
    /// Of which active.
    pub active: u64,
    /// Of which completed.
    pub completed: u64,
    /// Of which exited.
    pub exited: u64,
    /// Exited enrollments by their reason.
    pub exited_by_reason: BTreeMap<String, u64>,
    /// Active enrollments stalled right now.
    pub stalled_now: u64,
    /// Enrollments that ever stalled.
    pub stalled_ever: u64,
    /// Declared milestones, in the spec's order.
    pub milestones: Vec<MilestoneStats>,
    /// Messages per channel.
    pub channels: BTreeMap<String, ChannelSummary>,
    /// The 10 most common sequences of milestones reached, with how many customers took each.
    pub paths: Vec<PathCount>,
}

/// One milestone's row of a funnel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MilestoneStats {
    /// The milestone.
    pub name: String,
    /// How many reached it.
    pub reached: u64,
    /// `reached` over the previous row's (over `entered` for the first); `null` when that is 0.
    pub conversion: Option<f64>,
    /// Median time from entering to reaching it; `null` when nobody did.
    pub median_time_to_reach_ms: Option<Millis>,
    /// Active enrollments stalled on it right now: its window passed without it.
    #[serde(default)]
    pub stalled_now: u64,
    /// Enrollments that ever stalled on it.
    #[serde(default)]
    pub stalled_ever: u64,
}

/// A path through the milestones, and how many customers took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PathCount {
    /// Milestones in the order reached; `[]` is "no milestone yet".
    pub path: Vec<String>,
    /// How many customers.
    pub customers: u64,
}

/// The allocation of an experiment that declared none.
fn fixed() -> String {
    "fixed".into()
}
