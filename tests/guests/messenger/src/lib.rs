//! Messenger: a journey that sends what it is told, for the in-app inbox and unsubscribe tests
//! (issue 11).
//!
//! - Entry: `notify`, once per customer; every later event reaches the same enrollment.
//! - Each `notify` sends through the channel named by its property `channel` (`inapp`,
//!   `webhook`, `email` or `sms`, the ones it declares) with template `template` (default `note`) and, as the
//!   payload, its property `payload` (default `{}`).
//! - Every other event that names a message (`clicked`, `opened`, `unsubscribed`, ...) is
//!   written down in the state as `<event name>:<message id>`, one per line: what the journey
//!   heard, for the tests to read back.
//! - A delivery that failed is written down as `delivery_failed:<message id>`, or
//!   `delivery_suppressed:<message id>` when the host did not attempt it because its address
//!   was suppressed.

use waymark_guest::prelude::*;

/// The messenger journey.
pub struct Messenger;

/// The state with one more line.
fn append(state: &[u8], line: &str) -> Vec<u8> {
    let mut next = state.to_vec();
    if !next.is_empty() {
        next.push(b'\n');
    }
    next.extend_from_slice(line.as_bytes());
    next
}

impl Journey for Messenger {
    fn describe() -> Spec {
        Spec::new("Messenger: sends what each notify event asks for (inbox tests)")
            .enter_on("notify")
            .reentry(Reentry::Never)
            .channel("inapp")
            .channel("webhook")
            // Provider feedback (issue 11): the email and SMS plugins' webhooks.
            .channel("email")
            .channel("sms")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        Ok(match &ctx.trigger {
            Trigger::Entered(event) | Trigger::Event(event) if event.is("notify") => {
                let channel = event.property_str("channel").unwrap_or("inapp");
                let template = event.property_str("template").unwrap_or("note");
                let payload = event.property("payload").cloned().unwrap_or(json!({}));
                Decision::new().send(channel, template, payload)
            }
            Trigger::Event(event) => match event.property_str("message_id") {
                Some(message) => Decision::new().set_state(append(
                    &ctx.enrollment.state,
                    &format!("{}:{message}", event.name),
                )),
                None => Decision::new(),
            },
            Trigger::Delivery(report) if report.outcome.is_suppressed() => Decision::new()
                .set_state(append(
                    &ctx.enrollment.state,
                    &format!("delivery_suppressed:{}", report.message_id),
                )),
            Trigger::Delivery(DeliveryReport {
                message_id,
                outcome: DeliveryOutcome::Failed(_),
                ..
            }) => Decision::new().set_state(append(
                &ctx.enrollment.state,
                &format!("delivery_failed:{message_id}"),
            )),
            _ => Decision::new(),
        })
    }
}

waymark_guest::export_journey!(Messenger);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    #[test]
    fn a_notify_sends_what_it_names_and_engagement_is_written_down() {
        let notify = Event::new("notify").with_id("n1").with_properties(json!({
            "channel": "webhook", "template": "t", "payload": {"topic": "billing"}
        }));
        let decision = Messenger::decide(&Context::entered(notify)).unwrap();
        assert_eq!(
            decision.commands(),
            &[Command::Send {
                channel: "webhook".into(),
                template: "t".into(),
                payload: json!({"topic": "billing"}),
            }]
        );
        let clicked = Event::new("clicked")
            .with_id("c1")
            .with_properties(json!({"message_id": "m1"}));
        let mut enrollment = Enrollment::new("messenger", "c1");
        enrollment.state = b"opened:m0".to_vec();
        let decision =
            Messenger::decide(&Context::on_event(clicked).with_enrollment(enrollment)).unwrap();
        assert_eq!(
            decision.commands(),
            &[Command::SetState(b"opened:m0\nclicked:m1".to_vec())]
        );
    }
}
