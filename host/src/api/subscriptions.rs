//! A customer's subscriptions (issue 11): `GET`/`PUT /v1/customers/{id}/subscriptions`.
//!
//! What a customer is unsubscribed from lives on the customer (attributes `unsubscribed`,
//! `unsubscribed_channels`, `unsubscribed_topics`), which only the customer's shard worker
//! writes, in order with their events. So `PUT` does not write the customer: it ingests a
//! `subscriptions_set` event carrying the whole new set (`engine::profile::set_subscriptions`
//! replaces it when the event is processed) and answers `202` with what it will be. A send
//! decided after that event to a channel or topic left, or after leaving everything, is
//! recorded `suppressed` (`engine::profile::suppress`).

use super::prelude::*;
use crate::engine::profile::{
    subscriptions, subscriptions_properties, Subscriptions as Held, SUBSCRIPTIONS_SET,
};
use crate::model::Event;
use waymark_api::inbox::Subscriptions;

/// The most channels or topics one customer's set lists.
const MAX_ITEMS: usize = 256;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/customers/{id}/subscriptions",
        get(get_subscriptions).put(put_subscriptions),
    )
}

async fn get_subscriptions(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
) -> ApiResult<Json<Subscriptions>> {
    let customer = state
        .host
        .store
        .customer(&tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no customer {id:?}")))?;
    Ok(Json(subscriptions(&customer).into()))
}

fn check_names(what: &str, names: &[String]) -> ApiResult<()> {
    if names.len() > MAX_ITEMS {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("{what}: at most {MAX_ITEMS}"),
        ));
    }
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.len() > 128 || n.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("{what}: {bad:?} is not 1-128 bytes without control characters"),
        ));
    }
    Ok(())
}

async fn put_subscriptions(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Subscriptions>)> {
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_input",
            "a customer id has no control characters",
        ));
    }
    let wanted: Subscriptions = parse_json(&body?)?;
    check_names("channels", &wanted.channels)?;
    check_names("topics", &wanted.topics)?;
    let mut held: Held = wanted.into();
    held.channels.sort();
    held.channels.dedup();
    held.topics.sort();
    held.topics.dedup();
    let now = state.host.clock.now();
    // A fresh id per request: each PUT is its own replacement (the last processed wins).
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(ApiError::internal)?;
    let event = Event {
        id: format!("subscriptions:{now}:{}", hex::encode(nonce)),
        customer: id,
        name: SUBSCRIPTIONS_SET.to_string(),
        properties: subscriptions_properties(&held),
        timestamp: now,
    };
    super::events::ingest(
        &state,
        &tenant,
        vec![event],
        now,
        super::events::Merged::Here,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(held.into())))
}
