//! Waymark's email channel adapter: sends each message as an email through the provider the
//! registration names: Postmark ([`postmark`]), SendGrid v3 ([`sendgrid`]) or Mailgun
//! ([`mailgun`]).
//!
//! Configuration (the channel registration's settings and secrets, merged), declared in
//! `channel.toml` and embedded in the component for the host to check at registration; the
//! table is in `plugins/email/README.md`.
//!
//! - [`address`] — mailboxes: settings' `from`/`reply_to`, the recipient; checked syntax.
//! - [`email`] — the provider-neutral [`Email`](email::Email) a message asks for: the
//!   recipient, and the subject, HTML and text from the rendered template (`payload.content`)
//!   or from the payload itself.
//! - [`postmark`], [`sendgrid`], [`mailgun`] — each provider's request, built as its API
//!   reference gives it, and its error text.
//!
//! Every request carries the registration's custom `headers`, and, when the content or the
//! payload has an `unsubscribe_url`, `List-Unsubscribe: <url>` and
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058 one-click unsubscribe).
//!
//! Outcomes are the SDK's classification ([`Response::outcome_with_id`]) with the provider's
//! own error text in the reason: a 2xx is delivered, with the provider's id for the message
//! (Postmark's `MessageID`, SendGrid's `X-Message-Id`, Mailgun's `id`) as the receipt; a 429,
//! a 5xx or a transport failure (a timeout included) is retryable; any other status, a bad
//! configuration, a bad address or a message without subject or body is permanent.
//!
//! None of the providers offers an idempotency key for sends: the message id travels in the
//! provider's custom-id field (`Metadata` / `custom_args` / `v:`, key [`MESSAGE_ID_FIELD`]),
//! and a send retried after a lost answer may arrive twice (at-least-once).
//!
//! Provider feedback (contract 0.1.2): [`feedback`] receives Postmark's webhooks (HTTP Basic
//! credentials) and SendGrid's Event Webhook (ECDSA signature) and maps them to delivered,
//! opened, clicked, bounced, complained and unsubscribed.
//!
//! The adapter is a request builder: [`build_request`] is pure and unit-tested natively, and
//! `deliver` only sends what it built.

pub mod address;
pub mod email;
pub mod feedback;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;

use std::collections::BTreeMap;

use serde::Deserialize;
use waymark_channel::feedback::{FeedbackError, Received, WebhookRequest};
use waymark_channel::http::{ProviderId, Request, Response, Url, ERROR_SNIPPET_CHARS};
use waymark_channel::serde_json::Value;
use waymark_channel::{Channel, DeliveryError, Message, Receipt};

use address::Address;
use email::Email;

/// The email adapter.
pub struct EmailChannel;

impl Channel for EmailChannel {
    fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
        let (provider, request) = build_request(&message)?;
        outcome(provider, &request.send()?)
    }

    fn receive(request: WebhookRequest) -> Result<Received, FeedbackError> {
        feedback::receive(&request).map(Received::from)
    }
}

waymark_channel::export_channel!(EmailChannel);
waymark_channel::channel_manifest!();

/// The key under which the message id goes into the provider's custom-id field.
pub const MESSAGE_ID_FIELD: &str = "waymark_message_id";

/// Headers the adapter or the providers own; `config.headers` may not set them.
const RESERVED_HEADERS: [&str; 14] = [
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "reply-to",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    // SendGrid refuses these in `headers` (Mail Send errors, `headers`).
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
];

/// Which provider sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Postmark's `POST /email`.
    Postmark,
    /// SendGrid's `POST /v3/mail/send`.
    Sendgrid,
    /// Mailgun's `POST /v3/{domain}/messages`.
    Mailgun,
}

impl Provider {
    /// The provider's name, as the `provider` setting gives it.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Postmark => "postmark",
            Provider::Sendgrid => "sendgrid",
            Provider::Mailgun => "mailgun",
        }
    }

    /// Where the provider puts its id for a sent message.
    pub fn provider_id(self) -> ProviderId<'static> {
        match self {
            Provider::Postmark => postmark::PROVIDER_ID,
            Provider::Sendgrid => sendgrid::PROVIDER_ID,
            Provider::Mailgun => mailgun::PROVIDER_ID,
        }
    }

    /// The provider's error text from an error body, if it is in the provider's error shape.
    pub fn error_text(self, body: &Value) -> Option<String> {
        match self {
            Provider::Postmark => postmark::error_text(body),
            Provider::Sendgrid => sendgrid::error_text(body),
            Provider::Mailgun => mailgun::error_text(body),
        }
    }
}

