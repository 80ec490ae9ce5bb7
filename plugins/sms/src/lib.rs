//! Waymark's SMS channel adapter: sends each message as an SMS through the provider the
//! registration's `provider` setting names: `twilio` (Programmable Messaging, [`twilio`]) or
//! `vonage` (the Vonage SMS API, [`vonage`]).
//!
//! Configuration (the registration's settings and secrets, merged) is declared in
//! `channel.toml` and tabled in the README. The recipient is the payload's `to`, else the
//! customer's attribute `phone`, and must be an E.164 number ([`e164`]); the text is the
//! rendered template's `content.text` (the host adds `content` when the send names a stored
//! template: docs/API.md § Templates), else the payload's `text`. A bad number, a missing text
//! or a configuration the provider needs but lacks is a permanent failure, before any request.
//!
//! Each delivery reports its segment count in the receipt ([`segments`]: GSM-7 or UCS-2, parts
//! of 160/153 or 70/67), as `delivery-hints.receipt-detail` (contract 0.1.2): the host keeps
//! `{"segments", "encoding", "units"}` on the message.
//!
//! Twilio's webhooks (status callbacks, inbound messages and `STOP`) are received by
//! [`feedback`] (contract 0.1.2, `receive`).
//!
//! The adapter is a request builder: [`build_request`] is pure and unit-tested natively, each
//! provider's module classifies its answers as the provider documents them, and `deliver` only
//! sends what it built.

use serde::Deserialize;
use waymark_channel::feedback::{FeedbackError, Received, WebhookRequest};
use waymark_channel::http::{Request, Response, Url};
use waymark_channel::serde_json::Value;
use waymark_channel::{log, Channel, DeliveryError, Message, Receipt};

pub mod e164;
pub mod feedback;
pub mod segments;
pub mod twilio;
pub mod vonage;

/// The SMS adapter.
pub struct Sms;

impl Channel for Sms {
    fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
        let (config, sms) = read(&message)?;
        let request = build(&message, &config, &sms)?;
        let cost = segments::count(&sms.text);
        log::info(format!(
            "sms {}: {} via {}, {} units, {} segment(s)",
            message.id,
            cost.encoding.as_str(),
            config.provider.as_str(),
            cost.units,
            cost.count
        ));
        let response = request.send()?;
        let receipt = classify(config.provider, &response)?;
        waymark_channel::hints::receipt_detail(&waymark_channel::json!({
            "segments": cost.count,
            "encoding": cost.encoding.as_str(),
            "units": cost.units,
        }));
        Ok(receipt)
    }

    fn receive(request: WebhookRequest) -> Result<Received, FeedbackError> {
        feedback::receive(&request)
    }
}

waymark_channel::export_channel!(Sms);
waymark_channel::channel_manifest!();

/// Which provider sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Twilio Programmable Messaging.
    Twilio,
    /// The Vonage (formerly Nexmo) SMS API.
    Vonage,
}

impl Provider {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Twilio => "twilio",
            Provider::Vonage => "vonage",
        }
    }
}

/// The adapter's configuration, as `channel.toml` declares it. Which optional keys a provider
/// needs is checked when its request is built.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    /// Who sends.
    pub provider: Provider,
    /// The sender number or id.
    #[serde(default)]
    pub from: Option<String>,
    /// Twilio: a Messaging Service to send from instead of `from`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Where the provider reports delivery status.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// Twilio: the Account SID.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Twilio: the Auth Token (a secret).
    #[serde(default)]
    pub auth_token: Option<String>,
    /// Vonage: the API key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Vonage: the API secret (a secret).
    #[serde(default)]
    pub api_secret: Option<String>,
    /// The provider's API origin, when not its public one.
    #[serde(default)]
    pub base_url: Option<String>,
}

