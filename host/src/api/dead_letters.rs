//! Dead letters: messages that failed for good, listed and requeued with a fresh attempt budget.

use super::customers::message_json;
use super::prelude::*;

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
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let limit = query.limit.unwrap_or(100).min(MAX_LIST);
    let dead: Vec<Value> = state
        .host
        .store
        .dead_letters(&tenant, limit)?
        .iter()
        .map(message_json)
        .collect();
    Ok(Json(json!({ "dead_letters": dead })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryInput {
    /// Message ids to retry; none means all dead letters (of `channel`, if given).
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
}

/// Requeues dead letters with a fresh attempt budget, e.g. after fixing a channel's config.
async fn retry_dead_letters(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let input: RetryInput = parse_json(&body?)?;
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
    let ids: Vec<&str> = requeued.iter().map(|e| e.id.as_str()).collect();
    Ok(Json(json!({ "requeued": ids.len(), "ids": ids })))
}
