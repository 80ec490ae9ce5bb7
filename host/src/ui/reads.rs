//! What the pages read and do that lives with the customers: on one node the routes' own code
//! (`api::shared`), in a cluster of several partitions the same routes asked through the
//! node's front for the signed-in tenant (`api::cluster::Across`: a customer's partition, a
//! listing gathered from every partition, a report added up). Tenant-global reads (journeys,
//! versions, channels, templates) are partition 0's, which serves the dashboard, and stay
//! with the pages.
//!
//! Over several partitions the handoff queue lists the route's first 1,000 tasks, where one
//! node's pages page through all of them; dead letters page through all on both.

use super::customer::encode_path;
use super::error::{UiError, UiResult};
use super::session::Signed;
use crate::api::cluster::{Across, Refused};
use crate::api::{shared, AppState};
use crate::model::Event;
use waymark_api::backtests::Backtest;
use waymark_api::customers::{Customer, CustomerEvents};
use waymark_api::dead_letters::{DeadLetters, Requeued, RetryDeadLetters};
use waymark_api::messages::Message;
use waymark_api::reports::JourneyReport;
use waymark_api::tasks::{ClaimTask, ResolveTask, Task, TaskList};
use waymark_api::templates::{Preview, PreviewRequest};

/// The most entries a listing across partitions reads.
const ACROSS_LIST: usize = 1_000;

impl From<Refused> for UiError {
    fn from(refused: Refused) -> UiError {
        UiError::Refused(refused.status, refused.message)
    }
}

fn across(state: &AppState) -> Option<&Across> {
    state.across.as_ref()
}

/// A journey's report (`GET /v1/journeys/{name}/report`).
pub async fn report(state: &AppState, session: &Signed, name: &str) -> UiResult<JourneyReport> {
    match across(state) {
        Some(a) => {
            let path = format!("/v1/journeys/{}/report", encode_path(name));
            Ok(a.get(&session.tenant, session.scope, &path).await?)
        }
        None => Ok(shared::report(state, &session.tenant, name.to_owned())?),
    }
}

/// A customer (`GET /v1/customers/{id}`).
pub async fn customer(state: &AppState, session: &Signed, id: &str) -> UiResult<Customer> {
    match across(state) {
        Some(a) => {
            let path = format!("/v1/customers/{}", encode_path(id));
            Ok(a.get(&session.tenant, session.scope, &path).await?)
        }
        None => Ok(shared::customer(state, &session.tenant, id)?),
    }
}

/// A customer's latest `limit` events, newest first (`GET /v1/customers/{id}/events`).
pub async fn customer_events(
    state: &AppState,
    session: &Signed,
    id: &str,
    limit: usize,
) -> UiResult<Vec<Event>> {
    match across(state) {
        Some(a) => {
            let path = format!("/v1/customers/{}/events?limit={limit}", encode_path(id));
            let answer: CustomerEvents = a.get(&session.tenant, session.scope, &path).await?;
            Ok(answer.events.into_iter().map(Event::from).collect())
        }
        None => Ok(state
            .host
            .store
            .recent_customer_events(&session.tenant, id, limit)?
            .into_iter()
            .map(|(_, e)| e)
            .collect()),
    }
}

/// The tenant's tasks with `status` in `queue`, in the queue's order (`GET /v1/tasks`).
pub async fn tasks(
    state: &AppState,
    session: &Signed,
    status: Option<String>,
    queue: Option<String>,
) -> UiResult<Vec<Task>> {
    match across(state) {
        Some(a) => {
            let mut path = format!("/v1/tasks?limit={ACROSS_LIST}");
            for (name, value) in [("status", &status), ("queue", &queue)] {
                if let Some(value) = value {
                    path.push_str(&format!("&{name}={}", encode_path(value)));
                }
            }
            let list: TaskList = a.get(&session.tenant, session.scope, &path).await?;
            Ok(list.tasks)
        }
        None => Ok(shared::tasks(state, session.tenant.clone(), status, queue).await?),
    }
}

