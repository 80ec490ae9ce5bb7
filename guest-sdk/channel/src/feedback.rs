//! Provider feedback (contract 0.1.2, `feedback`): a provider's webhook request, handed to the
//! adapter that sent the messages, and what the adapter says it reports.
//!
//! The host calls [`Channel::receive`](crate::Channel::receive) for `POST
//! /v1/hooks/{tenant}/{channel}`. The adapter checks the provider's signature with the
//! registration's secrets (a refusal is [`FeedbackError::Unauthorized`]: the host answers 401
//! and changes nothing), then maps the request to [`FeedbackEvent`]s: delivered, opened,
//! clicked, bounced, complained, replied, unsubscribed, each naming the message (our id, which
//! the adapter passed to the provider as its custom id or metadata, or the provider's id from
//! the receipt) and the address it concerns. The host turns each into an event of the
//! customer the message went to, drops repeats (providers retry webhooks), suppresses the
//! address on a hard bounce or a complaint, and unsubscribes the customer from the channel on
//! `unsubscribed`.
//!
//! A provider that reads the answer (Slack's `url_verification` handshake wants its
//! `challenge` echoed; Twilio reads an inbound message's answer as TwiML) gets a
//! [`WebhookReply`] in [`Received::reply`]; without one the host answers its own JSON.
//!
//! `receive` has no network: outgoing HTTP is refused to every host.
//!
//! ```
//! use waymark_channel::feedback::{
//!     FeedbackError, FeedbackEvent, Received, WebhookReply, WebhookRequest,
//! };
//!
//! fn receive(request: WebhookRequest) -> Result<Received, FeedbackError> {
//!     if request.header("x-token") != Some("s3cret") {
//!         return Err(FeedbackError::Unauthorized("bad x-token".into()));
//!     }
//!     let form = request.form();
//!     if let Some((_, challenge)) = form.iter().find(|(k, _)| k == "challenge") {
//!         // A handshake: the provider wants its challenge back.
//!         return Ok(Received::reply(WebhookReply::text(challenge.clone())));
//!     }
//!     let id = form.iter().find(|(k, _)| k == "id").map(|(_, v)| v.clone());
//!     Ok(vec![FeedbackEvent::delivered().provider_id(id)].into())
//! }
//!
//! let request = WebhookRequest::new("POST", "https://h/v1/hooks/acme/sms")
//!     .with_header("X-Token", "s3cret")
//!     .with_body("id=SM1&status=delivered");
//! let received = receive(request).unwrap();
//! assert_eq!(received.events[0].provider_id.as_deref(), Some("SM1"));
//! assert_eq!(received.reply, None);
//! ```

use serde::de::DeserializeOwned;
use serde_json::Value;
use waymark_guest::Object;

/// A provider's HTTP request, as the host received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// `POST`, as a rule.
    pub method: String,
    /// The request's path: `/v1/hooks/{tenant}/{channel}`.
    pub path: String,
    /// The query string without its `?`.
    pub query: String,
    /// Every header, in the order received, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as received: a signature covers these bytes.
    pub body: Vec<u8>,
    /// The full URL the provider called, as the public sees it (what Twilio signs).
    pub url: String,
    /// The registration's settings and secrets, merged.
    pub config: Object,
    /// The host's now, in milliseconds since the epoch (for signature timestamps).
    pub now: i64,
}

