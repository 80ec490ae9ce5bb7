//! Postmark's "send a single email" API, as its reference gives it:
//! <https://postmarkapp.com/developer/user-guide/send-email-with-api> and
//! <https://postmarkapp.com/developer/api/email-api>.
//!
//! - `POST {base}/email`, `Accept: application/json`, `Content-Type: application/json`, the
//!   server's token in `X-Postmark-Server-Token` (a wrong or missing one answers 401);
//! - a JSON body with `From`, `To` (each `addr` or `Name <addr>`), `Subject`, `HtmlBody`
//!   and/or `TextBody`, `ReplyTo`, `Headers` as `[{"Name","Value"}]`, `MessageStream`,
//!   `Metadata` (string values), `TrackOpens`;
//! - a 200 answers `{"To","SubmittedAt","MessageID","ErrorCode":0,"Message":"OK"}`; errors
//!   answer `{"ErrorCode","Message"}` with 422 (the request is invalid: an unverified sender,
//!   an inactive recipient, ...), 401, 429 (rate limited) or 5xx
//!   (<https://postmarkapp.com/developer/api/overview#response-codes>, and
//!   <https://postmarkapp.com/support/article/troubleshooting-422-unprocessable-entity-errors>).
//!
//! Postmark has no idempotency key; the message id travels as `Metadata.waymark_message_id`,
//! which Postmark echoes in its webhooks.

use waymark_channel::http::{ProviderId, Request};
use waymark_channel::serde_json::{json, Map, Value};
use waymark_channel::DeliveryError;

use crate::email::Email;
use crate::{Config, MESSAGE_ID_FIELD};

/// Postmark's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";

/// Where Postmark puts its id for a sent message: the 200 body's `MessageID`.
pub const PROVIDER_ID: ProviderId<'static> = ProviderId::JsonField("MessageID");

/// The request sending `email` through Postmark.
pub fn request(
    config: &Config,
    email: &Email,
    headers: &[(String, String)],
    message_id: &str,
) -> Result<Request, DeliveryError> {
    let token = config.secret(&config.server_token, "server_token")?;
    let mut body = Map::new();
    body.insert("From".into(), json!(config.from.to_header()));
    body.insert("To".into(), json!(email.to.to_header()));
    body.insert("Subject".into(), json!(email.subject));
    if let Some(html) = &email.html {
        body.insert("HtmlBody".into(), json!(html));
    }
    if let Some(text) = &email.text {
        body.insert("TextBody".into(), json!(text));
    }
    if let Some(reply_to) = &config.reply_to {
        body.insert("ReplyTo".into(), json!(reply_to.to_header()));
    }
    if !headers.is_empty() {
        let headers: Vec<Value> = headers
            .iter()
            .map(|(name, value)| json!({"Name": name, "Value": value}))
            .collect();
        body.insert("Headers".into(), Value::Array(headers));
    }
    if let Some(stream) = &config.message_stream {
        body.insert("MessageStream".into(), json!(stream));
    }
    if let Some(track) = config.track_opens {
        body.insert("TrackOpens".into(), json!(track));
    }
    body.insert("Metadata".into(), json!({ MESSAGE_ID_FIELD: message_id }));

    Ok(
        Request::post(format!("{}/email", config.base_url(DEFAULT_BASE_URL)?))
            .header("Accept", "application/json")
            .header("X-Postmark-Server-Token", token)
            .json(&Value::Object(body)),
    )
}

/// Postmark's error text from an error body, `{"ErrorCode": 300, "Message": "..."}`, as
/// `Postmark error 300: ...`.
pub fn error_text(body: &Value) -> Option<String> {
    let message = body.get("Message")?.as_str()?;
    match body.get("ErrorCode") {
        Some(code) => Some(format!("Postmark error {code}: {message}")),
        None => Some(format!("Postmark: {message}")),
    }
}
