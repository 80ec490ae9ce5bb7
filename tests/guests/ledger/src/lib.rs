//! Ledger: a journey that writes down everything that happens to it, for the crash test.
//!
//! - Entry: `tick`, once per customer; every later `tick` reaches the same enrollment.
//! - Each `tick` (the entering one included) appends `e:<event id>` to the state, sends
//!   `ack` through `webhook` with the event id, and schedules timer `t:<event id>` one hour out.
//! - Each timer appends `<timer name>` to the state.
//!
//! The state is the ledger: one entry per line. After any number of crashes, every
//! acknowledged event must appear in it exactly once, and so must each of its timers once
//! they are due; every `ack` must be in the outbox exactly once.

use waymark_guest::prelude::*;

/// How long after its event each timer is due.
pub const TIMER_AFTER: waymark_guest::Duration = hours(1);

/// The ledger journey.
pub struct Ledger;

/// The state with one more line.
fn append(state: &[u8], line: &str) -> Vec<u8> {
    let mut next = state.to_vec();
    if !next.is_empty() {
        next.push(b'\n');
    }
    next.extend_from_slice(line.as_bytes());
    next
}

impl Journey for Ledger {
    fn describe() -> Spec {
        Spec::new("Ledger: records every event and timer in the state (crash test)")
            .enter_on("tick")
            .reentry(Reentry::Never)
            .channel("webhook")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        let state = &ctx.enrollment.state;
        Ok(match &ctx.trigger {
            Trigger::Entered(event) | Trigger::Event(event) if event.is("tick") => Decision::new()
                .set_state(append(state, &format!("e:{}", event.id)))
                .send("webhook", "ack", json!({ "event": event.id }))
                .schedule_in(format!("t:{}", event.id), TIMER_AFTER, ctx),
            Trigger::Timer(name) => Decision::new().set_state(append(state, name)),
            _ => Decision::new(),
        })
    }
}

waymark_guest::export_journey!(Ledger);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    const NOW: Timestamp = 1_700_000_000_000;

    fn tick(id: &str) -> Event {
        Event::new("tick").with_id(id).at(NOW)
    }

    #[test]
    fn a_tick_is_recorded_acknowledged_and_gets_a_timer() {
        let ctx = Context::entered(tick("e1")).at(NOW);
        let decision = Ledger::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            &[
                Command::SetState(b"e:e1".to_vec()),
                Command::Send {
                    channel: "webhook".into(),
                    template: "ack".into(),
                    payload: json!({"event": "e1"}),
                },
                Command::Schedule {
                    name: "t:e1".into(),
                    due: NOW + hours(1),
                },
            ]
        );
    }

    #[test]
    fn later_ticks_and_timers_append_to_the_ledger() {
        let mut enrollment = Enrollment::new("ledger", "c1");
        enrollment.state = b"e:e1".to_vec();
        let ctx = Context::on_event(tick("e2"))
            .with_enrollment(enrollment.clone())
            .at(NOW);
        let decision = Ledger::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands()[0],
            Command::SetState(b"e:e1\ne:e2".to_vec())
        );

        let ctx = Context::timer("t:e1").with_enrollment(enrollment).at(NOW);
        let decision = Ledger::decide(&ctx).unwrap();
        assert_eq!(
            decision.commands(),
            &[Command::SetState(b"e:e1\nt:e1".to_vec())]
        );
    }
}
