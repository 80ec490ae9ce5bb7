//! Renewal reminders: 30, 14 and 3 days before the customer's renewal date, at 09:00 in their
//! own time zone.
//!
//! - Entry: `renewal_scheduled`, which the billing system posts whenever a subscription's next
//!   renewal is set (at purchase, and after each renewal); again once the previous run ended.
//! - Exit events: `renewed` and `cancelled` end the run and cancel the reminders left.
//! - The date is the customer's attribute `renewal_date` (set with `identify`): a date
//!   `2026-07-01` or a timestamp (RFC 3339 text or milliseconds), whose date is taken in the
//!   customer's `timezone` (UTC without one).
//! - Entered, and every `identify` while enrolled: plan timers `remind_30`, `remind_14` and
//!   `remind_3` at 09:00 local on those days before the renewal date, leaving out the ones
//!   already past, and `lapsed` a week after the renewal date. A changed date or zone moves
//!   them; without a date there is nothing to plan until one arrives.
//! - Timer `remind_N`: send `renewal_reminder` through `email` with `days_before: N`.
//! - Timer `lapsed`: the renewal date passed without `renewed`: exit with `not_renewed`.

mod journey;
pub use journey::*;
#[cfg(test)]
use waymark_guest::prelude::*;

waymark_guest::export_journey!(Renewal);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    /// 2026-05-01T00:00:00Z.
    const MAY_1: Timestamp = 1_777_593_600_000;
    const HOUR: i64 = 3_600_000;

    fn customer(renewal_date: Value) -> Customer {
        Customer::new("ada").with_attribute("renewal_date", renewal_date)
    }

    fn entered(customer: Customer, now: Timestamp) -> Context {
        Context::entered(Event::new("renewal_scheduled"))
            .for_customer(customer)
            .at(now)
    }

    fn schedules(decision: &Decision) -> Vec<(&str, Timestamp)> {
        decision.schedules().collect()
    }

    #[test]
    fn spec_enters_on_a_scheduled_renewal_and_exits_on_renewed() {
        let spec = Renewal::describe();
        assert_eq!(spec.entry[0].event, "renewal_scheduled");
        assert_eq!(spec.exit_on, ["renewed", "cancelled"]);
        assert_eq!(spec.reentry, Reentry::AfterExit);
        assert_eq!(spec.channels, [EMAIL]);
    }

    #[test]
    fn reminders_are_planned_at_nine_utc_for_a_customer_without_a_zone() {
        // Renewal on 2026-07-01: reminders on 06-01, 06-17 and 06-28.
        let ctx = entered(customer(json!("2026-07-01")), MAY_1);
        let decision = Renewal::decide(&ctx).unwrap();
        let day = days(1);
        assert_eq!(
            schedules(&decision),
            [
                ("remind_30", MAY_1 + 31 * day + 9 * HOUR),
                ("remind_14", MAY_1 + 47 * day + 9 * HOUR),
                ("remind_3", MAY_1 + 58 * day + 9 * HOUR),
                ("lapsed", MAY_1 + 68 * day + 9 * HOUR),
            ]
        );
        assert_eq!(decision.sends().count(), 0);
    }

    #[test]
    fn reminders_go_out_at_nine_in_the_customers_own_zone() {
        // New York is UTC-4 in June: 09:00 there is 13:00 UTC.
        let ny =
            customer(json!("2026-07-01")).with_attribute("timezone", json!("America/New_York"));
        let decision = Renewal::decide(&entered(ny, MAY_1)).unwrap();
        assert_eq!(
            schedules(&decision)[0],
            ("remind_30", MAY_1 + 31 * days(1) + 13 * HOUR)
        );
    }

    #[test]
    fn a_timestamp_renewal_date_counts_by_its_date_in_the_customers_zone() {
        // 2026-06-30T20:00:00Z is already July 1st in Tokyo, where 09:00 is 00:00 UTC.
        let tokyo =
            customer(json!("2026-06-30T20:00:00Z")).with_attribute("timezone", json!("Asia/Tokyo"));
        let decision = Renewal::decide(&entered(tokyo, MAY_1)).unwrap();
        assert_eq!(schedules(&decision)[0], ("remind_30", MAY_1 + 31 * days(1)));
    }

    #[test]
    fn reminders_already_past_are_left_out() {
        // Twenty days before the renewal: the 30-day reminder is history.
        let now = MAY_1 + 41 * days(1);
        let decision = Renewal::decide(&entered(customer(json!("2026-07-01")), now)).unwrap();
        assert_eq!(
            schedules(&decision)
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>(),
            ["remind_14", "remind_3", "lapsed"]
        );
    }

    #[test]
    fn a_changed_date_moves_the_reminders_and_an_unchanged_one_decides_nothing() {
        let planned = Renewal::decide(&entered(customer(json!("2026-07-01")), MAY_1)).unwrap();
        let mut ctx = Context::on_event(Event::new("identify"))
            .for_customer(customer(json!("2026-07-01")))
            .at(MAY_1 + days(1));
        for (name, due) in schedules(&planned) {
            ctx = ctx.with_timer(name, due);
        }
        assert!(Renewal::decide(&ctx).unwrap().is_empty());

        ctx.customer = customer(json!("2026-07-08"));
        let moved = Renewal::decide(&ctx).unwrap();
        assert_eq!(
            schedules(&moved),
            schedules(&planned)
                .iter()
                .map(|(name, due)| (*name, due + days(7)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_removed_date_cancels_what_is_pending() {
        let ctx = Context::on_event(Event::new("identify"))
            .with_timer("remind_14", MAY_1 + days(47))
            .with_timer("lapsed", MAY_1 + days(68));
        let decision = Renewal::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            [
                Command::Cancel("remind_14".into()),
                Command::Cancel("lapsed".into())
            ]
        );
    }

    #[test]
    fn without_a_renewal_date_nothing_is_planned() {
        let ctx = entered(Customer::new("ada"), MAY_1);
        assert!(Renewal::decide(&ctx).unwrap().is_empty());
        let garbled = entered(customer(json!("next summer")), MAY_1);
        assert!(Renewal::decide(&garbled).unwrap().is_empty());
    }

    #[test]
    fn a_reminder_timer_sends_the_reminder_with_its_distance() {
        let ctx = Context::timer("remind_14")
            .for_customer(customer(json!("2026-07-01")))
            .at(MAY_1 + days(47));
        let decision = Renewal::decide(&ctx).unwrap();
        assert_eq!(
            decision.sends().collect::<Vec<_>>(),
            [(
                EMAIL,
                "renewal_reminder",
                &json!({"customer_id": "ada", "days_before": 14, "renewal_date": "2026-07-01"})
            )]
        );
    }

    #[test]
    fn a_renewal_date_that_passes_without_renewed_exits() {
        let decision = Renewal::decide(&Context::timer("lapsed")).unwrap();
        assert_eq!(decision.commands(), [Command::Exit("not_renewed".into())]);
    }

    #[test]
    fn unknown_timers_and_events_do_nothing() {
        for ctx in [
            Context::timer("remind_7"),
            Context::timer("remind_x"),
            Context::on_event(Event::new("page_viewed")),
        ] {
            assert!(Renewal::decide(&ctx).unwrap().is_empty());
        }
    }
}
