//! Loop breakers: a budget of triggers and of sends per enrollment within a window of journey
//! time (the tenant's limits). A journey that answers every delivery report with another send
//! would otherwise loop for ever; past a budget its enrollment is paused with the reason
//! recorded, and its triggers wait (queued, in order) until it is resumed through the API.
//!
//! The trigger that reaches a budget runs; the enrollment is paused after it.

use crate::model::{Enrollment, Limits, LoopWindow, Millis, Pause};

/// Counts one trigger that asked the journey, and the `sends` it decided, against the
/// enrollment's current window at journey time `now` (a window older than
/// `limits.loop_window_ms` starts afresh), and pauses the enrollment if that reaches a budget.
/// An enrollment that has ended is not paused.
pub fn charge(enrollment: &mut Enrollment, limits: &Limits, sends: u64, now: Millis) {
    let window = count(enrollment.loop_window, limits, sends, now);
    enrollment.loop_window = Some(window);
    let over = over_budget(
        &window,
        "",
        limits.max_enrollment_triggers,
        limits.max_enrollment_sends,
    );
    pause(enrollment, over, limits, now);
}

/// Counts one trigger and its `sends` against the tenant's window (all its enrollments
/// together, kept by the host) and pauses `enrollment`, the one that ran it, while the tenant
/// is at or over a tenant budget.
pub fn charge_tenant(
    tenant_window: &mut Option<LoopWindow>,
    enrollment: &mut Enrollment,
    limits: &Limits,
    sends: u64,
    now: Millis,
) {
    let window = count(*tenant_window, limits, sends, now);
    *tenant_window = Some(window);
    let over = over_budget(
        &window,
        " by the tenant's enrollments",
        limits.max_tenant_triggers,
        limits.max_tenant_sends,
    );
    pause(enrollment, over, limits, now);
}

/// `window` (or a fresh one, if it is older than the loop window) with one more trigger and
/// `sends` more sends.
fn count(window: Option<LoopWindow>, limits: &Limits, sends: u64, now: Millis) -> LoopWindow {
    let window_ms = Millis::try_from(limits.loop_window_ms).unwrap_or(Millis::MAX);
    let window = match window {
        Some(w) if now.saturating_sub(w.since) < window_ms => w,
        _ => LoopWindow {
            since: now,
            ..LoopWindow::default()
        },
    };
    LoopWindow {
        triggers: window.triggers.saturating_add(1),
        sends: window.sends.saturating_add(sends),
        ..window
    }
}

/// Which budget `window` has reached, if any: (what, `whose`, count, budget).
fn over_budget(
    window: &LoopWindow,
    whose: &'static str,
    max_triggers: u64,
    max_sends: u64,
) -> Option<(String, u64, u64)> {
    if window.triggers >= max_triggers.max(1) {
        Some((format!("triggers{whose}"), window.triggers, max_triggers))
    } else if window.sends >= max_sends.max(1) {
        Some((format!("sends{whose}"), window.sends, max_sends))
    } else {
        None
    }
}

fn pause(
    enrollment: &mut Enrollment,
    over: Option<(String, u64, u64)>,
    limits: &Limits,
    now: Millis,
) {
    if !enrollment.is_active() || enrollment.paused.is_some() {
        return;
    }
    if let Some((what, count, budget)) = over {
        enrollment.paused = Some(Pause {
            reason: format!(
                "loop budget: {count} {what} within {} ms (budget {budget}); resume to go on",
                limits.loop_window_ms
            ),
            at: now,
        });
    }
}

/// Resumes a paused enrollment: its budgets start afresh. Returns whether it was paused.
pub fn resume(enrollment: &mut Enrollment) -> bool {
    enrollment.loop_window = None;
    enrollment.paused.take().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::active;
    use crate::sandbox::DEFAULT_LIMITS;

    fn limits(triggers: u64, sends: u64) -> Limits {
        Limits {
            max_enrollment_triggers: triggers,
            max_enrollment_sends: sends,
            loop_window_ms: 1_000,
            ..DEFAULT_LIMITS
        }
    }

    #[test]
    fn the_send_that_reaches_the_budget_pauses_the_enrollment_with_the_reason() {
        let mut e = active();
        let budget = limits(100, 3);
        charge(&mut e, &budget, 1, 0);
        charge(&mut e, &budget, 1, 10);
        assert_eq!(e.paused, None);
        charge(&mut e, &budget, 1, 20);
        let paused = e.paused.clone().expect("paused at the third send");
        assert!(paused.reason.contains("3 sends"), "{paused:?}");
        assert_eq!(paused.at, 20);
        assert_eq!(
            e.loop_window,
            Some(LoopWindow {
                since: 0,
                triggers: 3,
                sends: 3
            })
        );
    }

    #[test]
    fn triggers_count_too_and_an_old_window_starts_afresh() {
        let mut e = active();
        let budget = limits(2, 100);
        charge(&mut e, &budget, 0, 0);
        charge(&mut e, &budget, 0, 1_000);
        assert_eq!(e.paused, None, "the first window ended at 1000");
        charge(&mut e, &budget, 0, 1_500);
        assert!(e
            .paused
            .as_ref()
            .is_some_and(|p| p.reason.contains("2 triggers")));
    }

    #[test]
    fn resuming_clears_the_pause_and_the_counts() {
        let mut e = active();
        charge(&mut e, &limits(1, 1), 1, 0);
        assert!(resume(&mut e));
        assert_eq!((e.paused.clone(), e.loop_window), (None, None));
        assert!(!resume(&mut e), "not paused any more");
    }

    #[test]
    fn a_tenant_over_its_budget_pauses_each_enrollment_that_runs_until_the_window_ends() {
        let budget = Limits {
            max_tenant_sends: 3,
            ..limits(100, 100)
        };
        let mut tenant = None;
        let (mut a, mut b, mut c) = (active(), active(), active());
        charge_tenant(&mut tenant, &mut a, &budget, 1, 0);
        charge_tenant(&mut tenant, &mut b, &budget, 1, 10);
        assert_eq!((a.paused.clone(), b.paused.clone()), (None, None));
        charge_tenant(&mut tenant, &mut c, &budget, 1, 20);
        assert!(c
            .paused
            .as_ref()
            .is_some_and(|p| p.reason.contains("3 sends by the tenant's enrollments")));
        charge_tenant(&mut tenant, &mut a, &budget, 0, 30);
        assert!(
            a.paused.is_some(),
            "still over: the next one to run pauses too"
        );
        charge_tenant(&mut tenant, &mut b, &budget, 0, 1_000);
        assert_eq!(b.paused, None, "a new window");
    }

    #[test]
    fn an_ended_enrollment_is_counted_but_never_paused() {
        let mut e = active();
        e.status = crate::model::EnrollmentStatus::Completed;
        charge(&mut e, &limits(1, 1), 5, 0);
        assert_eq!(e.paused, None);
    }
}
