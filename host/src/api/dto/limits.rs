//! Sandbox limits: the operator's defaults and what applies go out; a tenant's overrides go
//! both ways (they are the body of `PUT /v1/admin/tenants/{id}/limits` and part of its answer).

use crate::model::{LimitOverrides, Limits};
use waymark_api::limits as api;

/// The answer to both limit routes: the defaults, the overrides, and the two combined.
pub(crate) fn tenant_limits(defaults: Limits, overrides: LimitOverrides) -> api::TenantLimits {
    api::TenantLimits {
        effective: defaults.with(&overrides).into(),
        overrides: overrides.into(),
        defaults: defaults.into(),
    }
}

impl From<Limits> for api::Limits {
    fn from(limits: Limits) -> Self {
        let Limits {
            max_component_bytes,
            max_memory_bytes,
            decide_deadline_ms,
            deliver_timeout_ms,
            max_commands,
            max_state_bytes,
            max_hostcall_bytes,
            // Loop budgets (issue 15)
            max_enrollment_triggers,
            max_enrollment_sends,
            max_tenant_triggers,
            max_tenant_sends,
            loop_window_ms,
        } = limits;
        api::Limits {
            max_component_bytes,
            max_memory_bytes,
            decide_deadline_ms,
            deliver_timeout_ms,
            max_commands,
            max_state_bytes,
            max_hostcall_bytes,
            // Loop budgets (issue 15)
            max_enrollment_triggers,
            max_enrollment_sends,
            max_tenant_triggers,
            max_tenant_sends,
            loop_window_ms,
        }
    }
}

same_shape!(
    LimitOverrides,
    api::LimitOverrides {
        max_component_bytes,
        max_memory_bytes,
        decide_deadline_ms,
        deliver_timeout_ms,
        max_commands,
        max_state_bytes,
        max_hostcall_bytes,
        // Loop budgets (issue 15)
        max_enrollment_triggers,
        max_enrollment_sends,
        max_tenant_triggers,
        max_tenant_sends,
        loop_window_ms
    }
);
