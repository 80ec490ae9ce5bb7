//! Waymark's Slack channel adapter, for CS and sales notifications: posts each message to
//! Slack, by the registration's `mode` setting, through an incoming webhook ([`webhook`]) or
//! as a bot with `chat.postMessage` ([`bot`]).
//!
//! Configuration (settings and secrets, merged) is declared in `channel.toml` and tabled in
//! the README. The message's Block Kit blocks are the rendered template's `content.blocks` (the
//! host adds `content` when the send names a stored `slack` template: docs/API.md § Templates),
//! else the payload's `blocks`; its text is the payload's `text`, else the text of the blocks
//! ([`fallback_text`]), because Slack shows `text` in notifications and where blocks cannot be
//! shown. A message with neither is a permanent failure, as is a configuration the mode needs
//! but lacks, before any request.
//!
//! Thread replies to the bot's posts come back through the Events API as `replied` feedback
//! ([`feedback`], contract 0.1.2), checked with the app's signing secret.
//!
//! [`build_request`] is pure and unit-tested natively; each mode's module classifies Slack's
//! answers as Slack documents them.

use serde::Deserialize;
use waymark_channel::feedback::{FeedbackError, Received, WebhookRequest};
use waymark_channel::http::{Request, Response, Url};
use waymark_channel::serde_json::{Map, Value};
use waymark_channel::{Channel, DeliveryError, Message, Receipt};

pub mod bot;
pub mod feedback;
pub mod webhook;

/// The Slack adapter.
pub struct Slack;

impl Channel for Slack {
    fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
        let config: Config = message.config_as()?;
        let response = build_request(&message)?.send()?;
        classify(config.mode, &response)
    }

    fn receive(request: WebhookRequest) -> Result<Received, FeedbackError> {
        feedback::receive(&request)
    }
}

waymark_channel::export_channel!(Slack);
waymark_channel::channel_manifest!();

/// How the adapter reaches Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An incoming webhook: one fixed channel, no message id back.
    Webhook,
    /// `chat.postMessage` with a bot token: any channel the bot is in, the message's `ts` back.
    Bot,
}

impl Mode {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Webhook => "webhook",
            Mode::Bot => "bot",
        }
    }
}

/// The adapter's configuration, as `channel.toml` declares it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    /// Webhook or bot.
    pub mode: Mode,
    /// Bot mode: the conversation to post in, unless the payload names one.
    #[serde(default)]
    pub channel: Option<String>,
    /// Bot mode: the Web API's base URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Webhook mode: the webhook URL (a secret).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Bot mode: the bot token (a secret).
    #[serde(default)]
    pub bot_token: Option<String>,
    /// The Slack app's signing secret, for its Events API requests (a secret; read by
    /// [`feedback`]).
    #[serde(default)]
    pub signing_secret: Option<String>,
}

impl Config {
    /// The value of optional key `key` that the mode needs, or a permanent error naming it.
    pub(crate) fn needed<'a>(
        &self,
        value: &'a Option<String>,
        key: &str,
    ) -> Result<&'a str, DeliveryError> {
        match value.as_deref() {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(DeliveryError::permanent(format!(
                "config.{key} is missing (mode {} needs it)",
                self.mode.as_str()
            ))),
        }
    }
}

/// What to post: the fallback text and the blocks, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// The `text` field: required by both APIs as the notification and fallback text.
    pub text: String,
    /// The Block Kit `blocks`, if the message has any.
    pub blocks: Option<Vec<Value>>,
}

impl Post {
    /// `{"text", "blocks"?}` plus `extra` fields first.
    pub(crate) fn body(&self, extra: Map<String, Value>) -> Value {
        let mut body = extra;
        body.insert("text".into(), Value::String(self.text.clone()));
        if let Some(blocks) = &self.blocks {
            body.insert("blocks".into(), Value::Array(blocks.clone()));
        }
        Value::Object(body)
    }
}

/// The post `message` asks for: blocks from `content.blocks` or the payload's `blocks`; text
/// from the payload's `text`, else the blocks' own text.
pub fn post_of(message: &Message) -> Result<Post, DeliveryError> {
    let payload = &message.payload;
    let blocks = payload
        .get("content")
        .and_then(|content| content.get("blocks"))
        .or_else(|| payload.get("blocks"));
    let blocks = match blocks {
        None | Some(Value::Null) => None,
        Some(Value::Array(blocks)) => Some(blocks.clone()),
        Some(other) => {
            return Err(DeliveryError::permanent(format!(
                "blocks must be a JSON array of Block Kit blocks, not {other}"
            )))
        }
    };
    let text = match payload.get("text") {
        Some(Value::String(text)) if !text.is_empty() => text.clone(),
        Some(Value::String(_)) | None => blocks.as_deref().map(fallback_text).unwrap_or_default(),
        Some(other) => {
            return Err(DeliveryError::permanent(format!(
                "payload.text must be a string, not {other}"
            )))
        }
    };
    if text.is_empty() {
        return Err(DeliveryError::permanent(
            "no text: the payload has no `text` and no block has any text to fall back on",
        ));
    }
    Ok(Post { text, blocks })
}

/// The text of Block Kit `blocks`, one line per text object, in order: a header's or section's
/// `text`, a section's `fields`, a context's `elements`. Slack asks for a `text` beside blocks
/// for notifications and screen readers; this is what the blocks say.
pub fn fallback_text(blocks: &[Value]) -> String {
    let text_of = |object: &Value| {
        object
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut lines = Vec::new();
    for block in blocks {
        if let Some(line) = block.get("text").and_then(text_of) {
            lines.push(line);
        }
        for list in ["fields", "elements"] {
            if let Some(items) = block.get(list).and_then(Value::as_array) {
                lines.extend(items.iter().filter_map(text_of));
            }
        }
    }
    lines.join("\n")
}

/// The request for `message`, or a permanent error naming what is wrong.
pub fn build_request(message: &Message) -> Result<Request, DeliveryError> {
    let config: Config = message.config_as()?;
    let post = post_of(message)?;
    match config.mode {
        Mode::Webhook => webhook::build_request(&config, &post),
        Mode::Bot => bot::build_request(message, &config, &post),
    }
}

/// What Slack's answer means for the delivery, by mode.
pub fn classify(mode: Mode, response: &Response) -> Result<Receipt, DeliveryError> {
    match mode {
        Mode::Webhook => webhook::classify(response),
        Mode::Bot => bot::classify(response),
    }
}

/// A URL the host can send to, or a permanent error naming the key it came from (without the
/// URL, which may be a secret).
pub(crate) fn checked_url(url: &str, key: &str) -> Result<(), DeliveryError> {
    Url::parse(url)
        .map(|_| ())
        .map_err(|_| DeliveryError::permanent(format!("config.{key} is not an http(s) URL")))
}

/// The first 200 characters of the body, and the `Retry-After` if any: an error's reason.
pub(crate) fn described(response: &Response) -> String {
    let mut reason: String = response.text().chars().take(200).collect();
    if let Some(after) = response.header("retry-after") {
        reason.push_str(&format!(
            " (Retry-After: {})",
            after.chars().take(40).collect::<String>()
        ));
    }
    reason
}

#[cfg(test)]
mod tests;
