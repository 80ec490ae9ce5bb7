use super::*;
use crate::engine::*;
use crate::model::*;
use serde_json::json;

#[test]
fn sends_get_deterministic_idempotency_keys() {
    let applied = apply(
        active(),
        &spec(),
        vec![send("welcome"), send("tips")],
        "t/k",
        5,
    )
    .unwrap();
    let ids: Vec<_> = applied
        .effects
        .sends
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(ids, ["t/k-0", "t/k-1"]);
    assert_eq!(applied.enrollment.channels["webhook"].sent, 2);
    let again = apply(
        active(),
        &spec(),
        vec![send("welcome"), send("tips")],
        "t/k",
        5,
    )
    .unwrap();
    assert_eq!(applied, again);
}

#[test]
fn send_through_an_undeclared_channel_fails_the_trigger() {
    let cmd = Command::Send(Send {
        channel: "sms".into(),
        template: "x".into(),
        payload: json!({}),
    });
    let err = apply(active(), &spec(), vec![cmd], "k", 5).unwrap_err();
    assert!(matches!(
        err,
        EngineError::UndeclaredChannel { index: 0, .. }
    ));
}

#[test]
fn scheduling_a_pending_timer_replaces_it() {
    let first = apply(
        active(),
        &spec(),
        vec![Command::Schedule {
            name: "nudge".into(),
            due: 3 * DAY,
        }],
        "k",
        0,
    )
    .unwrap();
    let second = apply(
        first.enrollment,
        &spec(),
        vec![Command::Schedule {
            name: "nudge".into(),
            due: 5 * DAY,
        }],
        "k",
        0,
    )
    .unwrap();
    assert_eq!(
        second.enrollment.timers,
        vec![PendingTimer {
            name: "nudge".into(),
            due: 5 * DAY
        }]
    );
    assert_eq!(second.effects.timers_cancelled[0].due, 3 * DAY);
    assert_eq!(second.effects.timers_set[0].due, 5 * DAY);
}

#[test]
fn a_timer_in_the_past_is_due_now() {
    let applied = apply(
        active(),
        &spec(),
        vec![Command::Schedule {
            name: "late".into(),
            due: 10,
        }],
        "k",
        500,
    )
    .unwrap();
    assert_eq!(applied.enrollment.timers[0].due, 500);
}

#[test]
fn cancel_removes_only_the_named_timer() {
    let mut e = active();
    e.timers = vec![
        PendingTimer {
            name: "a".into(),
            due: 1,
        },
        PendingTimer {
            name: "b".into(),
            due: 2,
        },
    ];
    let applied = apply(
        e,
        &spec(),
        vec![
            Command::Cancel { name: "a".into() },
            Command::Cancel { name: "zzz".into() },
        ],
        "k",
        0,
    )
    .unwrap();
    assert_eq!(applied.enrollment.timers.len(), 1);
    assert_eq!(applied.enrollment.timers[0].name, "b");
    assert_eq!(applied.effects.timers_cancelled.len(), 1);
}

#[test]
fn goal_milestone_completes_with_its_time_and_cancels_timers() {
    let mut e = active();
    e.timers.push(PendingTimer {
        name: "nudge".into(),
        due: 3 * DAY,
    });
    let applied = apply(
        e,
        &spec(),
        vec![
            Command::Milestone {
                name: "first_value".into(),
            },
            send("after-the-end"),
        ],
        "k",
        42,
    )
    .unwrap();
    let e = &applied.enrollment;
    assert_eq!(e.status, EnrollmentStatus::Completed);
    assert_eq!(e.ended_at, Some(42));
    assert_eq!(
        e.milestones,
        vec![MilestoneHit {
            name: "first_value".into(),
            at: 42
        }]
    );
    assert!(e.timers.is_empty());
    assert_eq!(applied.effects.timers_cancelled.len(), 1);
    assert!(
        applied.effects.sends.is_empty(),
        "commands after the end are ignored"
    );
}

#[test]
fn milestones_are_recorded_once_at_the_first_time() {
    let first = apply(
        active(),
        &spec(),
        vec![Command::Milestone {
            name: "first_login".into(),
        }],
        "k",
        10,
    )
    .unwrap();
    let again = apply(
        first.enrollment,
        &spec(),
        vec![Command::Milestone {
            name: "first_login".into(),
        }],
        "k",
        20,
    )
    .unwrap();
    assert_eq!(
        again.enrollment.milestones,
        vec![MilestoneHit {
            name: "first_login".into(),
            at: 10
        }]
    );
    assert!(again.enrollment.is_active());
}

#[test]
fn undeclared_milestone_fails_the_trigger() {
    let err = apply(
        active(),
        &spec(),
        vec![Command::Milestone {
            name: "nope".into(),
        }],
        "k",
        0,
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::UndeclaredMilestone { .. }));
}

