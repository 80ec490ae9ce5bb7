//! Guided onboarding: walk a new signup through three milestones, nudge them where they get
//! stuck, and hand them to customer success when they get stuck twice.
//!
//! - Entry: `signed_up`, once per customer ever. Entered: send `welcome` through `email`.
//! - Milestones, each with a stall window: `first_login` (2 days), `first_value` (5 days),
//!   `second_use_case` (14 days, the goal: reaching it completes the journey). The product's
//!   events `logged_in`, `first_value` and `second_use_case` record them; a later step implies
//!   the earlier ones (nobody reaches first value without logging in), so the funnel never
//!   counts more customers at a step than at the one before.
//! - Stalled on a milestone: send `nudge_<milestone>` through `email`. The second stall since
//!   customer success last looked at the customer also hands them off to queue `cs`, posts the
//!   handoff to CS's Slack (`cs_handoff` through `slack`) and opens a task in the CRM where CS
//!   works (`cs_handoff_task` through `crm`); while that task is open, further stalls send
//!   nothing (a person owns the conversation).
//! - `task_resolved` for this journey's `cs` task: resolution `churned` exits the journey;
//!   any other resolution sends `cs_follow_up` (with the resolution and the milestone still
//!   ahead) and starts counting stalls afresh.
//!
//! The stall count lives in the enrollment's state as JSON ([`Progress`]); the stall timers
//! themselves are the host's.

use serde::{Deserialize, Serialize};
use waymark_guest::prelude::*;

/// The channel every message goes through.
pub const EMAIL: &str = "email";
/// The channel CS's notifications go through (registered as `plugins/slack`).
pub const SLACK: &str = "slack";
/// The channel that opens a task in CS's CRM (registered as `plugins/crm`).
pub const CRM: &str = "crm";
/// The human queue stuck customers are handed to.
pub const CS: &str = "cs";
/// Stalls (since customer success last resolved a task) that trigger a handoff.
pub const HANDOFF_AFTER_STALLS: u32 = 2;
/// The resolution with which customer success gives a customer up.
pub const CHURNED: &str = "churned";

/// The milestones, in order, with how long a customer may take to reach each.
pub const MILESTONES: [(&str, waymark_guest::Duration); 3] = [
    ("first_login", days(2)),
    ("first_value", days(5)),
    ("second_use_case", days(14)),
];

/// What the journey remembers between triggers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Stalls since entry, or since customer success last resolved a task.
    pub stalls: u32,
    /// Stalls since entry, for the messages.
    pub total_stalls: u32,
    /// A `cs` task is open: customer success owns the conversation.
    pub handed_off: bool,
}

/// The guided onboarding journey.
pub struct GuidedOnboarding;

impl Journey for GuidedOnboarding {
    fn describe() -> Spec {
        let spec = Spec::new(
            "Guided onboarding: nudge at each stalled milestone, hand repeat stallers to customer success",
        )
        .enter_on("signed_up")
        .goal("second_use_case")
        .reentry(Reentry::Never)
        .channel(EMAIL)
        .channel(SLACK)
        .channel(CRM);
        MILESTONES.iter().fold(spec, |spec, (name, window)| {
            spec.milestone(*name, Some(*window))
        })
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        let progress: Progress = ctx.enrollment.state_json()?.unwrap_or_default();
        Ok(match &ctx.trigger {
            Trigger::Entered(_) => Decision::new().send(
                EMAIL,
                "welcome",
                json!({ "customer_id": ctx.customer.id, "first_step": MILESTONES[0].0 }),
            ),
            Trigger::Event(event) if event.is("task_resolved") && is_our_task(ctx, event) => {
                resolved(ctx, progress, event)
            }
            Trigger::Event(event) => match reached(&event.name) {
                Some(steps) => steps
                    .iter()
                    .filter(|m| !ctx.enrollment.has_milestone(m))
                    .fold(Decision::new(), |d, m| d.milestone(*m)),
                None => Decision::new(),
            },
            Trigger::Stalled(milestone) => stalled(ctx, progress, milestone),
            _ => Decision::new(),
        })
    }
}

