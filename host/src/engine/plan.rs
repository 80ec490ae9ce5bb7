//! What an event or a trigger means, before any journey is asked: how it changes the customer,
//! which record it is about, and which enrollments it reaches with which trigger.
//!
//! The shell loads what a plan needs ([`interpret`] says which record an event refers to), then
//! [`plan_event`] or [`plan_trigger`] turn it into [`Step`]s. Each step is either settled already
//! (an exit event) or asks one enrollment's journey to decide; the shell runs the sandbox for
//! those and hands the outcome to [`settle`](super::settle).

use super::apply::exit;
use super::profile::{engagement, record_engagement, update_profile, Engagement, TASK_RESOLVED};
use super::routing::{enroll, route_event, Routing};
use super::stalls::stalled_milestone;
use super::Applied;
use crate::model::{Customer, DeliveryReport, Enrollment, Event, Millis, Spec, Trigger};
use crate::report::cells::Tally;

/// An event as the host reads it before routing.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpreted {
    /// The customer as the event leaves them (traits applied, unsubscribes recorded).
    pub customer: Customer,
    /// Whether the customer record must be written: new, or changed by the event.
    pub customer_changed: bool,
    /// A record the event is about, which the shell looks up before calling [`plan_event`].
    pub about: Option<About>,
}

/// A stored record an event refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum About {
    /// Engagement (`opened`, `clicked`, ...) with the customer's message `id`.
    Message { id: String, engagement: Engagement },
    /// The resolution of task `id`, which a journey handed off.
    Task { id: String },
}

/// What the shell found for [`Interpreted::about`]: the enrollment the event belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum Addressee {
    /// The message exists; it was sent by this enrollment (if it still exists) through `channel`.
    Sender {
        enrollment: Option<Box<Enrollment>>,
        channel: String,
        engagement: Engagement,
    },
    /// The task exists; it was handed off by the enrollment with this id.
    TaskOwner { enrollment_id: String },
}

/// One thing an event or trigger makes happen to one enrollment.
///
/// Each step carries `before`, what the enrollment counted in the report as it was stored
/// (taken before the plan changed anything; `None` for a new enrollment), so that writing it
/// keeps the report's cells true ([`record`](super::record)).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Ask the journey: `enrollment` (version `enrollment.version`) decides on `trigger`.
    /// `due` is the due time of a timer trigger.
    Decide {
        enrollment: Enrollment,
        trigger: Trigger,
        due: Option<Millis>,
        before: Option<Tally>,
    },
    /// Settled without asking the journey (an exit event ended the enrollment).
    Settled {
        applied: Applied,
        before: Option<Tally>,
    },
}

/// A journey as routing sees it: a name, a version and what that version declares.
#[derive(Debug, Clone, Copy)]
pub struct JourneyRef<'a> {
    pub name: &'a str,
    pub version: u32,
    pub spec: &'a Spec,
}

/// Reads an event: the customer it creates or changes, and the record it is about.
pub fn interpret(existing: Option<&Customer>, event: &Event) -> Interpreted {
    let mut customer = existing.cloned().unwrap_or_else(|| Customer {
        id: event.customer.clone(),
        attributes: Default::default(),
    });
    let changed = update_profile(&mut customer, event);
    let about = if let Some((engagement, id)) = engagement(event) {
        Some(About::Message {
            id: id.to_string(),
            engagement,
        })
    } else if event.name == TASK_RESOLVED {
        event
            .properties
            .get("task")
            .and_then(|t| t.as_str())
            .map(|id| About::Task { id: id.to_string() })
    } else {
        None
    };
    Interpreted {
        customer,
        customer_changed: existing.is_none() || changed,
        about,
    }
}

