//! What a tenant runs under: sandbox limits (the operator's defaults with the tenant's
//! overrides) and the sending policy (frequency caps, quiet hours).

use super::Millis;
use serde::{Deserialize, Serialize};

/// The sandbox limits a tenant's components run under. The operator's defaults apply unless
/// the tenant has overrides ([`LimitOverrides`]); the sandbox enforces them per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Bytes that may cross the host/guest boundary in one call (wasmtime's hostcall fuel).
    pub max_hostcall_bytes: u64,
    // Loop budgets (issue 15)
    /// Triggers one enrollment may run within `loop_window_ms` (journey time) before it is
    /// paused.
    pub max_enrollment_triggers: u64,
    /// Sends one enrollment may decide within `loop_window_ms` before it is paused.
    pub max_enrollment_sends: u64,
    /// Triggers all of the tenant's enrollments together may run within `loop_window_ms`;
    /// past it each enrollment that runs one is paused.
    pub max_tenant_triggers: u64,
    /// Sends all of the tenant's enrollments together may decide within `loop_window_ms`.
    pub max_tenant_sends: u64,
    /// The window of the budgets above.
    pub loop_window_ms: u64,
    // History kept for replay (issue 13)
    /// How long the event log keeps an event after its ingest (journey time), for backtests
    /// and fidelity checks; 0 keeps it for ever. Separate from the dedup window.
    #[serde(default)]
    pub history_retention_ms: u64,
}

impl Limits {
    /// These limits with `overrides` applied.
    pub fn with(self, overrides: &LimitOverrides) -> Limits {
        Limits {
            max_component_bytes: overrides
                .max_component_bytes
                .unwrap_or(self.max_component_bytes),
            max_memory_bytes: overrides.max_memory_bytes.unwrap_or(self.max_memory_bytes),
            decide_deadline_ms: overrides
                .decide_deadline_ms
                .unwrap_or(self.decide_deadline_ms),
            deliver_timeout_ms: overrides
                .deliver_timeout_ms
                .unwrap_or(self.deliver_timeout_ms),
            max_commands: overrides.max_commands.unwrap_or(self.max_commands),
            max_state_bytes: overrides.max_state_bytes.unwrap_or(self.max_state_bytes),
            max_hostcall_bytes: overrides
                .max_hostcall_bytes
                .unwrap_or(self.max_hostcall_bytes),
            // Loop budgets (issue 15)
            max_enrollment_triggers: overrides
                .max_enrollment_triggers
                .unwrap_or(self.max_enrollment_triggers),
            max_enrollment_sends: overrides
                .max_enrollment_sends
                .unwrap_or(self.max_enrollment_sends),
            max_tenant_triggers: overrides
                .max_tenant_triggers
                .unwrap_or(self.max_tenant_triggers),
            max_tenant_sends: overrides.max_tenant_sends.unwrap_or(self.max_tenant_sends),
            loop_window_ms: overrides.loop_window_ms.unwrap_or(self.loop_window_ms),
            // History kept for replay (issue 13)
            history_retention_ms: overrides
                .history_retention_ms
                .unwrap_or(self.history_retention_ms),
        }
    }

    pub fn decide_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.decide_deadline_ms)
    }

    pub fn deliver_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.deliver_timeout_ms)
    }
}

/// A tenant's departures from the operator's default [`Limits`]; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_component_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_deadline_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_commands: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_state_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hostcall_bytes: Option<u64>,
    // Edge limits (issue 15): the API's per-tenant rates and concurrency; the operator's
    // defaults are the API's (`api::limits::TenantRates`), not the sandbox's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_burst: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_second: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_burst: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expensive_requests: Option<u64>,
    // Loop budgets (issue 15)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_enrollment_triggers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_enrollment_sends: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tenant_triggers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tenant_sends: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_window_ms: Option<u64>,
    // History kept for replay (issue 13)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_retention_ms: Option<u64>,
}

/// A tenant's sending policy: frequency caps and quiet hours defer sends, never drop them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendingPolicy {
    #[serde(default)]
    pub frequency_caps: Vec<FrequencyCap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

/// At most `max` sends through `channel` (`*`: every channel, counted together) to one
/// customer in any `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    pub channel: String,
    pub max: u32,
    pub window_ms: Millis,
}

/// No sends between `start` and `end` (`HH:MM`, local time; `start` after `end` spans
/// midnight) in the customer's time zone: attribute `timezone` (an IANA name), else
/// `default_timezone`. `channels` empty: every channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
    #[serde(default = "utc")]
    pub default_timezone: String,
    #[serde(default)]
    pub channels: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}
