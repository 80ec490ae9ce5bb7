//! Onboarding, version 2: the nudge comes one day after sign-up instead of three. Enrollments
//! of version 1 moved to it (`POST /v1/journeys/{name}/migrate`) are adapted by [`migrate`]:
//! their pending `nudge` is moved to one day after they entered (or now, if that has passed),
//! and their state records the version they came from. A customer on the `legacy` plan is
//! refused (`Err`); one whose `crash` attribute is true makes `migrate` panic (a trap). Both
//! stay on version 1, untouched.
//!
//! [`migrate`]: Journey::migrate

use waymark_guest::prelude::*;

/// How long a new customer gets before the nudge, in this version.
pub const NUDGE_AFTER: waymark_guest::Duration = days(1);

/// Onboarding, version 2.
pub struct OnboardingV2;

impl Journey for OnboardingV2 {
    fn describe() -> Spec {
        Spec::new("Onboarding v2: welcome new signups, nudge them after one day")
            .enter_on("signed_up")
            .milestone("first_value", None)
            .goal("first_value")
            .reentry(Reentry::Never)
            .channel("webhook")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        Ok(match &ctx.trigger {
            Trigger::Entered(_) => Decision::new()
                .send(
                    "webhook",
                    "welcome",
                    json!({ "customer_id": ctx.customer.id }),
                )
                .schedule_in("nudge", NUDGE_AFTER, ctx),
            Trigger::Event(event) if event.is("first_value") => {
                Decision::new().milestone("first_value").complete()
            }
            Trigger::Timer(name) if name == "nudge" => Decision::new().send(
                "webhook",
                "nudge",
                json!({ "customer_id": ctx.customer.id, "version": 2 }),
            ),
            _ => Decision::new(),
        })
    }

    fn migrate(m: &Migration) -> Result<Decision, String> {
        if m.customer.attribute("crash") == Some(&json!(true)) {
            panic!("migrate was told to crash for {}", m.customer.id);
        }
        if m.customer.attribute("plan") == Some(&json!("legacy")) {
            return Err(format!(
                "{} is on the legacy plan, which version 2 does not serve",
                m.customer.id
            ));
        }
        let mut decision =
            Decision::new().set_state_json(&json!({ "migrated_from": m.from_version }));
        if m.enrollment.timers.iter().any(|t| t.name == "nudge") {
            let due = (m.enrollment.entered_at + NUDGE_AFTER).max(m.now);
            decision = decision.schedule("nudge", due);
        }
        Ok(decision)
    }
}

waymark_guest::export_journey!(OnboardingV2);
