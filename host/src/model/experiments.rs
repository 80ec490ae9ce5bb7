//! Experiments beyond their arms (issue 13): how an experiment allocates customers
//! ([`Allocation`], declared through the `allocation` export of contract 0.1.2), and what the
//! `stats` import tells a journey about its arms ([`ArmStats`], in a [`StatsSnapshot`] beside
//! the per-channel delivery counts).

use super::{ChannelStats, Millis};
use serde::{Deserialize, Serialize};

/// How an experiment assigns arms. The host does not assign: it records what the journey
/// declared so that reports say how the split was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Allocation {
    /// A fixed split (a hash of the customer), the default.
    #[default]
    Fixed,
    /// Thompson sampling on `goal` (a declared milestone; `None`: the journey's goal).
    Thompson {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        goal: Option<String>,
    },
}

impl Allocation {
    pub fn is_fixed(&self) -> bool {
        matches!(self, Allocation::Fixed)
    }

    /// The name reports show: `fixed` or `thompson`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Allocation::Fixed => "fixed",
            Allocation::Thompson { .. } => "thompson",
        }
    }

    /// The milestone this allocation optimises, if it names one.
    pub fn goal(&self) -> Option<&str> {
        match self {
            Allocation::Thompson { goal } => goal.as_deref(),
            Allocation::Fixed => None,
        }
    }
}

/// One arm of one experiment as the `stats` import reports it: entries and conversions before
/// the start of the stats period (see `report::arms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmStats {
    pub experiment: String,
    pub arm: String,
    /// The milestone counted as a conversion (`completed` for a journey without milestones).
    pub goal: String,
    pub entered: u64,
    pub converted: u64,
}

/// Everything the `stats` import returns during one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// `by-channel`.
    pub channels: Vec<ChannelStats>,
    /// `by-arm` (contract 0.1.2).
    pub arms: Vec<ArmStats>,
}

impl From<Vec<ChannelStats>> for StatsSnapshot {
    fn from(channels: Vec<ChannelStats>) -> StatsSnapshot {
        StatsSnapshot {
            channels,
            arms: Vec::new(),
        }
    }
}

/// The length of a stats period: arm statistics read during a trigger count what happened
/// before the start of its hour (journey time), so they change once an hour, the same way live
/// and in a replay.
pub const STATS_PERIOD_MS: Millis = 60 * 60 * 1000;

/// The start of the stats period `now` falls in.
pub fn stats_period_start(now: Millis) -> Millis {
    now.div_euclid(STATS_PERIOD_MS) * STATS_PERIOD_MS
}
