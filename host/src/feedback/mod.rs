//! Provider feedback (issue 11): what a provider's webhook means to the host, as pure functions.
//!
//! A provider calls `POST /v1/hooks/{tenant}/{channel}` (`api/hooks.rs`); the channel's
//! adapter checks the signature and turns the request into [`FeedbackEvent`]s (`receive`,
//! contract 0.1.2, run by `sandbox::ChannelComponent::receive`). This module decides what each
//! one becomes, once the message it is about has been found (`store::feedback`):
//!
//! - an event of the customer the message went to ([`event_for`]), named as the journey sees it
//!   (`delivered`, `opened`, `clicked`, `bounced`, `complained`, `replied`, `unsubscribed`),
//!   with `message_id`, so the engagement reaches the enrollment that sent it
//!   (`engine::profile::engagement`), and an id derived from the feedback ([`dedup_id`]), so a
//!   webhook the provider retries is ingested once;
//! - for a hard bounce or a complaint, a suppression of the address on that channel
//!   ([`suppression_reason`]); the delivery loop then records later messages to it
//!   `suppressed` ([`message_addresses`] says which addresses a message goes to);
//! - an `unsubscribed` names the channel, so the customer leaves that channel only (an SMS
//!   `STOP` leaves SMS; email still goes out).

pub mod receivers; // Issue 10: not pure (asks adapters, keeps their answers)
pub mod types;

pub use types::{
    BounceKind, FeedbackEvent, FeedbackKind, ReceiveFailure, Received, WebhookReply, WebhookRequest,
};

use crate::model::{Customer, Event, Millis, Object};
use crate::store::feedback::MessageRef;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// An address as the host keys it: trimmed, and an email address in lower case (providers
/// report the case they like; mailbox names are case-insensitive in practice).
pub fn normalize_address(address: &str) -> String {
    let address = address.trim();
    if address.contains('@') {
        address.to_lowercase()
    } else {
        address.to_string()
    }
}

/// The addresses a message goes to, as the shipped plugins choose its recipient: the
/// payload's `to`, and the customer's `email` and `phone` attributes. Normalized, without
/// repeats. The host checks suppressions against these and indexes delivered messages by them.
pub fn message_addresses(payload: &Value, customer: &Customer) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let candidates = [
        payload.get("to"),
        customer.attributes.get("email"),
        customer.attributes.get("phone"),
    ];
    for value in candidates.into_iter().flatten() {
        if let Some(text) = value.as_str() {
            let address = normalize_address(text);
            if !address.is_empty() && !out.contains(&address) {
                out.push(address);
            }
        }
    }
    out
}

/// Why an event takes its address off the channel: `hard_bounce` or `complaint`.
pub fn suppression_reason(kind: &FeedbackKind) -> Option<&'static str> {
    match kind {
        FeedbackKind::Bounced {
            kind: BounceKind::Hard,
            ..
        } => Some("hard_bounce"),
        FeedbackKind::Complained => Some("complaint"),
        _ => None,
    }
}

/// The id of the event `feedback` becomes on `channel`: the provider's event id when it gives
/// one, else a digest of what the event says, so the same webhook posted twice is one event.
pub fn dedup_id(channel: &str, target: &MessageRef, feedback: &FeedbackEvent) -> String {
    let mut h = Sha256::new();
    let mut part = |s: &str| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    part(channel);
    part(&target.customer);
    part(&target.message_id);
    part(feedback.kind.event_name());
    match &feedback.event_id {
        Some(id) => part(id),
        None => {
            match &feedback.kind {
                FeedbackKind::Clicked { url } => part(url),
                FeedbackKind::Bounced { kind, reason } => {
                    part(kind.as_str());
                    part(reason);
                }
                FeedbackKind::Replied { text } => part(text),
                _ => {}
            }
            part(feedback.provider_id.as_deref().unwrap_or(""));
            part(feedback.address.as_deref().unwrap_or(""));
        }
    }
    let digest = h.finalize();
    format!("feedback:{}", hex::encode(&digest[..16]))
}

