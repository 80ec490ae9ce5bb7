//! CORS for the ingest routes (issue 12): write keys are meant to ship in browser and mobile
//! apps, so `POST /v1/events` and the Segment-compatible routes answer browsers' preflights
//! and carry `Access-Control-Allow-*` headers; no other route does, so a page can never read
//! journeys, customers or keys with a key it holds.
//!
//! Any origin (`*`): a preflight carries no credentials, so which tenant it is for is unknown
//! when it must be answered, and a write key only adds events, which is what a page embedding
//! it is meant to do. `Authorization` is listed by name: the Fetch standard's `*` in
//! `Access-Control-Allow-Headers` does not cover it
//! (<https://fetch.spec.whatwg.org/#http-access-control-allow-headers>). Segment's analytics.js
//! posts JSON as `Content-Type: text/plain`, a simple request with no preflight
//! (`packages/browser/src/plugins/segmentio/fetch-dispatcher.ts` in segmentio/analytics-next),
//! which the edge takes on the Segment routes; the answer's `Access-Control-Allow-Origin` lets
//! the page read it. The layer sits outside the edge, so its refusals (413, 429, 503) carry
//! the headers too, and `Retry-After` is exposed.

use super::segment::ROUTES;
use axum::extract::Request;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Duration;
use tower::{Layer, Service};
use tower_http::cors::{Any, CorsLayer};

/// How long a browser may cache a preflight's answer.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Whether `path` is an ingest route.
fn is_ingest(path: &str) -> bool {
    match path.strip_prefix("/v1/") {
        Some("events") => true,
        Some(rest) => ROUTES.contains(&rest),
        None => false,
    }
}

/// The CORS policy of the ingest routes.
fn policy() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(MAX_AGE)
}

/// Applies [`policy`] to requests for the ingest routes; passes any other request on as it is.
pub(super) async fn ingest_cors(request: Request, next: Next) -> Response {
    if !is_ingest(request.uri().path()) {
        return next.run(request).await;
    }
    let mut service = policy().layer(next);
    match service.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ingest_routes_are_open_to_browsers() {
        for path in [
            "/v1/events",
            "/v1/track",
            "/v1/batch",
            "/v1/alias",
            "/v1/group",
        ] {
            assert!(is_ingest(path), "{path}");
        }
        for path in [
            "/v1/customers/a",
            "/v1/keys",
            "/v1/journeys",
            "/v1/events/x",
            "/v1/",
        ] {
            assert!(!is_ingest(path), "{path}");
        }
    }
}
