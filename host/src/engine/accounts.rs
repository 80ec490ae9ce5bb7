//! Accounts (issue 12), pure: what a `group` event does to the tenant's accounts. The event
//! (Segment's `group`, or `POST /v1/events` with name `group`) names the account in its
//! `group_id` property and may carry the account's `traits` (an object); its customer joins
//! that account, leaving any other, and the traits are merged into the account's (a key given
//! replaces the stored value). The event then reaches journeys as any event does.
//!
//! Account journeys (issue 12, accounts slice): a journey whose spec's subject is
//! [`Subject::Account`] enrolls accounts, not customers. Its enrollments live under the
//! account's *subject key* ([`subject`]: `account:<id>`) in the customer-keyed trees, and its
//! triggers are queued for that key, so they are processed on the account's shard, in order
//! (`ARCHITECTURE.md` invariant 12). A member's event reaches it as the member's trigger's
//! forward ([`forward_to`]), carrying the member ([`member_event`]); what `decide` sees as its
//! customer is the account ([`as_seen`]). Customer ids starting with [`SUBJECT_PREFIX`] are
//! refused at ingest ([`is_reserved`]), so a subject key never names a customer.

use crate::model::{Customer, Event, Object, Spec, Subject};
use crate::store::AccountChange;
use serde_json::{json, Value};
use std::borrow::Cow;

/// What a subject key starts with; reserved: no customer id may start with it.
pub const SUBJECT_PREFIX: &str = "account:";

/// The property of a forwarded event that names the member whose event it is.
pub const MEMBER: &str = "member";

/// The subject key of account `account`: what its enrollments, timers, messages and queued
/// triggers name as their customer.
pub fn subject(account: &str) -> String {
    format!("{SUBJECT_PREFIX}{account}")
}

/// The account a subject key names; `None` for a customer id.
pub fn account_of(subject: &str) -> Option<&str> {
    subject.strip_prefix(SUBJECT_PREFIX)
}

/// Whether a customer id is refused because it would be read as an account's subject key.
pub fn is_reserved(customer: &str) -> bool {
    customer.starts_with(SUBJECT_PREFIX)
}

/// Whether a journey with `spec` enrolls subjects of kind `subject`.
pub fn enrolls(spec: &Spec, subject: Subject) -> bool {
    spec.audience.subject == subject
}

/// The subject key a member's event is forwarded to: the member's account's, when the member
/// belongs to one and the tenant has a live account journey (without one, nothing is queued).
/// A customer without an account enters no account journey.
pub fn forward_to(account: Option<&str>, any_account_journey: bool) -> Option<String> {
    account.filter(|_| any_account_journey).map(subject)
}

/// The event as an account journey sees it: the member's event with the member, as they are
/// when their event is processed, under property `member` (`{"id", "attributes"}`; a
/// `member` property the tenant sent is replaced).
pub fn member_event(event: &Event, member: &Customer) -> Event {
    let mut event = event.clone();
    event.properties.insert(
        MEMBER.into(),
        json!({ "id": member.id, "attributes": member.attributes }),
    );
    event
}

/// An account as the engine handles it: the subject key as its id, the account's traits
/// (none when no `group` stored it yet) as its attributes.
pub fn account_customer(subject: &str, traits: Option<Object>) -> Customer {
    Customer {
        id: subject.to_string(),
        attributes: traits.unwrap_or_default(),
    }
}

/// The customer a guest (`decide`, a channel's `deliver`) is shown: for an account's subject
/// key, the account's own id; a customer as they are.
pub fn as_seen(customer: &Customer) -> Cow<'_, Customer> {
    match account_of(&customer.id) {
        Some(account) => Cow::Owned(Customer {
            id: account.to_string(),
            attributes: customer.attributes.clone(),
        }),
        None => Cow::Borrowed(customer),
    }
}

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

    #[test]
    fn an_account_is_keyed_by_a_reserved_subject_key() {
        let key = subject("acme");
        assert_eq!(key, "account:acme");
        assert_eq!(account_of(&key), Some("acme"));
        assert_eq!(account_of("ada"), None);
        assert!(is_reserved(&key));
        assert!(!is_reserved("ada"));
        assert!(!is_reserved("accounts"));
    }

    #[test]
    fn only_a_member_of_an_account_forwards_and_only_when_an_account_journey_is_live() {
        assert_eq!(
            forward_to(Some("acme"), true).as_deref(),
            Some("account:acme")
        );
        assert_eq!(forward_to(Some("acme"), false), None);
        assert_eq!(forward_to(None, true), None);
    }

    #[test]
    fn the_member_rides_in_the_event_and_replaces_a_member_property() {
        let member = Customer {
            id: "ada".into(),
            attributes: serde_json::from_value(json!({"role": "executive"})).unwrap(),
        };
        let seen = member_event(
            &event("logged_in", json!({"page": "/", "member": "spoofed"})),
            &member,
        );
        assert_eq!(seen.name, "logged_in");
        assert_eq!(seen.properties["page"], "/");
        assert_eq!(
            seen.properties["member"],
            json!({"id": "ada", "attributes": {"role": "executive"}})
        );
    }

    #[test]
    fn a_guest_sees_the_account_id_and_traits() {
        let traits: Object = serde_json::from_value(json!({"csm": "ann"})).unwrap();
        let account = account_customer("account:acme", Some(traits));
        assert_eq!(account.id, "account:acme");
        let seen = as_seen(&account);
        assert_eq!(seen.id, "acme");
        assert_eq!(seen.attributes["csm"], "ann");
        let ada = Customer {
            id: "ada".into(),
            attributes: Object::new(),
        };
        assert!(matches!(as_seen(&ada), Cow::Borrowed(_)));
        assert!(account_customer("account:new", None).attributes.is_empty());
    }
}
