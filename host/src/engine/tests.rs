#![cfg(test)]
use super::*;
use crate::model::*;
use crate::model::{ExperimentSpec, MilestoneSpec, VariantAssignment};
use serde_json::{json, Value};

const DAY: Millis = 86_400_000;

fn spec() -> Spec {
    Spec {
        description: "onboarding".into(),
        entry: vec![EntryTrigger {
            event: "signed_up".into(),
            filter: None,
        }],
        exit_on: vec!["deleted_account".into()],
        milestones: vec![
            MilestoneSpec {
                name: "first_login".into(),
                stall_after: None,
            },
            MilestoneSpec {
                name: "first_value".into(),
                stall_after: None,
            },
        ],
        goal: Some("first_value".into()),
        reentry: Reentry::Never,
        channels: vec!["webhook".into()],
        experiments: vec![ExperimentSpec {
            name: "welcome_copy".into(),
            arms: vec!["a".into(), "b".into()],
        }],
    }
}

fn event(name: &str, properties: Value) -> Event {
    Event {
        id: format!("{name}-1"),
        customer: "c1".into(),
        name: name.into(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        timestamp: 1_000,
    }
}

fn active() -> Enrollment {
    enroll("onboarding", 1, "c1", 1, None, 1_000)
}

fn send(template: &str) -> Command {
    Command::Send(Send {
        channel: "webhook".into(),
        template: template.into(),
        payload: json!({}),
    })
}

fn ended(status: EnrollmentStatus, run: u32) -> Enrollment {
    let mut e = enroll("onboarding", 1, "c1", run, None, 0);
    e.status = status;
    e
}

#[test]
fn entry_event_enrolls_a_new_customer() {
    let routes = route_event(&spec(), &[], |_| None, &event("signed_up", json!({})));
    assert_eq!(routes, vec![Routing::Enter { run: 1, key: None }]);
}

#[test]
fn entry_filter_requires_every_property_to_match() {
    let mut spec = spec();
    spec.entry[0].filter = json!({"plan": "pro"}).as_object().cloned();
    let pro = event("signed_up", json!({"plan": "pro", "x": 1}));
    let free = event("signed_up", json!({"plan": "free"}));
    assert_eq!(route_event(&spec, &[], |_| None, &pro).len(), 1);
    assert!(route_event(&spec, &[], |_| None, &free).is_empty());
}

#[test]
fn other_events_reach_active_enrollments_only() {
    let s = spec();
    let enrollments = [active(), ended(EnrollmentStatus::Completed, 2)];
    let routes = route_event(&s, &enrollments, |_| Some(&s), &event("clicked", json!({})));
    assert_eq!(
        routes,
        vec![Routing::Deliver {
            enrollment_id: "onboarding/c1/1".into()
        }]
    );
}

#[test]
fn exit_event_ends_the_enrollment_without_the_journey() {
    let s = spec();
    let enrollments = [active()];
    let routes = route_event(
        &s,
        &enrollments,
        |_| Some(&s),
        &event("deleted_account", json!({})),
    );
    assert_eq!(
        routes,
        vec![Routing::Exit {
            enrollment_id: "onboarding/c1/1".into(),
            reason: "exit_event:deleted_account".into()
        }]
    );
    let mut e = active();
    e.timers.push(PendingTimer {
        name: "nudge".into(),
        due: 5,
    });
    let applied = exit(e, "exit_event:deleted_account".into(), 7);
    assert_eq!(applied.enrollment.status, EnrollmentStatus::Exited);
    assert_eq!(applied.enrollment.ended_at, Some(7));
    assert!(applied.enrollment.timers.is_empty());
    assert_eq!(applied.effects.timers_cancelled.len(), 1);
}

#[test]
fn reentry_never_refuses_a_second_run() {
    let s = spec();
    let done = [ended(EnrollmentStatus::Completed, 1)];
    assert!(route_event(&s, &done, |_| Some(&s), &event("signed_up", json!({}))).is_empty());
}

#[test]
fn reentry_after_exit_waits_for_the_active_run_to_end() {
    let mut s = spec();
    s.reentry = Reentry::AfterExit;
    let running = [active()];
    let entering = route_event(&s, &running, |_| Some(&s), &event("signed_up", json!({})));
    assert!(!entering.iter().any(|r| matches!(r, Routing::Enter { .. })));
    let done = [ended(EnrollmentStatus::Exited, 1)];
    let entering = route_event(&s, &done, |_| Some(&s), &event("signed_up", json!({})));
    assert_eq!(entering, vec![Routing::Enter { run: 2, key: None }]);
}

#[test]
fn reentry_always_runs_beside_the_active_run() {
    let mut s = spec();
    s.reentry = Reentry::Always;
    let running = [active()];
    let routes = route_event(&s, &running, |_| Some(&s), &event("signed_up", json!({})));
    assert!(routes.contains(&Routing::Enter { run: 2, key: None }));
    assert!(routes.contains(&Routing::Deliver {
        enrollment_id: "onboarding/c1/1".into()
    }));
}

#[test]
fn keyed_reentry_runs_once_per_key_in_parallel() {
    let mut s = spec();
    s.reentry = Reentry::Keyed("order_id".into());
    let mut first = active();
    first.key = Some("o-1".into());
    let runs = [first];
    let same = event("signed_up", json!({"order_id": "o-1"}));
    let other = event("signed_up", json!({"order_id": "o-2"}));
    let numeric = event("signed_up", json!({"order_id": 7}));
    let missing = event("signed_up", json!({}));
    let enters = |e: &Event| {
        route_event(&s, &runs, |_| Some(&s), e)
            .into_iter()
            .filter(|r| matches!(r, Routing::Enter { .. }))
            .collect::<Vec<_>>()
    };
    assert!(enters(&same).is_empty());
    assert_eq!(
        enters(&other),
        vec![Routing::Enter {
            run: 2,
            key: Some("o-2".into())
        }]
    );
    assert_eq!(
        enters(&numeric),
        vec![Routing::Enter {
            run: 2,
            key: Some("7".into())
        }]
    );
    assert!(enters(&missing).is_empty());
}

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
    assert_eq!(ids, ["t/k/0", "t/k/1"]);
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
fn key_prefix_names_tenant_journey_version_customer_run_and_trigger() {
    let trigger = Trigger::Entered {
        event: event("signed_up", json!({})),
    };
    let id = trigger_id(&trigger, None);
    assert_eq!(
        key_prefix("acme", &active(), &id),
        "acme/onboarding/1/c1/1/e-signed_up-1"
    );
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

/// The test spec with stall windows: a day to log in, two more to reach first value.
fn stalling_spec() -> Spec {
    let mut spec = spec();
    spec.milestones[0].stall_after = Some(DAY);
    spec.milestones[1].stall_after = Some(2 * DAY);
    spec
}

fn stall_timers(e: &Enrollment) -> Vec<(String, Millis)> {
    e.timers
        .iter()
        .filter(|t| stalled_milestone(&t.name).is_some())
        .map(|t| (t.name.clone(), t.due))
        .collect()
}

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

fn customer(attributes: serde_json::Value) -> Customer {
    Customer {
        id: "c1".into(),
        attributes: attributes.as_object().unwrap().clone(),
    }
}

#[test]
fn identify_sets_traits_and_null_removes_them() {
    let mut c = customer(json!({"plan": "trial", "email": "a@example.com"}));
    let traits = json!({"plan": "pro", "email": null, "timezone": "Europe/Paris"});
    assert!(apply_traits(&mut c, traits.as_object().unwrap()));
    assert_eq!(
        serde_json::Value::Object(c.attributes.clone()),
        json!({"plan": "pro", "timezone": "Europe/Paris"})
    );
    assert!(!apply_traits(
        &mut c,
        json!({"plan": "pro"}).as_object().unwrap()
    ));
}

#[test]
fn unsubscribed_or_suppressed_customers_get_no_sends_recorded_as_suppressed() {
    let sends = vec![send("welcome")];
    let mut applied = apply(active(), &spec(), sends.clone(), "k", 0).unwrap();
    suppress(&mut applied, &customer(json!({})));
    assert!(!applied.effects.sends[0].suppressed);

    for attrs in [
        json!({"unsubscribed": true}),
        json!({"suppressed": true}),
        json!({"unsubscribed_channels": ["webhook"]}),
    ] {
        let mut applied = apply(active(), &spec(), sends.clone(), "k", 0).unwrap();
        suppress(&mut applied, &customer(attrs.clone()));
        assert!(applied.effects.sends[0].suppressed, "{attrs}");
        let summary = &applied.enrollment.channels["webhook"];
        assert_eq!((summary.sent, summary.suppressed), (0, 1), "{attrs}");
    }
    let other_channel = customer(json!({"unsubscribed_channels": ["sms"]}));
    assert!(!is_suppressed(&other_channel, "webhook"));
}

#[test]
fn unsubscribing_from_one_channel_or_all() {
    let mut c = customer(json!({}));
    unsubscribe(&mut c, Some("sms"));
    unsubscribe(&mut c, Some("sms"));
    assert_eq!(c.attributes["unsubscribed_channels"], json!(["sms"]));
    assert!(is_suppressed(&c, "sms") && !is_suppressed(&c, "email"));
    unsubscribe(&mut c, None);
    assert!(is_suppressed(&c, "email"));
}

#[test]
fn engagement_events_name_their_message_and_count_per_channel() {
    let event = |name: &str, props: serde_json::Value| Event {
        id: "e".into(),
        customer: "c1".into(),
        name: name.into(),
        properties: props.as_object().unwrap().clone(),
        timestamp: 0,
    };
    assert_eq!(
        engagement(&event("opened", json!({"message_id": "m1"}))),
        Some((Engagement::Opened, "m1"))
    );
    assert_eq!(engagement(&event("opened", json!({}))), None);
    assert_eq!(
        engagement(&event("signed_up", json!({"message_id": "m1"}))),
        None
    );
    let mut e = active();
    record_engagement(&mut e, "webhook", Engagement::Opened);
    record_engagement(&mut e, "webhook", Engagement::Clicked);
    assert_eq!(
        (e.channels["webhook"].opened, e.channels["webhook"].clicked),
        (1, 1)
    );
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
fn delivery_trigger_ids_do_not_grow_with_message_ids() {
    let report = DeliveryReport {
        message_id: "a/very/long/key/".repeat(20),
        channel: "webhook".into(),
        template: "t".into(),
        outcome: DeliveryOutcome::Delivered { provider_id: None },
    };
    let id = trigger_id(&Trigger::Delivery { report }, None);
    assert_eq!(id.len(), 18);
}

#[test]
fn seeds_are_stable_and_distinct_per_trigger() {
    assert_eq!(seed("t", "e", "x"), seed("t", "e", "x"));
    assert_ne!(seed("t", "e", "x"), seed("t", "e", "y"));
    assert_ne!(seed("t", "ex", ""), seed("t", "e", "x"));
}
