//! The circuit breaker of one journey version: when its triggers keep running to the `decide`
//! deadline or trapping, its further triggers are held back for a cool-down — deferred, not
//! failed — so that the shard workers it shares with every other tenant keep their latency.
//! After the cool-down one trigger goes through as a probe (half-open): a success closes the
//! breaker, a failure opens it again for twice as long (up to a cap).
//!
//! Pure: the worker says what happened and when (wall-clock milliseconds); this says whether
//! the next trigger may run.

use crate::model::{FailureReason, Millis};
use std::collections::VecDeque;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Outcomes remembered: the window the failures are counted in.
    pub window: usize,
    /// Failures (deadline, trap, memory) within the last `window` outcomes that open it.
    pub failures: usize,
    /// The first cool-down, in milliseconds; doubled by each failed probe, up to `max_cool_down_ms`.
    pub cool_down_ms: Millis,
    pub max_cool_down_ms: Millis,
}

impl Default for BreakerPolicy {
    /// Five such failures in the last ten triggers open it for 10 s (at most 5 min).
    fn default() -> Self {
        BreakerPolicy {
            window: 10,
            failures: 5,
            cool_down_ms: 10_000,
            max_cool_down_ms: 300_000,
        }
    }
}

/// A breaker's state, as the metrics and the API show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Triggers run.
    Closed,
    /// Triggers are deferred until `until`.
    Open { until: Millis },
    /// One probe may run (or is running, since `since`); the rest are deferred.
    HalfOpen { probing_since: Option<Millis> },
}

impl BreakerState {
    /// The word the API and the metrics use.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

/// Whether a trigger of the journey version may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Run it (closed).
    Run,
    /// Run it as the probe of a half-open breaker; report its outcome.
    Probe,
    /// Leave it queued; ask again at `until` (wall clock).
    Defer { until: Millis },
}

/// One journey version's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    state: BreakerState,
    /// The last outcomes while closed: `true` for a failure that counts.
    recent: VecDeque<bool>,
    /// The current cool-down, doubled by each failed probe.
    cool_down_ms: Millis,
    /// Times it opened, for the API.
    pub opened: u64,
    /// Triggers deferred while open or half-open, for the API.
    pub deferred: u64,
}

/// Whether a failure of this kind says the journey version is burning its deadline or
/// crashing: what opens a breaker. An `err` result, invalid commands or an unavailable
/// component cost the shard nothing, so they do not count.
pub fn counts_against(reason: FailureReason) -> bool {
    matches!(
        reason,
        FailureReason::Deadline | FailureReason::Trap | FailureReason::Memory
    )
}

impl Breaker {
    pub fn new(policy: &BreakerPolicy) -> Breaker {
        Breaker {
            state: BreakerState::Closed,
            recent: VecDeque::with_capacity(policy.window),
            cool_down_ms: policy.cool_down_ms,
            opened: 0,
            deferred: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Closed with no failure in its window: nothing to remember.
    pub fn is_idle(&self) -> bool {
        self.state == BreakerState::Closed && !self.recent.iter().any(|f| *f)
    }

    /// Whether a trigger may run at `now`. A probe that has run longer than the cool-down
    /// without its outcome being reported (its worker failed) is given up, and another may go.
    pub fn admit(&mut self, now: Millis) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Run,
            BreakerState::Open { until } if now < until => {
                self.deferred += 1;
                Admission::Defer { until }
            }
            BreakerState::Open { .. }
            | BreakerState::HalfOpen {
                probing_since: None,
            } => {
                self.state = BreakerState::HalfOpen {
                    probing_since: Some(now),
                };
                Admission::Probe
            }
            BreakerState::HalfOpen {
                probing_since: Some(since),
            } => {
                if now.saturating_sub(since) >= self.cool_down_ms {
                    self.state = BreakerState::HalfOpen {
                        probing_since: Some(now),
                    };
                    Admission::Probe
                } else {
                    self.deferred += 1;
                    Admission::Defer {
                        until: since.saturating_add(self.cool_down_ms),
                    }
                }
            }
        }
    }

