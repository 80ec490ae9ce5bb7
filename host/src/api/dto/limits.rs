//! Sandbox limits: the operator's defaults and what applies go out; a tenant's overrides go
//! both ways (they are the body of `PUT /v1/admin/tenants/{id}/limits` and part of its answer).

use crate::api::limits::TenantRates;
use crate::model::{LimitOverrides, Limits};
use waymark_api::limits as api;

/// The answer to both limit routes: the defaults, the overrides, and the two combined.
pub(crate) fn tenant_limits(
    defaults: Limits,
    rates: TenantRates,
    overrides: LimitOverrides,
) -> api::TenantLimits {
    api::TenantLimits {
        effective: limits(defaults.with(&overrides), rates.with(&overrides)),
        overrides: overrides.into(),
        defaults: limits(defaults, rates),
    }
}

/// The sandbox's limits, the loop budgets and the edge's rates, as one set.
fn limits(limits: Limits, rates: TenantRates) -> api::Limits {
    let Limits {
        max_component_bytes,
        max_memory_bytes,
        decide_deadline_ms,
        deliver_timeout_ms,
        max_commands,
        max_state_bytes,
        max_hostcall_bytes,
        max_enrollment_triggers,
        max_enrollment_sends,
        max_tenant_triggers,
        max_tenant_sends,
        loop_window_ms,
        history_retention_ms,
    } = limits;
    let TenantRates {
        requests_per_second,
        request_burst,
        events_per_second,
        event_burst,
        max_expensive_requests,
    } = rates;
    api::Limits {
        max_component_bytes,
        max_memory_bytes,
        decide_deadline_ms,
        deliver_timeout_ms,
        max_commands,
        max_state_bytes,
        max_hostcall_bytes,
        max_enrollment_triggers,
        max_enrollment_sends,
        max_tenant_triggers,
        max_tenant_sends,
        loop_window_ms,
        requests_per_second,
        request_burst,
        events_per_second,
        event_burst,
        max_expensive_requests,
        history_retention_ms,
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
        requests_per_second,
        request_burst,
        events_per_second,
        event_burst,
        max_expensive_requests,
        max_enrollment_triggers,
        max_enrollment_sends,
        max_tenant_triggers,
        max_tenant_sends,
        loop_window_ms,
        history_retention_ms
    }
);
