use super::*;
use crate::engine::*;
use crate::model::*;
use serde_json::json;

#[test]
fn key_prefix_names_tenant_journey_version_customer_run_and_trigger() {
    let trigger = Trigger::Entered {
        event: event("signed_up", json!({})),
    };
    let id = trigger_id(&trigger, None);
    assert_eq!(
        key_prefix("acme", &active(), &id),
        "acme/onboarding/1/c1/1/e-signed_up-1"
    );
}

#[test]
fn delivery_trigger_ids_do_not_grow_with_message_ids() {
    let report = DeliveryReport {
        message_id: "a/very/long/key/".repeat(20),
        channel: "webhook".into(),
        template: "t".into(),
        outcome: DeliveryOutcome::Delivered { provider_id: None },
    };
    let id = trigger_id(&Trigger::Delivery { report }, None);
    assert_eq!(id.len(), 18);
}

#[test]
fn seeds_are_stable_and_distinct_per_trigger() {
    assert_eq!(seed("t", "e", "x"), seed("t", "e", "x"));
    assert_ne!(seed("t", "e", "x"), seed("t", "e", "y"));
    assert_ne!(seed("t", "ex", ""), seed("t", "e", "x"));
}
