//! `chat.postMessage` with a bot token.
//!
//! As Slack documents it (<https://api.slack.com/methods/chat.postMessage>, and
//! <https://api.slack.com/docs/rate-limits>): `POST https://slack.com/api/chat.postMessage`
//! with `Authorization: Bearer xoxb-...` and a JSON body (`Content-Type: application/json;
//! charset=utf-8`, without which Slack warns `missing_charset`) of `channel`, `text` and
//! `blocks`. Slack answers HTTP 200 with `{"ok": true, "channel", "ts", "message"}`, the `ts`
//! identifying the message, or `{"ok": false, "error": "..."}`; when rate limited, HTTP 429 with
//! `Retry-After` (seconds) and the error `ratelimited`. `channel_not_found`, `not_in_channel`,
//! `invalid_auth`, `is_archived`, `invalid_blocks`, ... will fail the same way every time.

use waymark_channel::http::{Request, Response};
use waymark_channel::serde_json::{Map, Value};
use waymark_channel::{DeliveryError, Message, Receipt};

use crate::{checked_url, described, Config, Post};

/// Slack's Web API base.
pub const API: &str = "https://slack.com/api";

/// `ok: false` errors that are Slack's trouble, not the request's: worth retrying.
pub const RETRYABLE_ERRORS: [&str; 5] = [
    "ratelimited",
    "rate_limited",
    "internal_error",
    "service_unavailable",
    "request_timeout",
];

/// The `chat.postMessage` request for `post`, in the payload's `channel` or the configured
/// one.
pub fn build_request(
    message: &Message,
    config: &Config,
    post: &Post,
) -> Result<Request, DeliveryError> {
    let token = config.needed(&config.bot_token, "bot_token")?;
    let channel = match message.payload.get("channel") {
        Some(Value::String(channel)) if !channel.is_empty() => channel.as_str(),
        Some(Value::String(_)) | None => config.needed(&config.channel, "channel")?,
        Some(other) => {
            return Err(DeliveryError::permanent(format!(
                "payload.channel must be a string, not {other}"
            )))
        }
    };
    let base = config
        .base_url
        .as_deref()
        .filter(|b| !b.is_empty())
        .unwrap_or(API);
    let url = format!("{}/chat.postMessage", base.trim_end_matches('/'));
    checked_url(&url, "base_url")?;
    let mut fields = Map::new();
    fields.insert("channel".into(), Value::String(channel.to_string()));
    Ok(Request::post(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json; charset=utf-8")
        .json(&post.body(fields)))
}

/// HTTP 429 and 5xx retryable, other non-2xx permanent; on 2xx, `ok: true` is delivered with
/// the message's `ts`, and `ok: false` is retryable for [`RETRYABLE_ERRORS`] and permanent for
/// any other error, its name kept.
pub fn classify(response: &Response) -> Result<Receipt, DeliveryError> {
    if !response.is_success() {
        let reason = format!("Slack HTTP {}: {}", response.status, described(response));
        return if response.status == 429 || response.status >= 500 {
            response.pass_on_retry_after();
            Err(DeliveryError::Retryable(reason))
        } else {
            Err(DeliveryError::Permanent(reason))
        };
    }
    let body = response.json().unwrap_or(Value::Null);
    if body.get("ok").and_then(Value::as_bool) == Some(true) {
        let ts = body.get("ts").and_then(Value::as_str).map(str::to_string);
        return Ok(Receipt { provider_id: ts });
    }
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no error named");
    let reason = format!("Slack chat.postMessage: {error}");
    if RETRYABLE_ERRORS.contains(&error) {
        Err(DeliveryError::Retryable(reason))
    } else {
        Err(DeliveryError::Permanent(reason))
    }
}