/// Claims a task (`POST /v1/tasks/{id}/claim`).
pub async fn claim(
    state: &AppState,
    session: &Signed,
    id: &str,
    input: ClaimTask,
) -> UiResult<Task> {
    match across(state) {
        Some(a) => {
            let path = format!("/v1/tasks/{}/claim", encode_path(id));
            Ok(a.post(&session.tenant, session.scope, &path, &input)
                .await?)
        }
        None => Ok(shared::claim(state, &session.tenant, id, input).await?),
    }
}

/// Resolves a task (`POST /v1/tasks/{id}/resolve`).
pub async fn resolve(
    state: &AppState,
    session: &Signed,
    id: &str,
    input: ResolveTask,
) -> UiResult<Task> {
    match across(state) {
        Some(a) => {
            let path = format!("/v1/tasks/{}/resolve", encode_path(id));
            Ok(a.post(&session.tenant, session.scope, &path, &input)
                .await?)
        }
        None => Ok(shared::resolve(state, &session.tenant, id, input).await?),
    }
}

/// A page of dead letters after the one named `after`, and whether more follow.
pub async fn dead_letters(
    state: &AppState,
    session: &Signed,
    after: Option<String>,
    page: usize,
) -> UiResult<(Vec<Message>, bool)> {
    match across(state) {
        Some(a) => {
            let mut path = format!("/v1/dead-letters?limit={page}");
            if let Some(after) = after {
                path.push_str(&format!("&after={}", encode_path(&after)));
            }
            let listed: DeadLetters = a.get(&session.tenant, session.scope, &path).await?;
            Ok((listed.dead_letters, listed.next.is_some()))
        }
        None => {
            let store = state.host.store.clone();
            let tenant = session.tenant.clone();
            let (letters, more) = tokio::task::spawn_blocking(move || {
                store.dead_letters_after(&tenant, after.as_deref(), page)
            })
            .await
            .map_err(|e| UiError::Internal(e.to_string()))??;
            Ok((letters.into_iter().map(Message::from).collect(), more))
        }
    }
}

/// Requeues dead letters (`POST /v1/dead-letters/retry`).
pub async fn retry_dead_letters(
    state: &AppState,
    session: &Signed,
    input: RetryDeadLetters,
) -> UiResult<Requeued> {
    match across(state) {
        Some(a) => Ok(a
            .post(
                &session.tenant,
                session.scope,
                "/v1/dead-letters/retry",
                &input,
            )
            .await?),
        None => Ok(shared::retry_dead_letters(state, session.tenant.clone(), input).await?),
    }
}

/// The backtests of `journey` the server keeps, newest first: over several partitions each
/// read as one (`GET /v1/journeys/{name}/backtests/{id}`), from partition 0's list of them.
pub async fn backtests(
    state: &AppState,
    session: &Signed,
    journey: &str,
) -> UiResult<Vec<Backtest>> {
    let kept = shared::backtests(state, &session.tenant, journey)?;
    let Some(a) = across(state) else {
        return Ok(kept);
    };
    let mut read = Vec::with_capacity(kept.len());
    for backtest in kept {
        let path = format!(
            "/v1/journeys/{}/backtests/{}",
            encode_path(journey),
            encode_path(&backtest.id)
        );
        read.push(a.get(&session.tenant, session.scope, &path).await?);
    }
    Ok(read)
}

/// A template rendered for a stored customer (`POST /v1/templates/{name}/preview`).
pub async fn preview(
    state: &AppState,
    session: &Signed,
    name: &str,
    request: PreviewRequest,
) -> UiResult<Preview> {
    match across(state) {
        Some(a) => {
            let path = format!("/v1/templates/{}/preview", encode_path(name));
            // A preview writes nothing, and the page shows it to read sessions too, as on one
            // node: the route (a `POST`, so admin keys only) is asked with the admin scope.
            let scope = crate::store::Scope::Admin;
            Ok(a.post(&session.tenant, scope, &path, &request).await?)
        }
        None => Ok(shared::preview(
            state,
            &session.tenant,
            name.to_owned(),
            request,
        )?),
    }
}