/// The steps an event causes for one customer.
///
/// - An event about one of the customer's messages goes to the enrollment that sent it, and only
///   there: the engagement is counted on that enrollment, which then decides on the event.
/// - A task resolution goes to the enrollment that handed the task off, while it is active.
/// - Any other event (or one whose record was not found) is routed through every journey in
///   `latest` (the latest version of each, which governs entry): exit events end enrollments
///   without asking the journey, active enrollments decide on the event, and entry triggers
///   start new runs under the journey's re-entry policy. `spec_of(journey, version)` gives the
///   spec of the version an existing enrollment is on; enrollments whose version is unknown
///   are skipped.
pub fn plan_event<'a>(
    customer: &Customer,
    event: &Event,
    addressee: Option<Addressee>,
    enrollments: &'a [Enrollment],
    latest: &[JourneyRef<'a>],
    spec_of: impl Fn(&str, u32) -> Option<&'a Spec>,
    now: Millis,
) -> Vec<Step> {
    let on_event = || Trigger::Event {
        event: event.clone(),
    };
    match addressee {
        Some(Addressee::Sender {
            enrollment,
            channel,
            engagement,
        }) => {
            return enrollment
                .map(|mut enrollment| {
                    let before = Tally::of(&enrollment);
                    record_engagement(&mut enrollment, &channel, engagement);
                    Step::Decide {
                        enrollment: *enrollment,
                        trigger: on_event(),
                        due: None,
                        before: Some(before),
                    }
                })
                .into_iter()
                .collect();
        }
        Some(Addressee::TaskOwner { enrollment_id }) => {
            return enrollments
                .iter()
                .filter(|e| e.id == enrollment_id && e.is_active())
                .map(|e| Step::Decide {
                    enrollment: e.clone(),
                    trigger: on_event(),
                    due: None,
                    before: Some(Tally::of(e)),
                })
                .collect();
        }
        None => {}
    }
    let mut steps = Vec::new();
    for journey in latest {
        let mine: Vec<Enrollment> = enrollments
            .iter()
            .filter(|e| e.journey == journey.name)
            .cloned()
            .collect();
        let routes = route_event(
            journey.spec,
            &mine,
            |e| spec_of(&e.journey, e.version),
            event,
        );
        for route in routes {
            let find = |id: &str| {
                mine.iter()
                    .find(|e| e.id == id && spec_of(&e.journey, e.version).is_some())
                    .cloned()
            };
            match route {
                Routing::Enter { run, key } => steps.push(Step::Decide {
                    enrollment: enroll(journey.name, journey.version, &customer.id, run, key, now),
                    trigger: Trigger::Entered {
                        event: event.clone(),
                    },
                    due: None,
                    before: None,
                }),
                Routing::Deliver { enrollment_id } => {
                    if let Some(enrollment) = find(&enrollment_id) {
                        steps.push(Step::Decide {
                            before: Some(Tally::of(&enrollment)),
                            enrollment,
                            trigger: on_event(),
                            due: None,
                        });
                    }
                }
                Routing::Exit {
                    enrollment_id,
                    reason,
                } => {
                    if let Some(enrollment) = mine.iter().find(|e| e.id == enrollment_id) {
                        steps.push(Step::Settled {
                            before: Some(Tally::of(enrollment)),
                            applied: exit(enrollment.clone(), reason, now),
                        });
                    }
                }
            }
        }
    }
    steps
}

/// What a queued trigger addressed to one enrollment asks of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Addressed {
    /// A timer (the journey's own, or the host's stall watch) came due.
    Timer { name: String, due: Millis },
    /// A message's delivery ended (delivered, or failed for good).
    Delivery { report: DeliveryReport },
}

/// The step of a trigger addressed to one enrollment: a host stall timer becomes a `stalled`
/// trigger, any other timer a `timer` trigger, a delivery report a `delivery` trigger.
pub fn plan_trigger(enrollment: Enrollment, addressed: Addressed) -> Step {
    let (trigger, due) = match addressed {
        Addressed::Timer { name, due } => {
            let trigger = match stalled_milestone(&name) {
                Some(milestone) => Trigger::Stalled {
                    milestone: milestone.to_string(),
                },
                None => Trigger::Timer { name },
            };
            (trigger, Some(due))
        }
        Addressed::Delivery { report } => (Trigger::Delivery { report }, None),
    };
    Step::Decide {
        before: Some(Tally::of(&enrollment)),
        enrollment,
        trigger,
        due,
    }
}