impl WebhookRequest {
    /// A request to `url`, with no headers, body or config (for tests).
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        let url = url.into();
        let (path, query) = split_url(&url);
        WebhookRequest {
            method: method.into(),
            path,
            query,
            headers: Vec::new(),
            body: Vec::new(),
            url,
            config: Object::new(),
            now: 0,
        }
    }

    /// The same request with one more header (its name lower-cased, as the host gives them).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The same request with `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The same request with `config` (a JSON object; anything else is empty).
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = match config {
            Value::Object(map) => map,
            _ => Object::new(),
        };
        self
    }

    /// The same request at `now` (milliseconds since the epoch).
    pub fn at(mut self, now: i64) -> Self {
        self.now = now;
        self
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as `application/x-www-form-urlencoded` pairs, decoded, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The body as JSON, or an [`FeedbackError::Invalid`] saying why not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, FeedbackError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| FeedbackError::Invalid(format!("the body is not the JSON expected: {e}")))
    }

    /// The configuration as the adapter's own type; a bad one is [`FeedbackError::Invalid`]
    /// naming the key (as [`Message::config_as`](crate::Message::config_as) does).
    pub fn config_as<T: DeserializeOwned>(&self) -> Result<T, FeedbackError> {
        let config = Value::Object(self.config.clone());
        serde_path_to_error::deserialize(config).map_err(|e| {
            FeedbackError::Invalid(crate::channel::config_error(
                &e.path().to_string(),
                e.inner(),
            ))
        })
    }
}

/// `https://h/p?q` → (`/p`, `q`).
fn split_url(url: &str) -> (String, String) {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path_and_query = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    match path_and_query.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (path_and_query.to_string(), String::new()),
    }
}

/// How permanent a bounce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceKind {
    /// The address does not exist or refuses everything: the host suppresses it.
    Hard,
    /// It may work later (a full mailbox, greylisting).
    Soft,
}

/// What the provider says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackKind {
    /// The recipient's server or handset accepted it.
    Delivered,
    /// The recipient opened it.
    Opened,
    /// The recipient followed this link.
    Clicked(String),
    /// It bounced, for this reason.
    Bounced(BounceKind, String),
    /// The recipient marked it as spam: the host suppresses the address.
    Complained,
    /// The recipient answered this text.
    Replied(String),
    /// The recipient asked for no more on this channel (an SMS `STOP`).
    Unsubscribed,
}

/// One thing a webhook reports. Build it with the constructors and name the message with
/// [`message_id`](Self::message_id) and/or [`provider_id`](Self::provider_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackEvent {
    /// What happened.
    pub kind: FeedbackKind,
    /// Our message id, when the provider echoes it.
    pub message_id: Option<String>,
    /// The provider's id for the message.
    pub provider_id: Option<String>,
    /// The email address or phone number concerned.
    pub address: Option<String>,
    /// The provider's id for this event, when it has one (the host drops repeats).
    pub event_id: Option<String>,
}

impl FeedbackEvent {
    /// An event of `kind`, naming nothing yet.
    pub fn new(kind: FeedbackKind) -> Self {
        FeedbackEvent {
            kind,
            message_id: None,
            provider_id: None,
            address: None,
            event_id: None,
        }
    }

    /// Delivered.
    pub fn delivered() -> Self {
        Self::new(FeedbackKind::Delivered)
    }

    /// Opened.
    pub fn opened() -> Self {
        Self::new(FeedbackKind::Opened)
    }

    /// Clicked `url`.
    pub fn clicked(url: impl Into<String>) -> Self {
        Self::new(FeedbackKind::Clicked(url.into()))
    }

    /// Bounced.
    pub fn bounced(kind: BounceKind, reason: impl Into<String>) -> Self {
        Self::new(FeedbackKind::Bounced(kind, reason.into()))
    }

    /// Marked as spam.
    pub fn complained() -> Self {
        Self::new(FeedbackKind::Complained)
    }

    /// Answered with `text`.
    pub fn replied(text: impl Into<String>) -> Self {
        Self::new(FeedbackKind::Replied(text.into()))
    }

    /// Asked for no more on this channel.
    pub fn unsubscribed() -> Self {
        Self::new(FeedbackKind::Unsubscribed)
    }

    /// Names our message id (empty is none).
    pub fn message_id(mut self, id: Option<impl Into<String>>) -> Self {
        self.message_id = id.map(Into::into).filter(|s: &String| !s.is_empty());
        self
    }

    /// Names the provider's message id (empty is none).
    pub fn provider_id(mut self, id: Option<impl Into<String>>) -> Self {
        self.provider_id = id.map(Into::into).filter(|s: &String| !s.is_empty());
        self
    }

