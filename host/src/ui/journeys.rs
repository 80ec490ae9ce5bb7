//! `GET /ui/journeys`: every journey with its entered, active, completed and exited counts, its
//! goal conversion and its live version, a page at a time. Each row is the journey's report
//! (`api::shared::report`: its cells added up, never a scan of enrollments).

use super::error::UiResult;
use super::session::Signed;
use super::{reads, render, PAGE_SIZE};
use crate::api::{shared, AppState};
use axum::extract::{Query, State};
use axum::response::Html;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    page: usize,
}

#[derive(Serialize)]
struct Row {
    name: String,
    live_version: Option<u32>,
    latest_version: u32,
    candidate: Option<String>,
    entered: u64,
    active: u64,
    completed: u64,
    exited: u64,
    goal: Option<String>,
    goal_conversion: Option<f64>,
}

pub async fn page(
    State(state): State<AppState>,
    session: Signed,
    Query(query): Query<PageQuery>,
) -> UiResult<Html<String>> {
    let all = shared::journeys(&state, &session.tenant)?.journeys;
    let total = all.len();
    let mut rows = Vec::new();
    for summary in all.into_iter().skip(query.page * PAGE_SIZE).take(PAGE_SIZE) {
        let report = reads::report(&state, &session, &summary.name).await?;
        let versions = shared::versions(&state, &session.tenant, summary.name.clone())?;
        let shown = summary.live_version.unwrap_or(summary.latest_version);
        let goal = versions
            .versions
            .iter()
            .find(|v| v.version == shown)
            .and_then(|v| v.spec.goal.clone());
        let overall = &report.report.overall;
        let goal_conversion = goal.as_ref().and_then(|g| {
            overall
                .milestones
                .iter()
                .find(|m| &m.name == g)
                .and_then(|m| m.conversion)
        });
        rows.push(Row {
            name: summary.name,
            live_version: summary.live_version,
            latest_version: summary.latest_version,
            candidate: summary
                .candidate
                .map(|c| format!("v{} at {} %", c.version, c.share_percent)),
            entered: overall.entered,
            active: overall.active,
            completed: overall.completed,
            exited: overall.exited,
            goal,
            goal_conversion,
        });
    }
    let html = render::page(
        "journeys.html",
        Some(&session),
        minijinja::context! {
            rows => render::ser(&rows),
            page => query.page,
            has_prev => query.page > 0,
            has_next => (query.page + 1) * PAGE_SIZE < total,
            total,
        },
    )?;
    Ok(Html(html))
}
