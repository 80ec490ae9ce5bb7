//! Routing: which of a customer's enrollments an event reaches, and whether it starts a new run
//! (entry triggers with property filters, exit events, re-entry policies).

use super::ids::enrollment_id;
use crate::model::{Enrollment, EnrollmentStatus, EntryTrigger, Event, Millis, Reentry, Spec};
use serde_json::Value;

/// Whether a customer's new run enters a rollout's candidate rather than the live version: a
/// hash of the journey and the customer, so the same customer always lands on the same side
/// (while the share stays) and each share takes about that percentage of customers.
pub fn enters_candidate(journey: &str, customer: &str, percent: u8) -> bool {
    let mut state = crate::hash::fnv1a_terminated(&["rollout", journey, customer]);
    crate::hash::splitmix64(&mut state) % 100 < u64::from(percent)
}

/// Whether an event matches an entry trigger: same name, and every filter key equal.
pub fn matches_entry(entry: &EntryTrigger, event: &Event) -> bool {
    entry.event == event.name
        && entry.filter.as_ref().is_none_or(|filter| {
            filter
                .iter()
                .all(|(k, v)| event.properties.get(k) == Some(v))
        })
}

/// What an event means for one journey and one customer.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// Start a new run with this run number (and re-entry key), deciding on `entered`.
    Enter { run: u32, key: Option<String> },
    /// Hand the event to this active enrollment's `decide`.
    Deliver { enrollment_id: String },
    /// End this enrollment without asking the journey: the event is one of its exit events.
    Exit {
        enrollment_id: String,
        reason: String,
    },
}

/// Routes an event through one journey, given the customer's existing enrollments in it (any
/// version, any status) and the spec of each enrollment's version (`spec_of`), plus the latest
/// version's spec (`latest`), which governs entry.
pub fn route_event<'a>(
    latest: &Spec,
    enrollments: &'a [Enrollment],
    spec_of: impl Fn(&'a Enrollment) -> Option<&'a Spec>,
    event: &Event,
) -> Vec<Routing> {
    let mut routes = Vec::new();
    for enrollment in enrollments.iter().filter(|e| e.is_active()) {
        let exits = spec_of(enrollment).is_some_and(|s| s.exit_on.contains(&event.name));
        routes.push(if exits {
            Routing::Exit {
                enrollment_id: enrollment.id.clone(),
                reason: format!("exit_event:{}", event.name),
            }
        } else {
            Routing::Deliver {
                enrollment_id: enrollment.id.clone(),
            }
        });
    }
    if latest.entry.iter().any(|entry| matches_entry(entry, event)) {
        if let Some(enter) = entry_allowed(&latest.reentry, enrollments, event) {
            routes.push(enter);
        }
    }
    routes
}

/// Applies a re-entry policy: the new run, or `None` when the customer may not enter.
pub(crate) fn entry_allowed(
    policy: &Reentry,
    enrollments: &[Enrollment],
    event: &Event,
) -> Option<Routing> {
    // A customer whose runs would pass `u32::MAX` enters no more (rather than wrap onto run 0).
    let next_run = enrollments
        .iter()
        .map(|e| e.run)
        .max()
        .unwrap_or(0)
        .checked_add(1)?;
    let enter = |key: Option<String>| Some(Routing::Enter { run: next_run, key });
    match policy {
        Reentry::Never if enrollments.is_empty() => enter(None),
        Reentry::Never => None,
        Reentry::AfterExit if enrollments.iter().all(|e| !e.is_active()) => enter(None),
        Reentry::AfterExit => None,
        Reentry::Always => enter(None),
        Reentry::Keyed(property) => {
            let key = match event.properties.get(property)? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            if enrollments.iter().any(|e| e.key.as_deref() == Some(&key)) {
                None
            } else {
                enter(Some(key))
            }
        }
    }
}

/// A fresh enrollment for a customer entering a journey version.
pub fn enroll(
    journey: &str,
    version: u32,
    customer: &str,
    run: u32,
    key: Option<String>,
    now: Millis,
) -> Enrollment {
    Enrollment {
        id: enrollment_id(journey, customer, run),
        journey: journey.to_string(),
        version,
        customer: customer.to_string(),
        run,
        key,
        status: EnrollmentStatus::Active,
        entered_at: now,
        ended_at: None,
        exit_reason: None,
        milestones: Vec::new(),
        stalls: Vec::new(),
        stalled_on: None,
        state: Vec::new(),
        timers: Vec::new(),
        variants: Vec::new(),
        channels: Default::default(),
        failure: None,
        failures: Vec::new(),
        loop_window: None,
        paused: None,
    }
}

#[cfg(test)]
mod tests {
    use super::enters_candidate;

    #[test]
    fn a_rollout_share_takes_about_its_percentage_and_is_stable_per_customer() {
        for percent in [1u8, 20, 50, 99] {
            let taken = (0..20_000)
                .filter(|i| enters_candidate("renewal", &format!("c{i}"), percent))
                .count();
            let expected = 20_000 * usize::from(percent) / 100;
            assert!(
                taken.abs_diff(expected) < 400,
                "{percent}%: {taken} of 20000"
            );
        }
        assert!((0..1000).all(|i| !enters_candidate("j", &format!("c{i}"), 0)));
        assert!((0..1000).all(|i| enters_candidate("j", &format!("c{i}"), 100)));
        // A customer inside a 20% share stays inside when the share grows.
        let inside: Vec<String> = (0..1000)
            .map(|i| format!("c{i}"))
            .filter(|c| enters_candidate("j", c, 20))
            .collect();
        assert!(inside.iter().all(|c| enters_candidate("j", c, 50)));
    }
}
