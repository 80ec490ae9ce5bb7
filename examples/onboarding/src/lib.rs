//! Onboarding: welcome every new signup, nudge those who have not reached first value after
//! three days, and complete the journey when they do.
//!
//! - Entry: `signed_up`, once per customer ever.
//! - Entered: send `welcome` through `webhook`, schedule the `nudge` timer three days out.
//! - Event `first_value`: record the `first_value` milestone (the goal) and complete.
//! - Timer `nudge`: send `nudge` through `webhook`. The host fires timers only for active
//!   enrollments, so a customer who already reached first value is never nudged.

use waymark_guest::prelude::*;

/// How long a new customer gets before the nudge.
pub const NUDGE_AFTER: waymark_guest::Duration = days(3);

/// The onboarding journey.
pub struct Onboarding;

impl Journey for Onboarding {
    fn describe() -> Spec {
        Spec::new(
            "Onboarding: welcome new signups, nudge them after three days, complete at first value",
        )
        .enter_on("signed_up")
        .milestone("first_value", None)
        .goal("first_value")
        .reentry(Reentry::Never)
        .channel("webhook")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        Ok(match &ctx.trigger {
            Trigger::Entered(signup) => {
                waymark_guest::log::info(format!("welcoming {}", ctx.customer.id));
                Decision::new()
                    .send(
                        "webhook",
                        "welcome",
                        json!({
                            "customer_id": ctx.customer.id,
                            "email": ctx.customer.attribute("email"),
                            "signup": signup.properties,
                        }),
                    )
                    .schedule_in("nudge", NUDGE_AFTER, ctx)
            }
            Trigger::Event(event) if event.is("first_value") => {
                Decision::new().milestone("first_value").complete()
            }
            Trigger::Timer(name) if name == "nudge" => Decision::new().send(
                "webhook",
                "nudge",
                json!({
                    "customer_id": ctx.customer.id,
                    "days_since_signup": ctx.time_in_journey() / days(1),
                }),
            ),
            _ => Decision::new(),
        })
    }
}

waymark_guest::export_journey!(Onboarding);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    const SIGNUP_AT: Timestamp = 1_700_000_000_000;

    fn signup() -> Event {
        Event::new("signed_up")
            .with_id("evt-1")
            .with_property("plan", json!("trial"))
            .at(SIGNUP_AT)
    }

    fn customer() -> Customer {
        Customer::new("c-42").with_attribute("email", json!("ada@example.com"))
    }

    #[test]
    fn spec_enters_on_signup_and_aims_at_first_value() {
        let spec = Onboarding::describe();
        assert_eq!(spec.entry.len(), 1);
        assert_eq!(spec.entry[0].event, "signed_up");
        assert_eq!(spec.entry[0].filter, None);
        assert_eq!(spec.milestones.len(), 1);
        assert_eq!(spec.milestones[0].name, "first_value");
        assert_eq!(spec.goal.as_deref(), Some("first_value"));
        assert_eq!(spec.reentry, Reentry::Never);
        assert_eq!(spec.channels, vec!["webhook"]);
    }

    #[test]
    fn new_signup_is_welcomed_and_a_nudge_is_scheduled_three_days_out() {
        let ctx = Context::entered(signup())
            .for_customer(customer())
            .at(SIGNUP_AT);
        let decision = Onboarding::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            &[
                Command::Send {
                    channel: "webhook".into(),
                    template: "welcome".into(),
                    payload: json!({
                        "customer_id": "c-42",
                        "email": "ada@example.com",
                        "signup": {"plan": "trial"},
                    }),
                },
                Command::Schedule {
                    name: "nudge".into(),
                    due: SIGNUP_AT + days(3)
                },
            ]
        );
    }

    #[test]
    fn first_value_records_the_milestone_and_completes() {
        let ctx = Context::on_event(Event::new("first_value")).at(SIGNUP_AT + days(1));
        let decision = Onboarding::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            &[Command::Milestone("first_value".into()), Command::Complete]
        );
    }

    #[test]
    fn nudge_timer_sends_the_nudge() {
        let ctx = Context::timer("nudge")
            .for_customer(customer())
            .entered_at(SIGNUP_AT)
            .at(SIGNUP_AT + days(3));
        let decision = Onboarding::decide(&ctx).unwrap();
        assert_eq!(
            decision.sends().collect::<Vec<_>>(),
            vec![(
                "webhook",
                "nudge",
                &json!({"customer_id": "c-42", "days_since_signup": 3})
            )]
        );
        assert!(!decision.completes());
    }

    #[test]
    fn other_triggers_do_nothing() {
        for ctx in [
            Context::on_event(Event::new("page_viewed")),
            Context::timer("something_else"),
            Context::stalled("first_value"),
            Context::delivery(DeliveryReport::delivered("webhook", "welcome")),
        ] {
            assert!(
                Onboarding::decide(&ctx).unwrap().is_empty(),
                "{:?}",
                ctx.trigger
            );
        }
    }
}
