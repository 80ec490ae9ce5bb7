//! How the sandbox is set up ([`SandboxConfig`]) and which per-call limits it can enforce.
//!
//! The operator chooses the sandbox's shape once, at start: the instance pool's size, the memory
//! ceiling its slots reserve, warm instances, the compile cache. Per-call limits
//! ([`model::Limits`]) are [`DEFAULT_LIMITS`] unless a tenant has overrides, and
//! [`SandboxConfig::check_limits`] is the one rule for which overrides this sandbox can honour;
//! the API refuses the others with the [`LimitsError`]'s text.

use super::error::SandboxError;
use crate::model;
use std::path::PathBuf;

/// How the sandbox is set up. Per-call limits are [`model::Limits`]: `defaults` unless a
/// tenant has overrides, never above `memory_ceiling_bytes` (what the instance pool reserves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The limits of tenants without overrides.
    pub defaults: model::Limits,
    /// The most linear memory any tenant's limits may allow: the pooling allocator reserves
    /// slots of this size.
    pub memory_ceiling_bytes: u64,
    /// Whether channels may reach loopback, private, link-local and similar addresses. Off in
    /// production; on for tests that deliver to a sink on loopback.
    pub allow_private_network: bool,
    /// Most instances alive at once across all tenants: sizes the pooling allocator.
    pub max_concurrent_instances: u32,
    /// Idle instances kept across all journeys, channels and tenants: they hold slots of the
    /// instance pool, so this stays well below `max_concurrent_instances`.
    pub max_idle_instances: usize,
    /// Idle instances kept per compiled journey for reuse (0: every call instantiates afresh).
    /// State travels in the context, so an instance holds nothing a customer needs; one that
    /// trapped or hit a limit is dropped, never reused.
    pub warm_instances: usize,
    /// Idle instances kept per channel registration for reuse (0: every delivery instantiates
    /// afresh). Each delivery in flight holds one, so a busy channel needs as many as the
    /// delivery loop runs at once. The same rules as journeys' apply: an instance serves one
    /// registration of one tenant, and one whose call trapped or hit a limit is dropped.
    pub warm_channel_instances: usize,
    /// Where compiled code is cached, keyed by the component's digest and the engine's
    /// compatibility hash (`None`: no cache). Only this host writes there.
    pub cache_dir: Option<PathBuf>,
    /// Whether compiled guest code is listed in `/tmp/perf-<pid>.map`, so that `perf report`
    /// names guest functions (build the guest with `--profile guest-profiling` to keep their
    /// names). For profiling only: the map grows with every component compiled.
    pub perf_map: bool,
}

/// The operator's default limits.
pub const DEFAULT_LIMITS: model::Limits = model::Limits {
    max_component_bytes: 16 << 20,
    max_memory_bytes: 64 << 20,
    decide_deadline_ms: 1_000,
    deliver_timeout_ms: 30_000,
    max_commands: 64,
    max_state_bytes: 64 << 10,
    max_hostcall_bytes: 4 << 20,
    // Loop budgets (issue 15)
    max_enrollment_triggers: 1_000,
    max_enrollment_sends: 100,
    max_tenant_triggers: 10_000_000,
    max_tenant_sends: 1_000_000,
    loop_window_ms: 3_600_000,
    // History kept for replay (issue 13): 90 days.
    history_retention_ms: 90 * 24 * 3_600_000,
};

/// The longest `decide` deadline a tenant may have, in milliseconds.
const MAX_DECIDE_DEADLINE_MS: u64 = 60_000;
/// The longest delivery timeout a tenant may have, in milliseconds.
const MAX_DELIVER_TIMEOUT_MS: u64 = 600_000;

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            defaults: DEFAULT_LIMITS,
            memory_ceiling_bytes: 256 << 20,
            allow_private_network: false,
            max_concurrent_instances: 300,
            max_idle_instances: 150,
            warm_instances: 4,
            // The delivery loop's concurrency.
            warm_channel_instances: 32,
            cache_dir: None,
            perf_map: false,
        }
    }
}

