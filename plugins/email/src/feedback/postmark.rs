//! Postmark's webhooks, as its reference gives them
//! (<https://postmarkapp.com/developer/webhooks/webhooks-overview> and each kind's page under
//! `/developer/webhooks/`).
//!
//! **Authentication.** Postmark signs nothing; it documents securing a webhook with HTTP Basic
//! credentials put in its URL (`https://user:pass@host/...`), which it sends as
//! `Authorization: Basic base64(user:pass)` (RFC 7617). The registration's `webhook_username`
//! and `webhook_password` must match; anything else is refused.
//!
//! **Records.** One JSON object per request, told apart by `RecordType`:
//!
//! | `RecordType` | fields read | feedback |
//! | --- | --- | --- |
//! | `Delivery` | `MessageID`, `Recipient`, `DeliveredAt` | delivered |
//! | `Open` | `MessageID`, `Recipient`, `ReceivedAt` | opened |
//! | `Click` | `MessageID`, `Recipient`, `OriginalLink`, `ReceivedAt` | clicked |
//! | `Bounce` | `ID`, `Type`, `MessageID`, `Email`, `Description`, `Details` | bounced: hard for `HardBounce` and `BadEmailAddress`, soft otherwise |
//! | `SpamComplaint` | `ID`, `MessageID`, `Email` | complained |
//! | `SubscriptionChange` | `MessageID`, `Recipient`, `SuppressSending` | unsubscribed when `SuppressSending` is `true` |
//!
//! Every record carries the `Metadata` sent with the message, so
//! `Metadata.waymark_message_id` names our message.

use base64::Engine as _;
use serde::Deserialize;
use waymark_channel::feedback::{
    constant_time_eq, BounceKind, FeedbackError, FeedbackEvent, WebhookRequest,
};
use waymark_channel::serde_json::{Map, Value};

use super::{secret, FeedbackConfig};
use crate::MESSAGE_ID_FIELD;

/// Bounce `Type`s after which the address will never receive.
pub const HARD_BOUNCES: &[&str] = &["HardBounce", "BadEmailAddress"];

/// The fields of a record this adapter reads (Postmark's names).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    record_type: String,
    #[serde(rename = "ID", default)]
    id: Option<Value>,
    #[serde(rename = "MessageID", default)]
    message_id: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(rename = "Type", default)]
    bounce_type: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    original_link: Option<String>,
    #[serde(default)]
    received_at: Option<String>,
    #[serde(default)]
    suppress_sending: Option<bool>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// `Authorization: Basic base64(user:password)`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {credentials}")
}

/// Checks the Basic credentials and maps the record.
pub fn receive(
    config: &FeedbackConfig,
    request: &WebhookRequest,
) -> Result<Vec<FeedbackEvent>, FeedbackError> {
    let user = secret(&config.webhook_username, "webhook_username")?;
    let password = secret(&config.webhook_password, "webhook_password")?;
    let given = request
        .header("authorization")
        .ok_or_else(|| FeedbackError::Unauthorized("no Authorization header".into()))?;
    let expected = basic_authorization(user, password);
    if !constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        return Err(FeedbackError::Unauthorized(
            "the Basic credentials are not the registration's webhook_username and webhook_password"
                .into(),
        ));
    }
    let record: Record = request.json()?;
    Ok(feedback_of(record).into_iter().collect())
}

