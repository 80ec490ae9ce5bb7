//! Waymark's CRM channel adapter: each message becomes a task in HubSpot, associated with the
//! customer's contact, so a journey's handoff lands in the queue where the sales or CS team
//! already works.
//!
//! - [`task`] — the provider-neutral [`Task`](task::Task) a message asks for: subject and notes
//!   from the rendered template (`payload.content`, a `crm` template) or from the payload,
//!   priority, type, owner, due time, and the contact it is about.
//! - [`hubspot`] — HubSpot's CRM v3 "create a task" request and its error text, as its
//!   reference gives them.
//!
//! Configuration (the registration's settings and secrets, merged) is declared in
//! `channel.toml` and tabled in the README.
//!
//! Outcomes are the SDK's classification ([`Response::outcome_with_id`]) with HubSpot's own
//! error text in the reason: a 2xx is delivered, the task's `id` the receipt; a 429 (HubSpot's
//! ten-secondly or daily limit), a 5xx or a transport failure is retryable; any other status
//! (401 a bad token, 403 a missing scope, 400 a bad property or association) is permanent.
//!
//! [`build_request`] is pure (the time it reads is a parameter) and unit-tested natively;
//! `deliver` reads the wall clock and sends what it built.

pub mod hubspot;
pub mod task;

use serde::Deserialize;
use waymark_channel::http::{Request, Response, Url, ERROR_SNIPPET_CHARS};
use waymark_channel::{Channel, DeliveryError, Message, Receipt};

/// The CRM adapter.
pub struct Crm;

impl Channel for Crm {
    fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
        let request = build_request(&message, now_ms())?;
        outcome(&request.send()?)
    }
}

waymark_channel::export_channel!(Crm);
waymark_channel::channel_manifest!();

/// The wall clock in milliseconds since the epoch (channels see real clocks; 0 if the clock is
/// before the epoch, which HubSpot would refuse as a due date in the past anyway).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The adapter's configuration, as `channel.toml` declares it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// The private app's access token (secret).
    pub access_token: String,
    /// Who the tasks are assigned to, unless the payload says.
    #[serde(default)]
    pub owner_id: Option<String>,
    /// The tasks' priority, unless the payload says.
    #[serde(default)]
    pub priority: Option<String>,
    /// The tasks' type.
    #[serde(default)]
    pub task_type: Option<String>,
    /// Hours from delivery to the due time, unless the payload gives `due_at`.
    #[serde(default)]
    pub due_in_hours: Option<f64>,
    /// The customer attribute holding the HubSpot contact id.
    #[serde(default)]
    pub contact_id_attribute: Option<String>,
    /// A custom task property carrying the message id.
    #[serde(default)]
    pub message_id_property: Option<String>,
    /// HubSpot's API origin.
    #[serde(default)]
    pub base_url: Option<String>,
}

impl Config {
    /// `base_url` without a trailing `/`, checked, or HubSpot's public API.
    pub fn base_url(&self) -> Result<String, DeliveryError> {
        match &self.base_url {
            None => Ok(hubspot::DEFAULT_BASE_URL.to_string()),
            Some(url) => {
                Url::parse(url)
                    .map_err(|e| DeliveryError::permanent(format!("config.base_url: {e}")))?;
                Ok(url.trim_end_matches('/').to_string())
            }
        }
    }
}

/// HubSpot's create-task request for `message`, due relative to `now_ms`, or a permanent error
/// saying why the message cannot become a task.
pub fn build_request(message: &Message, now_ms: i64) -> Result<Request, DeliveryError> {
    let config: Config = message.config_as()?;
    if config.access_token.trim().is_empty() {
        return Err(DeliveryError::permanent("config.access_token is empty"));
    }
    let task = task::Task::from_message(message, &config, now_ms)?;
    hubspot::request(&config, &task, &message.id)
}

/// What HubSpot's answer means: the SDK's classification, the task's `id` as the receipt, and
/// HubSpot's own error text (`category`, `message`, `correlationId`; a rate limit's
/// `policyName`) as the reason when the body carries it.
pub fn outcome(response: &Response) -> Result<Receipt, DeliveryError> {
    let error = match response.outcome_with_id(hubspot::PROVIDER_ID) {
        Ok(receipt) => return Ok(receipt),
        Err(error) => error,
    };
    let Some(text) = response.json().ok().and_then(|b| hubspot::error_text(&b)) else {
        return Err(error);
    };
    let text: String = text.chars().take(2 * ERROR_SNIPPET_CHARS).collect();
    let mut reason = format!("HubSpot HTTP {}: {text}", response.status);
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
