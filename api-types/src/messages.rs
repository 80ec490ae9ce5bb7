//! Messages: the sends a journey decided, as a customer receives them, with their delivery
//! fate. Shown in `GET /v1/customers/{id}` and `GET /v1/dead-letters`.

use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message. Differs from the host's outbox record (`store::OutboxEntry`): no tenant,
/// customer, version, run or next attempt time, and the optional fields are always present
/// (`null` when unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Message {
    /// The idempotency key, stable across retries and crash replays.
    pub id: String,
    /// The journey that decided it.
    pub journey: String,
    /// The enrollment that decided it (`{journey}/{customer}/{run}`).
    pub enrollment: String,
    /// The channel it goes through.
    pub channel: String,
    /// The journey's template name.
    pub template: String,
    /// The journey's payload for the template.
    pub payload: Value,
    /// Where it is in its life.
    pub status: MessageStatus,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The provider's id for it, once delivered.
    pub provider_id: Option<String>,
    /// When it was decided.
    pub created_at: Millis,
    /// When it was delivered.
    pub delivered_at: Option<Millis>,
    /// For `held`: when the sending policy lets it go (journey time).
    pub release_at: Option<Millis>,
    /// The version of the tenant's stored template `template` that the message renders,
    /// pinned when it was decided; `null` when no stored template has that name (the payload
    /// goes to the channel as it is).
    #[serde(default)]
    pub template_version: Option<u32>,
    /// What the channel reported about the delivery beyond the provider's id (contract 0.1.2's
    /// `receipt-detail`), e.g. an SMS's `{"segments": 2, "encoding": "GSM-7"}`; `null` when
    /// it reported nothing (issue 11, provider feedback).
    #[serde(default)]
    pub receipt: Option<Value>,
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for its next delivery attempt.
    Pending,
    /// Deferred by the sending policy until `release_at`.
    Held,
    /// The channel delivered it.
    Delivered,
    /// Failed permanently or ran out of attempts: a dead letter.
    Dead,
    /// Decided for a customer who may not receive it: recorded, never delivered.
    Suppressed,
}

impl MessageStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Held => "held",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Dead => "dead",
            MessageStatus::Suppressed => "suppressed",
        }
    }
}

impl PartialEq<&str> for MessageStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for MessageStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
