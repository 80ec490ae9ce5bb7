//! Audience: a journey entered only by the host's audience triggers (issue 12), for
//! `tests/tests/audience.rs`.
//!
//! - `quiet_7d`: none of `logged_in` for seven days.
//! - `pro_plan`: `plan == "pro"`, exiting with `unmatched:pro_plan` when that stops holding.
//! - `renewal_week`: seven days before `renews_at`, at 09:00 in the customer's time zone.
//! - `enterprise_account`: `account.plan == "enterprise"` (any member's `group` call changes it).
//!
//! On entry it reaches the milestone named as the trigger that entered it and keeps the
//! synthetic event's properties as its state (JSON), so a test reads both back.

use waymark_guest::prelude::*;
use waymark_guest::TimeOfDay;

/// The audience test journey.
pub struct Audience;

impl Journey for Audience {
    fn describe() -> Spec {
        Spec::new("Audience: entered by inactivity, a condition, or a date (audience tests)")
            .enter_when_inactive("quiet_7d", &["logged_in"], days(7))
            .enter_when("pro_plan", r#"plan == "pro""#, true)
            .enter_on_date("renewal_week", "renews_at", -7, TimeOfDay::hm(9, 0))
            .enter_when(
                "enterprise_account",
                r#"account.plan == "enterprise""#,
                false,
            )
            .milestone("quiet_7d", None)
            .milestone("pro_plan", None)
            .milestone("renewal_week", None)
            .milestone("enterprise_account", None)
            .reentry(Reentry::AfterExit)
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        Ok(match &ctx.trigger {
            Trigger::Entered(event) => Decision::new()
                .milestone(&event.name)
                .set_state_json(&event.properties),
            _ => Decision::new(),
        })
    }
}

waymark_guest::export_journey!(Audience);
