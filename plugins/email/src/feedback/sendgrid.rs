//! SendGrid's Event Webhook, as its reference gives it.
//!
//! **Signature** ("Getting Started with the Event Webhook Security Features",
//! <https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features>):
//! with the Signed Event Webhook on, SendGrid signs each POST with ECDSA (P-256, SHA-256) over
//! the `X-Twilio-Email-Event-Webhook-Timestamp` header's value followed by the raw body, and
//! sends the base64 DER signature in `X-Twilio-Email-Event-Webhook-Signature`. The
//! verification key it shows is base64 DER (SubjectPublicKeyInfo); the registration's
//! `webhook_public_key` holds it. SendGrid's own libraries test against the vector in this
//! module's tests (sendgrid-java `EventWebhookTest`, sendgrid-csharp `RequestValidatorTests`).
//!
//! **Events** (<https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event>): a
//! JSON array of objects with `event`, `email`, `sg_event_id`, `sg_message_id` (the send's
//! `X-Message-Id`, then `.` and SendGrid's suffix), the send's `custom_args` at the top level
//! (so `waymark_message_id`), `url` for clicks, `type` (`bounce` or `blocked`) and `reason` for
//! bounces. `delivered`, `open`, `click` map to delivered, opened, clicked; `bounce` to a hard
//! bounce, `blocked` bounces and `dropped` to soft ones (but a `dropped` for a `Bounced
//! Address` is hard); `spamreport` to complained; `unsubscribe` and `group_unsubscribe` to
//! unsubscribed; `processed` and `deferred` report nothing.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use waymark_channel::feedback::{BounceKind, FeedbackError, FeedbackEvent, WebhookRequest};

use super::{secret, FeedbackConfig};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Whether `signature` (base64 DER) signs `timestamp` then `body` under `public_key` (base64
/// DER SubjectPublicKeyInfo). A key or signature that does not decode is a mismatch.
pub fn verify(public_key: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(key_der) = b64.decode(public_key.trim()) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_public_key_der(&key_der) else {
        return false;
    };
    let Ok(sig_der) = b64.decode(signature.trim()) else {
        return false;
    };
    let Ok(sig) = Signature::from_der(&sig_der) else {
        return false;
    };
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &sig).is_ok()
}

/// The fields of an event this adapter reads (SendGrid's names).
#[derive(Debug, Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    sg_event_id: Option<String>,
    #[serde(default)]
    sg_message_id: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(rename = "type", default)]
    bounce_type: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// The send's `custom_args` arrive at the top level: [`crate::MESSAGE_ID_FIELD`].
    #[serde(rename = "waymark_message_id", default)]
    ours: Option<String>,
}

/// Checks the signature and maps the batch.
pub fn receive(
    config: &FeedbackConfig,
    request: &WebhookRequest,
) -> Result<Vec<FeedbackEvent>, FeedbackError> {
    let key = secret(&config.webhook_public_key, "webhook_public_key")?;
    let signature = request
        .header(SIGNATURE_HEADER)
        .ok_or_else(|| FeedbackError::Unauthorized(format!("no {SIGNATURE_HEADER} header")))?;
    let timestamp = request
        .header(TIMESTAMP_HEADER)
        .ok_or_else(|| FeedbackError::Unauthorized(format!("no {TIMESTAMP_HEADER} header")))?;
    if !verify(key, timestamp, &request.body, signature) {
        return Err(FeedbackError::Unauthorized(
            "the Event Webhook signature does not verify under webhook_public_key".into(),
        ));
    }
    let events: Vec<Event> = request.json()?;
    Ok(events.into_iter().filter_map(feedback_of).collect())
}

