//! The `stats` import: read-only aggregate statistics of the calling journey.
//!
//! The caller passes a snapshot to `decide` (per-channel delivery counts of this journey across
//! its versions, and since contract 0.1.2 its experiments' arms: `by-arm`, computed by
//! `report::arms`); the guest reads exactly that snapshot, so what it saw is part of the
//! decision's inputs and a replay that passes the same snapshot decides the same way.

use super::Capability;
use crate::model;
use crate::sandbox::bindings::stats as wit;
use crate::sandbox::convert::{arm_stats_to_wit, channel_stats_to_wit};
use wasmtime::component::{HasData, Linker};

/// What this capability grants: the `stats` interface.
pub(in crate::sandbox) const INTERFACES: &[&str] = &["waymark:journey/stats@"];

/// Per-call state of the `stats` import: the snapshot handed to `decide`.
#[derive(Debug, Clone, Default)]
pub(in crate::sandbox) struct StatsState {
    snapshot: model::StatsSnapshot,
}

impl StatsState {
    pub(in crate::sandbox) fn new(snapshot: model::StatsSnapshot) -> StatsState {
        StatsState { snapshot }
    }
}

impl wit::Host for StatsState {
    fn by_channel(&mut self) -> Vec<wit::ChannelStats> {
        channel_stats_to_wit(&self.snapshot.channels)
    }

    fn by_arm(&mut self) -> Vec<wit::ArmStats> {
        arm_stats_to_wit(&self.snapshot.arms)
    }
}

struct Stats;

impl HasData for Stats {
    type Data<'a> = &'a mut StatsState;
}

/// Store data that holds a [`StatsState`].
pub(in crate::sandbox) trait HasStats {
    fn stats_state(&mut self) -> &mut StatsState;
}

/// Adds the `stats` import, reading its state from the store data.
pub(in crate::sandbox) fn add_to_linker<T: HasStats + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Stats>(linker, T::stats_state)
}

/// `stats` as a world lists it.
pub(in crate::sandbox) const fn capability<T: HasStats + 'static>() -> Capability<T> {
    Capability {
        interfaces: INTERFACES,
        add_to_linker: add_to_linker::<T>,
    }
}

#[cfg(test)]
mod tests {
    use super::wit::Host;
    use super::*;

    #[test]
    fn the_guest_reads_the_snapshot_it_was_given() {
        let mut stats = StatsState::new(model::StatsSnapshot {
            channels: vec![model::ChannelStats {
                channel: "email".into(),
                sent: 10,
                delivered: 9,
                failed: 1,
            }],
            arms: vec![model::ArmStats {
                experiment: "copy".into(),
                arm: "b".into(),
                goal: "activated".into(),
                entered: 40,
                converted: 12,
            }],
        });
        let arms = stats.by_arm();
        assert_eq!(arms.len(), 1);
        assert_eq!(
            (
                arms[0].experiment.as_str(),
                arms[0].arm.as_str(),
                arms[0].goal.as_str(),
                arms[0].entered,
                arms[0].converted
            ),
            ("copy", "b", "activated", 40, 12)
        );
        let seen = stats.by_channel();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (
                seen[0].channel.as_str(),
                seen[0].sent,
                seen[0].delivered,
                seen[0].failed
            ),
            ("email", 10, 9, 1)
        );
    }
}
