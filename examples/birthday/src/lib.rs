//! Birthday: a greeting at 09:00 on the customer's birthday in their own time zone, every year.
//!
//! - Entry: `identify`, once per customer ever: the journey is where every identified customer
//!   waits for their next birthday, for as long as they are a customer (it never ends by
//!   itself). Later `identify` events reach the run as events.
//! - Attributes: `birthday`, as `MM-DD` (`03-14`) or a date (`1990-03-14`, which also gives the
//!   age); `timezone`, an IANA name (UTC without one, or with a name the tz database does not
//!   know).
//! - Entered, and every `identify`: (re)arm timer `birthday` for the next 09:00 local on the
//!   birthday (February 29 falls on February 28 in common years). Only a different time becomes
//!   a command; a removed birthday cancels the timer.
//! - Timer `birthday`: send `birthday` through `email`, remember the year greeted, and re-arm for
//!   next year. Remembering the year keeps a customer who moves west on their birthday from
//!   being greeted twice.

use serde::{Deserialize, Serialize};
use waymark_guest::prelude::*;

/// The channel greetings go through.
pub const EMAIL: &str = "email";
/// The local time greetings go out at.
pub const GREET_AT: TimeOfDay = TimeOfDay::hm(9, 0);

/// What the journey remembers between birthdays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeted {
    /// The (local) year of the last birthday greeted.
    pub year: Option<i32>,
}

/// The birthday journey.
pub struct Birthday;

impl Journey for Birthday {
    fn describe() -> Spec {
        Spec::new("Birthday: a greeting at 09:00 local time on the customer's birthday, every year")
            .enter_on("identify")
            .reentry(Reentry::Never)
            .channel(EMAIL)
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        let greeted: Greeted = ctx.enrollment.state_json()?.unwrap_or_default();
        Ok(match &ctx.trigger {
            Trigger::Entered(_) => arm(ctx, greeted, Decision::new()),
            Trigger::Event(event) if event.is("identify") => arm(ctx, greeted, Decision::new()),
            Trigger::Timer(name) if name == "birthday" => greet(ctx),
            _ => Decision::new(),
        })
    }
}

/// The customer's zone: their `timezone`, else UTC.
fn zone(ctx: &Context) -> TimeZone {
    ctx.customer.time_zone().unwrap_or_default()
}

/// The next greeting strictly after now, skipping a birthday of the year already greeted.
pub fn next_greeting(ctx: &Context, greeted: Greeted) -> Option<Timestamp> {
    let day = ctx.customer.attribute_month_day("birthday")?;
    let zone = zone(ctx);
    let next = zone.next_yearly(ctx.now, day, GREET_AT);
    if Some(zone.date_of(next).year()) == greeted.year {
        Some(zone.next_yearly(next, day, GREET_AT))
    } else {
        Some(next)
    }
}

/// Sets the `birthday` timer to the next greeting, if that changes anything.
fn arm(ctx: &Context, greeted: Greeted, decision: Decision) -> Decision {
    let pending = ctx.enrollment.timer("birthday").map(|t| t.due);
    match (pending, next_greeting(ctx, greeted)) {
        (pending, Some(due)) if pending != Some(due) => decision.schedule("birthday", due),
        (Some(_), None) => decision.cancel("birthday"),
        _ => decision,
    }
}

fn greet(ctx: &Context) -> Decision {
    let Some(day) = ctx.customer.attribute_month_day("birthday") else {
        return Decision::new();
    };
    let today = zone(ctx).date_of(ctx.now);
    // The birthday just passed: this year's, unless the timer fired so late that it is
    // already the next year locally (e.g. a December 31 birthday).
    let year = if day.in_year(today.year()) <= today {
        today.year()
    } else {
        today.year() - 1
    };
    let age = match ctx.customer.attribute_moment("birthday") {
        Some(Moment::Date(born)) => Some(year - born.year()),
        _ => None,
    };
    let greeted = Greeted { year: Some(year) };
    let decision = Decision::new()
        .send(
            EMAIL,
            "birthday",
            json!({
                "customer_id": ctx.customer.id,
                "birthday": day.in_year(year).to_string(),
                "age": age,
            }),
        )
        .set_state_json(&greeted);
    arm(ctx, greeted, decision)
}

