//! The renewal journey's logic (everything but the component's export), kept in its own file
//! so that a variation (`tests/guests/renewal-early`, a backtest's candidate) can include it
//! with other reminder days and export its own journey.

use waymark_guest::prelude::*;

/// The channel reminders go through.
pub const EMAIL: &str = "email";
/// Days before the renewal date on which a reminder goes out.
pub const REMIND_DAYS_BEFORE: [i64; 3] = [30, 14, 3];
/// The local time reminders go out at.
pub const SEND_AT: TimeOfDay = TimeOfDay::hm(9, 0);
/// Days after the renewal date the run waits for `renewed` before it gives up.
pub const LAPSE_AFTER_DAYS: i64 = 7;

/// The renewal journey.
pub struct Renewal;

impl Journey for Renewal {
    fn describe() -> Spec {
        spec("Renewal: reminders 30, 14 and 3 days before the renewal date, at 09:00 local")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        decide_with(ctx, &REMIND_DAYS_BEFORE)
    }
}

/// The journey's spec, under `description`: a variation with other reminder days (a test's
/// backtest candidate) declares the same entry, exits and channel.
pub fn spec(description: &str) -> Spec {
    Spec::new(description)
        .enter_on("renewal_scheduled")
        .exit_on("renewed")
        .exit_on("cancelled")
        .reentry(Reentry::AfterExit)
        .channel(EMAIL)
}

/// The journey's decision with reminders `days` days before the renewal date.
pub fn decide_with(ctx: &Context, days: &[i64]) -> Result<Decision, String> {
    Ok(match &ctx.trigger {
        Trigger::Entered(_) => plan_with(ctx, days),
        Trigger::Event(event) if event.is("identify") => plan_with(ctx, days),
        Trigger::Timer(name) if name == "lapsed" => Decision::new().exit("not_renewed"),
        Trigger::Timer(name) => match reminder_days(name, days) {
            Some(days_before) => Decision::new().send(
                EMAIL,
                "renewal_reminder",
                json!({
                    "customer_id": ctx.customer.id,
                    "days_before": days_before,
                    "renewal_date": renewal_date(ctx).map(|(d, _)| d.to_string()),
                }),
            ),
            None => Decision::new(),
        },
        _ => Decision::new(),
    })
}

/// The renewal date on the customer's calendar, and their zone.
fn renewal_date(ctx: &Context) -> Option<(Date, TimeZone)> {
    let zone = ctx.customer.time_zone().unwrap_or_default();
    let date = ctx.customer.attribute_moment("renewal_date")?.date_in(zone);
    Some((date, zone))
}

fn timer_name(days_before: i64) -> String {
    format!("remind_{days_before}")
}

fn reminder_days(timer: &str, days: &[i64]) -> Option<i64> {
    let n = timer.strip_prefix("remind_")?.parse().ok()?;
    days.contains(&n).then_some(n)
}

/// The timers as they should be for the customer's current renewal date: each pending at its
/// time, or not at all. Only differences become commands, so an `identify` that changes
/// nothing relevant decides nothing.
pub fn plan(ctx: &Context) -> Decision {
    plan_with(ctx, &REMIND_DAYS_BEFORE)
}

/// [`plan`] with reminders `days` days before the renewal date.
pub fn plan_with(ctx: &Context, days: &[i64]) -> Decision {
    let wanted: Vec<(String, Option<Timestamp>)> = match renewal_date(ctx) {
        Some((date, zone)) => days
            .iter()
            .map(|&n| (timer_name(n), Some(zone.at(date.add_days(-n), SEND_AT))))
            .chain([(
                "lapsed".to_string(),
                Some(zone.at(date.add_days(LAPSE_AFTER_DAYS), SEND_AT)),
            )])
            .map(|(name, due)| (name, due.filter(|due| *due > ctx.now)))
            .collect(),
        None => days
            .iter()
            .map(|&n| timer_name(n))
            .chain(["lapsed".to_string()])
            .map(|name| (name, None))
            .collect(),
    };
    wanted
        .into_iter()
        .fold(Decision::new(), |decision, (name, due)| {
            let pending = ctx.enrollment.timer(&name).map(|t| t.due);
            match (pending, due) {
                (pending, Some(due)) if pending != Some(due) => decision.schedule(name, due),
                (Some(_), None) => decision.cancel(name),
                _ => decision,
            }
        })
}
