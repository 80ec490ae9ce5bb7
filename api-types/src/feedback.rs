//! Provider feedback (issue 11): what `POST /v1/hooks/{tenant}/{channel}` answers a provider,
//! and the suppression list (`GET /v1/suppressions`, `DELETE /v1/suppressions/{channel}/{address}`).

use crate::Millis;
use serde::{Deserialize, Serialize};

/// What became of a provider's webhook request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HookReceived {
    /// Events ingested for the first time.
    pub accepted: u64,
    /// Events seen before (the provider retried): not processed again.
    pub duplicates: u64,
    /// Events about no message or address this channel delivered to: ignored.
    pub unmatched: u64,
    /// Addresses newly suppressed (a hard bounce or a complaint).
    pub suppressed: Vec<String>,
    /// One per event the adapter reported, in order.
    pub events: Vec<HookEvent>,
}

/// One event of a webhook request, as the host took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HookEvent {
    /// The event name the journey sees: `delivered`, `opened`, `clicked`, `bounced`,
    /// `complained`, `replied` or `unsubscribed`.
    pub name: String,
    /// The event's id (derived from the feedback), when it was matched to a message.
    pub id: Option<String>,
    /// The customer, when it was matched.
    pub customer: Option<String>,
    /// The message, when it was matched.
    pub message_id: Option<String>,
    /// `accepted`, `duplicate` or `unmatched`.
    pub status: String,
}

/// An address a channel no longer sends to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Suppression {
    pub channel: String,
    /// An email address in lower case, or a phone number as the provider wrote it.
    pub address: String,
    /// `hard_bounce` or `complaint`.
    pub reason: String,
    /// The provider's words, when it gave some.
    pub detail: Option<String>,
    /// The customer whose message bounced or was complained about.
    pub customer: Option<String>,
    pub message_id: Option<String>,
    pub created_at: Millis,
}

/// A page of the tenant's suppressions, by channel then address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SuppressionPage {
    pub suppressions: Vec<Suppression>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next: Option<String>,
}
