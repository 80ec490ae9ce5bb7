//! The handoff queue: `GET /ui/tasks` filtered by queue and status, a page at a time, most
//! urgent and oldest first (the order of `GET /v1/tasks`); claiming and resolving run the
//! routes' own code (`api::shared::claim`, `api::shared::resolve`), so a resolution reaches the
//! journey exactly as `POST /v1/tasks/{id}/resolve` sends it.

use super::customer::encode_path;
use super::error::UiResult;
use super::session::{Checked, CsrfField, Signed};
use super::{reads, render, PAGE_SIZE};
use crate::api::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{Html, Redirect};
use serde::Deserialize;
use waymark_api::tasks::{ClaimTask, ResolveTask};

#[derive(Deserialize)]
pub struct TaskQuery {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    page: usize,
    #[serde(default)]
    done: Option<String>,
}

fn blank_is_none(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub async fn page(
    State(state): State<AppState>,
    session: Signed,
    Query(query): Query<TaskQuery>,
) -> UiResult<Html<String>> {
    let queue = blank_is_none(query.queue);
    let status = blank_is_none(query.status);
    let all = reads::tasks(&state, &session, status.clone(), queue.clone()).await?;
    let total = all.len();
    let tasks: Vec<_> = all
        .into_iter()
        .skip(query.page * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    let html = render::page(
        "tasks.html",
        Some(&session),
        minijinja::context! {
            tasks => render::ser(&tasks),
            queue,
            status,
            page => query.page,
            has_prev => query.page > 0,
            has_next => (query.page + 1) * PAGE_SIZE < total,
            total,
            done => query.done,
        },
    )?;
    Ok(Html(html))
}

#[derive(Deserialize)]
pub struct ClaimForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    assignee: String,
}

impl CsrfField for ClaimForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /ui/tasks/{id}/claim`.
pub async fn claim(
    State(state): State<AppState>,
    Path(id): Path<String>,
    checked: Checked<ClaimForm>,
) -> UiResult<Redirect> {
    let Checked { session, form } = checked;
    session.require_admin()?;
    let input = ClaimTask {
        assignee: form.assignee,
    };
    let task = reads::claim(&state, &session, &id, input).await?;
    Ok(Redirect::to(&format!(
        "/ui/tasks?done={}",
        encode_path(&format!("claimed task {} for {}", task.id, task.customer))
    )))
}

#[derive(Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    resolution: String,
    /// An optional note, passed to the journey as the resolution's `note` property.
    #[serde(default)]
    note: String,
}

impl CsrfField for ResolveForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /ui/tasks/{id}/resolve`.
pub async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    checked: Checked<ResolveForm>,
) -> UiResult<Redirect> {
    let Checked { session, form } = checked;
    session.require_admin()?;
    let mut properties = crate::model::Object::new();
    let note = form.note.trim();
    if !note.is_empty() {
        properties.insert("note".into(), serde_json::Value::String(note.into()));
    }
    let input = ResolveTask {
        resolution: form.resolution.trim().to_string(),
        properties,
    };
    let task = reads::resolve(&state, &session, &id, input).await?;
    Ok(Redirect::to(&format!(
        "/ui/tasks?done={}",
        encode_path(&format!("resolved task {} for {}", task.id, task.customer))
    )))
}
