//! SendGrid's v3 Mail Send API, as its reference gives it:
//! <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>,
//! <https://www.twilio.com/docs/sendgrid/for-developers/sending-email/personalizations> and
//! <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors>.
//!
//! - `POST {base}/v3/mail/send`, `Authorization: Bearer <API key>`,
//!   `Content-Type: application/json`;
//! - a JSON body with `personalizations` (`[{"to": [{"email","name"}], "custom_args"}]`),
//!   `from` and `reply_to` (`{"email","name"}`), `subject`, `content`
//!   (`[{"type": "text/plain"|"text/html", "value"}]`, text/plain first, as the reference
//!   requires), `headers` (an object of header names to strings);
//! - success is `202 Accepted` with an empty body and the message's id in the `X-Message-Id`
//!   header; errors are `{"errors": [{"message","field","help"}]}` with 400 (invalid
//!   request), 401, 403, 413, 429 (rate limited) or 5xx.
//!
//! SendGrid has no idempotency key; the message id travels as the personalization's
//! `custom_args.waymark_message_id` (a string, as custom args must be), which SendGrid
//! echoes in its event webhook.

use waymark_channel::http::{ProviderId, Request};
use waymark_channel::serde_json::{json, Map, Value};
use waymark_channel::DeliveryError;

use crate::address::Address;
use crate::email::Email;
use crate::{Config, MESSAGE_ID_FIELD};

/// SendGrid's public (global) API; EU regional subusers set `base_url` to
/// `https://api.eu.sendgrid.com`.
pub const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";

/// Where SendGrid puts its id for an accepted message: the `X-Message-Id` header.
pub const PROVIDER_ID: ProviderId<'static> = ProviderId::Header("X-Message-Id");

/// The request sending `email` through SendGrid.
pub fn request(
    config: &Config,
    email: &Email,
    headers: &[(String, String)],
    message_id: &str,
) -> Result<Request, DeliveryError> {
    let key = config.secret(&config.api_key, "api_key")?;
    let mut content = Vec::new();
    if let Some(text) = &email.text {
        content.push(json!({"type": "text/plain", "value": text}));
    }
    if let Some(html) = &email.html {
        content.push(json!({"type": "text/html", "value": html}));
    }
    let mut body = Map::new();
    body.insert(
        "personalizations".into(),
        json!([{
            "to": [mailbox(&email.to)],
            "custom_args": { MESSAGE_ID_FIELD: message_id },
        }]),
    );
    body.insert("from".into(), mailbox(&config.from));
    if let Some(reply_to) = &config.reply_to {
        body.insert("reply_to".into(), mailbox(reply_to));
    }
    body.insert("subject".into(), json!(email.subject));
    body.insert("content".into(), Value::Array(content));
    if !headers.is_empty() {
        let headers: Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        body.insert("headers".into(), Value::Object(headers));
    }

    Ok(Request::post(format!(
        "{}/v3/mail/send",
        config.base_url(DEFAULT_BASE_URL)?
    ))
    .header("Authorization", format!("Bearer {key}"))
    .json(&Value::Object(body)))
}

/// `{"email"}` or `{"email","name"}`.
fn mailbox(address: &Address) -> Value {
    match address.name() {
        Some(name) => json!({"email": address.email(), "name": name}),
        None => json!({"email": address.email()}),
    }
}

/// SendGrid's error text from an error body, `{"errors": [{"message","field","help"}]}`:
/// each message, with its field when it names one, joined by `; `.
pub fn error_text(body: &Value) -> Option<String> {
    let errors = body.get("errors")?.as_array()?;
    let texts: Vec<String> = errors
        .iter()
        .filter_map(|error| {
            let message = error.get("message")?.as_str()?;
            Some(match error.get("field").and_then(Value::as_str) {
                Some(field) => format!("{message} (field {field})"),
                None => message.to_string(),
            })
        })
        .collect();
    (!texts.is_empty()).then(|| format!("SendGrid: {}", texts.join("; ")))
}
