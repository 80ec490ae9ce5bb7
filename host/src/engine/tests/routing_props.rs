//! Properties of routing over random enrollments, specs and events.

use super::*;
use proptest::prelude::*;

const EVENTS: [&str; 4] = ["signed_up", "clicked", "deleted_account", "renewed"];

fn event_name() -> impl Strategy<Value = String> {
    prop::sample::select(&EVENTS[..]).prop_map(str::to_string)
}

fn reentry() -> impl Strategy<Value = Reentry> {
    prop_oneof![
        Just(Reentry::Never),
        Just(Reentry::AfterExit),
        Just(Reentry::Always),
        Just(Reentry::Keyed("order".into())),
    ]
}

fn routing_spec() -> impl Strategy<Value = Spec> {
    (
        event_name(),
        prop::collection::vec(event_name(), 0..3),
        reentry(),
    )
        .prop_map(|(entry, exit_on, reentry)| Spec {
            entry: vec![EntryTrigger {
                event: entry,
                filter: None,
            }],
            exit_on,
            reentry,
            ..spec()
        })
}

/// A customer's enrollments in one journey: distinct runs, any status, keys from a small set.
fn enrollments() -> impl Strategy<Value = Vec<Enrollment>> {
    prop::collection::btree_map(1u32..50, (0u8..3, prop::option::of(0u8..3)), 0..5).prop_map(
        |runs| {
            runs.into_iter()
                .map(|(run, (status, key))| {
                    let mut e = enroll("onboarding", 1, "c1", run, key.map(|k| k.to_string()), 0);
                    e.status = match status {
                        0 => EnrollmentStatus::Active,
                        1 => EnrollmentStatus::Completed,
                        _ => EnrollmentStatus::Exited,
                    };
                    e
                })
                .collect()
        },
    )
}

fn routed_event() -> impl Strategy<Value = Event> {
    (event_name(), prop::option::of(0u8..3)).prop_map(|(name, order)| {
        let properties = match order {
            Some(k) => json!({ "order": k.to_string() }),
            None => json!({}),
        };
        event(&name, properties)
    })
}

proptest! {
    #[test]
    fn every_active_enrollment_gets_one_route_and_entry_follows_the_policy(
        latest in routing_spec(), enrollments in enrollments(), event in routed_event(),
    ) {
        let routes = route_event(&latest, &enrollments, |_| Some(&latest), &event);
        for e in &enrollments {
            let mine: Vec<&Routing> = routes
                .iter()
                .filter(|r| matches!(r,
                    Routing::Deliver { enrollment_id } | Routing::Exit { enrollment_id, .. }
                        if *enrollment_id == e.id))
                .collect();
            if !e.is_active() {
                prop_assert!(mine.is_empty(), "{:?} routed while {:?}", mine, e.status);
            } else if latest.exit_on.contains(&event.name) {
                let exit = Routing::Exit {
                    enrollment_id: e.id.clone(),
                    reason: format!("exit_event:{}", event.name),
                };
                prop_assert_eq!(mine, vec![&exit]);
            } else {
                let deliver = Routing::Deliver { enrollment_id: e.id.clone() };
                prop_assert_eq!(mine, vec![&deliver]);
            }
        }
        let entries: Vec<(u32, Option<String>)> = routes
            .iter()
            .filter_map(|r| match r {
                Routing::Enter { run, key } => Some((*run, key.clone())),
                _ => None,
            })
            .collect();
        prop_assert!(entries.len() <= 1);
        let matches = latest.entry[0].event == event.name;
        let any_active = enrollments.iter().any(Enrollment::is_active);
        let key = event.properties.get("order").and_then(|v| v.as_str()).map(str::to_string);
        let may_enter = matches
            && match &latest.reentry {
                Reentry::Never => enrollments.is_empty(),
                Reentry::AfterExit => !any_active,
                Reentry::Always => true,
                Reentry::Keyed(_) => key
                    .as_ref()
                    .is_some_and(|k| enrollments.iter().all(|e| e.key.as_ref() != Some(k))),
            };
        prop_assert_eq!(entries.len() == 1, may_enter, "{:?}", routes);
        if let Some((run, entry_key)) = entries.first() {
            // A new run is numbered after every earlier one, so its enrollment id is new.
            prop_assert!(enrollments.iter().all(|e| e.run < *run));
            let id = enrollment_id("onboarding", "c1", *run);
            prop_assert!(enrollments.iter().all(|e| e.id != id));
            let expected_key = match latest.reentry {
                Reentry::Keyed(_) => key.clone(),
                _ => None,
            };
            prop_assert_eq!(entry_key, &expected_key);
        }
    }

    #[test]
    fn an_entry_filter_admits_exactly_the_events_carrying_its_values(
        want in 0u8..3, have in prop::option::of(0u8..3), name in event_name(),
    ) {
        let entry = EntryTrigger {
            event: "signed_up".into(),
            filter: json!({ "plan": want }).as_object().cloned(),
        };
        let properties = have.map_or(json!({}), |h| json!({ "plan": h }));
        prop_assert_eq!(
            matches_entry(&entry, &event(&name, properties)),
            name == "signed_up" && have == Some(want)
        );
    }
}
