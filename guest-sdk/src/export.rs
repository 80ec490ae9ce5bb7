//! The glue behind [`export_journey!`](crate::export_journey): conversions between the
//! generated WIT types and the SDK's plain types. Not part of the documented API; the macro
//! names it through `$crate::__export`, and the channel SDK (`waymark-channel`) borrows
//! [`parse_object`] for the same job.
//!
//! JSON arrives from the host as text. The host validates it, but a guest must not trust that:
//! malformed JSON becomes an `Err` from `decide` (or a permanent delivery error), never a panic.
//! The customer's attributes and the event's properties stay text until the journey reads them
//! ([`JsonObject`]); if it read one that is malformed, `decide` returns that error whatever the
//! journey decided, and if it never read it, the text's flaws cannot have swayed the decision.

#![allow(missing_docs)]

use serde_json::Value;

use crate::bindings::journey::exports::waymark::journey::allocation as wal;
use crate::bindings::journey::exports::waymark::journey::audience as wa;
use crate::bindings::journey::exports::waymark::journey::migration as wm;
use crate::bindings::journey::waymark::journey::types as wt;
use crate::context::{
    Context, Customer, DeliveryOutcome, DeliveryReport, Enrollment, EnrollmentStatus, Event,
    JsonObject, Migration, MilestoneHit, Object, PendingTimer, Trigger, VariantAssignment,
};
use crate::decision::Command;
use crate::spec::{AudienceTrigger, Reentry, Spec, Subject};
use crate::Journey;

pub use crate::bindings::journey;
pub use std::string::String;
pub use std::vec::Vec;

/// `describe`, for journey `J`.
pub fn describe<J: Journey>() -> wt::Spec {
    spec_to_wit(J::describe())
}

/// `describe-allocation`, for journey `J` (issue 13): how each experiment of the same [`Spec`]
/// allocates (`describe` is deterministic, so calling it again agrees).
pub fn describe_allocation<J: Journey>() -> Vec<wal::ExperimentAllocation> {
    J::describe()
        .experiments
        .into_iter()
        .map(|x| match x.allocation {
            crate::spec::Allocation::Fixed => wal::ExperimentAllocation {
                experiment: x.name,
                mode: wal::AllocationMode::Fixed,
                goal: None,
            },
            crate::spec::Allocation::Thompson { goal } => wal::ExperimentAllocation {
                experiment: x.name,
                mode: wal::AllocationMode::Thompson,
                goal: Some(goal),
            },
        })
        .collect()
}

/// `describe-audience`, for journey `J`: the subject and audience triggers of the same
/// [`Spec`] that `describe` returns (`describe` is deterministic, so calling it again agrees).
pub fn describe_audience<J: Journey>() -> wa::AudienceSpec {
    let spec = J::describe();
    wa::AudienceSpec {
        subject: match spec.subject {
            Subject::Customer => wa::Subject::Customer,
            Subject::Account => wa::Subject::Account,
        },
        triggers: spec
            .audience
            .into_iter()
            .map(|t| match t {
                AudienceTrigger::Inactive {
                    name,
                    events,
                    quiet_for,
                } => wa::AudienceTrigger::Inactive(wa::Inactivity {
                    name,
                    events,
                    quiet_for,
                }),
                AudienceTrigger::Matches {
                    name,
                    expression,
                    exit_when_unmatched,
                } => wa::AudienceTrigger::Matches(wa::Condition {
                    name,
                    expression,
                    exit_when_unmatched,
                }),
                AudienceTrigger::Date {
                    name,
                    attribute,
                    offset_days,
                    at,
                } => wa::AudienceTrigger::Date(wa::DateOffset {
                    name,
                    attribute,
                    offset_days,
                    // At most 23 * 60 + 59: a `TimeOfDay` is checked when built.
                    at_minute: (at.hour() * 60 + at.minute()) as u16,
                }),
            })
            .collect(),
    }
}

