//! The error body every route answers with on failure: a status plus
//! `{"error": {"code": "snake_case_code", "message": "human text"}}`, with extra fields for the
//! errors that carry more (`reason` of `decide_failed`).

use serde::{Deserialize, Serialize};

/// The whole error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ApiError,
}

/// What went wrong, machine- and human-readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiError {
    /// Machine-readable, `snake_case`: `unauthorized`, `not_found`, `invalid_json`,
    /// `invalid_event`, `invalid_component`, `forbidden_import`, `invalid_spec`,
    /// `invalid_config`, `invalid_policy`, `invalid_input`, `invalid_name`, `too_large`,
    /// `conflict`, `tenant_exists`, `task_conflict`, `clock_not_manual`, `decide_failed`,
    /// `internal`, ...
    pub code: String,
    /// For a person; never empty.
    pub message: String,
    /// Only with `decide_failed`: why the guest failed (`trap`, `deadline`, `memory`,
    /// `guest_error`, `invalid_commands`, `instantiate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
