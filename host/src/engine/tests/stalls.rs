use super::*;
use crate::engine::*;
use crate::model::*;

#[test]
fn entering_arms_a_stall_timer_for_the_first_milestone() {
    let e = enroll("onboarding", 1, "c1", 1, None, 0);
    let applied = apply(e, &stalling_spec(), vec![], "k", 0).unwrap();
    assert_eq!(
        stall_timers(&applied.enrollment),
        [("$stall:first_login".into(), DAY)]
    );
    assert_eq!(applied.effects.timers_set.len(), 1);
    // Another trigger with no progress leaves the same timer alone.
    let again = apply(applied.enrollment, &stalling_spec(), vec![], "k", 10).unwrap();
    assert!(again.effects.timers_set.is_empty() && again.effects.timers_cancelled.is_empty());
}

#[test]
fn reaching_a_milestone_moves_the_stall_watch_to_the_next_one() {
    let e = enroll("onboarding", 1, "c1", 1, None, 0);
    let e = apply(e, &stalling_spec(), vec![], "k", 0)
        .unwrap()
        .enrollment;
    let reached = Command::Milestone {
        name: "first_login".into(),
    };
    let applied = apply(e, &stalling_spec(), vec![reached], "k", DAY / 2).unwrap();
    assert_eq!(
        stall_timers(&applied.enrollment),
        [("$stall:first_value".into(), DAY / 2 + 2 * DAY)]
    );
    assert_eq!(
        applied.effects.timers_cancelled[0].name,
        "$stall:first_login"
    );
    // The goal completes the journey and cancels the watch.
    let goal = Command::Milestone {
        name: "first_value".into(),
    };
    let done = apply(applied.enrollment, &stalling_spec(), vec![goal], "k", DAY).unwrap();
    assert!(stall_timers(&done.enrollment).is_empty());
    assert_eq!(done.effects.timers_cancelled[0].name, "$stall:first_value");
}

#[test]
fn a_stall_is_recorded_once_and_rearms_for_another_window() {
    let e = enroll("onboarding", 1, "c1", 1, None, 0);
    let mut e = apply(e, &stalling_spec(), vec![], "k", 0)
        .unwrap()
        .enrollment;
    let stalled = Trigger::Stalled {
        milestone: "first_login".into(),
    };
    assert!(should_decide(&e, &stalled, Some(DAY)));
    assert!(
        !should_decide(&e, &stalled, Some(DAY - 1)),
        "a stale stall timer"
    );
    observe(&mut e, &stalled, Some(DAY));
    observe(&mut e, &stalled, Some(DAY)); // a duplicate delivery of the same timer
    assert_eq!(
        e.stalls,
        [MilestoneHit {
            name: "first_login".into(),
            at: DAY
        }]
    );
    assert_eq!(e.stalled_on.as_deref(), Some("first_login"));
    let applied = apply(e, &stalling_spec(), vec![], "k", DAY).unwrap();
    assert_eq!(
        stall_timers(&applied.enrollment),
        [("$stall:first_login".into(), 2 * DAY)],
        "still stuck: it stalls again after another window"
    );
    let reached = Command::Milestone {
        name: "first_login".into(),
    };
    let moved = apply(
        applied.enrollment,
        &stalling_spec(),
        vec![reached],
        "k",
        DAY + 5,
    )
    .unwrap();
    assert_eq!(
        moved.enrollment.stalled_on, None,
        "progress clears the stall"
    );
    assert_eq!(moved.enrollment.stalls.len(), 1, "the history stays");
}