/// `decide`, for journey `J`.
pub fn decide<J: Journey>(context: wt::Context) -> Result<Vec<wt::Command>, String> {
    let context = context_from_wit(context);
    let decision = J::decide(&context);
    // A journey that read malformed JSON decided on an empty object: its decision is void,
    // and the JSON's error says more than any error the journey made of it.
    check_read(&context.customer, context.trigger.event())?;
    Ok(decision?
        .into_commands()
        .into_iter()
        .map(command_to_wit)
        .collect())
}

/// `migrate`, for journey `J`.
pub fn migrate<J: Journey>(context: wm::MigrationContext) -> Result<Vec<wt::Command>, String> {
    let migration = Migration {
        from_version: context.from_version,
        customer: customer_from_wit(context.customer),
        enrollment: enrollment_from_wit(context.enrollment),
        now: context.now,
        seed: context.seed,
    };
    let decision = J::migrate(&migration);
    check_read(&migration.customer, None)?;
    Ok(decision?
        .into_commands()
        .into_iter()
        .map(command_to_wit)
        .collect())
}

/// Parses a JSON object; `null` counts as `{}`. `what` names it in the error.
pub fn parse_object(what: &str, json: &str) -> Result<Object, String> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Object::new()),
        Ok(other) => Err(format!(
            "{what} must be a JSON object, not {}",
            crate::object::json_kind(&other)
        )),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}

/// The error of whichever of the customer's attributes and the event's properties the journey
/// read and could not parse (neither is parsed here: what was not read is not checked).
pub fn check_read(customer: &Customer, event: Option<&Event>) -> Result<(), String> {
    if let Some(error) = customer.attributes.read_error() {
        return Err(format!("customer.attributes {error}"));
    }
    match event.and_then(|e| Some((e, e.properties.read_error()?))) {
        Some((e, error)) => Err(format!("properties of event {:?} {error}", e.id)),
        None => Ok(()),
    }
}

/// The SDK's context, its JSON left as text for the journey to parse if it reads it.
pub(crate) fn context_from_wit(c: wt::Context) -> Context {
    Context {
        trigger: trigger_from_wit(c.trigger),
        customer: customer_from_wit(c.customer),
        enrollment: enrollment_from_wit(c.enrollment),
        now: c.now,
        seed: c.seed,
    }
}

fn customer_from_wit(c: wt::Customer) -> Customer {
    Customer {
        id: c.id,
        attributes: JsonObject::from_json(c.attributes),
    }
}

fn event_from_wit(e: wt::Event) -> Event {
    Event {
        id: e.id,
        name: e.name,
        properties: JsonObject::from_json(e.properties),
        timestamp: e.timestamp,
    }
}

fn trigger_from_wit(t: wt::Trigger) -> Trigger {
    match t {
        wt::Trigger::Entered(e) => Trigger::Entered(event_from_wit(e)),
        wt::Trigger::Event(e) => Trigger::Event(event_from_wit(e)),
        wt::Trigger::Timer(name) => Trigger::Timer(name),
        wt::Trigger::Stalled(milestone) => Trigger::Stalled(milestone),
        wt::Trigger::Delivery(r) => Trigger::Delivery(DeliveryReport {
            message_id: r.message_id,
            channel: r.channel,
            template: r.template,
            outcome: match r.outcome {
                wt::DeliveryOutcome::Delivered(id) => DeliveryOutcome::Delivered(id),
                wt::DeliveryOutcome::Failed(reason) => DeliveryOutcome::Failed(reason),
            },
        }),
    }
}

fn enrollment_from_wit(e: wt::Enrollment) -> Enrollment {
    Enrollment {
        id: e.id,
        journey: e.journey,
        version: e.version,
        status: match e.status {
            wt::EnrollmentStatus::Active => EnrollmentStatus::Active,
            wt::EnrollmentStatus::Completed => EnrollmentStatus::Completed,
            wt::EnrollmentStatus::Exited => EnrollmentStatus::Exited,
        },
        entered_at: e.entered_at,
        milestones: e
            .milestones
            .into_iter()
            .map(|m| MilestoneHit {
                name: m.name,
                at: m.at,
            })
            .collect(),
        state: e.state,
        timers: e
            .timers
            .into_iter()
            .map(|t| PendingTimer {
                name: t.name,
                due: t.due,
            })
            .collect(),
        variants: e
            .variants
            .into_iter()
            .map(|v| VariantAssignment {
                experiment: v.experiment,
                arm: v.arm,
            })
            .collect(),
    }
}

