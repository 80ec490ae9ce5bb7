//! The glue behind [`export_channel!`](crate::export_channel): conversions between the
//! generated WIT types and the SDK's plain types. Not part of the documented API; the macro
//! names it through `$crate::__export`.
//!
//! JSON arrives from the host as text. The host validates it, but an adapter must not trust
//! that: malformed JSON becomes a permanent delivery error, never a panic.

#![allow(missing_docs)]

use serde_json::Value;
use waymark_guest::__export::parse_object;
use waymark_guest::{Customer, JsonObject};

use crate::bindings::exports::waymark::journey::feedback as wf;
use crate::bindings::waymark::journey::channel_types as wc;
use crate::bindings::waymark::journey::types as wct;
use crate::channel::{Channel, DeliveryError, Message};
use crate::feedback::{BounceKind, FeedbackError, FeedbackEvent, FeedbackKind, WebhookRequest};

pub use crate::bindings as channel;

/// `deliver`, for channel `C`.
pub fn deliver<C: Channel>(message: wc::Message) -> Result<wc::Receipt, wc::DeliveryError> {
    let message = message_from_wit(message).map_err(wc::DeliveryError::Permanent)?;
    match C::deliver(message) {
        Ok(receipt) => Ok(wc::Receipt {
            provider_id: receipt.provider_id,
        }),
        Err(DeliveryError::Retryable(reason)) => Err(wc::DeliveryError::Retryable(reason)),
        Err(DeliveryError::Permanent(reason)) => Err(wc::DeliveryError::Permanent(reason)),
    }
}

/// `receive` (contract 0.1.2), for channel `C`.
pub fn receive<C: Channel>(request: wf::WebhookRequest) -> Result<wf::Received, wf::FeedbackError> {
    let config =
        parse_object("channel config", &request.config).map_err(wf::FeedbackError::Invalid)?;
    let request = WebhookRequest {
        method: request.method,
        path: request.path,
        query: request.query,
        headers: request.headers,
        body: request.body,
        url: request.url,
        config,
        now: request.now,
    };
    match C::receive(request) {
        Ok(received) => Ok(wf::Received {
            events: received.events.into_iter().map(event_to_wit).collect(),
            reply: received.reply.map(|r| wf::WebhookReply {
                content_type: r.content_type,
                body: r.body,
            }),
        }),
        Err(FeedbackError::Unauthorized(m)) => Err(wf::FeedbackError::Unauthorized(m)),
        Err(FeedbackError::Invalid(m)) => Err(wf::FeedbackError::Invalid(m)),
        Err(FeedbackError::Unsupported(m)) => Err(wf::FeedbackError::Unsupported(m)),
    }
}

fn event_to_wit(e: FeedbackEvent) -> wf::FeedbackEvent {
    wf::FeedbackEvent {
        kind: match e.kind {
            FeedbackKind::Delivered => wf::FeedbackKind::Delivered,
            FeedbackKind::Opened => wf::FeedbackKind::Opened,
            FeedbackKind::Clicked(url) => wf::FeedbackKind::Clicked(url),
            FeedbackKind::Bounced(kind, reason) => wf::FeedbackKind::Bounced((
                match kind {
                    BounceKind::Hard => wf::BounceKind::Hard,
                    BounceKind::Soft => wf::BounceKind::Soft,
                },
                reason,
            )),
            FeedbackKind::Complained => wf::FeedbackKind::Complained,
            FeedbackKind::Replied(text) => wf::FeedbackKind::Replied(text),
            FeedbackKind::Unsubscribed => wf::FeedbackKind::Unsubscribed,
        },
        message_id: e.message_id,
        provider_id: e.provider_id,
        address: e.address,
        event_id: e.event_id,
    }
}

fn parse_value(what: &str, json: &str) -> Result<Value, String> {
    serde_json::from_str(json).map_err(|e| format!("{what} is not valid JSON: {e}"))
}

/// The customer's attributes, checked now: an adapter takes its message by value, so the glue
/// cannot ask afterwards whether it read malformed attributes (as the journey glue does), and
/// adapters read them anyway (an address, a name, a phone number).
fn attributes_from_wit(text: String) -> Result<JsonObject, String> {
    let attributes = JsonObject::from_json(text);
    if let Err(error) = attributes.try_object() {
        return Err(format!("customer.attributes {error}"));
    }
    Ok(attributes)
}

pub(crate) fn message_from_wit(m: wc::Message) -> Result<Message, String> {
    let wct::Customer {
        id: customer_id,
        attributes,
    } = m.customer;
    Ok(Message {
        customer: Customer {
            id: customer_id,
            attributes: attributes_from_wit(attributes)?,
        },
        payload: parse_value("message payload", &m.payload)?,
        config: parse_object("channel config", &m.config)?,
        id: m.id,
        channel: m.channel,
        template: m.template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Receipt;
    use serde_json::json;

    fn wit_message(payload: &str, config: &str) -> wc::Message {
        wc::Message {
            id: "m-1".into(),
            channel: "webhook".into(),
            customer: wct::Customer {
                id: "c-1".into(),
                attributes: r#"{"tier":"gold"}"#.into(),
            },
            template: "welcome".into(),
            payload: payload.into(),
            config: config.into(),
        }
    }

    #[test]
    fn message_converts_with_json_parsed() {
        let m = message_from_wit(wit_message(r#"{"x":1}"#, r#"{"url":"http://h/"}"#)).unwrap();
        assert_eq!(m.id, "m-1");
        assert_eq!(m.customer.attribute_str("tier"), Some("gold"));
        assert_eq!(m.payload, json!({"x": 1}));
        assert_eq!(m.config_str("url"), Some("http://h/"));
    }

    struct Echo;
    impl Channel for Echo {
        fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
            match message.template.as_str() {
                "retry" => Err(DeliveryError::retryable("later")),
                _ => Ok(Receipt::with_provider_id(message.id)),
            }
        }
    }

    #[test]
    fn deliver_maps_outcomes_and_refuses_malformed_config() {
        assert!(
            matches!(deliver::<Echo>(wit_message("{}", "{}")), Ok(r) if r.provider_id.as_deref() == Some("m-1"))
        );
        let mut retry = wit_message("{}", "{}");
        retry.template = "retry".into();
        assert!(
            matches!(deliver::<Echo>(retry), Err(wc::DeliveryError::Retryable(r)) if r == "later")
        );
        assert!(
            matches!(deliver::<Echo>(wit_message("{}", "nope")), Err(wc::DeliveryError::Permanent(r)) if r.contains("channel config"))
        );
    }
}
