//! Dead letters: messages that failed for good, listed and requeued with a fresh attempt budget.

use super::limits::{MAX_RETRY_IDS, RETRY_BATCH};
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
    /// The previous page's `next`: the page starts after this message.
    after: Option<String>,
}

async fn list_dead_letters(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<DeadLetters>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let store = state.host.store.clone();
    let after = query.after;
    let (dead, more) = tokio::task::spawn_blocking(move || {
        store.dead_letters_after(&tenant, after.as_deref(), limit)
    })
    .await
    .map_err(ApiError::internal)??;
    let dead_letters: Vec<Message> = dead.into_iter().map(Message::from).collect();
    let next = dead_letters.last().filter(|_| more).map(|m| m.id.clone());
    Ok(Json(DeadLetters { dead_letters, next }))
}

/// Requeues dead letters with a fresh attempt budget, e.g. after fixing a channel's config.
/// The store work runs off the async workers in passes of [`RETRY_BATCH`], so a mass retry
/// holds no runtime thread and other requests interleave with it; one flush at the end makes it
/// durable before the answer.
async fn retry_dead_letters(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Requeued>> {
    // No ids: every dead letter (of `channel`, if given).
    let input: RetryDeadLetters = parse_json(&body?)?;
    retry(&state, tenant, input).await.map(Json)
}

/// Requeues as `POST /v1/dead-letters/retry` does (shared with the dashboard, issue 14).
pub(crate) async fn retry(
    state: &AppState,
    tenant: String,
    input: RetryDeadLetters,
) -> ApiResult<Requeued> {
    if input.ids.len() > MAX_RETRY_IDS {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!(
                "{} ids; a retry names at most {MAX_RETRY_IDS} (or none: every dead letter)",
                input.ids.len()
            ),
        ));
    }
    let rt = &state.host;
    let now = crate::clock::system_now();
    let channel = input.channel;
    let mut requeued = Vec::new();
    if input.ids.is_empty() {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let store = rt.store.clone();
            let (owner, channel) = (tenant.clone(), channel.clone());
            let (page, next) = tokio::task::spawn_blocking(move || {
                store.requeue_dead_letter_page(
                    &owner,
                    after.as_deref(),
                    channel.as_deref(),
                    now,
                    RETRY_BATCH,
                )
            })
            .await
            .map_err(ApiError::internal)??;
            requeued.extend(page);
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    } else {
        for ids in input.ids.chunks(RETRY_BATCH) {
            let store = rt.store.clone();
            let (owner, channel, ids) = (tenant.clone(), channel.clone(), ids.to_vec());
            let page = tokio::task::spawn_blocking(move || {
                store.requeue_dead_letters(&owner, &ids, channel.as_deref(), now)
            })
            .await
            .map_err(ApiError::internal)??;
            requeued.extend(page);
        }
    }
    if !requeued.is_empty() {
        rt.store.flush().await?;
        rt.outbox_changed();
    }
    tracing::info!(tenant, requeued = requeued.len(), "dead letters requeued");
    let ids: Vec<String> = requeued.into_iter().map(|m| m.id).collect();
    Ok(Requeued {
        requeued: ids.len() as u64,
        ids,
    })
}
