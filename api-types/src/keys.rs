//! `/v1/keys` (tenant, admin key; issue 12): a tenant's scoped API keys, created, listed by
//! prefix and revoked, so a key rotates without downtime.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Ingest only (`POST /v1/events`, `/v1/track`, `/v1/identify`, `/v1/page`,
    /// `/v1/screen`, `/v1/batch`): safe to ship in a browser or a mobile app.
    Write,
    /// Every `GET` of the tenant's data.
    Read,
    /// Everything the tenant may do, keys included.
    Admin,
}

/// The body of `POST /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// What the key may do.
    pub scope: KeyScope,
    /// A note of what the key is for (at most 200 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Key {
    /// The key's first characters (`wmk_` and 8 hex digits): public, names it for revocation.
    pub prefix: String,
    /// What the key may do.
    pub scope: KeyScope,
    /// When it was created.
    pub created_at: Millis,
    /// The note given at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The answer to `POST /v1/keys` (201): the key, shown this once; the host keeps its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedKey {
    /// The key itself (`wmk_...`).
    pub key: String,
    /// Its listing.
    #[serde(flatten)]
    pub listed: Key,
}

/// The answer to `GET /v1/keys`: the tenant's keys in prefix order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KeyList {
    /// The keys made since scoped keys (a tenant's first key from before them is not listed,
    /// and stays an admin key).
    pub keys: Vec<Key>,
}
