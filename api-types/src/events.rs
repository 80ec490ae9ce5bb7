//! `POST /v1/events` (tenant): what customers did, one event or a batch, deduplicated by id.

use crate::{Millis, Object};
use serde::{Deserialize, Serialize};

/// An event as a tenant posts it; the body of `POST /v1/events` is one of these or an array
/// of them (1 to 10,000). Differs from [`Event`], what journeys see: `properties` and
/// `timestamp` may be left out (`{}` and the server's now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Tenant-chosen; a seen id within the dedup window is a duplicate.
    pub id: String,
    /// The customer's id.
    pub customer: String,
    /// What happened (`signed_up`, `identify`, `opened`, ...).
    pub name: String,
    /// Anything; `{}` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Object>,
    /// When it happened; the server's now when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Millis>,
}

/// An event as journeys see it (in a [`crate::journeys::Trigger`]): properties and
/// timestamp filled in (the host's `model::Event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Event {
    /// Tenant-chosen id.
    pub id: String,
    /// The customer's id.
    pub customer: String,
    /// What happened.
    pub name: String,
    /// Anything.
    #[serde(default)]
    pub properties: Object,
    /// When it happened.
    pub timestamp: Millis,
}

/// The answer to `POST /v1/events` (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EventsAccepted {
    /// How many were new.
    pub accepted: u64,
    /// How many were seen before (within the dedup window, or earlier in the batch).
    pub duplicates: u64,
    /// One per posted event, in order.
    pub results: Vec<EventResult>,
}

/// What became of one posted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EventResult {
    /// The event's id.
    pub id: String,
    /// Accepted or duplicate.
    pub status: EventStatus,
}

/// Whether an event is new (the host's `store::Ingested`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored and routed to the customer's journeys.
    Accepted,
    /// Seen before: not processed again.
    Duplicate,
}

impl EventStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Accepted => "accepted",
            EventStatus::Duplicate => "duplicate",
        }
    }
}

impl PartialEq<&str> for EventStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
