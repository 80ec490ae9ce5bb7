//! A customer's profile, enrollments and messages.

use super::dto;
use super::prelude::*;
use waymark_api::customers::Customer;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/customers/{id}", get(get_customer))
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