impl Config {
    /// The value of optional key `key` that `provider` needs, or a permanent error naming it.
    /// An empty string counts as missing.
    pub(crate) fn needed<'a>(
        &self,
        value: &'a Option<String>,
        key: &str,
    ) -> Result<&'a str, DeliveryError> {
        match value.as_deref() {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(DeliveryError::permanent(format!(
                "config.{key} is missing (provider {} needs it)",
                self.provider.as_str()
            ))),
        }
    }

    /// A set, non-empty optional value.
    pub(crate) fn given(value: &Option<String>) -> Option<&str> {
        value.as_deref().filter(|v| !v.is_empty())
    }

    /// `base_url` (or `default`) without a trailing slash, checked to be an http(s) origin.
    pub(crate) fn origin(&self, default: &str) -> Result<String, DeliveryError> {
        let base = Config::given(&self.base_url).unwrap_or(default);
        Url::parse(base).map_err(|e| DeliveryError::permanent(format!("config.base_url: {e}")))?;
        Ok(base.trim_end_matches('/').to_string())
    }
}

/// One SMS: who to and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The recipient, E.164 with its `+`.
    pub to: String,
    /// The text.
    pub text: String,
}

/// The configuration and the SMS `message` asks for, or a permanent error saying why none can
/// be sent.
pub fn read(message: &Message) -> Result<(Config, Outgoing), DeliveryError> {
    let config: Config = message.config_as()?;
    Ok((config, sms_of(message)?))
}

/// The recipient (payload `to`, else attribute `phone`) and text (`content.text`, else payload
/// `text`) of `message`.
pub fn sms_of(message: &Message) -> Result<Outgoing, DeliveryError> {
    let to =
        match message.payload.get("to") {
            Some(Value::String(to)) => to.as_str(),
            Some(other) => {
                return Err(DeliveryError::permanent(format!(
                    "payload.to must be a string, not {other}"
                )))
            }
            None => match message.customer.attributes.get("phone") {
                Some(Value::String(phone)) => phone.as_str(),
                Some(other) => {
                    return Err(DeliveryError::permanent(format!(
                        "the customer's phone must be a string, not {other}"
                    )))
                }
                None => return Err(DeliveryError::permanent(
                    "no recipient: the payload has no `to` and the customer no `phone` attribute",
                )),
            },
        };
    let to = e164::parse(to)
        .map_err(|e| DeliveryError::permanent(format!("recipient: {e}")))?
        .to_string();
    let text = message
        .payload
        .get("content")
        .and_then(|content| content.get("text"))
        .or_else(|| message.payload.get("text"));
    let text = match text {
        Some(Value::String(text)) if !text.is_empty() => text.clone(),
        Some(Value::String(_)) => return Err(DeliveryError::permanent("the text is empty")),
        Some(other) => {
            return Err(DeliveryError::permanent(format!(
                "the text must be a string, not {other}"
            )))
        }
        None => {
            return Err(DeliveryError::permanent(
                "no text: the send names no sms template with a `text` part and its payload has no `text`",
            ))
        }
    };
    Ok(Outgoing { to, text })
}

/// The provider's request for `message`, or a permanent error naming what is wrong.
pub fn build_request(message: &Message) -> Result<Request, DeliveryError> {
    let (config, sms) = read(message)?;
    build(message, &config, &sms)
}

fn build(message: &Message, config: &Config, sms: &Outgoing) -> Result<Request, DeliveryError> {
    match config.provider {
        Provider::Twilio => twilio::build_request(config, sms),
        Provider::Vonage => vonage::build_request(message, config, sms),
    }
}

/// What `provider`'s answer means for the delivery.
pub fn classify(provider: Provider, response: &Response) -> Result<Receipt, DeliveryError> {
    match provider {
        Provider::Twilio => twilio::classify(response),
        Provider::Vonage => vonage::classify(response),
    }
}

/// `application/x-www-form-urlencoded` of `pairs`, in order.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        body.append_pair(name, value);
    }
    body.finish()
}

/// The `Retry-After` a provider sent, for a retryable reason.
pub(crate) fn retry_after(response: &Response) -> String {
    match response.header("retry-after") {
        Some(after) => format!(
            " (Retry-After: {})",
            after.chars().take(40).collect::<String>()
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
