//! Dead letters: messages that failed for good, listed and requeued with a fresh attempt budget.

use super::prelude::*;
use waymark_api::dead_letters::{DeadLetters, Requeued, RetryDeadLetters};
use waymark_api::messages::Message;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/dead-letters", get(list_dead_letters))
        .route("/v1/dead-letters/retry", post(retry_dead_letters))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list_dead_letters(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<DeadLetters>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let limit = query.limit.unwrap_or(100).min(MAX_LIST);
    let dead = state.host.store.dead_letters(&tenant, limit)?;
    Ok(Json(DeadLetters {
        dead_letters: dead.into_iter().map(Message::from).collect(),
    }))
}

/// Requeues dead letters with a fresh attempt budget, e.g. after fixing a channel's config.
async fn retry_dead_letters(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Requeued>> {
    // No ids: every dead letter (of `channel`, if given).
    let input: RetryDeadLetters = parse_json(&body?)?;
    let rt = &state.host;
    let requeued = rt
        .store
        .retry_dead_letters(
            &tenant,
            &input.ids,
            input.channel.as_deref(),
            crate::clock::system_now(),
        )
        .await?;
    if !requeued.is_empty() {
        rt.outbox_changed();
    }
    tracing::info!(tenant, requeued = requeued.len(), "dead letters requeued");
    let ids: Vec<String> = requeued.into_iter().map(|m| m.id).collect();
    Ok(Json(Requeued {
        requeued: ids.len() as u64,
        ids,
    }))
}
