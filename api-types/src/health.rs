//! `GET /healthz`: whether the server answers at all. (`GET /metrics` is Prometheus text, not
//! JSON, and has no DTO.)

use serde::{Deserialize, Serialize};

/// The answer to `GET /healthz`: `{"status": "ok"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
}