    /// Records the outcome of a trigger that ran at `now` (`failed`: a failure that
    /// [`counts_against`] the version).
    pub fn record(&mut self, policy: &BreakerPolicy, failed: bool, now: Millis) {
        match self.state {
            BreakerState::HalfOpen { .. } if failed => {
                self.cool_down_ms = self
                    .cool_down_ms
                    .saturating_mul(2)
                    .min(policy.max_cool_down_ms.max(policy.cool_down_ms));
                self.open(now);
            }
            BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::Closed;
                self.cool_down_ms = policy.cool_down_ms;
                self.recent.clear();
            }
            BreakerState::Closed => {
                if self.recent.len() >= policy.window.max(1) {
                    self.recent.pop_front();
                }
                self.recent.push_back(failed);
                let failures = self.recent.iter().filter(|f| **f).count();
                if failed && failures >= policy.failures.max(1) {
                    self.recent.clear();
                    self.open(now);
                }
            }
            // Outcomes of triggers admitted before it opened change nothing.
            BreakerState::Open { .. } => {}
        }
    }

    fn open(&mut self, now: Millis) {
        self.opened += 1;
        self.state = BreakerState::Open {
            until: now.saturating_add(self.cool_down_ms),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        window: 4,
        failures: 3,
        cool_down_ms: 1_000,
        max_cool_down_ms: 3_000,
    };

    fn run(breaker: &mut Breaker, outcomes: &[bool], now: Millis) {
        for failed in outcomes {
            assert_eq!(breaker.admit(now), Admission::Run);
            breaker.record(&POLICY, *failed, now);
        }
    }

    #[test]
    fn failures_spread_thinner_than_the_threshold_keep_it_closed() {
        let mut b = Breaker::new(&POLICY);
        run(
            &mut b,
            &[true, false, true, false, false, true, false, true],
            0,
        );
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn enough_failures_in_the_window_defer_triggers_for_the_cool_down() {
        let mut b = Breaker::new(&POLICY);
        run(&mut b, &[true, false, true, true], 100);
        assert_eq!(b.state(), BreakerState::Open { until: 1_100 });
        assert_eq!(b.admit(500), Admission::Defer { until: 1_100 });
        assert_eq!(b.admit(1_099), Admission::Defer { until: 1_100 });
        assert_eq!((b.opened, b.deferred), (1, 2));
    }

    #[test]
    fn after_the_cool_down_one_probe_runs_and_its_success_closes_it() {
        let mut b = Breaker::new(&POLICY);
        run(&mut b, &[true, true, true], 0);
        assert_eq!(b.admit(1_000), Admission::Probe);
        assert_eq!(
            b.admit(1_001),
            Admission::Defer { until: 2_000 },
            "one probe at a time"
        );
        b.record(&POLICY, false, 1_200);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(1_201), Admission::Run);
        // The window starts afresh: two failures are not enough to open it again.
        b.record(&POLICY, true, 1_300);
        b.record(&POLICY, true, 1_300);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_for_twice_as_long_up_to_the_cap() {
        let mut b = Breaker::new(&POLICY);
        run(&mut b, &[true, true, true], 0);
        assert_eq!(b.admit(1_000), Admission::Probe);
        b.record(&POLICY, true, 1_000);
        assert_eq!(b.state(), BreakerState::Open { until: 3_000 });
        assert_eq!(b.admit(3_000), Admission::Probe);
        b.record(&POLICY, true, 3_000);
        assert_eq!(
            b.state(),
            BreakerState::Open { until: 6_000 },
            "capped at 3 s"
        );
        assert_eq!(b.opened, 3);
    }

    #[test]
    fn a_probe_whose_outcome_never_comes_is_given_up_after_a_cool_down() {
        let mut b = Breaker::new(&POLICY);
        run(&mut b, &[true, true, true], 0);
        assert_eq!(b.admit(1_000), Admission::Probe);
        assert_eq!(b.admit(2_000), Admission::Probe);
    }

    #[test]
    fn only_deadlines_traps_and_memory_count_against_a_version() {
        assert!(counts_against(FailureReason::Deadline));
        assert!(counts_against(FailureReason::Trap));
        assert!(counts_against(FailureReason::Memory));
        assert!(!counts_against(FailureReason::GuestError));
        assert!(!counts_against(FailureReason::InvalidCommands));
        assert!(!counts_against(FailureReason::Unavailable));
    }
}
