//! In-app inbox, unsubscribe and subscription topics (issue 11).
//!
//! - `PUT /v1/channels/{name}` with [`InappRegistration`] registers an `inapp` channel, which
//!   the host delivers into customers' inboxes itself (no component).
//! - `GET /v1/customers/{id}/inbox` (tenant key) and `GET /v1/inbox` (a customer's inbox
//!   token) answer an [`InboxPage`]; `POST /v1/inbox/{message}/{mark}` answers the
//!   [`InboxMessage`] marked.
//! - `POST /v1/customers/{id}/inbox/token` mints an [`InboxToken`] ([`InboxTokenRequest`]);
//!   `POST /v1/inbox/secret` rotates the tenant's [`InboxSecret`].
//! - `GET`/`PUT /v1/customers/{id}/subscriptions`: [`Subscriptions`].

use crate::Millis;
use serde::{Deserialize, Serialize};

/// The body of `PUT /v1/channels/{name}` for an in-app channel: `{"kind": "inapp"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InappRegistration {
    /// Always `"inapp"`.
    pub kind: String,
}

/// One message of a customer's in-app inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InboxMessage {
    /// The message's id (what marks name).
    pub id: String,
    /// The `inapp` channel that delivered it.
    pub channel: String,
    /// The journey that sent it.
    pub journey: String,
    /// The template it names.
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The send's payload as the journey gave it.
    #[serde(default)]
    pub data: serde_json::Value,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicked_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<Millis>,
}

/// A page of an inbox, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InboxPage {
    pub messages: Vec<InboxMessage>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The body of `POST /v1/customers/{id}/inbox/token` (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InboxTokenRequest {
    /// How long the token is valid, in seconds: 1 to 2,592,000 (30 days); 3,600 if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// A customer's inbox token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InboxToken {
    /// `Authorization: Bearer <token>` on `GET /v1/inbox` and `POST /v1/inbox/{message}/{mark}`.
    pub token: String,
    pub customer: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The answer to `POST /v1/inbox/secret`: the tenant's new inbox secret, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InboxSecret {
    /// The HMAC-SHA256 key (its UTF-8 bytes) inbox tokens are signed with from now on.
    pub secret: String,
    /// Whether tokens signed with the secret it replaced still verify (until the next rotation).
    pub previous_still_valid: bool,
}

/// What a customer is unsubscribed from: `GET` answers it, `PUT` replaces it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Subscriptions {
    /// Unsubscribed from everything.
    #[serde(default)]
    pub unsubscribed_all: bool,
    /// Channels the customer left.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Subscription topics the customer left (a send names its topic as its payload's `topic`).
    #[serde(default)]
    pub topics: Vec<String>,
}