/// The milestones a product event reaches: its own and every earlier one.
fn reached(event: &str) -> Option<&'static [&'static str]> {
    const ORDER: [&str; 3] = [MILESTONES[0].0, MILESTONES[1].0, MILESTONES[2].0];
    let step = match event {
        "logged_in" => 0,
        "first_value" => 1,
        "second_use_case" => 2,
        _ => return None,
    };
    Some(&ORDER[..=step])
}

/// The host hands a task's resolution only to the enrollment that handed it off, but a
/// `task_resolved` event posted by hand (naming no known task) is routed like any event: only
/// ours, from our queue, count.
fn is_our_task(ctx: &Context, event: &Event) -> bool {
    event.property_str("journey") == Some(ctx.enrollment.journey.as_str())
        && event.property_str("queue") == Some(CS)
}

/// The first milestone the customer has not reached.
fn next_milestone(ctx: &Context) -> Option<&'static str> {
    MILESTONES
        .iter()
        .map(|(name, _)| *name)
        .find(|m| !ctx.enrollment.has_milestone(m))
}

fn stalled(ctx: &Context, mut progress: Progress, milestone: &str) -> Decision {
    progress.stalls += 1;
    progress.total_stalls += 1;
    let mut decision = Decision::new();
    if !progress.handed_off {
        decision = decision.send(
            EMAIL,
            format!("nudge_{milestone}"),
            json!({
                "customer_id": ctx.customer.id,
                "milestone": milestone,
                "stalls": progress.total_stalls,
            }),
        );
        if progress.stalls >= HANDOFF_AFTER_STALLS {
            progress.handed_off = true;
            let reason = format!(
                "stalled {} times; stuck before {milestone}",
                progress.total_stalls
            );
            let customer = &ctx.customer.id;
            // Without stored templates the payloads are the messages: Slack's `text`, the
            // CRM task's `subject`, `body` and `priority` (a `slack` or `crm` template of the
            // same name replaces them).
            decision = decision
                .handoff(CS, reason.clone(), 1)
                .send(
                    SLACK,
                    "cs_handoff",
                    json!({
                        "customer_id": customer,
                        "milestone": milestone,
                        "text": format!("Onboarding handoff: {customer} {reason}"),
                    }),
                )
                .send(
                    CRM,
                    "cs_handoff_task",
                    json!({
                        "customer_id": customer,
                        "milestone": milestone,
                        "subject": format!("Help {customer} onboard"),
                        "body": format!("{customer} {reason}."),
                        "priority": "HIGH",
                    }),
                );
        }
    }
    decision.set_state_json(&progress)
}

fn resolved(ctx: &Context, mut progress: Progress, event: &Event) -> Decision {
    let resolution = event.property_str("resolution").unwrap_or_default();
    if resolution == CHURNED {
        return Decision::new().exit("cs_churned");
    }
    progress.handed_off = false;
    progress.stalls = 0;
    Decision::new()
        .send(
            EMAIL,
            "cs_follow_up",
            json!({
                "customer_id": ctx.customer.id,
                "resolution": resolution,
                "next_milestone": next_milestone(ctx),
            }),
        )
        .set_state_json(&progress)
}

