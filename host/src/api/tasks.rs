//! The handoff queue: list, read, claim and resolve tasks; a resolution reaches the journey that
//! handed the task off as a `task_resolved` event.

use super::prelude::*;
use crate::model::TaskStatus;
use crate::store::TaskError;
use waymark_api::tasks::{ClaimTask, ResolveTask, Task, TaskList};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/claim", post(claim_task))
        .route("/v1/tasks/{id}/resolve", post(resolve_task))
}

/// The query of `GET /v1/tasks`. Not `waymark_api::tasks::TaskQuery`: the status is read as
/// a word here so that a wrong one is refused with the API's own message, not axum's.
#[derive(Deserialize)]
struct TaskQuery {
    status: Option<String>,
    queue: Option<String>,
    limit: Option<usize>,
}

/// The tenant's handoff queue, most urgent (lowest priority number) and oldest first.
async fn list_tasks(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    query: Result<Query<TaskQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<TaskList>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let limit = query.limit.unwrap_or(100).min(MAX_LIST);
    let mut tasks = filtered(&state, tenant, query.status, query.queue).await?;
    tasks.truncate(limit);
    Ok(Json(TaskList { tasks }))
}

/// The tenant's tasks of `status` (a word: open, claimed, resolved) in `queue`, most urgent
/// and oldest first, all of them: `GET /v1/tasks` keeps the first `limit`, the dashboard a
/// page (issue 14).
pub(crate) async fn filtered(
    state: &AppState,
    tenant: String,
    status: Option<String>,
    queue: Option<String>,
) -> ApiResult<Vec<Task>> {
    let status = match &status {
        Some(status) => Some(status.parse::<TaskStatus>().map_err(|_| {
            ApiError::bad_request(
                "invalid_input",
                format!("status must be open, claimed or resolved, not {status:?}"),
            )
        })?),
        None => None,
    };
    // Reads every task of the tenant: off the async workers (and at most a few at once per
    // tenant, `edge::guard`).
    let store = state.host.store.clone();
    let tasks = tokio::task::spawn_blocking(move || {
        let mut tasks = store.tasks(&tenant)?;
        tasks.retain(|t| {
            status.is_none_or(|s| s == t.status) && queue.as_ref().is_none_or(|q| *q == t.queue)
        });
        tasks.sort_by(|a, b| {
            (a.priority, a.created_at, &a.id).cmp(&(b.priority, b.created_at, &b.id))
        });
        Ok::<_, crate::store::StoreError>(tasks)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(tasks.into_iter().map(Task::from).collect())
}

async fn get_task(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
) -> ApiResult<Json<Task>> {
    let task = state
        .host
        .store
        .task(&tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no task {id:?}")))?;
    Ok(Json(task.into()))
}

/// Claims an open task: 409 `task_conflict` if someone else has it or it is resolved.
async fn claim_task(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Task>> {
    let input: ClaimTask = parse_json(&body?)?;
    claim(&state, &tenant, &id, input).await.map(Json)
}

/// Claims a task as `POST /v1/tasks/{id}/claim` does (shared with the dashboard, issue 14).
pub(crate) async fn claim(
    state: &AppState,
    tenant: &str,
    id: &str,
    input: ClaimTask,
) -> ApiResult<Task> {
    if input.assignee.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_input",
            "assignee must not be empty",
        ));
    }
    let rt = &state.host;
    let task = rt
        .store
        .claim_task(tenant, id, &input.assignee, rt.clock.now())
        .await?;
    Ok(task.into())
}

/// Resolves a task; the customer's journeys get a `task_resolved` event.
async fn resolve_task(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Task>> {
    let input: ResolveTask = parse_json(&body?)?;
    resolve(&state, &tenant, &id, input).await.map(Json)
}

/// Resolves a task as `POST /v1/tasks/{id}/resolve` does: the same event reaches the journey
/// (shared with the dashboard, issue 14).
pub(crate) async fn resolve(
    state: &AppState,
    tenant: &str,
    id: &str,
    input: ResolveTask,
) -> ApiResult<Task> {
    if input.resolution.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_input",
            "resolution must not be empty",
        ));
    }
    let rt = &state.host;
    let now = rt.clock.now();
    let current = rt
        .store
        .task(tenant, id)?
        .ok_or_else(|| ApiError::from(TaskError::NotFound(id.to_string())))?;
    let event =
        crate::engine::task_resolved_event(&current, &input.resolution, input.properties, now);
    let task = rt
        .store
        .resolve_task(
            tenant,
            id,
            &input.resolution,
            &event,
            now,
            rt.config.dedup_window_ms(),
        )
        .await?;
    rt.wake_customer(tenant, &task.customer);
    Ok(task.into())
}
