//! Post-purchase: every order gets its own run: a thank-you, a review request a week later,
//! and a cross-sell a week after that.
//!
//! - Entry: `order_placed` with property `order_id`. Re-entry is keyed by `order_id`: each
//!   distinct order starts its own run beside the customer's other orders' runs, and the same
//!   order never starts a second one (a retried event under a new id included).
//! - Entered: send `thank_you` through `email`; schedule `review_request` 7 days and
//!   `cross_sell` 14 days out. The run keeps its order id in its state.
//! - The customer's events reach all of their running orders, so each run acts only on events
//!   whose `order_id` is its own:
//!   - `review_submitted`: milestone `reviewed`; the review request is no longer needed.
//!   - `order_returned`: exit with `order_returned` (a spec exit event would end every order's
//!     run, so the journey decides this one itself).
//! - Timer `review_request`: send `review_request`. Timer `cross_sell`: send `cross_sell`
//!   (with the order's `category`, if it had one) and complete.

use serde::{Deserialize, Serialize};
use waymark_guest::prelude::*;

/// The channel every message goes through.
pub const EMAIL: &str = "email";
/// When the review request goes out, after the order.
pub const REVIEW_AFTER: waymark_guest::Duration = days(7);
/// When the cross-sell goes out, after the order.
pub const CROSS_SELL_AFTER: waymark_guest::Duration = days(14);

/// What a run remembers: its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id, as `order_placed` named it.
    pub order_id: String,
    /// The order's product category, for the cross-sell.
    pub category: Option<String>,
}

/// The post-purchase journey.
pub struct PostPurchase;

impl Journey for PostPurchase {
    fn describe() -> Spec {
        Spec::new("Post-purchase: thank-you, review request after a week, cross-sell after two")
            .enter_on("order_placed")
            .milestone("reviewed", None)
            .reentry(Reentry::Keyed("order_id".into()))
            .channel(EMAIL)
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        if let Trigger::Entered(placed) = &ctx.trigger {
            let Some(order_id) = order_id(placed) else {
                // The host keys runs by this property, so it is there; guard anyway.
                return Ok(Decision::new().exit("no_order_id"));
            };
            let order = Order {
                order_id,
                category: placed.property_str("category").map(str::to_string),
            };
            return Ok(Decision::new()
                .send(EMAIL, "thank_you", payload(ctx, &order))
                .schedule_in("review_request", REVIEW_AFTER, ctx)
                .schedule_in("cross_sell", CROSS_SELL_AFTER, ctx)
                .set_state_json(&order));
        }
        let order: Order = ctx
            .enrollment
            .state_json()?
            .ok_or("a post-purchase run without its order")?;
        Ok(match &ctx.trigger {
            Trigger::Event(event) if order_id(event).as_deref() != Some(&order.order_id) => {
                Decision::new()
            }
            Trigger::Event(event) if event.is("review_submitted") => Decision::new()
                .milestone("reviewed")
                .cancel("review_request"),
            Trigger::Event(event) if event.is("order_returned") => {
                Decision::new().exit("order_returned")
            }
            Trigger::Timer(name) if name == "review_request" => {
                Decision::new().send(EMAIL, "review_request", payload(ctx, &order))
            }
            Trigger::Timer(name) if name == "cross_sell" => Decision::new()
                .send(EMAIL, "cross_sell", payload(ctx, &order))
                .complete(),
            _ => Decision::new(),
        })
    }
}