pub(crate) fn command_to_wit(c: Command) -> wt::Command {
    match c {
        Command::Send {
            channel,
            template,
            payload,
        } => wt::Command::Send(wt::Send {
            channel,
            template,
            payload: json_text(&payload),
        }),
        Command::Schedule { name, due } => wt::Command::Schedule(wt::Schedule { name, due }),
        Command::Cancel(name) => wt::Command::Cancel(name),
        Command::Milestone(name) => wt::Command::Milestone(name),
        Command::SetState(state) => wt::Command::SetState(state),
        Command::Assign { experiment, arm } => {
            wt::Command::Assign(wt::VariantAssignment { experiment, arm })
        }
        Command::Handoff {
            queue,
            reason,
            priority,
        } => wt::Command::Handoff(wt::Handoff {
            queue,
            reason,
            priority,
        }),
        Command::Exit(reason) => wt::Command::Exit(reason),
        Command::Complete => wt::Command::Complete,
    }
}

/// JSON text of a value: straight into a buffer, which `Value`'s `Display` (`to_string`) does
/// through the formatting machinery, byte run by byte run.
fn json_text(value: &Value) -> String {
    // Serializing a `Value` cannot fail: its map keys are strings.
    serde_json::to_string(value).unwrap_or_default()
}

pub(crate) fn spec_to_wit(s: Spec) -> wt::Spec {
    wt::Spec {
        description: s.description,
        entry: s
            .entry
            .into_iter()
            .map(|e| wt::EntryTrigger {
                event: e.event,
                filter: e.filter.map(|f| f.to_string()),
            })
            .collect(),
        exit_on: s.exit_on,
        milestones: s
            .milestones
            .into_iter()
            .map(|m| wt::MilestoneSpec {
                name: m.name,
                stall_after: m.stall_after,
            })
            .collect(),
        goal: s.goal,
        reentry: match s.reentry {
            Reentry::Never => wt::Reentry::Never,
            Reentry::AfterExit => wt::Reentry::AfterExit,
            Reentry::Always => wt::Reentry::Always,
            Reentry::Keyed(property) => wt::Reentry::Keyed(property),
        },
        channels: s.channels,
        experiments: s
            .experiments
            .into_iter()
            .map(|x| wt::ExperimentSpec {
                name: x.name,
                arms: x.arms,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use serde_json::json;

    fn wit_event(name: &str, properties: &str) -> wt::Event {
        wt::Event {
            id: format!("{name}-1"),
            name: name.into(),
            properties: properties.into(),
            timestamp: 5,
        }
    }

    fn wit_context(trigger: wt::Trigger, attributes: &str) -> wt::Context {
        wt::Context {
            trigger,
            customer: wt::Customer {
                id: "c-1".into(),
                attributes: attributes.into(),
            },
            enrollment: wt::Enrollment {
                id: "onboarding/c-1/1".into(),
                journey: "onboarding".into(),
                version: 3,
                status: wt::EnrollmentStatus::Active,
                entered_at: 1,
                milestones: vec![wt::MilestoneHit {
                    name: "m".into(),
                    at: 2,
                }],
                state: vec![7],
                timers: vec![wt::PendingTimer {
                    name: "t".into(),
                    due: 9,
                }],
                variants: vec![wt::VariantAssignment {
                    experiment: "x".into(),
                    arm: "a".into(),
                }],
            },
            now: 10,
            seed: 42,
        }
    }

    #[test]
    fn context_converts_with_json_parsed() {
        let c = wit_context(
            wt::Trigger::Entered(wit_event("signed_up", r#"{"plan":"pro"}"#)),
            r#"{"email":"a@b"}"#,
        );
        let ctx = context_from_wit(c);
        assert!(
            !ctx.customer.attributes.is_parsed(),
            "nothing is parsed until read"
        );
        assert_eq!(ctx.customer.attribute_str("email"), Some("a@b"));
        assert_eq!(
            ctx.trigger,
            Trigger::Entered(
                Event::new("signed_up")
                    .with_id("signed_up-1")
                    .with_property("plan", json!("pro"))
                    .at(5)
            )
        );
        assert_eq!(ctx.enrollment.version, 3);
        assert_eq!(ctx.enrollment.milestone("m").map(|m| m.at), Some(2));
        assert_eq!(ctx.enrollment.state, vec![7]);
        assert_eq!(ctx.enrollment.timer("t").map(|t| t.due), Some(9));
        assert_eq!(ctx.enrollment.variant("x"), Some("a"));
        assert_eq!((ctx.now, ctx.seed), (10, 42));
    }

    #[test]
    fn every_trigger_kind_converts() {
        let report = wt::DeliveryReport {
            message_id: "m-1".into(),
            channel: "webhook".into(),
            template: "welcome".into(),
            outcome: wt::DeliveryOutcome::Failed("410".into()),
        };
        let cases = [
            (wt::Trigger::Event(wit_event("clicked", "{}")), "event"),
            (wt::Trigger::Timer("nudge".into()), "timer"),
            (wt::Trigger::Stalled("first_value".into()), "stalled"),
            (wt::Trigger::Delivery(report), "delivery"),
        ];
        for (trigger, kind) in cases {
            let ctx = context_from_wit(wit_context(trigger, "{}"));
            assert_eq!(ctx.trigger.kind(), kind);
        }
        let ctx = context_from_wit(wit_context(wt::Trigger::Timer("nudge".into()), "null"));
        assert!(ctx.customer.attributes.is_empty());
    }

    /// Reads the customer's `plan` and the event's `plan`, and sends what it found.
    struct ReadsBoth;
    impl Journey for ReadsBoth {
        fn describe() -> Spec {
            Spec::new("reads both")
        }
        fn decide(ctx: &Context) -> Result<Decision, String> {
            let event_plan = ctx.event().and_then(|e| e.property("plan")).cloned();
            let plan = ctx.customer.attribute("plan").cloned();
            Ok(Decision::new().send("w", "t", json!({"plan": plan, "event": event_plan})))
        }
    }

    /// Reads nothing but the trigger's kind.
    struct ReadsNothing;
    impl Journey for ReadsNothing {
        fn describe() -> Spec {
            Spec::new("reads nothing")
        }
        fn decide(_: &Context) -> Result<Decision, String> {
            Ok(Decision::new().complete())
        }
    }

    #[test]
    fn malformed_json_that_the_journey_read_is_an_error_not_a_panic() {
        let bad_attrs = wit_context(wt::Trigger::Timer("t".into()), "{not json");
        let error = decide::<ReadsBoth>(bad_attrs).unwrap_err();
        assert!(
            error.starts_with("customer.attributes is not valid JSON"),
            "{error}"
        );

        let array_attrs = wit_context(wt::Trigger::Timer("t".into()), "[1]");
        assert_eq!(
            decide::<ReadsBoth>(array_attrs).unwrap_err(),
            "customer.attributes must be a JSON object, not an array"
        );

        let bad_props = wit_context(wt::Trigger::Event(wit_event("e", "{")), "{}");
        let error = decide::<ReadsBoth>(bad_props).unwrap_err();
        assert!(
            error.starts_with("properties of event \"e-1\" is not valid JSON"),
            "{error}"
        );
    }

    #[test]
    fn malformed_json_that_the_journey_did_not_read_cannot_sway_it() {
        let bad_both = wit_context(wt::Trigger::Event(wit_event("e", "{")), "[");
        let commands = decide::<ReadsNothing>(bad_both).unwrap();
        assert!(matches!(commands.as_slice(), [wt::Command::Complete]));
    }

    #[test]
    fn well_formed_json_reaches_the_journey() {
        let c = wit_context(
            wt::Trigger::Entered(wit_event("signed_up", r#"{"plan":"trial"}"#)),
            r#"{"plan":"pro"}"#,
        );
        let commands = decide::<ReadsBoth>(c).unwrap();
        let [wt::Command::Send(send)] = commands.as_slice() else {
            panic!("{commands:?}");
        };
        assert_eq!(
            serde_json::from_str::<Value>(&send.payload).unwrap(),
            json!({"plan": "pro", "event": "trial"})
        );
    }

    #[test]
    fn commands_convert_one_to_one() {
        let d = Decision::new()
            .send("webhook", "welcome", json!({"a": [1, 2]}))
            .schedule("nudge", 99)
            .cancel("nudge")
            .milestone("m")
            .set_state(vec![1])
            .assign("x", "b")
            .handoff("cs", "why", 2)
            .exit("bye")
            .complete();
        let wit: Vec<wt::Command> = d.into_commands().into_iter().map(command_to_wit).collect();
        assert_eq!(wit.len(), 9);
        match &wit[0] {
            wt::Command::Send(s) => {
                assert_eq!(
                    (s.channel.as_str(), s.template.as_str()),
                    ("webhook", "welcome")
                );
                assert_eq!(
                    serde_json::from_str::<Value>(&s.payload).unwrap(),
                    json!({"a": [1, 2]})
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&wit[1], wt::Command::Schedule(s) if s.name == "nudge" && s.due == 99));
        assert!(matches!(&wit[2], wt::Command::Cancel(n) if n == "nudge"));
        assert!(matches!(&wit[3], wt::Command::Milestone(n) if n == "m"));
        assert!(matches!(&wit[4], wt::Command::SetState(s) if s == &[1]));
        assert!(matches!(&wit[5], wt::Command::Assign(a) if a.experiment == "x" && a.arm == "b"));
        assert!(
            matches!(&wit[6], wt::Command::Handoff(h) if h.queue == "cs" && h.reason == "why" && h.priority == 2)
        );
        assert!(matches!(&wit[7], wt::Command::Exit(r) if r == "bye"));
        assert!(matches!(&wit[8], wt::Command::Complete));
    }

    #[test]
    fn spec_converts_with_filters_as_json_text() {
        let spec = Spec::new("d")
            .enter_on_where("plan_changed", json!({"plan": "pro"}))
            .exit_on("gone")
            .milestone("m", Some(60_000))
            .goal("m")
            .reentry(Reentry::Keyed("order_id".into()))
            .channel("webhook")
            .experiment("x", &["a", "b"]);
        let wit = spec_to_wit(spec);
        assert_eq!(wit.entry[0].event, "plan_changed");
        assert_eq!(wit.entry[0].filter.as_deref(), Some(r#"{"plan":"pro"}"#));
        assert_eq!(wit.exit_on, vec!["gone"]);
        assert_eq!(
            (
                wit.milestones[0].name.as_str(),
                wit.milestones[0].stall_after
            ),
            ("m", Some(60_000))
        );
        assert_eq!(wit.goal.as_deref(), Some("m"));
        assert!(matches!(wit.reentry, wt::Reentry::Keyed(ref p) if p == "order_id"));
        assert_eq!(wit.channels, vec!["webhook"]);
        assert_eq!(wit.experiments[0].arms, vec!["a", "b"]);
    }

    struct Fails;
    impl Journey for Fails {
        fn describe() -> Spec {
            Spec::new("fails")
        }
        fn decide(_: &Context) -> Result<Decision, String> {
            Err("boom".into())
        }
    }

    #[test]
    fn decide_passes_the_journeys_error_through() {
        let c = wit_context(wt::Trigger::Timer("t".into()), "{}");
        assert_eq!(decide::<Fails>(c).unwrap_err(), "boom");
        assert_eq!(describe::<Fails>().description, "fails");
    }
}