#[test]
fn sends_before_exit_go_out_and_exit_records_its_reason() {
    let applied = apply(
        active(),
        &spec(),
        vec![
            send("goodbye"),
            Command::Exit {
                reason: "not_a_fit".into(),
            },
        ],
        "k",
        9,
    )
    .unwrap();
    assert_eq!(applied.effects.sends.len(), 1);
    assert_eq!(applied.enrollment.status, EnrollmentStatus::Exited);
    assert_eq!(applied.enrollment.exit_reason.as_deref(), Some("not_a_fit"));
}

#[test]
fn what_comes_after_the_end_is_neither_checked_nor_applied() {
    let undeclared = || {
        Command::Send(Send {
            channel: "sms".into(),
            template: "x".into(),
            payload: json!({}),
        })
    };
    let goal = || Command::Milestone {
        name: "first_value".into(),
    };
    let exit = Command::Exit {
        reason: "gone".into(),
    };
    for ending in [exit, Command::Complete, goal()] {
        let commands = vec![ending.clone(), undeclared()];
        assert!(check(&active(), &spec(), &commands).is_ok(), "{ending:?}");
        let applied = apply(active(), &spec(), commands, "k", 5).unwrap();
        assert!(!applied.enrollment.is_active());
        assert!(applied.effects.sends.is_empty());
    }
    // The goal reached before does not end the enrollment again: what follows is checked.
    let reached = apply(active(), &spec(), vec![goal()], "k", 1)
        .unwrap()
        .enrollment;
    let mut again = reached;
    again.status = EnrollmentStatus::Active;
    again.ended_at = None;
    let commands = vec![goal(), undeclared()];
    assert!(matches!(
        check(&again, &spec(), &commands),
        Err(EngineError::UndeclaredChannel { index: 1, .. })
    ));
    // A refused decision is refused whole, whatever came before the refused command.
    let err = apply(active(), &spec(), vec![send("ok"), undeclared()], "k", 5).unwrap_err();
    assert!(matches!(
        err,
        EngineError::UndeclaredChannel { index: 1, .. }
    ));
    // Nothing is checked of an enrollment that has already ended.
    let mut ended = active();
    ended.status = EnrollmentStatus::Exited;
    assert!(check(&ended, &spec(), &[undeclared()]).is_ok());
}

#[test]
fn first_assignment_of_an_experiment_sticks() {
    let assign = |arm: &str| {
        Command::Assign(VariantAssignment {
            experiment: "welcome_copy".into(),
            arm: arm.into(),
        })
    };
    let applied = apply(active(), &spec(), vec![assign("b"), assign("a")], "k", 0).unwrap();
    assert_eq!(applied.enrollment.variants.len(), 1);
    assert_eq!(applied.enrollment.variants[0].arm, "b");
    let err = apply(active(), &spec(), vec![assign("c")], "k", 0).unwrap_err();
    assert!(matches!(err, EngineError::UndeclaredArm { .. }));
}

#[test]
fn handoff_becomes_an_effect() {
    let h = Handoff {
        queue: "cs".into(),
        reason: "stalled twice".into(),
        priority: 1,
    };
    let applied = apply(active(), &spec(), vec![Command::Handoff(h.clone())], "k", 0).unwrap();
    assert_eq!(applied.effects.handoffs, vec![h]);
}

#[test]
fn state_is_replaced_and_a_success_clears_the_last_failure() {
    let trigger = Trigger::Timer { name: "x".into() };
    let failed = fail(
        active(),
        &spec(),
        &trigger,
        FailureReason::Trap,
        "boom".into(),
        3,
    )
    .enrollment;
    assert_eq!(failed.failure.as_ref().unwrap().trigger, "timer");
    let applied = apply(
        failed,
        &spec(),
        vec![Command::SetState { state: vec![1, 2] }],
        "k",
        4,
    )
    .unwrap();
    assert_eq!(applied.enrollment.state, vec![1, 2]);
    assert!(applied.enrollment.failure.is_none());
}

#[test]
fn journeys_cannot_touch_the_hosts_timers() {
    let schedule = Command::Schedule {
        name: "$stall:first_login".into(),
        due: 5,
    };
    assert!(apply(active(), &spec(), vec![schedule], "k", 0).is_err());
    let cancel = Command::Cancel {
        name: "$stall:first_login".into(),
    };
    assert!(apply(active(), &spec(), vec![cancel], "k", 0).is_err());
}

