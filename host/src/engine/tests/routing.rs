use super::*;
use crate::engine::*;
use crate::model::*;
use serde_json::json;

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
fn no_run_past_the_last_run_number() {
    let mut s = spec();
    s.reentry = Reentry::Always;
    let mut last = active();
    last.run = u32::MAX;
    let routes = route_event(&s, &[last], |_| Some(&s), &event("signed_up", json!({})));
    assert!(
        !routes.iter().any(|r| matches!(r, Routing::Enter { .. })),
        "{routes:?}"
    );
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
