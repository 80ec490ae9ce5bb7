//! The dashboard (issue 14): server-rendered HTML under `/ui` for the people who own journeys
//! — funnels, one customer's path, the handoff queue, dead letters, channels and templates.
//!
//! Nothing to install or build: pages are minijinja templates compiled into the binary
//! ([`render`]), charts are SVG drawn on the server ([`charts`]), one stylesheet, no script.
//! Every page reads through the same functions as the JSON routes (`api::shared`), so a
//! journey's funnel here is `GET /v1/journeys/{name}/report`'s, computed from the maintained
//! report cells; every action (claim, resolve, requeue) runs the route's own code.
//!
//! | file | what |
//! | --- | --- |
//! | [`session`] | sign-in with a tenant key, the session cookie, CSRF tokens, sign-out |
//! | [`error`] | every failure as a readable HTML page with its status |
//! | [`render`] | the templates, their filters, the page frame |
//! | [`charts`] | the funnel's bars and the observed paths' flow, as SVG geometry |
//! | [`reads`] | what lives with the customers, read on this node or across partitions |
//! | [`journeys`], [`journey`] | the journeys list; one journey's report |
//! | [`customer`] | a customer's attributes, enrollments and merged timeline |
//! | [`tasks`] | the handoff queue: filter, claim, resolve |
//! | [`dead_letters`] | dead letters: list, requeue one, requeue a channel's |
//! | [`channels`] | channels and templates, a template's preview for a customer |
//!
//! The routes live here, not in `api/`: they are not JSON API routes, so they are not in the
//! OpenAPI document (whose test reads `.route(` calls under `host/src/api/` only), and the
//! edge's JSON-only checks do not apply to them. Request bodies (forms) are bounded by
//! [`MAX_FORM`].

pub mod channels;
pub mod charts;
pub mod customer;
pub mod dead_letters;
pub mod error;
pub mod journey;
pub mod journeys;
pub mod reads;
pub mod render;
pub mod session;
pub mod tasks;

use crate::api::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

/// The largest form body a page posts (a resolution, a sign-in key).
const MAX_FORM: usize = 64 * 1024;

/// Rows per page of every list.
pub const PAGE_SIZE: usize = 50;

/// The dashboard's routes, nested under `/ui`.
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/journeys") }))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/journeys", get(journeys::page))
        .route("/journeys/{name}", get(journey::page))
        .route("/customers", get(customer::find))
        .route("/customers/{id}", get(customer::page))
        .route("/tasks", get(tasks::page))
        .route("/tasks/{id}/claim", post(tasks::claim))
        .route("/tasks/{id}/resolve", post(tasks::resolve))
        .route("/dead-letters", get(dead_letters::page))
        .route("/dead-letters/requeue", post(dead_letters::requeue))
        .route("/channels", get(channels::page))
        .route("/templates/{name}/preview", get(channels::preview))
        .route("/static/style.css", get(stylesheet))
        .fallback(|| async { error::UiError::NotFound("no such page".into()) })
        .method_not_allowed_fallback(|| async {
            error::UiError::MethodNotAllowed("this page does not take this method".into())
        })
        .layer(axum::middleware::from_fn(html_errors))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::api::durable_reads,
        ))
        .layer(axum::middleware::map_response(harden));
    Router::new().nest("/ui", pages)
}

/// Every error answer as an HTML page: the dashboard's own errors are already; axum's
/// rejections (a malformed query, a body over [`MAX_FORM`]) are plain text, rewritten here
/// with their status and text.
async fn html_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_html {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_FORM)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body);
    let message = if message.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message.into_owned()
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let page = render::error_page(status.as_u16(), title, &message);
    (status, axum::response::Html(page)).into_response()
}

/// Headers every dashboard answer carries: no caching of tenant data, no framing
/// (clickjacking), nothing loaded or run but this origin's stylesheet and inline SVG.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("static/style.css"),
    )
        .into_response()
}