waymark_guest::export_journey!(GuidedOnboarding);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    const SIGNUP_AT: Timestamp = 1_700_000_000_000;

    fn with_progress(ctx: Context, progress: &Progress) -> Context {
        ctx.with_state(serde_json::to_vec(progress).unwrap())
    }

    fn progress_after(decision: &Decision) -> Progress {
        decision
            .commands()
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::SetState(bytes) => Some(serde_json::from_slice(bytes).unwrap()),
                _ => None,
            })
            .expect("the decision stores its progress")
    }

    fn handoffs(decision: &Decision) -> Vec<(&str, &str, u8)> {
        decision
            .commands()
            .iter()
            .filter_map(|c| match c {
                Command::Handoff {
                    queue,
                    reason,
                    priority,
                } => Some((queue.as_str(), reason.as_str(), *priority)),
                _ => None,
            })
            .collect()
    }

    fn resolution(resolution: &str, journey: &str, queue: &str) -> Event {
        Event::new("task_resolved").with_properties(json!({
            "task": "task_1",
            "queue": queue,
            "journey": journey,
            "resolution": resolution,
        }))
    }

    #[test]
    fn spec_declares_three_milestones_with_stall_windows_and_the_goal() {
        let spec = GuidedOnboarding::describe();
        let milestones: Vec<_> = spec
            .milestones
            .iter()
            .map(|m| (m.name.as_str(), m.stall_after))
            .collect();
        assert_eq!(
            milestones,
            [
                ("first_login", Some(days(2))),
                ("first_value", Some(days(5))),
                ("second_use_case", Some(days(14))),
            ]
        );
        assert_eq!(spec.goal.as_deref(), Some("second_use_case"));
        assert_eq!(spec.entry[0].event, "signed_up");
        assert_eq!(spec.channels, [EMAIL, SLACK, CRM]);
    }

    #[test]
    fn a_new_signup_is_welcomed() {
        let ctx = Context::entered(Event::new("signed_up")).at(SIGNUP_AT);
        let decision = GuidedOnboarding::decide(&ctx).unwrap();
        assert_eq!(
            decision.sends().map(|(c, t, _)| (c, t)).collect::<Vec<_>>(),
            [(EMAIL, "welcome")]
        );
    }

    #[test]
    fn product_events_record_their_milestone_and_the_earlier_ones_once() {
        let login = Context::on_event(Event::new("logged_in"));
        let d = GuidedOnboarding::decide(&login).unwrap();
        assert_eq!(d.milestones().collect::<Vec<_>>(), ["first_login"]);

        let value = Context::on_event(Event::new("first_value")).with_milestone("first_login", 1);
        let d = GuidedOnboarding::decide(&value).unwrap();
        assert_eq!(d.milestones().collect::<Vec<_>>(), ["first_value"]);

        let skipped = Context::on_event(Event::new("second_use_case"));
        let d = GuidedOnboarding::decide(&skipped).unwrap();
        assert_eq!(
            d.milestones().collect::<Vec<_>>(),
            ["first_login", "first_value", "second_use_case"]
        );

        let again = Context::on_event(Event::new("logged_in")).with_milestone("first_login", 1);
        assert!(GuidedOnboarding::decide(&again).unwrap().is_empty());
    }

    #[test]
    fn the_first_stall_nudges_for_the_milestone_the_customer_is_stuck_on() {
        let ctx = Context::stalled("first_login").at(SIGNUP_AT + days(2));
        let decision = GuidedOnboarding::decide(&ctx).unwrap();
        assert_eq!(
            decision.sends().collect::<Vec<_>>(),
            [(
                EMAIL,
                "nudge_first_login",
                &json!({"customer_id": "customer-1", "milestone": "first_login", "stalls": 1})
            )]
        );
        assert!(handoffs(&decision).is_empty());
        assert_eq!(
            progress_after(&decision),
            Progress {
                stalls: 1,
                total_stalls: 1,
                handed_off: false
            }
        );
    }

    #[test]
    fn the_second_stall_nudges_and_hands_off_to_customer_success() {
        let once = Progress {
            stalls: 1,
            total_stalls: 1,
            handed_off: false,
        };
        let ctx = with_progress(Context::stalled("first_value"), &once);
        let decision = GuidedOnboarding::decide(&ctx).unwrap();
        assert_eq!(
            decision.sends().map(|(c, t, _)| (c, t)).collect::<Vec<_>>(),
            [
                (EMAIL, "nudge_first_value"),
                (SLACK, "cs_handoff"),
                (CRM, "cs_handoff_task")
            ]
        );
        assert_eq!(
            handoffs(&decision),
            [(CS, "stalled 2 times; stuck before first_value", 1)]
        );
        let payloads: Vec<&Value> = decision.sends().map(|(_, _, p)| p).collect();
        assert_eq!(
            payloads[1]["text"],
            "Onboarding handoff: customer-1 stalled 2 times; stuck before first_value"
        );
        assert_eq!(
            (
                &payloads[2]["subject"],
                &payloads[2]["body"],
                &payloads[2]["priority"]
            ),
            (
                &json!("Help customer-1 onboard"),
                &json!("customer-1 stalled 2 times; stuck before first_value."),
                &json!("HIGH")
            )
        );
        assert!(progress_after(&decision).handed_off);
    }

    #[test]
    fn stalls_while_customer_success_owns_the_customer_send_nothing() {
        let handed_off = Progress {
            stalls: 2,
            total_stalls: 2,
            handed_off: true,
        };
        let ctx = with_progress(Context::stalled("first_value"), &handed_off);
        let decision = GuidedOnboarding::decide(&ctx).unwrap();
        assert_eq!(decision.sends().count(), 0);
        assert!(handoffs(&decision).is_empty());
        assert_eq!(progress_after(&decision).total_stalls, 3);
    }

    #[test]
    fn a_resolved_task_sends_a_follow_up_and_counts_stalls_afresh() {
        let handed_off = Progress {
            stalls: 2,
            total_stalls: 2,
            handed_off: true,
        };
        let event = resolution("onboarding call booked", "guided-onboarding", CS);
        let ctx = Context::on_event(event)
            .with_enrollment(Enrollment::new("guided-onboarding", "customer-1"))
            .with_milestone("first_login", 1);
        let ctx = with_progress(ctx, &handed_off);
        let decision = GuidedOnboarding::decide(&ctx).unwrap();
        assert_eq!(
            decision.sends().collect::<Vec<_>>(),
            [(
                EMAIL,
                "cs_follow_up",
                &json!({
                    "customer_id": "customer-1",
                    "resolution": "onboarding call booked",
                    "next_milestone": "first_value",
                })
            )]
        );
        assert_eq!(
            progress_after(&decision),
            Progress {
                stalls: 0,
                total_stalls: 2,
                handed_off: false
            }
        );
    }

    #[test]
    fn a_churned_resolution_exits() {
        let ctx = Context::on_event(resolution(CHURNED, "guided-onboarding", CS))
            .with_enrollment(Enrollment::new("guided-onboarding", "customer-1"));
        let decision = GuidedOnboarding::decide(&ctx).unwrap();
        assert_eq!(decision.commands(), [Command::Exit("cs_churned".into())]);
    }

    #[test]
    fn tasks_of_other_journeys_or_queues_are_not_ours() {
        for event in [
            resolution("done", "another-journey", CS),
            resolution("done", "guided-onboarding", "sales"),
        ] {
            let ctx = Context::on_event(event)
                .with_enrollment(Enrollment::new("guided-onboarding", "customer-1"));
            assert!(GuidedOnboarding::decide(&ctx).unwrap().is_empty());
        }
    }

    #[test]
    fn state_that_is_not_progress_fails_the_trigger() {
        let ctx = Context::stalled("first_login").with_state(b"not json".to_vec());
        assert!(GuidedOnboarding::decide(&ctx).is_err());
    }

    #[test]
    fn other_triggers_do_nothing() {
        for ctx in [
            Context::on_event(Event::new("page_viewed")),
            Context::timer("whatever"),
            Context::delivery(DeliveryReport::delivered(EMAIL, "welcome")),
        ] {
            assert!(GuidedOnboarding::decide(&ctx).unwrap().is_empty());
        }
    }
}