    /// Names the address (empty is none).
    pub fn address(mut self, address: Option<impl Into<String>>) -> Self {
        self.address = address.map(Into::into).filter(|s: &String| !s.is_empty());
        self
    }

    /// Names the provider's event id (empty is none).
    pub fn event_id(mut self, id: Option<impl Into<String>>) -> Self {
        self.event_id = id.map(Into::into).filter(|s: &String| !s.is_empty());
        self
    }
}

/// The largest reply body the host writes (64 KiB); a longer one fails the request (502).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The answer a provider expects, when it expects more than an empty `200`: the host writes
/// this body with status 200 and this content type, after the events are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    /// The answer's `Content-Type`.
    pub content_type: String,
    /// The answer's body, at most [`MAX_REPLY_BYTES`].
    pub body: Vec<u8>,
}

impl WebhookReply {
    /// A reply of `content_type` with `body`.
    pub fn new(content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        WebhookReply {
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    /// A `text/plain` reply (Slack's `url_verification` challenge).
    pub fn text(body: impl Into<String>) -> Self {
        Self::new("text/plain", body.into().into_bytes())
    }

    /// An `application/json` reply.
    pub fn json(body: &Value) -> Self {
        Self::new("application/json", body.to_string().into_bytes())
    }

    /// A `text/xml` reply (Twilio's TwiML).
    pub fn xml(body: impl Into<String>) -> Self {
        Self::new("text/xml", body.into().into_bytes())
    }
}

/// What a webhook request reports, and the answer the provider expects, if any. Made from a
/// list of events (`events.into()`) or with [`Received::reply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// What the request reports; empty for one that reports nothing (a handshake, a ping).
    pub events: Vec<FeedbackEvent>,
    /// The answer's body; `None` lets the host answer with its JSON summary.
    pub reply: Option<WebhookReply>,
}

impl Received {
    /// A request that reports nothing and takes the host's answer.
    pub fn nothing() -> Self {
        Received::default()
    }

    /// A request that reports nothing and is answered with `reply` (a handshake).
    pub fn reply(reply: WebhookReply) -> Self {
        Received::default().with_reply(reply)
    }

    /// The same, answered with `reply`.
    pub fn with_reply(mut self, reply: WebhookReply) -> Self {
        self.reply = Some(reply);
        self
    }
}

impl From<Vec<FeedbackEvent>> for Received {
    fn from(events: Vec<FeedbackEvent>) -> Self {
        Received {
            events,
            reply: None,
        }
    }
}

/// Why a webhook request was refused; the host changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackError {
    /// A missing or wrong signature or credentials: 401.
    Unauthorized(String),
    /// Not a request this provider sends: 400.
    Invalid(String),
    /// This adapter receives no webhooks: 422.
    Unsupported(String),
}

/// Compares two byte strings in time independent of where they differ (signatures).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_reads_its_headers_form_and_config() {
        let r = WebhookRequest::new("POST", "https://h.example/v1/hooks/a/sms?x=1")
            .with_header("X-Twilio-Signature", "sig")
            .with_body("Body=STOP+now&From=%2B15005550006")
            .with_config(json!({"auth_token": "t"}));
        assert_eq!(r.path, "/v1/hooks/a/sms");
        assert_eq!(r.query, "x=1");
        assert_eq!(r.header("x-twilio-signature"), Some("sig"));
        assert_eq!(
            r.form(),
            vec![
                ("Body".to_string(), "STOP now".to_string()),
                ("From".to_string(), "+15005550006".to_string())
            ]
        );
        #[derive(serde::Deserialize)]
        struct C {
            #[allow(dead_code)]
            auth_token: String,
            #[allow(dead_code)]
            other: String,
        }
        assert_eq!(
            r.config_as::<C>().err(),
            Some(FeedbackError::Invalid("config.other is missing".into()))
        );
    }

    #[test]
    fn empty_ids_name_nothing_and_comparison_is_exact() {
        let e = FeedbackEvent::opened()
            .message_id(Some(""))
            .provider_id(Some("p"));
        assert_eq!(e.message_id, None);
        assert_eq!(e.provider_id.as_deref(), Some("p"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
