//! Provider feedback as the host sees it: the webhook request handed to an adapter's `receive`
//! (contract 0.1.2, `feedback`), and what the adapter says the request reports.

use crate::model::{Millis, Object};

/// The longest string an adapter may put in a feedback event (a reply's text, a URL, a
/// reason): the host stores it as an event property.
pub const MAX_FEEDBACK_TEXT: usize = 4096;

/// A provider's HTTP request to `POST /v1/hooks/{tenant}/{channel}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub method: String,
    /// As received: `/v1/hooks/{tenant}/{channel}`.
    pub path: String,
    /// Without its `?`.
    pub query: String,
    /// In the order received, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The URL the provider called, as the public sees it.
    pub url: String,
    /// The registration's settings and secrets, merged.
    pub config: Object,
    pub now: Millis,
}

/// How permanent a bounce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceKind {
    Hard,
    Soft,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Hard => "hard",
            BounceKind::Soft => "soft",
        }
    }
}

/// What a provider says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackKind {
    Delivered,
    Opened,
    Clicked { url: String },
    Bounced { kind: BounceKind, reason: String },
    Complained,
    Replied { text: String },
    Unsubscribed,
}

impl FeedbackKind {
    /// The name of the event the journey sees.
    pub fn event_name(&self) -> &'static str {
        match self {
            FeedbackKind::Delivered => "delivered",
            FeedbackKind::Opened => "opened",
            FeedbackKind::Clicked { .. } => "clicked",
            FeedbackKind::Bounced { .. } => "bounced",
            FeedbackKind::Complained => "complained",
            FeedbackKind::Replied { .. } => "replied",
            FeedbackKind::Unsubscribed => crate::engine::profile::UNSUBSCRIBED,
        }
    }
}

/// One thing a webhook request reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackEvent {
    pub kind: FeedbackKind,
    /// Our message id, when the provider echoes it.
    pub message_id: Option<String>,
    pub provider_id: Option<String>,
    /// The email address or phone number concerned.
    pub address: Option<String>,
    /// The provider's id for this event, when it has one.
    pub event_id: Option<String>,
}

impl FeedbackEvent {
    /// Refuses strings past [`MAX_FEEDBACK_TEXT`] or holding control characters where an id
    /// goes (ids become key parts).
    pub fn check(&self) -> Result<(), String> {
        let texts = match &self.kind {
            FeedbackKind::Clicked { url } => vec![url],
            FeedbackKind::Bounced { reason, .. } => vec![reason],
            FeedbackKind::Replied { text } => vec![text],
            _ => vec![],
        };
        let ids = [
            &self.message_id,
            &self.provider_id,
            &self.address,
            &self.event_id,
        ];
        for text in texts
            .into_iter()
            .chain(ids.iter().filter_map(|i| i.as_ref()))
        {
            if text.len() > MAX_FEEDBACK_TEXT {
                return Err(format!(
                    "the adapter reported a feedback string of {} bytes (at most {MAX_FEEDBACK_TEXT})",
                    text.len()
                ));
            }
        }
        for id in ids.into_iter().flatten() {
            if id.is_empty() || id.chars().any(char::is_control) {
                return Err(format!(
                    "the adapter reported an empty id or one with control characters: {id:?}"
                ));
            }
        }
        Ok(())
    }
}

/// The largest answer body an adapter may ask the host to write (Slack's challenge, an empty
/// TwiML document: a few dozen bytes in practice).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The answer the provider expects, when it expects more than the host's JSON summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub content_type: String,
    pub body: Vec<u8>,
}

impl WebhookReply {
    /// Refuses a body past [`MAX_REPLY_BYTES`] or a content type that is no header value.
    pub fn check(&self) -> Result<(), String> {
        if self.body.len() > MAX_REPLY_BYTES {
            return Err(format!(
                "the adapter's webhook reply is {} bytes (at most {MAX_REPLY_BYTES})",
                self.body.len()
            ));
        }
        let valid = !self.content_type.is_empty()
            && axum::http::HeaderValue::from_str(&self.content_type).is_ok();
        if !valid {
            return Err(format!(
                "the adapter's webhook reply has an invalid content type: {:?}",
                self.content_type
            ));
        }
        Ok(())
    }
}

/// What `receive` reports: the events, and the answer the provider expects, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub events: Vec<FeedbackEvent>,
    pub reply: Option<WebhookReply>,
}

/// Why `receive` gave no events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveFailure {
    /// A missing or wrong signature: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// Not a request this provider sends: 400.
    #[error("{0}")]
    Invalid(String),
    /// The adapter receives no webhooks: 422.
    #[error("{0}")]
    Unsupported(String),
    /// The adapter trapped, timed out or broke the contract: 502 (the provider retries).
    #[error("{0}")]
    Guest(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_bounded_and_its_content_type_must_be_a_header_value() {
        let reply = |content_type: &str, len: usize| WebhookReply {
            content_type: content_type.into(),
            body: vec![b'x'; len],
        };
        assert_eq!(reply("text/plain", MAX_REPLY_BYTES).check(), Ok(()));
        assert!(reply("text/plain", MAX_REPLY_BYTES + 1).check().is_err());
        assert!(reply("", 1).check().is_err());
        assert!(reply("text/plain\r\nx-evil: 1", 1).check().is_err());
    }
}
