//! A customer's profile, enrollments and messages, and their latest events.

use super::dto;
use super::prelude::*;
use waymark_api::customers::{Customer, CustomerEvents};

/// Events `GET /v1/customers/{id}/events` answers unless asked for fewer: all the
/// per-customer index keeps (`store::customer_events`).
const MAX_EVENTS: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/customers/{id}", get(get_customer))
        .route("/v1/customers/{id}/events", get(customer_events))
}

#[derive(Deserialize)]
struct EventsQuery {
    limit: Option<usize>,
}

/// The customer's latest processed events, newest first (the dashboard's timeline, issue 14,
/// and its source across partitions).
async fn customer_events(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<CustomerEvents>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let limit = query.limit.unwrap_or(MAX_EVENTS).min(MAX_EVENTS);
    let store = &state.host.store;
    if store.customer(&tenant, &id)?.is_none() {
        return Err(ApiError::not_found(format!("no customer {id:?}")));
    }
    let events = store
        .recent_customer_events(&tenant, &id, limit)?
        .into_iter()
        .map(|(_, event)| event.into())
        .collect();
    Ok(Json(CustomerEvents { events }))
}

async fn get_customer(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
) -> ApiResult<Json<Customer>> {
    customer(&state, &tenant, &id).map(Json)
}

/// The customer of `GET /v1/customers/{id}` (shared with the dashboard, issue 14).
pub(crate) fn customer(state: &AppState, tenant: &str, id: &str) -> ApiResult<Customer> {
    let store = &state.host.store;
    let customer = store
        .customer(tenant, id)?
        .ok_or_else(|| ApiError::not_found(format!("no customer {id:?}")))?;
    let enrollments = store.enrollments(tenant, id)?;
    let messages = store.messages(tenant, id)?;
    let account = store.customer_account(tenant, id)?; // Accounts (issue 12)
    Ok(dto::customer(customer, enrollments, messages, account))
}
