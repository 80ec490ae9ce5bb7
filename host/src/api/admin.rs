//! The operator's routes (admin token): tenants, their sandbox limits, the manual clock.

use super::auth::digest;
use super::dto;
use super::prelude::*;
use crate::clock::ClockError;
use crate::model::LimitOverrides;
use crate::store::{StoreError, Tenant};
use waymark_api::clock::{AdvanceClock, Clock, ClockAdvanced};
use waymark_api::limits::{self as api_limits, TenantLimits};
use waymark_api::tenants::{CreatedTenant, NewTenant};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants", post(create_tenant))
        .route(
            "/v1/admin/tenants/{id}/limits",
            get(get_tenant_limits).put(set_tenant_limits),
        )
        .route("/v1/admin/clock", get(clock))
        // Cluster mode (issue 16): a node's front answers this route itself (`api::cluster`).
        .route("/v1/admin/cluster", get(single))
        .route("/v1/admin/cluster/forwards", post(take_forwards))
        .route("/v1/admin/clock/advance", post(advance_clock))
}

async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedTenant>)> {
    let input: NewTenant = parse_json(&body?)?;
    valid_name("tenant", &input.name)?;
    // The first key is an admin key, listed and revocable like any other (issue 12).
    let (api_key, prefix) = super::keys::new_key()?;
    let first = crate::store::AccessKey {
        tenant: input.name.clone(),
        prefix,
        scope: crate::store::Scope::Admin,
        created_at: state.host.clock.now(),
        name: Some("created with the tenant".into()),
    };
    let tenant = Tenant {
        id: input.name.clone(),
        created_at: state.host.clock.now(),
        limits: LimitOverrides::default(),
        policy: Default::default(),
    };
    state
        .host
        .store
        .create_tenant_with_key(&tenant, &first, &hex::encode(digest(&api_key)))
        .await
        .map_err(|e| match e {
            StoreError::Exists(what) => ApiError::new(
                StatusCode::CONFLICT,
                "tenant_exists",
                format!("{what} already exists"),
            ),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedTenant {
            id: tenant.id,
            name: input.name,
            api_key,
        }),
    ))
}

/// `GET /v1/admin/cluster` on a single server: no nodes, no partitions.
async fn single(_: Admin) -> Json<waymark_api::cluster::ClusterStatus> {
    Json(waymark_api::cluster::ClusterStatus {
        mode: waymark_api::cluster::ClusterMode::Single,
        node: None,
        partition_count: 0,
        nodes: Vec::new(),
        partitions: Vec::new(),
    })
}

async fn clock(State(state): State<AppState>, _: Admin) -> Json<Clock> {
    Json(dto::clock(&state.host.clock))
}

async fn advance_clock(
    State(state): State<AppState>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ClockAdvanced>> {
    let input: AdvanceClock = parse_json(&body?)?;
    let rt = &state.host;
    let now = rt.clock.advance(input.by_ms).map_err(|e| match e {
        ClockError::NotManual => {
            ApiError::new(StatusCode::CONFLICT, "clock_not_manual", e.to_string())
        }
        ClockError::Backwards | ClockError::Overflow => {
            ApiError::bad_request("invalid_input", e.to_string())
        }
    })?;
    rt.store.save_manual_clock(now).await?;
    Ok(Json(ClockAdvanced { now }))
}

async fn get_tenant_limits(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<TenantLimits>> {
    let tenant = state
        .host
        .store
        .tenant(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {id:?}")))?;
    Ok(Json(limits(&state, tenant.limits)))
}

/// Replaces a tenant's limit overrides (fields left out take the operator's defaults).
async fn set_tenant_limits(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<TenantLimits>> {
    let overrides: api_limits::LimitOverrides = parse_json(&body?)?;
    let overrides = LimitOverrides::from(overrides);
    let rt = &state.host;
    let sandbox = rt.registry.sandbox().config();
    sandbox
        .check_limits(&sandbox.defaults.with(&overrides))
        .map_err(|m| ApiError::bad_request("invalid_input", m))?;
    let tenant = rt
        .store
        .update_tenant(&id, |t| t.limits = overrides)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {id:?}")))?;
    rt.forget_tenant(&id);
    state.edge.forget(&id);
    tracing::info!(tenant = %id, ?overrides, "tenant limits changed");
    Ok(Json(limits(&state, tenant.limits)))
}

/// A tenant's limits as both limit routes answer: with the operator's defaults.
fn limits(state: &AppState, overrides: LimitOverrides) -> TenantLimits {
    dto::tenant_limits(
        state.host.registry.sandbox().config().defaults,
        state.edge.config.rates,
        overrides,
    )
}

/// `POST /v1/admin/cluster/forwards` (issue 16, node to node): another partition's forwards
/// to this one's customers, taken into the queue in one transaction and made durable before
/// the answer (`store/forwards.rs`). Refused on a server that runs no partition of a cluster
/// of several, and whole if any forward is unreadable or not this partition's.
async fn take_forwards(
    State(state): State<AppState>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<waymark_api::cluster::ForwardsTaken>> {
    let input: waymark_api::cluster::Forwards = parse_json(&body?)?;
    let store = &state.host.store;
    let Some(place) = store.place() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_partitioned",
            "this server runs no partition of a cluster of several partitions",
        ));
    };
    let invalid =
        |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message);
    if input.source >= place.partitions || input.source == place.partition {
        return Err(invalid(format!(
            "partition {} cannot forward to partition {} of {}",
            input.source, place.partition, place.partitions
        )));
    }
    let mut forwards = Vec::with_capacity(input.forwards.len());
    let mut last = 0;
    for forward in input.forwards {
        if forward.n <= last {
            return Err(invalid(format!(
                "forward {} comes after {last}: numbers must grow",
                forward.n
            )));
        }
        last = forward.n;
        let trigger: crate::store::QueuedTrigger = serde_json::from_value(forward.trigger)
            .map_err(|e| invalid(format!("forward {}: {e}", forward.n)))?;
        if let Some(theirs) = store.elsewhere(&trigger.customer) {
            return Err(invalid(format!(
                "forward {}: customer {:?} is partition {theirs}'s",
                forward.n, trigger.customer
            )));
        }
        forwards.push((forward.n, trigger));
    }
    let (taken_through, shards) = store.take_forwards(input.source, &forwards)?;
    store.flush().await?;
    state
        .host
        .metrics
        .forwards_taken
        .inc_by(shards.len() as u64);
    for shard in shards {
        state.host.wake_shard(shard);
    }
    Ok(Json(waymark_api::cluster::ForwardsTaken { taken_through }))
}
