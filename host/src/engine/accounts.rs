//! Accounts (issue 12), pure: what a `group` event does to the tenant's accounts. The event
//! (Segment's `group`, or `POST /v1/events` with name `group`) names the account in its
//! `group_id` property and may carry the account's `traits` (an object); its customer joins
//! that account, leaving any other, and the traits are merged into the account's (a key given
//! replaces the stored value). The event then reaches journeys as any event does.

use crate::model::{Event, Object};
use crate::store::AccountChange;
use serde_json::Value;

/// The event name of Segment's `group` and of its `POST /v1/events` equivalent.
pub const GROUP: &str = "group";

/// What `event` does to accounts: `None` for an event other than `group`; an error for a
/// `group` without a string `group_id`, or with `traits` that are not an object.
pub fn group_change(event: &Event) -> Result<Option<AccountChange>, String> {
    if event.name != GROUP {
        return Ok(None);
    }
    let account = match event.properties.get("group_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err("a group event needs a group_id property (a string)".into()),
    };
    let traits = match event.properties.get("traits") {
        None | Some(Value::Null) => Object::new(),
        Some(Value::Object(traits)) => traits.clone(),
        Some(_) => return Err("a group event's traits must be an object".into()),
    };
    Ok(Some(AccountChange {
        account,
        customer: event.customer.clone(),
        traits,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, properties: Value) -> Event {
        Event {
            id: "e".into(),
            customer: "ada".into(),
            name: name.into(),
            properties: serde_json::from_value(properties).unwrap(),
            timestamp: 0,
        }
    }

    #[test]
    fn a_group_event_names_the_account_its_customer_joins_and_its_traits() {
        let change = group_change(&event(
            "group",
            json!({"group_id": "acme", "traits": {"plan": "pro"}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            (change.account.as_str(), change.customer.as_str()),
            ("acme", "ada")
        );
        assert_eq!(change.traits["plan"], "pro");
        let bare = group_change(&event("group", json!({"group_id": "acme"})))
            .unwrap()
            .unwrap();
        assert!(bare.traits.is_empty());
        assert_eq!(
            group_change(&event("track", json!({"group_id": "x"}))),
            Ok(None)
        );
        assert!(group_change(&event("group", json!({}))).is_err());
        assert!(group_change(&event("group", json!({"group_id": 7}))).is_err());
        assert!(group_change(&event("group", json!({"group_id": "a", "traits": [1]}))).is_err());
    }
}
