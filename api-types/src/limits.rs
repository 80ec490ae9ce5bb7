//! `GET`/`PUT /v1/admin/tenants/{id}/limits` (admin): the sandbox limits a tenant's components
//! run under — the operator's defaults, the tenant's overrides, and what applies.

use serde::{Deserialize, Serialize};

/// A full set of sandbox limits (the host's `model::Limits`, same shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Limits {
    /// The largest component accepted at upload, in bytes.
    pub max_component_bytes: u64,
    /// Linear memory per instance, in bytes.
    pub max_memory_bytes: u64,
    /// How long one `describe` or `decide` may run.
    pub decide_deadline_ms: u64,
    /// How long one `deliver` may take, its HTTP requests included.
    pub deliver_timeout_ms: u64,
    /// Commands per decision.
    pub max_commands: u64,
    /// Bytes of enrollment state a decision may set.
    pub max_state_bytes: u64,
    /// Bytes that may cross the host/guest boundary in one call.
    pub max_hostcall_bytes: u64,
    // Edge limits (issue 15): the API's per-tenant rates and concurrency.
    /// Requests per second, sustained (0: unlimited).
    pub requests_per_second: u64,
    /// Requests a tenant may make at once above the rate.
    pub request_burst: u64,
    /// Events per second, sustained (0: unlimited).
    pub events_per_second: u64,
    /// Events a tenant may post at once above the rate.
    pub event_burst: u64,
    /// Expensive requests (uploads, mass retries, listings) in flight at once (0: unlimited).
    pub max_expensive_requests: u64,
    // Loop budgets (issue 15)
    /// Triggers one enrollment may run within `loop_window_ms` before it is paused.
    pub max_enrollment_triggers: u64,
    /// Sends one enrollment may decide within `loop_window_ms` before it is paused.
    pub max_enrollment_sends: u64,
    /// Triggers all of the tenant's enrollments together may run within `loop_window_ms`.
    pub max_tenant_triggers: u64,
    /// Sends all of the tenant's enrollments together may decide within `loop_window_ms`.
    pub max_tenant_sends: u64,
    /// The window of the loop budgets, in milliseconds of journey time.
    pub loop_window_ms: u64,
    // History kept for replay (issue 13)
    /// How long the event log keeps an event for backtests, in milliseconds of journey time
    /// after its ingest (0: for ever).
    #[serde(default)]
    pub history_retention_ms: u64,
}

/// A tenant's departures from the defaults; a field left out keeps the default. The body of
/// `PUT /v1/admin/tenants/{id}/limits` (the host's `model::LimitOverrides`, same shape).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`Limits::max_component_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_component_bytes: Option<u64>,
    /// See [`Limits::max_memory_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    /// See [`Limits::decide_deadline_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_deadline_ms: Option<u64>,
    /// See [`Limits::deliver_timeout_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_timeout_ms: Option<u64>,
    /// See [`Limits::max_commands`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_commands: Option<u64>,
    /// See [`Limits::max_state_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_state_bytes: Option<u64>,
    /// See [`Limits::max_hostcall_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hostcall_bytes: Option<u64>,
    // Edge limits (issue 15).
    /// See [`Limits::requests_per_second`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u64>,
    /// See [`Limits::request_burst`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_burst: Option<u64>,
    /// See [`Limits::events_per_second`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_second: Option<u64>,
    /// See [`Limits::event_burst`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_burst: Option<u64>,
    /// See [`Limits::max_expensive_requests`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expensive_requests: Option<u64>,
    // Loop budgets (issue 15)
    /// See [`Limits::max_enrollment_triggers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_enrollment_triggers: Option<u64>,
    /// See [`Limits::max_enrollment_sends`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_enrollment_sends: Option<u64>,
    /// See [`Limits::max_tenant_triggers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tenant_triggers: Option<u64>,
    /// See [`Limits::max_tenant_sends`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tenant_sends: Option<u64>,
    /// See [`Limits::loop_window_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_window_ms: Option<u64>,
    // History kept for replay (issue 13)
    /// See [`Limits::history_retention_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_retention_ms: Option<u64>,
}

/// The answer to both limit routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TenantLimits {
    /// The defaults with the overrides applied: what the sandbox enforces.
    pub effective: Limits,
    /// The tenant's overrides.
    pub overrides: LimitOverrides,
    /// The operator's defaults.
    pub defaults: Limits,
}