/// The adapter's configuration, as `channel.toml` declares it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    /// `postmark`, `sendgrid` or `mailgun`.
    pub provider: Provider,
    /// The sender.
    pub from: Address,
    /// Where replies go, if not to the sender.
    #[serde(default)]
    pub reply_to: Option<Address>,
    /// Postmark's message stream (Postmark's default, `outbound`, when absent).
    #[serde(default)]
    pub message_stream: Option<String>,
    /// Mailgun's sending domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// Postmark's or Mailgun's open tracking, when set.
    #[serde(default)]
    pub track_opens: Option<bool>,
    /// The provider's API origin; its public one when absent.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Extra email headers, by name (sent in name order).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// SendGrid's or Mailgun's API key (secret).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Postmark's server token (secret).
    #[serde(default)]
    pub server_token: Option<String>,
    /// Postmark webhooks' Basic auth user name (secret; read by [`feedback`]).
    #[serde(default)]
    pub webhook_username: Option<String>,
    /// Postmark webhooks' Basic auth password (secret; read by [`feedback`]).
    #[serde(default)]
    pub webhook_password: Option<String>,
    /// SendGrid's Event Webhook verification key (secret; read by [`feedback`]).
    #[serde(default)]
    pub webhook_public_key: Option<String>,
}

impl Config {
    /// The secret `value`, named `key`, that this provider needs: a permanent error when it is
    /// absent or empty.
    pub fn secret<'a>(
        &self,
        value: &'a Option<String>,
        key: &str,
    ) -> Result<&'a str, DeliveryError> {
        match value.as_deref().map(str::trim) {
            Some(secret) if !secret.is_empty() => Ok(secret),
            _ => Err(DeliveryError::permanent(format!(
                "config.{key} is missing: provider {} needs it",
                self.provider.name()
            ))),
        }
    }

    /// `base_url` without a trailing `/`, checked, or `default`.
    pub fn base_url(&self, default: &str) -> Result<String, DeliveryError> {
        match &self.base_url {
            None => Ok(default.to_string()),
            Some(url) => {
                Url::parse(url)
                    .map_err(|e| DeliveryError::permanent(format!("config.base_url: {e}")))?;
                Ok(url.trim_end_matches('/').to_string())
            }
        }
    }
}

/// The email headers to send: the registration's `headers` in name order, then the RFC 8058
/// pair when the email has an unsubscribe URL.
pub fn email_headers(
    config: &Config,
    email: &Email,
) -> Result<Vec<(String, String)>, DeliveryError> {
    let mut headers = Vec::new();
    for (name, value) in config.headers.clone().unwrap_or_default() {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(DeliveryError::permanent(format!(
                "config.headers may not set {name:?}: the adapter or the provider sets it"
            )));
        }
        headers.push((name, value));
    }
    if let Some(url) = &email.unsubscribe_url {
        // RFC 8058 § 3.1: the URI in angle brackets, and the one-click POST body's key=value.
        headers.push(("List-Unsubscribe".into(), format!("<{url}>")));
        headers.push((
            "List-Unsubscribe-Post".into(),
            "List-Unsubscribe=One-Click".into(),
        ));
    }
    Ok(headers)
}

/// The provider and its request for `message`, or a permanent error saying why the message
/// cannot be sent.
pub fn build_request(message: &Message) -> Result<(Provider, Request), DeliveryError> {
    let config: Config = message.config_as()?;
    config
        .from
        .check("config.from")
        .map_err(DeliveryError::Permanent)?;
    if let Some(reply_to) = &config.reply_to {
        reply_to
            .check("config.reply_to")
            .map_err(DeliveryError::Permanent)?;
    }
    let email = Email::from_message(message)?;
    let headers = email_headers(&config, &email)?;
    let request = match config.provider {
        Provider::Postmark => postmark::request(&config, &email, &headers, &message.id)?,
        Provider::Sendgrid => sendgrid::request(&config, &email, &headers, &message.id)?,
        Provider::Mailgun => mailgun::request(&config, &email, &headers, &message.id)?,
    };
    Ok((config.provider, request))
}

/// What `response` means for the delivery: the SDK's classification, with the provider's own
/// error text (Postmark's `ErrorCode`/`Message`, SendGrid's `errors[].message`) as the reason
/// when the body carries it.
pub fn outcome(provider: Provider, response: &Response) -> Result<Receipt, DeliveryError> {
    let error = match response.outcome_with_id(provider.provider_id()) {
        Ok(receipt) => return Ok(receipt),
        Err(error) => error,
    };
    let Some(text) = response.json().ok().and_then(|b| provider.error_text(&b)) else {
        return Err(error);
    };
    let text: String = text.chars().take(2 * ERROR_SNIPPET_CHARS).collect();
    let mut reason = format!("HTTP {}: {text}", response.status);
    if let Some(after) = response.header("retry-after") {
        let after: String = after.chars().take(40).collect();
        reason.push_str(&format!(" (Retry-After: {after})"));
    }
    Err(match error {
        DeliveryError::Retryable(_) => DeliveryError::Retryable(reason),
        DeliveryError::Permanent(_) => DeliveryError::Permanent(reason),
    })
}

#[cfg(test)]
mod tests;
