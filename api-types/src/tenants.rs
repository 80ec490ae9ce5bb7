//! `POST /v1/admin/tenants` (admin): creating a tenant and its first API key.

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/admin/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// The tenant's name and id: 1-64 characters of `a-z`, `0-9`, `-`, `_`.
    pub name: String,
}

/// The answer to `POST /v1/admin/tenants` (201). The API key is shown once; the host keeps
/// only its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedTenant {
    /// The tenant's id (today equal to its name).
    pub id: String,
    /// The name asked for.
    pub name: String,
    /// The bearer token of the tenant routes (`wmk_...`).
    pub api_key: String,
}