#[test]
fn a_failed_trigger_keeps_stall_detection_armed() {
    let e = enroll("onboarding", 1, "c1", 1, None, 0);
    let trigger = Trigger::Entered {
        event: Event {
            id: "e".into(),
            customer: "c1".into(),
            name: "signed_up".into(),
            properties: Default::default(),
            timestamp: 0,
        },
    };
    let failed = fail(
        e,
        &stalling_spec(),
        &trigger,
        FailureReason::Trap,
        "boom".into(),
        0,
    );
    assert_eq!(
        stall_timers(&failed.enrollment),
        [("$stall:first_login".into(), DAY)]
    );
    assert_eq!(failed.effects.timers_set.len(), 1);
}

#[test]
fn a_timer_decides_only_while_pending_with_the_same_due_time() {
    let mut e = active();
    e.timers.push(PendingTimer {
        name: "nudge".into(),
        due: 100,
    });
    let t = Trigger::Timer {
        name: "nudge".into(),
    };
    assert!(should_decide(&e, &t, Some(100)));
    assert!(
        !should_decide(&e, &t, Some(99)),
        "rescheduled since it was queued"
    );
    let mut done = e.clone();
    done.status = EnrollmentStatus::Completed;
    assert!(!should_decide(&done, &t, Some(100)));
    observe(&mut e, &t, Some(100));
    assert!(e.timers.is_empty());
}

#[test]
fn a_stale_timer_leaves_its_rescheduled_successor_pending() {
    // `nudge` was due at 100 and queued; then an event rescheduled it to 200.
    let mut e = active();
    e.timers.push(PendingTimer {
        name: "nudge".into(),
        due: 200,
    });
    let stale = Trigger::Timer {
        name: "nudge".into(),
    };
    assert!(!should_decide(&e, &stale, Some(100)));
    observe(&mut e, &stale, Some(100));
    assert_eq!(e.timer("nudge").map(|t| t.due), Some(200), "still pending");
}

#[test]
fn delivery_reports_update_the_channel_summary() {
    let mut e = active();
    let report = |outcome| Trigger::Delivery {
        report: DeliveryReport {
            message_id: "m".into(),
            channel: "webhook".into(),
            template: "welcome".into(),
            outcome,
        },
    };
    observe(
        &mut e,
        &report(DeliveryOutcome::Delivered { provider_id: None }),
        None,
    );
    observe(
        &mut e,
        &report(DeliveryOutcome::Failed { reason: "x".into() }),
        None,
    );
    assert_eq!(e.channels["webhook"].delivered, 1);
    assert_eq!(e.channels["webhook"].failed, 1);
}

#[test]
fn a_send_suppressed_at_delivery_moves_from_sent_to_suppressed_and_is_not_failed() {
    let applied = apply(active(), &spec(), vec![send("welcome")], "t/k", 5).unwrap();
    let mut e = applied.enrollment;
    assert_eq!(e.channels["webhook"].sent, 1);
    let suppressed = Trigger::Delivery {
        report: DeliveryReport {
            message_id: "t/k-0".into(),
            channel: "webhook".into(),
            template: "welcome".into(),
            outcome: DeliveryOutcome::Suppressed {
                reason: "suppressed: ada@example.com is suppressed".into(),
            },
        },
    };
    observe(&mut e, &suppressed, None);
    let summary = &e.channels["webhook"];
    assert_eq!(
        (summary.sent, summary.suppressed, summary.failed),
        (0, 1, 0),
        "counted once, as suppressed"
    );
}

#[test]
fn recent_failures_survive_a_later_success_and_keep_only_the_newest() {
    let timer = Trigger::Timer {
        name: "nudge".into(),
    };
    let mut enrollment = active();
    for at in 0..(MAX_RECENT_FAILURES as Millis + 3) {
        enrollment = fail(
            enrollment,
            &spec(),
            &timer,
            FailureReason::Deadline,
            format!("failure at {at}"),
            at,
        )
        .enrollment;
    }
    let times: Vec<Millis> = enrollment.failures.iter().map(|f| f.at).collect();
    let newest: Vec<Millis> = (3..MAX_RECENT_FAILURES as Millis + 3).collect();
    assert_eq!(times, newest, "the oldest are forgotten, order is kept");
    assert_eq!(enrollment.failure.as_ref().map(|f| f.at), Some(12));

    let succeeded = apply(enrollment, &spec(), vec![send("welcome")], "k", 99)
        .unwrap()
        .enrollment;
    assert_eq!(succeeded.failure, None, "the last outcome is a success");
    assert_eq!(succeeded.failures.len(), MAX_RECENT_FAILURES);
    assert_eq!(succeeded.failures[0].trigger, "timer");
    assert_eq!(succeeded.failures[0].reason, FailureReason::Deadline);
    assert_eq!(succeeded.failures[0].message, "failure at 3");
}