fn feedback_of(e: Event) -> Option<FeedbackEvent> {
    let reason = e.reason.clone().unwrap_or_default();
    let feedback = match e.event.as_str() {
        "delivered" => FeedbackEvent::delivered(),
        "open" => FeedbackEvent::opened(),
        "click" => FeedbackEvent::clicked(e.url.clone().unwrap_or_default()),
        "bounce" => match e.bounce_type.as_deref() {
            Some("blocked") => FeedbackEvent::bounced(BounceKind::Soft, reason),
            _ => FeedbackEvent::bounced(BounceKind::Hard, reason),
        },
        "dropped" if reason == "Bounced Address" => {
            FeedbackEvent::bounced(BounceKind::Hard, reason)
        }
        "dropped" => FeedbackEvent::bounced(BounceKind::Soft, reason),
        "spamreport" => FeedbackEvent::complained(),
        "unsubscribe" | "group_unsubscribe" => FeedbackEvent::unsubscribed(),
        _ => return None,
    };
    // `sg_message_id` is the send's `X-Message-Id` (the receipt), a dot, and SendGrid's suffix.
    let provider_id = e
        .sg_message_id
        .as_deref()
        .map(|id| id.split('.').next().unwrap_or(id).to_string());
    Some(
        feedback
            .message_id(e.ours)
            .provider_id(provider_id)
            .address(e.email)
            .event_id(e.sg_event_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_channel::feedback::FeedbackKind;
    use waymark_channel::json;

    // SendGrid's published test vector (its libraries' EventWebhook tests).
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const SIGNATURE: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const TIMESTAMP: &str = "1588788367";
    const PAYLOAD: &str =
        r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;

    #[test]
    fn sendgrids_published_vector_verifies_and_any_change_does_not() {
        assert!(verify(PUBLIC_KEY, TIMESTAMP, PAYLOAD.as_bytes(), SIGNATURE));
        assert!(!verify(
            PUBLIC_KEY,
            "1588788368",
            PAYLOAD.as_bytes(),
            SIGNATURE
        ));
        assert!(!verify(PUBLIC_KEY, TIMESTAMP, b"payload", SIGNATURE));
        let other_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
        assert!(!verify(other_key, TIMESTAMP, PAYLOAD.as_bytes(), SIGNATURE));
        assert!(!verify(
            PUBLIC_KEY,
            TIMESTAMP,
            PAYLOAD.as_bytes(),
            "not base64"
        ));
    }

    #[test]
    fn an_unsigned_batch_is_refused_and_events_map_as_sendgrid_documents_them() {
        let config = FeedbackConfig {
            provider: crate::Provider::Sendgrid,
            webhook_username: None,
            webhook_password: None,
            webhook_public_key: Some(PUBLIC_KEY.into()),
        };
        let body = json!([{"event": "bounce"}]).to_string();
        let unsigned = WebhookRequest::new("POST", "https://w/h").with_body(body);
        assert!(matches!(
            receive(&config, &unsigned),
            Err(FeedbackError::Unauthorized(_))
        ));
        let event = |v: serde_json::Value| feedback_of(serde_json::from_value(v).unwrap());
        let bounce = event(json!({
            "event": "bounce", "type": "bounce", "reason": "550 5.1.1 unknown user",
            "email": "ana@example.com", "sg_event_id": "e1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "waymark_message_id": "m-1"
        }))
        .unwrap();
        assert_eq!(
            bounce.kind,
            FeedbackKind::Bounced(BounceKind::Hard, "550 5.1.1 unknown user".into())
        );
        assert_eq!(bounce.provider_id.as_deref(), Some("14c5d75ce93"));
        assert_eq!(bounce.message_id.as_deref(), Some("m-1"));
        assert_eq!(bounce.event_id.as_deref(), Some("e1"));
        let blocked = event(json!({"event": "bounce", "type": "blocked", "reason": "r"})).unwrap();
        assert_eq!(
            blocked.kind,
            FeedbackKind::Bounced(BounceKind::Soft, "r".into())
        );
        assert_eq!(
            event(json!({"event": "click", "url": "https://a"}))
                .unwrap()
                .kind,
            FeedbackKind::Clicked("https://a".into())
        );
        assert_eq!(
            event(json!({"event": "spamreport"})).unwrap().kind,
            FeedbackKind::Complained
        );
        assert!(event(json!({"event": "processed"})).is_none());
    }
}
