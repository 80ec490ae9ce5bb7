//! `GET`/`PUT /v1/policy` (tenant): the sending policy — frequency caps and quiet hours, which
//! defer sends (status `held`), never drop them.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// A tenant's sending policy: the body of `PUT /v1/policy` and the answer of both routes (the
/// host's `model::SendingPolicy`, same shape; the host refuses unknown fields in it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SendingPolicy {
    /// Every cap applies.
    #[serde(default)]
    pub frequency_caps: Vec<FrequencyCap>,
    /// No sends in these hours, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

/// At most `max` sends through `channel` (`*`: every channel, counted together) to one
/// customer in any `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    /// A channel name, or `*`.
    pub channel: String,
    /// Sends allowed per window.
    pub max: u32,
    /// The sliding window.
    pub window_ms: Millis,
}

/// No sends between `start` and `end` (`HH:MM`, local time; `start` after `end` spans
/// midnight) in the customer's time zone: attribute `timezone`, else `default_timezone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`.
    pub end: String,
    /// An IANA time zone name; `UTC` when left out.
    #[serde(default = "utc")]
    pub default_timezone: String,
    /// The channels it applies to; empty: every channel.
    #[serde(default)]
    pub channels: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}
