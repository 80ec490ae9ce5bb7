//! A/B welcome: two welcome messages, compared by what they lead to: activation.
//!
//! - Entry: `signed_up`, once per customer ever.
//! - Experiment `welcome_copy` with arms `control` and `short`. Entered: pick the customer's arm
//!   with [`assign_arm`] (through [`Context::arm`]: a pure function of the experiment and the
//!   customer id, so replays and retries pick the same arm), record it with `assign` so the
//!   report splits by arm, and send that arm's welcome, `welcome_control` or `welcome_short`,
//!   through `email`.
//! - Milestone `activated`, the goal: the product's `activated` event records it, which
//!   completes the run.
//! - Timer `expire`, two weeks after entry: a customer who has not activated by then exits
//!   with `not_activated`, so each arm's funnel settles.
//!
//! `GET /v1/journeys/ab-welcome/report` then shows, under `by_arm.welcome_copy`, each arm's
//! entries, completions and activation conversion.

use waymark_guest::prelude::*;

/// The channel the welcome goes through.
pub const EMAIL: &str = "email";
/// The experiment's name, as the spec declares it and the report names it.
pub const EXPERIMENT: &str = "welcome_copy";
/// The experiment's arms; equally likely.
pub const ARMS: [&str; 2] = ["control", "short"];
/// How long a customer has to activate before the run ends without it.
pub const EXPIRE_AFTER: waymark_guest::Duration = days(14);

/// The A/B welcome journey.
pub struct AbWelcome;

impl Journey for AbWelcome {
    fn describe() -> Spec {
        Spec::new("A/B welcome: two welcome messages, measured by activation")
            .enter_on("signed_up")
            .milestone("activated", None)
            .goal("activated")
            .reentry(Reentry::Never)
            .channel(EMAIL)
            .experiment(EXPERIMENT, &ARMS)
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        Ok(match &ctx.trigger {
            Trigger::Entered(_) => {
                let arm = ctx.arm(EXPERIMENT, &ARMS);
                Decision::new()
                    .assign(EXPERIMENT, arm)
                    .send(
                        EMAIL,
                        format!("welcome_{arm}"),
                        json!({ "customer_id": ctx.customer.id, "arm": arm }),
                    )
                    .schedule_in("expire", EXPIRE_AFTER, ctx)
            }
            Trigger::Event(event) if event.is("activated") => {
                Decision::new().milestone("activated")
            }
            Trigger::Timer(name) if name == "expire" => Decision::new().exit("not_activated"),
            _ => Decision::new(),
        })
    }
}

waymark_guest::export_journey!(AbWelcome);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    fn signed_up(customer: &str) -> Context {
        Context::entered(Event::new("signed_up"))
            .for_customer(Customer::new(customer))
            .at(1_000)
    }

    #[test]
    fn spec_declares_the_experiment_and_the_goal() {
        let spec = AbWelcome::describe();
        assert_eq!(spec.experiments[0].name, EXPERIMENT);
        assert_eq!(spec.experiments[0].arms, ARMS);
        assert_eq!(spec.goal.as_deref(), Some("activated"));
    }

    #[test]
    fn entering_assigns_an_arm_and_sends_that_arms_welcome() {
        let decision = AbWelcome::decide(&signed_up("c-42")).unwrap();
        let arm = assign_arm(EXPERIMENT, "c-42", "", &ARMS);
        assert_eq!(
            decision.commands(),
            [
                Command::Assign {
                    experiment: EXPERIMENT.into(),
                    arm: arm.into()
                },
                Command::Send {
                    channel: EMAIL.into(),
                    template: format!("welcome_{arm}"),
                    payload: json!({"customer_id": "c-42", "arm": arm}),
                },
                Command::Schedule {
                    name: "expire".into(),
                    due: 1_000 + EXPIRE_AFTER
                },
            ]
        );
    }

    #[test]
    fn the_assignment_is_deterministic_and_both_arms_get_customers() {
        let arm_of = |id: &str| {
            AbWelcome::decide(&signed_up(id))
                .unwrap()
                .commands()
                .iter()
                .find_map(|c| match c {
                    Command::Assign { arm, .. } => Some(arm.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let customers: Vec<String> = (0..100).map(|i| format!("customer-{i}")).collect();
        for id in &customers {
            assert_eq!(arm_of(id), arm_of(id), "{id}");
        }
        let short = customers.iter().filter(|id| arm_of(id) == "short").count();
        assert!((35..=65).contains(&short), "{short} of 100 in `short`");
    }

    #[test]
    fn the_end_to_end_tests_customers_land_in_both_arms() {
        // tests/tests/examples.rs signs these up and expects both arms represented.
        let arms: Vec<&str> = ["ana", "ben", "cyd", "dee", "eli", "fay"]
            .iter()
            .map(|id| assign_arm(EXPERIMENT, id, "", &ARMS))
            .collect();
        assert!(
            arms.contains(&"control") && arms.contains(&"short"),
            "{arms:?}"
        );
    }

    #[test]
    fn a_recorded_arm_is_kept() {
        let ctx = signed_up("c-42").with_variant(EXPERIMENT, "short");
        let decision = AbWelcome::decide(&ctx).unwrap();
        assert_eq!(decision.sends().next().unwrap().1, "welcome_short");
    }

    #[test]
    fn activation_is_the_goal_milestone() {
        let ctx = Context::on_event(Event::new("activated"));
        let decision = AbWelcome::decide(&ctx).unwrap();
        assert_eq!(decision.milestones().collect::<Vec<_>>(), ["activated"]);
    }

    #[test]
    fn customers_who_never_activate_exit_after_two_weeks() {
        let decision = AbWelcome::decide(&Context::timer("expire")).unwrap();
        assert_eq!(decision.commands(), [Command::Exit("not_activated".into())]);
    }
}