waymark_guest::export_journey!(Birthday);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    /// 2026-01-01T00:00:00Z.
    const JAN_1: Timestamp = 1_767_225_600_000;
    const HOUR: i64 = 3_600_000;

    fn customer(birthday: &str, timezone: Option<&str>) -> Customer {
        let customer = Customer::new("ada").with_attribute("birthday", json!(birthday));
        match timezone {
            Some(zone) => customer.with_attribute("timezone", json!(zone)),
            None => customer,
        }
    }

    fn identified(customer: Customer, now: Timestamp) -> Context {
        Context::entered(Event::new("identify"))
            .for_customer(customer)
            .at(now)
    }

    fn greeted(year: i32) -> Vec<u8> {
        serde_json::to_vec(&Greeted { year: Some(year) }).unwrap()
    }

    #[test]
    fn spec_enrolls_every_identified_customer_once() {
        let spec = Birthday::describe();
        assert_eq!(spec.entry[0].event, "identify");
        assert_eq!(spec.reentry, Reentry::Never);
        assert!(spec.goal.is_none());
    }

    #[test]
    fn the_greeting_is_armed_for_nine_in_the_customers_zone() {
        // March 14th, 09:00 in Tokyo (UTC+9) is 00:00 UTC; in UTC it is 09:00 UTC.
        let march_14 = JAN_1 + days(72);
        let tokyo = Birthday::decide(&identified(customer("03-14", Some("Asia/Tokyo")), JAN_1));
        assert_eq!(
            tokyo.unwrap().commands(),
            [Command::Schedule {
                name: "birthday".into(),
                due: march_14
            }]
        );
        let utc = Birthday::decide(&identified(customer("1990-03-14", None), JAN_1)).unwrap();
        assert_eq!(
            utc.schedules().collect::<Vec<_>>(),
            [("birthday", march_14 + 9 * HOUR)]
        );
    }

    #[test]
    fn daylight_saving_time_is_the_customers() {
        // July 1st, 09:00 in New York (EDT, UTC-4) is 13:00 UTC.
        let ctx = identified(customer("07-01", Some("America/New_York")), JAN_1);
        let decision = Birthday::decide(&ctx).unwrap();
        assert_eq!(
            decision.schedules().collect::<Vec<_>>(),
            [("birthday", JAN_1 + days(181) + 13 * HOUR)]
        );
    }

    #[test]
    fn a_birthday_already_past_this_year_is_armed_for_next_year() {
        let ctx = identified(customer("01-01", Some("Asia/Tokyo")), JAN_1 + HOUR);
        let decision = Birthday::decide(&ctx).unwrap();
        assert_eq!(
            decision.schedules().collect::<Vec<_>>(),
            [("birthday", JAN_1 + days(365))]
        );
    }

    #[test]
    fn without_a_birthday_nothing_is_armed_and_removing_it_cancels() {
        let none = Context::entered(Event::new("identify")).at(JAN_1);
        assert!(Birthday::decide(&none).unwrap().is_empty());
        let removed = Context::on_event(Event::new("identify")).with_timer("birthday", JAN_1 + 1);
        assert_eq!(
            Birthday::decide(&removed).unwrap().commands(),
            [Command::Cancel("birthday".into())]
        );
    }

    #[test]
    fn an_identify_that_changes_nothing_decides_nothing() {
        let ctx = Context::on_event(Event::new("identify"))
            .for_customer(customer("03-14", Some("Asia/Tokyo")))
            .at(JAN_1)
            .with_timer("birthday", JAN_1 + days(72));
        assert!(Birthday::decide(&ctx).unwrap().is_empty());
    }

    #[test]
    fn the_greeting_goes_out_and_the_next_year_is_armed() {
        let march_14 = JAN_1 + days(72);
        let ctx = Context::timer("birthday")
            .for_customer(customer("1990-03-14", Some("Asia/Tokyo")))
            .at(march_14);
        let decision = Birthday::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            [
                Command::Send {
                    channel: EMAIL.into(),
                    template: "birthday".into(),
                    payload: json!({"customer_id": "ada", "birthday": "2026-03-14", "age": 36}),
                },
                Command::SetState(greeted(2026)),
                Command::Schedule {
                    name: "birthday".into(),
                    due: march_14 + days(365)
                },
            ]
        );
    }

    #[test]
    fn a_month_day_birthday_has_no_age() {
        let ctx = Context::timer("birthday")
            .for_customer(customer("03-14", None))
            .at(JAN_1 + days(72) + 9 * HOUR);
        let decision = Birthday::decide(&ctx).unwrap();
        assert_eq!(decision.sends().next().unwrap().2["age"], Value::Null);
    }

    #[test]
    fn moving_west_on_the_birthday_does_not_greet_twice() {
        // Greeted at 09:00 in Tokyo; the customer then moves to New York, where it is still
        // the evening before. The next greeting is next year's.
        let greeted_at = JAN_1 + days(72);
        let ctx = Context::on_event(Event::new("identify"))
            .for_customer(customer("03-14", Some("America/New_York")))
            .at(greeted_at + HOUR)
            .with_state(greeted(2026))
            .with_timer("birthday", greeted_at + days(365));
        let decision = Birthday::decide(&ctx).unwrap();
        let (_, due) = decision
            .schedules()
            .next()
            .expect("re-armed for the new zone");
        assert_eq!(
            TimeZone::named("America/New_York")
                .unwrap()
                .date_of(due)
                .to_string(),
            "2027-03-14"
        );
    }

    #[test]
    fn a_leap_day_birthday_is_celebrated_on_february_28_in_common_years() {
        let ctx = identified(customer("2000-02-29", None), JAN_1);
        let decision = Birthday::decide(&ctx).unwrap();
        assert_eq!(
            decision.schedules().collect::<Vec<_>>(),
            [("birthday", JAN_1 + days(58) + 9 * HOUR)]
        );
    }
}
