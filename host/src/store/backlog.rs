//! The work a store holds that nothing has taken up yet: what `/metrics` shows as
//! `waymark_shards_with_triggers` and `waymark_due{kind}`, read when it is scraped. An operator
//! reads a queue that does not drain from it; a test reads "settled" from it (every count zero)
//! rather than from counters that merely stopped moving: a worker compiling a component, or
//! busy elsewhere on a loaded machine, moves no counter while its queue holds work.

use super::keys::time_key;
use super::{Store, StoreError};
use crate::model::Millis;

/// How many due entries of one kind a scrape counts at most: the counts are read by walking
/// the due part of a time index, and a scrape must stay cheap however far behind a store is.
/// (At 10,000, the durability bench's scrape every 20 ms cost some 9 % of the server's CPU while
/// 40,000 welcomes were due; "more than 1,000 waiting" says as much to an operator.)
pub const COUNTED: usize = 1_000;

/// The work a store holds that nothing has taken up yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Shards whose queue holds triggers: being run now, deferred by a breaker, or waiting.
    pub shards_with_triggers: usize,
    /// Timers due at journey time `now` that the scheduler has not moved to their queues yet.
    pub timers: usize,
    /// Audience watches (issue 12) due at `now`, not yet queued.
    pub audience: usize,
    /// Messages the sending policy held whose release is due at `now`, not yet released.
    pub held: usize,
    /// Messages whose next delivery attempt is due at wall-clock `wall`: waiting for a slot,
    /// or in flight.
    pub messages: usize,
}

impl Backlog {
    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        *self == Backlog::default()
    }
}

impl Store {
    /// The store's backlog at journey time `now` and wall-clock time `wall`, each due count
    /// up to [`COUNTED`]: one seek per shard and a walk over each index's due part.
    pub fn backlog(&self, now: Millis, wall: Millis) -> Result<Backlog, StoreError> {
        let mut shards_with_triggers = 0;
        for shard in 0..self.shards() {
            if self
                .queue
                .scan_prefix(shard.to_be_bytes())
                .next()
                .transpose()?
                .is_some()
            {
                shards_with_triggers += 1;
            }
        }
        let due =
            |tree: &super::kv::Tree, prefix: &[u8], at: Millis| -> Result<usize, StoreError> {
                let mut end = prefix.to_vec();
                end.extend_from_slice(&time_key(at.saturating_add(1)));
                let mut n = 0;
                for kv in tree.range(prefix.to_vec()..end).take(COUNTED) {
                    kv?;
                    n += 1;
                }
                Ok(n)
            };
        Ok(Backlog {
            shards_with_triggers,
            timers: due(&self.timers, b"", now)?,
            audience: due(&self.audience, b"d", now)?,
            held: due(&self.held, b"", now)?,
            messages: due(&self.outbox_due, b"", wall)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures, temp_store};
    use crate::store::timers::TimerRecord;

    #[test]
    fn a_store_with_nothing_waiting_has_an_empty_backlog() {
        let (_dir, store) = temp_store();
        assert!(store.backlog(0, 0).unwrap().is_empty());
    }

    #[test]
    fn queued_triggers_count_their_shards_and_timers_count_once_due() {
        let (_dir, store) = temp_store();
        let mut commit = fixtures::commit(&store, "t", "alice");
        commit.timers_set.push(TimerRecord {
            tenant: "t".into(),
            customer: "alice".into(),
            journey: "j".into(),
            run: 1,
            name: "later".into(),
            due: 1_000,
        });
        store.commit_trigger(&commit).unwrap();
        let before = store.backlog(999, 0).unwrap();
        assert_eq!(before.timers, 0, "not due yet: {before:?}");
        let due = store.backlog(1_000, 0).unwrap();
        assert_eq!(due.timers, 1, "due at its time: {due:?}");
        let shards_before = due.shards_with_triggers;
        assert_eq!(store.fire_due_timers(1_000, 10).unwrap(), 1);
        let fired = store.backlog(1_000, 0).unwrap();
        assert_eq!(fired.timers, 0, "moved to the queue: {fired:?}");
        assert_eq!(
            fired.shards_with_triggers,
            shards_before + 1,
            "the timer's trigger waits in its customer's shard: {fired:?}"
        );
    }
}
