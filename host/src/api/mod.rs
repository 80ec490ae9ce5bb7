//! HTTP API (axum), one file per resource. Every resource module has `routes()` and thin
//! handlers: they validate input, call the store, registry, sandbox or engine, wake the workers,
//! and shape the response. Errors (`error`) and authentication (`auth`) live apart; every error
//! is a status plus `{"error": {"code", "message"}}`. See `docs/API.md`.
//!
//! Bodies, both ways, are the types of crate `waymark-api`, never the host's own: [`dto`]
//! converts between them field by field, so the wire changes only when a DTO does.
//!
//! | file | routes |
//! | --- | --- |
//! | [`health`] | `/healthz`, `/metrics` |
//! | [`admin`] | `/v1/admin/tenants`, `/v1/admin/tenants/{id}/limits`, `/v1/admin/clock[/advance]` |
//! | [`journeys`] | `/v1/journeys[/{name}[/decide\|/report]]` |
//! | [`channels`] | `/v1/channels[/{name}]` |
//! | [`events`] | `/v1/events` |
//! | [`policy`] | `/v1/policy` |
//! | [`customers`] | `/v1/customers/{id}` |
//! | [`tasks`] | `/v1/tasks[/{id}[/claim\|/resolve]]` |
//! | [`dead_letters`] | `/v1/dead-letters[/retry]` |
//! | [`breakers`] | `/v1/journeys/{name}/breaker` (issue 15) |
//! | [`enrollments`] | `/v1/customers/{id}/enrollments/{journey}/resume` (issue 15) |
//! | [`segment`] | `/v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/batch`, `/v1/group`, `/v1/alias` (issue 12) |
//! | [`keys`] | `/v1/keys[/{prefix}]` (issue 12) |
//! | [`templates`] | `/v1/templates[/{name}[/preview]]` (issue 11) |
//! | [`openapi`] | `/openapi.json` (issue 12) |
//! | [`accounts`] | `/v1/accounts/{id}` (issue 12) |
//! | [`inbox`] | `/v1/customers/{id}/inbox[/token]`, `/v1/inbox/secret`; with a customer's token `/v1/inbox[/{message}/{mark}]` (issue 11) |
//! | [`subscriptions`] | `/v1/customers/{id}/subscriptions` (issue 11) |
//! | [`unsubscribe`] | `/u/{token}` (issue 11) |
//! | [`migrations`] | `/v1/journeys/{name}/migrate`, `/v1/journeys/{name}/migrations/{id}` (issue 13) |
//! | [`backtests`] | `/v1/journeys/{name}/backtests[/{id}[/cancel]]` (issue 13) |
//!
//! The dashboard (`crate::ui`, issue 14) is merged in after the edge's layers: it is HTML with
//! its own sign-in, session and errors, and reaches the handlers' logic through [`shared`].

mod accounts; // Accounts (issue 12)
mod admin;
mod auth;
mod backtests; // Backtests (issue 13)
mod breakers; // Isolation (issue 15)
mod channels;
pub mod cluster; // Cluster mode's front (issue 16)
mod cors; // CORS on the ingest routes (issue 12)
mod customers;
mod dead_letters;
mod dto;
mod edge;
mod enrollments; // Isolation (issue 15)
mod error;
mod events;
pub mod head;
mod health;
mod journeys;
mod keys; // Scoped keys (issue 12)
pub mod limits;
mod migrations; // Migrations (issue 13)
pub mod openapi; // OpenAPI 3.1 (issue 12)
mod policy;
mod segment; // Segment-compatible ingest (issue 12)
mod tasks;
mod templates; // Templates (issue 11)
mod validate;
// In-app inbox, unsubscribe and subscription topics (issue 11).
mod inbox;
mod subscriptions;
mod unsubscribe;

// Provider feedback (issue 11).
mod hooks;

pub use auth::{digest, Admin, TenantId};
pub use auth::{Caller, Ingest, TenantAdmin}; // Scoped keys (issue 12)
pub use edge::Edge;
pub use error::ApiError;
pub use events::parse_events;
pub use limits::EdgeConfig;
// Backtest jobs (issue 13): a finished job's result names its migration in this shape.
pub(crate) use migrations::{add_up as add_up_migration, status as migration_status};

