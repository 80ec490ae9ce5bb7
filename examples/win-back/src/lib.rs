//! Win-back: a customer who has been inactive for 30 days gets an email; if they do not open
//! it within three days, an SMS. Coming back ends the journey.
//!
//! - Entry: the host's inactivity trigger `inactive_30d` (issue 12): a customer the host has
//!   seen no event from for 30 days enters with a synthetic `inactive_30d` event whose
//!   `last_seen_at` is their last activity; again after an earlier run has ended, for the next
//!   lapse.
//! - Exit events: `logged_in` and `purchased` end the run at once, whatever it is waiting for
//!   (the host cancels its timers); the report counts them as `exit_event:logged_in` and
//!   `exit_event:purchased`, the journey's successes.
//! - Entered: send `win_back` through `email`; schedule `sms_fallback` three days out.
//! - `opened` or `clicked` (an engagement event naming one of this run's messages, which the
//!   host hands to this run only): record milestone `email_engaged` and cancel the SMS.
//! - Timer `sms_fallback`: send `win_back_sms` through `sms` (its own template name: a stored
//!   template is written for one kind of channel, so the email's and the SMS's copy differ).
//! - The email fails for good (a `delivery` report with a failed outcome: the address bounced,
//!   retries ran out): switch channel at once — send the SMS now instead of in three days.
//! - After the last message, the run waits `GIVE_UP_AFTER` for the customer to come back, then
//!   exits with reason `no_response`, so that a later lapse can enter again.

use waymark_guest::prelude::*;

/// The first message's channel.
pub const EMAIL: &str = "email";
/// The fallback's channel.
pub const SMS: &str = "sms";
/// The SMS's template (the email's is `win_back`).
pub const SMS_TEMPLATE: &str = "win_back_sms";
/// How long a customer does nothing before the run starts.
pub const INACTIVE_FOR: waymark_guest::Duration = days(30);
/// How long the email has to be opened before the SMS goes out.
pub const SMS_AFTER: waymark_guest::Duration = days(3);
/// How long the run waits for the customer to come back after its last message.
pub const GIVE_UP_AFTER: waymark_guest::Duration = days(14);

/// The win-back journey.
pub struct WinBack;

impl Journey for WinBack {
    fn describe() -> Spec {
        Spec::new("Win-back: email customers inactive for 30 days, SMS those who do not open it")
            .enter_when_inactive("inactive_30d", &[], INACTIVE_FOR)
            .exit_on("logged_in")
            .exit_on("purchased")
            .milestone("email_engaged", None)
            .reentry(Reentry::AfterExit)
            .channel(EMAIL)
            .channel(SMS)
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        Ok(match &ctx.trigger {
            Trigger::Entered(lapse) => Decision::new()
                .send(
                    EMAIL,
                    "win_back",
                    json!({
                        "customer_id": ctx.customer.id,
                        "last_seen_at": lapse.property("last_seen_at"),
                    }),
                )
                .schedule_in("sms_fallback", SMS_AFTER, ctx),
            Trigger::Event(event) if is_engagement(event) => {
                let engaged = Decision::new().milestone("email_engaged");
                if ctx.enrollment.timer("sms_fallback").is_some() {
                    engaged
                        .cancel("sms_fallback")
                        .schedule_in("give_up", GIVE_UP_AFTER, ctx)
                } else {
                    engaged
                }
            }
            Trigger::Delivery(report)
                if report.channel == EMAIL
                    && !report.is_delivered()
                    && ctx.enrollment.timer("sms_fallback").is_some() =>
            {
                Decision::new()
                    .cancel("sms_fallback")
                    .send(SMS, SMS_TEMPLATE, json!({ "customer_id": ctx.customer.id }))
                    .schedule_in("give_up", GIVE_UP_AFTER, ctx)
            }
            Trigger::Timer(name) if name == "sms_fallback" => Decision::new()
                .send(SMS, SMS_TEMPLATE, json!({ "customer_id": ctx.customer.id }))
                .schedule_in("give_up", GIVE_UP_AFTER, ctx),
            Trigger::Timer(name) if name == "give_up" => Decision::new().exit("no_response"),
            _ => Decision::new(),
        })
    }
}

/// An open or a click of one of the customer's messages. The host hands engagement naming a
/// message only to the run that sent it; one without a `message_id` is not engagement.
fn is_engagement(event: &Event) -> bool {
    (event.is("opened") || event.is("clicked")) && event.property_str("message_id").is_some()
}

