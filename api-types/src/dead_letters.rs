//! Dead letters (tenant): messages that failed for good. `GET /v1/dead-letters?limit=n&after=id`
//! lists them a page at a time; `POST /v1/dead-letters/retry` requeues them with a fresh
//! attempt budget.

use crate::messages::Message;
use serde::{Deserialize, Serialize};

/// The answer to `GET /v1/dead-letters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeadLetters {
    /// Messages with status `dead`, in id order.
    pub dead_letters: Vec<Message>,
    /// When more follow: the last id of this page, to pass as `after` for the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The body of `POST /v1/dead-letters/retry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RetryDeadLetters {
    /// The messages to retry; empty: every dead letter (of `channel`, if given).
    #[serde(default)]
    pub ids: Vec<String>,
    /// Only this channel's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// The answer to `POST /v1/dead-letters/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Requeued {
    /// How many went back to the delivery queue.
    pub requeued: u64,
    /// Which.
    pub ids: Vec<String>,
}