/// Dashboard (issue 14): what the `/ui` pages share with the JSON routes, so a page shows
/// exactly what its route answers and an action does exactly what its route does.
pub(crate) mod shared {
    pub(crate) use super::backtests::of_journey as backtests;
    pub(crate) use super::customers::customer;
    pub(crate) use super::dead_letters::retry as retry_dead_letters;
    pub(crate) use super::journeys::{list as journeys, report, versions};
    pub(crate) use super::tasks::{claim, filtered as tasks, resolve};
    pub(crate) use super::templates::preview;
}

use crate::host::Host;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::sync::Arc;

/// Largest request body axum's extractors take: the edge (`edge::guard`) holds each route to
/// its own, smaller limit before the body is read.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The most entries one listing returns.
const MAX_LIST: usize = 1000;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub host: Arc<Host>,
    /// SHA-256 of the admin token; compared digest to digest.
    pub admin_digest: [u8; 32],
    /// Request limits, tenants' rates, backpressure.
    pub edge: Arc<Edge>,
    /// Cluster mode with several partitions, on partition 0: how the dashboard reads and acts
    /// on what is spread over the partitions (`api::cluster::Across`).
    pub across: Option<cluster::Across>,
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    // Journey state a read shows is durable: see `durable_reads`.
    let state_reads = Router::new()
        .merge(journeys::routes())
        .merge(migrations::routes()) // Migrations (issue 13)
        .merge(breakers::routes()) // Isolation (issue 15)
        .merge(enrollments::routes()) // Isolation (issue 15)
        .merge(customers::routes())
        .merge(tasks::routes())
        .merge(dead_letters::routes())
        .merge(accounts::routes()) // Accounts (issue 12)
        .merge(inbox::routes()) // In-app inbox (issue 11)
        .merge(subscriptions::routes()) // Subscription topics (issue 11)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            durable_reads,
        ));
    Router::new()
        .merge(health::routes())
        .merge(admin::routes())
        .merge(state_reads)
        .merge(channels::routes())
        .merge(events::routes())
        .merge(policy::routes())
        // Issue 12: Segment-compatible ingest, scoped keys.
        .merge(segment::routes())
        .merge(keys::routes())
        .merge(templates::routes()) // Templates (issue 11)
        .merge(openapi::routes()) // OpenAPI (issue 12)
        // Issue 11: customer-token inbox routes (durable reads too) and unsubscribe links.
        .merge(
            inbox::customer_routes().layer(axum::middleware::from_fn_with_state(
                state.clone(),
                durable_reads,
            )),
        )
        .merge(unsubscribe::routes())
        .merge(hooks::routes()) // Provider feedback (issue 11)
        .merge(backtests::routes()) // Backtests (issue 13)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take this method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::guard,
        ))
        .layer(axum::middleware::from_fn(edge::json_errors))
        // Dashboard (issue 14): after the edge's layers, which are the JSON API's.
        .merge(crate::ui::router(state.clone()))
        // Issue 12: CORS on the ingest routes only, outside the edge so its refusals carry it.
        .layer(axum::middleware::from_fn(cors::ingest_cors))
        .layer(axum::middleware::from_fn(inbox::cors)) // In-app inbox (issue 11)
        .with_state(state)
}

/// A successful read of journey state (a customer, enrollments, tasks, a report, dead letters)
/// is answered only once a flush that started after the read has finished, so what the API
/// shows survives a crash. Shard workers commit a batch before its flush (the next batch's reads
/// need its writes); without this a client could see an enrollment that a `kill -9` in that
/// moment would take back, though its trigger would still be processed again after restart.
/// Reads ride on the store's group commit: under load they share the flushes the writers make.
pub(crate) async fn durable_reads(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let read = request.method() == axum::http::Method::GET;
    let response = next.run(request).await;
    if read && response.status().is_success() {
        if let Err(error) = state.host.store.flush().await {
            return ApiError::from(error).into_response();
        }
    }
    response
}

/// What every resource module uses.
mod prelude {
    pub(super) use super::auth::{Admin, Ingest, TenantAdmin, TenantId};
    pub(super) use super::error::{parse_json, ApiError, ApiResult};
    pub(super) use super::validate::{check_component_size, valid_name};
    pub(super) use super::{AppState, MAX_LIST};
    pub(super) use crate::model::Millis;
    pub(super) use axum::body::Bytes;
    pub(super) use axum::extract::rejection::BytesRejection;
    pub(super) use axum::extract::{Path, Query, State};
    pub(super) use axum::http::StatusCode;
    pub(super) use axum::response::IntoResponse;
    pub(super) use axum::routing::{get, post, put};
    pub(super) use axum::{Json, Router};
    pub(super) use serde::Deserialize;
}