/// The event `feedback` becomes for the customer of `target`, at `now`.
pub fn event_for(
    channel: &str,
    target: &MessageRef,
    feedback: &FeedbackEvent,
    now: Millis,
) -> Event {
    let mut properties = Object::new();
    properties.insert("message_id".into(), target.message_id.clone().into());
    properties.insert("channel".into(), channel.into());
    properties.insert("source".into(), "provider".into());
    if let Some(id) = &feedback.provider_id {
        properties.insert("provider_id".into(), id.clone().into());
    }
    if let Some(address) = &feedback.address {
        properties.insert("address".into(), normalize_address(address).into());
    }
    match &feedback.kind {
        FeedbackKind::Clicked { url } => {
            properties.insert("url".into(), url.clone().into());
        }
        FeedbackKind::Bounced { kind, reason } => {
            properties.insert("bounce".into(), kind.as_str().into());
            properties.insert("reason".into(), reason.clone().into());
        }
        FeedbackKind::Replied { text } => {
            properties.insert("text".into(), text.clone().into());
        }
        _ => {}
    }
    Event {
        id: dedup_id(channel, target, feedback),
        customer: target.customer.clone(),
        name: feedback.kind.event_name().to_string(),
        properties,
        timestamp: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> MessageRef {
        MessageRef {
            customer: "ada".into(),
            message_id: "m1".into(),
        }
    }

    fn feedback(kind: FeedbackKind) -> FeedbackEvent {
        FeedbackEvent {
            kind,
            message_id: Some("m1".into()),
            provider_id: Some("p1".into()),
            address: Some(" Ada@Example.com ".into()),
            event_id: None,
        }
    }

    #[test]
    fn a_message_goes_to_its_payloads_to_and_the_customers_email_and_phone() {
        let mut customer = Customer {
            id: "ada".into(),
            attributes: Default::default(),
        };
        customer
            .attributes
            .insert("email".into(), "ADA@example.com".into());
        customer
            .attributes
            .insert("phone".into(), "+15005550006".into());
        assert_eq!(
            message_addresses(&json!({"to": "ada@example.com"}), &customer),
            vec!["ada@example.com", "+15005550006"]
        );
        assert_eq!(
            message_addresses(&json!({"to": 5}), &customer),
            vec!["ada@example.com", "+15005550006"]
        );
    }

    #[test]
    fn hard_bounces_and_complaints_suppress_and_nothing_else_does() {
        let hard = FeedbackKind::Bounced {
            kind: BounceKind::Hard,
            reason: "no such user".into(),
        };
        let soft = FeedbackKind::Bounced {
            kind: BounceKind::Soft,
            reason: "mailbox full".into(),
        };
        assert_eq!(suppression_reason(&hard), Some("hard_bounce"));
        assert_eq!(
            suppression_reason(&FeedbackKind::Complained),
            Some("complaint")
        );
        assert_eq!(suppression_reason(&soft), None);
        assert_eq!(suppression_reason(&FeedbackKind::Unsubscribed), None);
    }

    #[test]
    fn the_same_feedback_has_the_same_id_and_different_feedback_another() {
        let clicked = |url: &str| feedback(FeedbackKind::Clicked { url: url.into() });
        let a = event_for("email", &target(), &clicked("https://a"), 1);
        let again = event_for("email", &target(), &clicked("https://a"), 2);
        let other = event_for("email", &target(), &clicked("https://b"), 1);
        assert_eq!(a.id, again.id);
        assert_ne!(a.id, other.id);
        assert_ne!(
            a.id,
            event_for("sms", &target(), &clicked("https://a"), 1).id
        );
        assert_eq!(a.name, "clicked");
        assert_eq!(a.customer, "ada");
        assert_eq!(a.properties["message_id"], "m1");
        assert_eq!(a.properties["url"], "https://a");
        assert_eq!(a.properties["address"], "ada@example.com");
        let mut with_id = clicked("https://a");
        with_id.event_id = Some("evt-1".into());
        let mut with_id_elsewhere = clicked("https://b");
        with_id_elsewhere.event_id = Some("evt-1".into());
        assert_eq!(
            event_for("email", &target(), &with_id, 1).id,
            event_for("email", &target(), &with_id_elsewhere, 1).id,
            "the provider's event id decides"
        );
    }

    #[test]
    fn an_unsubscribe_names_its_channel_so_only_that_channel_is_left() {
        let e = event_for("sms", &target(), &feedback(FeedbackKind::Unsubscribed), 1);
        assert_eq!(e.name, "unsubscribed");
        assert_eq!(e.properties["channel"], "sms");
        assert!(!e.properties.contains_key("topic"));
    }
}
