//! The engine's rule tests, by concern, over small builders: pure inputs, behaviour names,
//! assertions on the enrollment and effects. `plan` and `settle` keep their tests beside them.

mod accounts; // Account journeys (issue 12)
mod apply;
mod ids;
mod profile;
mod report;
mod routing;
mod routing_props;
mod stalls;

use super::*;
use crate::model::*;
use serde_json::{json, Value};

pub(super) const DAY: Millis = 86_400_000;

pub(super) fn spec() -> Spec {
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
            allocation: Default::default(),
        }],
        audience: Default::default(),
    }
}

pub(super) fn event(name: &str, properties: Value) -> Event {
    Event {
        id: format!("{name}-1"),
        customer: "c1".into(),
        name: name.into(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        timestamp: 1_000,
    }
}

pub(super) fn active() -> Enrollment {
    enroll("onboarding", 1, "c1", 1, None, 1_000)
}

pub(super) fn send(template: &str) -> Command {
    Command::Send(Send {
        channel: "webhook".into(),
        template: template.into(),
        payload: json!({}),
    })
}

pub(super) fn ended(status: EnrollmentStatus, run: u32) -> Enrollment {
    let mut e = enroll("onboarding", 1, "c1", run, None, 0);
    e.status = status;
    e
}

/// The test spec with stall windows: a day to log in, two more to reach first value.
pub(super) fn stalling_spec() -> Spec {
    let mut spec = spec();
    spec.milestones[0].stall_after = Some(DAY);
    spec.milestones[1].stall_after = Some(2 * DAY);
    spec
}

pub(super) fn stall_timers(e: &Enrollment) -> Vec<(String, Millis)> {
    e.timers
        .iter()
        .filter(|t| stalled_milestone(&t.name).is_some())
        .map(|t| (t.name.clone(), t.due))
        .collect()
}

pub(super) fn customer(attributes: serde_json::Value) -> Customer {
    Customer {
        id: "c1".into(),
        attributes: attributes.as_object().unwrap().clone(),
    }
}
