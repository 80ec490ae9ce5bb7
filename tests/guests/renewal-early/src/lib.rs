//! `examples/renewal` with its reminders moved: 21, 7 and 1 days before the renewal date
//! instead of 30, 14 and 3. Everything else (entry, exits, the 09:00 local send time, the
//! lapse) is the example's own code; `tests/tests/backtests.rs` backtests it against the
//! example as the live version.

use waymark_guest::prelude::*;

/// The example's own logic, compiled into this component (a dependency on the example's crate
/// would link its export too).
/// The example's own `Renewal` and its 30/14/3 days go unused here.
#[path = "../../../../examples/renewal/src/journey.rs"]
#[allow(dead_code)]
mod renewal;

/// Days before the renewal date on which a reminder goes out in this variation.
pub const REMIND_DAYS_BEFORE: [i64; 3] = [21, 7, 1];

/// The renewal journey with earlier-or-later reminders.
pub struct RenewalEarly;

impl Journey for RenewalEarly {
    fn describe() -> Spec {
        renewal::spec("Renewal: reminders 21, 7 and 1 days before the renewal date, at 09:00 local")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        renewal::decide_with(ctx, &REMIND_DAYS_BEFORE)
    }
}

waymark_guest::export_journey!(RenewalEarly);
