//! Every enrollment the engine writes carries its report delta: a customer's story through
//! every kind of step (entry, events, engagement, timers, stalls, delivery reports, a failed
//! decision, an exit event, a trigger after the end) keeps the report's cells equal to the
//! report of the enrollments.

use super::*;
use crate::report::cells::{self, Cell, CellId};
use crate::store::TriggerCommit;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A pure stand-in for the worker and the store: enrollments by id, cells kept by deltas.
#[derive(Default)]
struct World {
    enrollments: BTreeMap<String, Enrollment>,
    cells: BTreeMap<CellId, Cell>,
}

impl World {
    fn customer(&self) -> Customer {
        Customer {
            id: "c1".into(),
            attributes: Default::default(),
        }
    }

    fn enrollment(&self) -> Enrollment {
        self.enrollments["onboarding/c1/1"].clone()
    }

    /// Runs the steps as the worker does, each asked journey answering `answer`, and commits.
    fn run(&mut self, steps: Vec<Step>, answer: Result<Vec<Command>, DecideError>, now: Millis) {
        let spec = stalling_spec();
        let mut commit = TriggerCommit::default();
        let customer = self.customer();
        for step in steps {
            match step {
                Step::Settled { applied, before } => {
                    record(&mut commit, "c1", None, before, applied, now, 0)
                }
                Step::Decide {
                    enrollment,
                    trigger,
                    due,
                    before,
                } => match prepare(
                    "acme",
                    Cow::Borrowed(&customer),
                    enrollment,
                    before,
                    trigger,
                    due,
                    now,
                ) {
                    Prepared::Observed { enrollment, before } => {
                        observed(&mut commit, before, enrollment)
                    }
                    Prepared::Ask(ask) => {
                        let policy = SendingPolicy::default();
                        settle(&mut commit, ask, &spec, answer.clone(), &policy, &[], 0);
                    }
                },
            }
        }
        for d in cells::merge(&commit.report_deltas) {
            let cell = self.cells.entry(d.cell.clone()).or_default();
            cell.id = d.cell.clone();
            cell.apply(&d);
        }
        for e in commit.enrollments {
            self.enrollments.insert(e.id.clone(), e);
        }
        let all: Vec<Enrollment> = self.enrollments.values().cloned().collect();
        let kept: Vec<Cell> = self.cells.values().cloned().collect();
        assert_eq!(
            cells::report(&spec, &kept),
            crate::report::report(&spec, &all)
        );
    }

    fn event(&mut self, e: Event, answer: Vec<Command>, now: Millis) {
        let spec = stalling_spec();
        let all: Vec<Enrollment> = self.enrollments.values().cloned().collect();
        let latest = [JourneyRef {
            name: "onboarding",
            version: 1,
            spec: &spec,
        }];
        let steps = plan_event(
            &self.customer(),
            &e,
            None,
            &all,
            &latest,
            |_, _| Some(&spec),
            now,
        );
        self.run(steps, Ok(answer), now);
    }

    fn addressed(&mut self, a: Addressed, answer: Result<Vec<Command>, DecideError>, now: Millis) {
        let step = plan_trigger(self.enrollment(), a);
        self.run(vec![step], answer, now);
    }
}

#[test]
fn every_step_of_a_customers_story_keeps_the_report_cells_true() {
    let mut world = World::default();
    world.event(
        event("signed_up", json!({})),
        vec![
            send("welcome"),
            Command::Assign(VariantAssignment {
                experiment: "welcome_copy".into(),
                arm: "b".into(),
            }),
            Command::Schedule {
                name: "nudge".into(),
                due: 2_000,
            },
        ],
        1_000,
    );
    let message_id = "m1".to_string();
    let engaged = Event {
        name: "email_opened".into(),
        ..event("email_opened", json!({"message_id": message_id}))
    };
    let sender = Addressee::Sender {
        enrollment: Some(Box::new(world.enrollment())),
        channel: "webhook".into(),
        engagement: Engagement::Opened,
    };
    let steps = plan_event(
        &world.customer(),
        &engaged,
        Some(sender),
        &[],
        &[],
        |_, _| None,
        1_500,
    );
    world.run(steps, Ok(vec![]), 1_500);
    world.addressed(
        Addressed::Timer {
            name: "nudge".into(),
            due: 2_000,
        },
        Ok(vec![Command::Milestone {
            name: "first_login".into(),
        }]),
        2_000,
    );
    let stall = world
        .enrollment()
        .timer(&stall_timer("first_value"))
        .cloned();
    let stall = stall.expect("first value is watched");
    world.addressed(
        Addressed::Timer {
            name: stall.name,
            due: stall.due,
        },
        Ok(vec![]),
        stall.due,
    );
    assert_eq!(
        world.enrollment().stalled_on.as_deref(),
        Some("first_value")
    );
    world.addressed(
        Addressed::Delivery {
            report: DeliveryReport {
                message_id,
                channel: "webhook".into(),
                template: "welcome".into(),
                outcome: DeliveryOutcome::Delivered { provider_id: None },
            },
        },
        Err(DecideError::Guest {
            reason: FailureReason::Trap,
            message: "unreachable".into(),
        }),
        stall.due + 1,
    );
    world.event(event("deleted_account", json!({})), vec![], stall.due + 2);
    assert_eq!(world.enrollment().status, EnrollmentStatus::Exited);
    // After the end: observed, not asked.
    world.addressed(
        Addressed::Timer {
            name: "nudge".into(),
            due: 2_000,
        },
        Ok(vec![]),
        stall.due + 3,
    );

    let spec = stalling_spec();
    let kept: Vec<Cell> = world.cells.values().cloned().collect();
    let report = cells::report(&spec, &kept);
    assert_eq!((report.overall.entered, report.overall.exited), (1, 1));
    assert_eq!(report.overall.stalled_ever, 1);
    assert_eq!(report.overall.channels["webhook"].opened, 1);
    assert_eq!(report.by_arm["welcome_copy"]["b"].entered, 1);
    assert!(!report.by_arm["welcome_copy"].contains_key("unassigned"));
}
