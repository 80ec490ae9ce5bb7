//! A customer's profile, enrollments and messages.

use super::prelude::*;
use crate::store::Message;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/customers/{id}", get(get_customer))
}

async fn get_customer(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = &state.host.store;
    let customer = store
        .customer(&tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no customer {id:?}")))?;
    let enrollments = store.enrollments(&tenant, &id)?;
    let messages: Vec<Value> = store
        .messages(&tenant, &id)?
        .iter()
        .map(message_json)
        .collect();
    Ok(Json(json!({
        "id": customer.id,
        "attributes": customer.attributes,
        "enrollments": enrollments,
        "messages": messages,
    })))
}

pub(super) fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "journey": m.journey,
        "enrollment": m.enrollment,
        "channel": m.channel,
        "template": m.template,
        "payload": m.payload,
        "status": m.status,
        "attempts": m.attempts,
        "last_error": m.last_error,
        "provider_id": m.provider_id,
        "created_at": m.created_at,
        "delivered_at": m.delivered_at,
        "release_at": m.release_at,
    })
}