/// Why a set of limits cannot be enforced by this sandbox. The text is written for the tenant
/// (it is the message of an HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("max_memory_bytes must be at least one 64 KiB page")]
    MemoryBelowOnePage,
    #[error("max_memory_bytes may be at most {ceiling} (the operator's ceiling)")]
    MemoryAboveCeiling { ceiling: u64 },
    #[error("decide_deadline_ms and deliver_timeout_ms must be positive")]
    DeadlineNotPositive,
    #[error(
        "decide_deadline_ms may be at most {decide}, deliver_timeout_ms at most {deliver}",
        decide = MAX_DECIDE_DEADLINE_MS,
        deliver = MAX_DELIVER_TIMEOUT_MS
    )]
    DeadlineTooLong,
    #[error("max_commands, max_state_bytes and max_hostcall_bytes must be positive")]
    BudgetNotPositive,
    #[error("max_component_bytes is too small for any component")]
    ComponentTooSmall,
}

/// The message, for callers that take `impl Into<String>` (the API's error constructors).
impl From<LimitsError> for String {
    fn from(error: LimitsError) -> String {
        error.to_string()
    }
}

impl SandboxConfig {
    /// Whether the sandbox can start with this configuration.
    pub(super) fn validate(&self) -> Result<(), SandboxError> {
        if self.max_concurrent_instances == 0 {
            return Err(SandboxError::Internal(
                "invalid sandbox config: max_concurrent_instances must be positive".into(),
            ));
        }
        self.check_limits(&self.defaults)
            .map_err(|e| SandboxError::Internal(format!("invalid default limits: {e}")))
    }

    /// Whether `limits` can be enforced by this sandbox; the error says what is wrong.
    pub fn check_limits(&self, limits: &model::Limits) -> Result<(), LimitsError> {
        if limits.max_memory_bytes < (1 << 16) {
            return Err(LimitsError::MemoryBelowOnePage);
        }
        if limits.max_memory_bytes > self.memory_ceiling_bytes {
            return Err(LimitsError::MemoryAboveCeiling {
                ceiling: self.memory_ceiling_bytes,
            });
        }
        if limits.decide_deadline_ms == 0 || limits.deliver_timeout_ms == 0 {
            return Err(LimitsError::DeadlineNotPositive);
        }
        if limits.decide_deadline_ms > MAX_DECIDE_DEADLINE_MS
            || limits.deliver_timeout_ms > MAX_DELIVER_TIMEOUT_MS
        {
            return Err(LimitsError::DeadlineTooLong);
        }
        if limits.max_commands == 0 || limits.max_state_bytes == 0 || limits.max_hostcall_bytes == 0
        {
            return Err(LimitsError::BudgetNotPositive);
        }
        if limits.max_component_bytes < 8 {
            return Err(LimitsError::ComponentTooSmall);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_sane() {
        let config = SandboxConfig::default();
        assert_eq!(config.validate(), Ok(()));
        let limits = config.defaults;
        assert!(
            limits.max_memory_bytes >= 16 << 20,
            "Rust guests need a few MiB"
        );
        assert!(limits.decide_deadline_ms < limits.deliver_timeout_ms);
        assert!(limits.max_commands > 0 && limits.max_state_bytes > 0);
        assert!(!config.allow_private_network, "private networks are opt-in");
    }

    #[test]
    fn nonsensical_limits_are_refused() {
        let config = SandboxConfig {
            defaults: model::Limits {
                decide_deadline_ms: 0,
                ..DEFAULT_LIMITS
            },
            ..SandboxConfig::default()
        };
        assert!(matches!(config.validate(), Err(SandboxError::Internal(_))));
        let config = SandboxConfig::default();
        let too_much = model::Limits {
            max_memory_bytes: config.memory_ceiling_bytes + 1,
            ..DEFAULT_LIMITS
        };
        let refused = config.check_limits(&too_much).unwrap_err();
        assert_eq!(
            refused,
            LimitsError::MemoryAboveCeiling {
                ceiling: config.memory_ceiling_bytes
            }
        );
        assert!(String::from(refused).contains("ceiling"));
        let too_slow = model::Limits {
            deliver_timeout_ms: MAX_DELIVER_TIMEOUT_MS + 1,
            ..DEFAULT_LIMITS
        };
        assert_eq!(
            config.check_limits(&too_slow).unwrap_err().to_string(),
            "decide_deadline_ms may be at most 60000, deliver_timeout_ms at most 600000"
        );
    }
}
