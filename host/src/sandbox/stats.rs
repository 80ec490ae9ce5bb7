//! The `stats` import: read-only aggregate statistics of the calling journey.
//!
//! The caller passes a snapshot to `decide` (per-channel delivery counts of this journey across
//! its versions); the guest reads exactly that snapshot, so what it saw is part of the
//! decision's inputs and a replay that passes the same snapshot decides the same way.

use super::journey::bindings::waymark::journey::stats as wit;
use crate::model;
use wasmtime::component::{HasData, Linker};

/// Per-call state of the `stats` import: the snapshot handed to `decide`.
#[derive(Debug, Clone, Default)]
pub(super) struct StatsState {
    snapshot: Vec<model::ChannelStats>,
}

impl StatsState {
    pub(super) fn new(snapshot: Vec<model::ChannelStats>) -> StatsState {
        StatsState { snapshot }
    }
}

impl wit::Host for StatsState {
    fn by_channel(&mut self) -> Vec<wit::ChannelStats> {
        self.snapshot
            .iter()
            .map(|s| wit::ChannelStats {
                channel: s.channel.clone(),
                sent: s.sent,
                delivered: s.delivered,
                failed: s.failed,
            })
            .collect()
    }
}

struct Stats;

impl HasData for Stats {
    type Data<'a> = &'a mut StatsState;
}

/// Adds the `stats` import, reading its state from the store data with `get`.
pub(super) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut StatsState,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Stats>(linker, get)
}

#[cfg(test)]
mod tests {
    use super::wit::Host;
    use super::*;

    #[test]
    fn the_guest_reads_the_snapshot_it_was_given() {
        let mut stats = StatsState::new(vec![model::ChannelStats {
            channel: "email".into(),
            sent: 10,
            delivered: 9,
            failed: 1,
        }]);
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