/// The event's `order_id`, as the host keys runs by it: a string, or a number as text.
fn order_id(event: &Event) -> Option<String> {
    match event.property("order_id")? {
        Value::String(id) => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn payload(ctx: &Context, order: &Order) -> Value {
    json!({
        "customer_id": ctx.customer.id,
        "order_id": order.order_id,
        "category": order.category,
    })
}

waymark_guest::export_journey!(PostPurchase);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Command;

    const PLACED_AT: Timestamp = 1_700_000_000_000;

    fn placed(order_id: Value) -> Event {
        Event::new("order_placed")
            .with_property("order_id", order_id)
            .with_property("category", json!("tents"))
    }

    fn running(order_id: &str) -> Context {
        let order = Order {
            order_id: order_id.into(),
            category: Some("tents".into()),
        };
        Context::timer("placeholder").with_state(serde_json::to_vec(&order).unwrap())
    }

    fn on(ctx: Context, trigger: Trigger) -> Context {
        Context { trigger, ..ctx }
    }

    fn event_for(name: &str, order_id: &str) -> Trigger {
        Trigger::Event(Event::new(name).with_property("order_id", json!(order_id)))
    }

    #[test]
    fn spec_keys_runs_by_order_id() {
        let spec = PostPurchase::describe();
        assert_eq!(spec.entry[0].event, "order_placed");
        assert_eq!(spec.reentry, Reentry::Keyed("order_id".into()));
        assert!(
            spec.exit_on.is_empty(),
            "exits are per order, decided by the run"
        );
    }

    #[test]
    fn an_order_is_thanked_and_its_follow_ups_scheduled() {
        let ctx = Context::entered(placed(json!("o-1"))).at(PLACED_AT);
        let decision = PostPurchase::decide(&ctx).unwrap();
        assert_eq!(
            decision.sends().collect::<Vec<_>>(),
            [(
                EMAIL,
                "thank_you",
                &json!({"customer_id": "customer-1", "order_id": "o-1", "category": "tents"})
            )]
        );
        assert_eq!(
            decision.schedules().collect::<Vec<_>>(),
            [
                ("review_request", PLACED_AT + days(7)),
                ("cross_sell", PLACED_AT + days(14))
            ]
        );
        assert!(decision.commands().contains(&Command::SetState(
            br#"{"order_id":"o-1","category":"tents"}"#.to_vec()
        )));
    }

    #[test]
    fn numeric_order_ids_are_read_as_the_host_keys_them() {
        let ctx = Context::entered(placed(json!(1042)));
        let decision = PostPurchase::decide(&ctx).unwrap();
        assert_eq!(decision.sends().next().unwrap().2["order_id"], "1042");
    }

    #[test]
    fn the_review_request_and_the_cross_sell_go_out_and_the_run_completes() {
        let review =
            PostPurchase::decide(&on(running("o-1"), Trigger::Timer("review_request".into())))
                .unwrap();
        assert_eq!(
            review
                .sends()
                .map(|(_, t, p)| (t, p["order_id"].clone()))
                .collect::<Vec<_>>(),
            [("review_request", json!("o-1"))]
        );
        let cross_sell =
            PostPurchase::decide(&on(running("o-1"), Trigger::Timer("cross_sell".into()))).unwrap();
        assert_eq!(
            cross_sell
                .sends()
                .map(|(_, t, p)| (t, p["category"].clone()))
                .collect::<Vec<_>>(),
            [("cross_sell", json!("tents"))]
        );
        assert!(cross_sell.completes());
    }

    #[test]
    fn a_review_of_this_order_is_a_milestone_and_cancels_the_request() {
        let decision =
            PostPurchase::decide(&on(running("o-1"), event_for("review_submitted", "o-1")))
                .unwrap();
        assert_eq!(
            decision.commands(),
            [
                Command::Milestone("reviewed".into()),
                Command::Cancel("review_request".into())
            ]
        );
    }

    #[test]
    fn a_returned_order_exits_its_own_run_only() {
        let mine =
            PostPurchase::decide(&on(running("o-1"), event_for("order_returned", "o-1"))).unwrap();
        assert_eq!(mine.commands(), [Command::Exit("order_returned".into())]);
        let other =
            PostPurchase::decide(&on(running("o-1"), event_for("order_returned", "o-2"))).unwrap();
        assert!(other.is_empty());
    }

    #[test]
    fn another_orders_events_are_ignored() {
        for trigger in [
            event_for("review_submitted", "o-2"),
            event_for("order_placed", "o-2"),
            Trigger::Event(Event::new("review_submitted")),
        ] {
            assert!(PostPurchase::decide(&on(running("o-1"), trigger))
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn a_run_without_its_order_fails_rather_than_guessing() {
        assert!(PostPurchase::decide(&Context::timer("cross_sell")).is_err());
        let no_id = Context::entered(Event::new("order_placed"));
        assert_eq!(
            PostPurchase::decide(&no_id).unwrap().commands(),
            [Command::Exit("no_order_id".into())]
        );
    }
}