/// The step that moves `enrollment` from version `from` to `to` (migration `migration`): the
/// enrollment, carrying `to`'s number, is asked of `to`'s `migrate`; its report tally is the
/// stored one, so recording the move shifts it from `from`'s cells to `to`'s. `None` when it is
/// no longer active on `from` (it ended, or moved already): there is nothing to move.
pub fn plan_migration(
    mut enrollment: Enrollment,
    from: u32,
    to: u32,
    migration: &str,
) -> Option<Step> {
    if !enrollment.is_active() || enrollment.version != from {
        return None;
    }
    let before = Some(Tally::of(&enrollment));
    enrollment.version = to;
    Some(Step::Decide {
        before,
        enrollment,
        trigger: Trigger::Migrated {
            from,
            migration: migration.to_string(),
        },
        due: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stall_timer;
    use crate::model::{DeliveryOutcome, EnrollmentStatus, EntryTrigger, MilestoneSpec, Reentry};
    use serde_json::json;

    fn spec(entry: &str, exit_on: &[&str]) -> Spec {
        Spec {
            description: String::new(),
            entry: vec![EntryTrigger {
                event: entry.into(),
                filter: None,
            }],
            exit_on: exit_on.iter().map(|s| s.to_string()).collect(),
            milestones: vec![MilestoneSpec {
                name: "first_value".into(),
                stall_after: Some(1000),
            }],
            goal: Some("first_value".into()),
            reentry: Reentry::Never,
            channels: vec!["email".into()],
            experiments: vec![],
            audience: Default::default(),
        }
    }

    fn event(name: &str, properties: serde_json::Value) -> Event {
        Event {
            id: format!("{name}-1"),
            customer: "ada".into(),
            name: name.into(),
            properties: properties.as_object().cloned().unwrap_or_default(),
            timestamp: 5,
        }
    }

    fn customer(attributes: serde_json::Value) -> Customer {
        Customer {
            id: "ada".into(),
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        }
    }

    fn decided(steps: &[Step]) -> Vec<(String, &'static str)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Decide {
                    enrollment,
                    trigger,
                    ..
                } => Some((enrollment.id.clone(), trigger.kind())),
                Step::Settled { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_first_event_creates_the_customer() {
        let seen = interpret(None, &event("page_viewed", json!({})));
        assert!(seen.customer_changed);
        assert_eq!(seen.customer.id, "ada");
        assert!(seen.customer.attributes.is_empty());
        assert_eq!(seen.about, None);
    }

    #[test]
    fn identify_sets_traits_from_segments_shape_or_the_properties() {
        let known = customer(json!({"plan": "free", "city": "Oslo"}));
        let segment = interpret(
            Some(&known),
            &event("identify", json!({"traits": {"plan": "pro", "city": null}})),
        );
        assert!(segment.customer_changed);
        assert_eq!(
            serde_json::Value::Object(segment.customer.attributes),
            json!({"plan": "pro"})
        );
        let flat = interpret(Some(&known), &event("identify", json!({"plan": "free"})));
        assert!(!flat.customer_changed, "identical traits change nothing");
    }

    #[test]
    fn unsubscribed_marks_the_customer_and_names_its_message() {
        let seen = interpret(
            Some(&customer(json!({}))),
            &event(
                "unsubscribed",
                json!({"channel": "sms", "message_id": "m1"}),
            ),
        );
        assert!(seen.customer_changed);
        assert_eq!(
            seen.customer.attributes["unsubscribed_channels"],
            json!(["sms"])
        );
        assert_eq!(
            seen.about,
            Some(About::Message {
                id: "m1".into(),
                engagement: Engagement::Unsubscribed
            })
        );
    }

    #[test]
    fn a_task_resolution_names_its_task() {
        let seen = interpret(None, &event("task_resolved", json!({"task": "task_1"})));
        assert_eq!(
            seen.about,
            Some(About::Task {
                id: "task_1".into()
            })
        );
    }

    #[test]
    fn engagement_goes_only_to_the_sending_enrollment_and_is_counted_there() {
        let onboarding = spec("signed_up", &[]);
        let sender = enroll("onboarding", 1, "ada", 1, None, 0);
        let other = enroll("win-back", 1, "ada", 1, None, 0);
        let enrollments = vec![sender.clone(), other];
        let steps = plan_event(
            &customer(json!({})),
            &event("opened", json!({"message_id": "m1"})),
            Some(Addressee::Sender {
                enrollment: Some(Box::new(sender)),
                channel: "email".into(),
                engagement: Engagement::Opened,
            }),
            &enrollments,
            &[JourneyRef {
                name: "win-back",
                version: 1,
                spec: &onboarding,
            }],
            |_, _| Some(&onboarding),
            10,
        );
        assert_eq!(decided(&steps), vec![("onboarding/ada/1".into(), "event")]);
        let Step::Decide { enrollment, .. } = &steps[0] else {
            panic!("expected a decision");
        };
        assert_eq!(enrollment.channels["email"].opened, 1);
    }

    #[test]
    fn engagement_with_a_message_whose_enrollment_is_gone_does_nothing() {
        let steps = plan_event(
            &customer(json!({})),
            &event("clicked", json!({"message_id": "m1"})),
            Some(Addressee::Sender {
                enrollment: None,
                channel: "email".into(),
                engagement: Engagement::Clicked,
            }),
            &[],
            &[],
            |_, _| None,
            10,
        );
        assert!(steps.is_empty());
    }

    #[test]
    fn a_task_resolution_reaches_only_the_enrollment_that_handed_off() {
        let s = spec("signed_up", &[]);
        let owner = enroll("onboarding", 1, "ada", 1, None, 0);
        let bystander = enroll("renewal", 1, "ada", 1, None, 0);
        let enrollments = vec![owner, bystander];
        let latest = [
            JourneyRef {
                name: "onboarding",
                version: 1,
                spec: &s,
            },
            JourneyRef {
                name: "renewal",
                version: 1,
                spec: &s,
            },
        ];
        let steps = plan_event(
            &customer(json!({})),
            &event("task_resolved", json!({"task": "task_1"})),
            Some(Addressee::TaskOwner {
                enrollment_id: "onboarding/ada/1".into(),
            }),
            &enrollments,
            &latest,
            |_, _| Some(&s),
            10,
        );
        assert_eq!(decided(&steps), vec![("onboarding/ada/1".into(), "event")]);
    }

    #[test]
    fn events_enter_new_runs_reach_active_ones_and_exit_events_settle_without_the_journey() {
        let onboarding = spec("signed_up", &["deleted_account"]);
        let renewal = spec("subscribed", &[]);
        let active = enroll("renewal", 1, "ada", 1, None, 0);
        let enrollments = vec![active];
        let latest = [
            JourneyRef {
                name: "onboarding",
                version: 2,
                spec: &onboarding,
            },
            JourneyRef {
                name: "renewal",
                version: 1,
                spec: &renewal,
            },
        ];
        let spec_of = |journey: &str, _| match journey {
            "onboarding" => Some(&onboarding),
            "renewal" => Some(&renewal),
            _ => None,
        };
        let c = customer(json!({}));
        let steps = plan_event(
            &c,
            &event("signed_up", json!({})),
            None,
            &enrollments,
            &latest,
            spec_of,
            10,
        );
        assert_eq!(
            decided(&steps),
            vec![
                ("onboarding/ada/1".into(), "entered"),
                ("renewal/ada/1".into(), "event")
            ]
        );
        let Step::Decide { enrollment, .. } = &steps[0] else {
            panic!("expected an entry");
        };
        assert_eq!((enrollment.version, enrollment.entered_at), (2, 10));

        let entered = enroll("onboarding", 2, "ada", 1, None, 10);
        let steps = plan_event(
            &c,
            &event("deleted_account", json!({})),
            None,
            &[entered],
            &latest[..1],
            spec_of,
            20,
        );
        let [Step::Settled { applied, .. }] = steps.as_slice() else {
            panic!("expected one settled exit, got {steps:?}");
        };
        assert_eq!(applied.enrollment.status, EnrollmentStatus::Exited);
        assert_eq!(
            applied.enrollment.exit_reason.as_deref(),
            Some("exit_event:deleted_account")
        );
    }

    #[test]
    fn enrollments_on_an_unknown_version_are_skipped() {
        let s = spec("signed_up", &[]);
        let orphan = enroll("onboarding", 7, "ada", 1, None, 0);
        let steps = plan_event(
            &customer(json!({})),
            &event("page_viewed", json!({})),
            None,
            &[orphan],
            &[JourneyRef {
                name: "onboarding",
                version: 8,
                spec: &s,
            }],
            |_, version| (version == 8).then_some(&s),
            10,
        );
        assert!(steps.is_empty());
    }

    #[test]
    fn host_stall_timers_become_stalled_triggers_and_others_timer_triggers() {
        let e = enroll("onboarding", 1, "ada", 1, None, 0);
        let stalled = plan_trigger(
            e.clone(),
            Addressed::Timer {
                name: stall_timer("first_value"),
                due: 99,
            },
        );
        let Step::Decide { trigger, due, .. } = stalled else {
            panic!("expected a decision");
        };
        assert_eq!(
            (trigger, due),
            (
                Trigger::Stalled {
                    milestone: "first_value".into()
                },
                Some(99)
            )
        );
        let Step::Decide { trigger, .. } = plan_trigger(
            e.clone(),
            Addressed::Timer {
                name: "nudge".into(),
                due: 5,
            },
        ) else {
            panic!("expected a decision");
        };
        assert_eq!(trigger.kind(), "timer");
        let report = DeliveryReport {
            message_id: "m".into(),
            channel: "email".into(),
            template: "welcome".into(),
            outcome: DeliveryOutcome::Delivered { provider_id: None },
        };
        let Step::Decide { trigger, due, .. } = plan_trigger(e, Addressed::Delivery { report })
        else {
            panic!("expected a decision");
        };
        assert_eq!((trigger.kind(), due), ("delivery", None));
    }
}
