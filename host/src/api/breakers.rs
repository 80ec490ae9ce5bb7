//! Isolation (issue 15): `GET /v1/journeys/{name}/breaker`, the circuit breakers of a
//! journey's versions (`engine::breaker`, kept by `host::Breakers`).

use super::prelude::*;
use crate::engine::breaker::BreakerState;
use waymark_api::isolation::{self as api, JourneyBreakers};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/journeys/{name}/breaker", get(journey_breakers))
}

async fn journey_breakers(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
) -> ApiResult<Json<JourneyBreakers>> {
    if state.host.store.journey_rollout(&tenant, &name)?.is_none() {
        return Err(ApiError::not_found(format!("no journey {name:?}")));
    }
    let breakers = state
        .host
        .breakers
        .of_journey(&tenant, &name)
        .into_iter()
        .map(|b| api::Breaker {
            version: b.version,
            state: match b.state {
                BreakerState::Closed => api::BreakerState::Closed,
                BreakerState::Open { .. } => api::BreakerState::Open,
                BreakerState::HalfOpen { .. } => api::BreakerState::HalfOpen,
            },
            open_until: match b.state {
                BreakerState::Open { until } => Some(until),
                _ => None,
            },
            opened: b.opened,
            deferred: b.deferred,
        })
        .collect();
    Ok(Json(JourneyBreakers {
        journey: name,
        breakers,
    }))
}