fn feedback_of(record: Record) -> Option<FeedbackEvent> {
    let ours = record
        .metadata
        .as_ref()
        .and_then(|m| m.get(MESSAGE_ID_FIELD))
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = record.id.as_ref().map(|id| match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let message = record.message_id.clone();
    let at = record.received_at.clone().unwrap_or_default();
    let (event, address, event_id) = match record.record_type.as_str() {
        "Delivery" => (
            FeedbackEvent::delivered(),
            record.recipient,
            message.as_ref().map(|m| format!("delivery:{m}")),
        ),
        "Open" => (
            FeedbackEvent::opened(),
            record.recipient,
            message.as_ref().map(|m| format!("open:{m}:{at}")),
        ),
        "Click" => {
            let link = record.original_link.unwrap_or_default();
            (
                FeedbackEvent::clicked(link.clone()),
                record.recipient,
                message.as_ref().map(|m| format!("click:{m}:{at}:{link}")),
            )
        }
        "Bounce" => {
            let kind = match record.bounce_type.as_deref() {
                Some(t) if HARD_BOUNCES.contains(&t) => BounceKind::Hard,
                _ => BounceKind::Soft,
            };
            let reason = [
                record.bounce_type.as_deref(),
                record.description.as_deref(),
                record.details.as_deref(),
            ]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
            (
                FeedbackEvent::bounced(kind, reason),
                record.email,
                id.map(|id| format!("bounce:{id}")),
            )
        }
        "SpamComplaint" => (
            FeedbackEvent::complained(),
            record.email,
            id.map(|id| format!("complaint:{id}")),
        ),
        "SubscriptionChange" if record.suppress_sending == Some(true) => (
            FeedbackEvent::unsubscribed(),
            record.recipient,
            message.as_ref().map(|m| format!("unsubscribe:{m}")),
        ),
        _ => return None,
    };
    Some(
        event
            .message_id(ours)
            .provider_id(message)
            .address(address)
            .event_id(event_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_channel::feedback::FeedbackKind;
    use waymark_channel::json;

    fn request(body: Value, authorization: Option<&str>) -> WebhookRequest {
        let mut r = WebhookRequest::new("POST", "https://w.example/v1/hooks/acme/email")
            .with_body(body.to_string())
            .with_config(json!({
                "provider": "postmark", "from": "a@acme.example",
                "webhook_username": "hook", "webhook_password": "s3cret",
            }));
        if let Some(a) = authorization {
            r = r.with_header("Authorization", a);
        }
        r
    }

    /// Postmark's documented bounce example, with our metadata.
    fn bounce() -> Value {
        json!({
            "RecordType": "Bounce", "ID": 42, "Type": "HardBounce", "TypeCode": 1,
            "Name": "Hard bounce", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "Test bounce details", "Email": "john@example.com",
            "BouncedAt": "2014-08-01T13:28:10.2735393-04:00", "Inactive": true,
            "Metadata": {"waymark_message_id": "m-1"}
        })
    }

    #[test]
    fn a_hard_bounce_with_the_right_credentials_names_our_message_and_the_address() {
        let events = receive_request(request(
            bounce(),
            Some(&basic_authorization("hook", "s3cret")),
        ))
        .unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert!(
            matches!(&e.kind, FeedbackKind::Bounced(BounceKind::Hard, r) if r.starts_with("HardBounce: The server"))
        );
        assert_eq!(e.message_id.as_deref(), Some("m-1"));
        assert_eq!(
            e.provider_id.as_deref(),
            Some("883953f4-6105-42a2-a16a-77a8eac79483")
        );
        assert_eq!(e.address.as_deref(), Some("john@example.com"));
        assert_eq!(e.event_id.as_deref(), Some("bounce:42"));
    }

    fn receive_request(r: WebhookRequest) -> Result<Vec<FeedbackEvent>, FeedbackError> {
        super::super::receive(&r)
    }

    #[test]
    fn wrong_or_missing_credentials_are_refused() {
        for auth in [Some(basic_authorization("hook", "guess").as_str()), None]
            .map(|a| a.map(str::to_string))
        {
            let refused = receive_request(request(bounce(), auth.as_deref()));
            assert!(
                matches!(refused, Err(FeedbackError::Unauthorized(_))),
                "{auth:?}"
            );
        }
    }

    #[test]
    fn every_record_type_maps_to_its_feedback() {
        let auth = basic_authorization("hook", "s3cret");
        let kind = |body: Value| {
            receive_request(request(body, Some(&auth)))
                .unwrap()
                .into_iter()
                .map(|e| e.kind)
                .collect::<Vec<_>>()
        };
        let meta = json!({"waymark_message_id": "m-1"});
        assert_eq!(
            kind(
                json!({"RecordType": "Delivery", "MessageID": "p", "Recipient": "a@b.example", "Metadata": meta})
            ),
            vec![FeedbackKind::Delivered]
        );
        assert_eq!(
            kind(
                json!({"RecordType": "Open", "MessageID": "p", "Recipient": "a@b.example", "ReceivedAt": "t"})
            ),
            vec![FeedbackKind::Opened]
        );
        assert_eq!(
            kind(
                json!({"RecordType": "Click", "MessageID": "p", "OriginalLink": "https://acme.example/x"})
            ),
            vec![FeedbackKind::Clicked("https://acme.example/x".into())]
        );
        assert_eq!(
            kind(
                json!({"RecordType": "SpamComplaint", "ID": 7, "MessageID": "p", "Email": "a@b.example"})
            ),
            vec![FeedbackKind::Complained]
        );
        assert_eq!(
            kind(
                json!({"RecordType": "SubscriptionChange", "MessageID": "p", "Recipient": "a@b.example", "SuppressSending": true})
            ),
            vec![FeedbackKind::Unsubscribed]
        );
        assert_eq!(
            kind(
                json!({"RecordType": "Bounce", "ID": 8, "Type": "SoftBounce", "Email": "a@b.example"})
            ),
            vec![FeedbackKind::Bounced(BounceKind::Soft, "SoftBounce".into())]
        );
        assert!(kind(json!({"RecordType": "Inbound"})).is_empty());
        assert!(matches!(
            receive_request(request(json!([1]), Some(&auth))),
            Err(FeedbackError::Invalid(_))
        ));
    }
}
