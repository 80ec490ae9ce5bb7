//! Channels (tenant): `PUT /v1/channels/{name}` registers a channel adapter component with
//! its configuration, `GET /v1/channels` lists them. Secrets go in and never come out.

use crate::Object;
use serde::{Deserialize, Serialize};

/// The body of `PUT /v1/channels/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelRegistration {
    /// The component's bytes, base64 (standard alphabet, padded).
    pub component: String,
    /// Configuration the adapter sees (and the API shows).
    #[serde(default)]
    pub settings: Object,
    /// Configuration the adapter sees and the API never shows (only the key names).
    #[serde(default)]
    pub secrets: Object,
    /// Where `deliver` may send: `host`, `host:port` or `*.domain`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How fast the host starts this registration's deliveries, at most (issue 11); none:
    /// as fast as the delivery loop's budgets allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<SendRate>,
}

// Issue 11, crm slice: per-registration send rates.
/// A channel registration's send rate: its deliveries start no faster than `per_second`
/// (fractions allowed: `0.5` is one every two seconds), and after a quiet spell up to `burst`
/// start at once. Messages over the rate wait in order; none is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SendRate {
    /// Messages per second, above 0 and at most 10,000.
    pub per_second: f64,
    /// Deliveries that may start at once after a quiet spell, 1 to 10,000 (default 1).
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// A registered channel: the answer to `PUT /v1/channels/{name}` (201) and an item of
/// [`ChannelList`]. Differs from the host's `store::ChannelRecord`: `secrets` lists only the
/// key names, and there is no `updated_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Channel {
    /// The channel's name, as journeys send through it.
    pub name: String,
    /// 1, 2, ... per registration.
    pub version: u32,
    /// SHA-256 of the component's bytes, hex.
    pub digest: String,
    /// Where `deliver` may send.
    pub allowed_hosts: Vec<String>,
    /// The settings.
    pub settings: Object,
    /// The names of the secrets, never their values.
    pub secrets: Vec<String>,
    /// The registration's send rate, if it declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<SendRate>,
    /// `"inapp"` for a channel the host delivers into customers' inboxes itself (issue 11;
    /// then `digest` is empty); absent for a component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The answer to `GET /v1/channels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelList {
    /// Every channel of the tenant.
    pub channels: Vec<Channel>,
}
