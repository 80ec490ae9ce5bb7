//! The tenant's sending policy: frequency caps and quiet hours.

use super::prelude::*;
use super::validate::bounded_list;
use crate::model;
use waymark_api::policy::SendingPolicy;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/policy", get(get_policy).put(set_policy))
}

async fn get_policy(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
) -> ApiResult<Json<SendingPolicy>> {
    Ok(Json(state.host.tenant_policy(&tenant)?.into()))
}

/// Replaces the tenant's sending policy: frequency caps and quiet hours.
async fn set_policy(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SendingPolicy>> {
    let policy: SendingPolicy = parse_json(&body?)?;
    let policy = model::SendingPolicy::from(policy);
    bounded_list("frequency_caps", policy.frequency_caps.len())?;
    if let Some(quiet) = &policy.quiet_hours {
        bounded_list("quiet_hours.channels", quiet.channels.len())?;
    }
    crate::policy::validate(&policy).map_err(|m| ApiError::bad_request("invalid_policy", m))?;
    let rt = &state.host;
    rt.store
        .update_tenant(&tenant, |t| t.policy = policy.clone())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {tenant:?}")))?;
    rt.forget_tenant(&tenant);
    tracing::info!(tenant, ?policy, "sending policy changed");
    Ok(Json(policy.into()))
}