waymark_guest::export_journey!(WinBack);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    const LAPSED_AT: Timestamp = 1_700_000_000_000;

    fn opened() -> Event {
        Event::new("opened").with_property("message_id", json!("acme/win-back/1/ada/1/e-1/0"))
    }

    #[test]
    fn spec_enters_on_inactivity_and_exits_on_reactivation() {
        let spec = WinBack::describe();
        assert!(
            spec.entry.is_empty(),
            "entered by the host, not by a posted event"
        );
        assert_eq!(
            spec.audience,
            [waymark_guest::AudienceTrigger::Inactive {
                name: "inactive_30d".into(),
                events: vec![],
                quiet_for: days(30),
            }]
        );
        assert_eq!(spec.exit_on, ["logged_in", "purchased"]);
        assert_eq!(spec.reentry, Reentry::AfterExit);
        assert_eq!(spec.channels, [EMAIL, SMS]);
        assert_eq!(spec.milestones[0].name, "email_engaged");
        assert_eq!(
            spec.goal, None,
            "coming back is an exit event, not a milestone"
        );
    }

    #[test]
    fn a_lapsed_customer_gets_an_email_and_an_sms_fallback_is_scheduled() {
        let lapse = Event::new("inactive_30d").with_property("last_seen_at", json!(42));
        let ctx = Context::entered(lapse).at(LAPSED_AT);
        let decision = WinBack::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            [
                Command::Send {
                    channel: EMAIL.into(),
                    template: "win_back".into(),
                    payload: json!({"customer_id": "customer-1", "last_seen_at": 42}),
                },
                Command::Schedule {
                    name: "sms_fallback".into(),
                    due: LAPSED_AT + days(3)
                },
            ]
        );
    }

    #[test]
    fn a_failed_email_switches_to_sms_at_once() {
        let failed = DeliveryReport::failed(EMAIL, "win_back", "permanent: 410 gone");
        let ctx = Context::delivery(failed)
            .at(LAPSED_AT + 1_000)
            .with_timer("sms_fallback", LAPSED_AT + days(3));
        let decision = WinBack::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            [
                Command::Cancel("sms_fallback".into()),
                Command::Send {
                    channel: SMS.into(),
                    template: SMS_TEMPLATE.into(),
                    payload: json!({"customer_id": "customer-1"}),
                },
                Command::Schedule {
                    name: "give_up".into(),
                    due: LAPSED_AT + 1_000 + GIVE_UP_AFTER
                },
            ]
        );
        // A delivered email, or one whose fallback already went, changes nothing.
        let delivered = Context::delivery(DeliveryReport::delivered(EMAIL, "win_back"))
            .with_timer("sms_fallback", LAPSED_AT + days(3));
        assert!(WinBack::decide(&delivered).unwrap().is_empty());
        let late = Context::delivery(DeliveryReport::failed(EMAIL, "win_back", "x"));
        assert!(WinBack::decide(&late).unwrap().is_empty());
    }

    #[test]
    fn opening_the_email_cancels_the_sms() {
        let ctx = Context::on_event(opened())
            .at(LAPSED_AT + days(1))
            .with_timer("sms_fallback", LAPSED_AT + days(3));
        let decision = WinBack::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            [
                Command::Milestone("email_engaged".into()),
                Command::Cancel("sms_fallback".into()),
                Command::Schedule {
                    name: "give_up".into(),
                    due: LAPSED_AT + days(1) + GIVE_UP_AFTER
                },
            ]
        );
    }

    #[test]
    fn a_click_counts_as_engagement_too_and_a_late_open_keeps_the_give_up_timer() {
        let clicked = Event::new("clicked").with_property("message_id", json!("m"));
        let late = Context::on_event(clicked).with_timer("give_up", LAPSED_AT + days(17));
        let decision = WinBack::decide(&late).unwrap();
        assert_eq!(
            decision.commands(),
            [Command::Milestone("email_engaged".into())]
        );
    }

    #[test]
    fn an_open_without_a_message_is_not_engagement() {
        let ctx = Context::on_event(Event::new("opened")).with_timer("sms_fallback", 1);
        assert!(WinBack::decide(&ctx).unwrap().is_empty());
    }

    #[test]
    fn no_open_within_three_days_sends_the_sms_then_waits_to_give_up() {
        let at = LAPSED_AT + days(3);
        let ctx = Context::timer("sms_fallback").at(at);
        let decision = WinBack::decide(&ctx).unwrap();
        assert_eq!(
            decision.sends().map(|(c, t, _)| (c, t)).collect::<Vec<_>>(),
            [(SMS, SMS_TEMPLATE)]
        );
        assert_eq!(
            decision.schedules().collect::<Vec<_>>(),
            [("give_up", at + GIVE_UP_AFTER)]
        );
    }

    #[test]
    fn giving_up_exits_so_a_later_lapse_can_enter_again() {
        let decision = WinBack::decide(&Context::timer("give_up")).unwrap();
        assert_eq!(decision.commands(), [Command::Exit("no_response".into())]);
    }

    #[test]
    fn other_triggers_do_nothing() {
        for ctx in [
            Context::on_event(Event::new("page_viewed")),
            Context::timer("unknown"),
            Context::delivery(DeliveryReport::delivered(EMAIL, "win_back")),
        ] {
            assert!(WinBack::decide(&ctx).unwrap().is_empty());
        }
    }
}
