//! Segment-compatible ingest (issue 12): `POST /v1/track`, `/v1/identify`, `/v1/page`,
//! `/v1/screen` and `/v1/batch` take Segment's HTTP Tracking API bodies unchanged, so a tenant
//! points a Segment library (or a CDP's Segment-shaped webhook) at Waymark with `host=`.
//! `/v1/alias` merges `previousId` into `userId`, and an `identify` carrying both `userId` and
//! `anonymousId` merges the anonymous id (identity merge: `engine::identity`, issue 12).
//! `/v1/group` sets the customer's account and merges the account's traits (accounts:
//! `engine::accounts`, `store/accounts.rs`).
//!
//! - authentication: the write key as Segment's libraries send it (HTTP Basic, the key as the
//!   user name, an empty password) or as a bearer key; a `write` or `admin` key ([`Ingest`]);
//! - the body: `Content-Encoding: gzip` inflated under Segment's limits ([`inflate`]), 32 KB
//!   a call or a message, 500 KB a batch (`limits::SEGMENT_MAX_*`), 413 past them;
//! - each message mapped onto a Waymark event ([`message`]) and ingested by the one ingest
//!   path of `POST /v1/events` (`events::ingest`): same checks, dedup by `messageId`, durable
//!   before the answer;
//! - the answer Segment's clients expect, `200 {"success": true}` (with Waymark's counts of
//!   new and duplicate messages beside it); errors in Waymark's JSON shape.

mod inflate;
mod message;

use super::events::{ingest, Merged};
use super::limits::{SEGMENT_MAX_BATCH_BYTES, SEGMENT_MAX_MESSAGE_BYTES};
use super::prelude::*;
use axum::http::{header, HeaderMap};
use message::Kind;
use waymark_api::segment::SegmentAccepted;

/// The routes' last segments (`/v1/<route>`), for the edge's body limit.
pub(super) const ROUTES: &[&str] = &[
    "track", "identify", "page", "screen", "group", "alias", "batch",
];

/// Bodies up to this size are inflated and parsed on the async worker; larger ones on the
/// blocking pool.
const INLINE_BYTES: usize = 64 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/track", post(track))
        .route("/v1/identify", post(identify))
        .route("/v1/page", post(page))
        .route("/v1/screen", post(screen))
        .route("/v1/group", post(group))
        .route("/v1/alias", post(alias))
        .route("/v1/batch", post(batch))
}

/// What a Segment route reads: one call of a kind, or a batch.
#[derive(Clone, Copy)]
enum Route {
    Single(Kind),
    Batch,
}

async fn track(
    s: State<AppState>,
    i: Ingest,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SegmentAccepted>> {
    accept(s, i, h, b, Route::Single(Kind::Track)).await
}

async fn identify(
    s: State<AppState>,
    i: Ingest,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SegmentAccepted>> {
    accept(s, i, h, b, Route::Single(Kind::Identify)).await
}

async fn page(
    s: State<AppState>,
    i: Ingest,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SegmentAccepted>> {
    accept(s, i, h, b, Route::Single(Kind::Page)).await
}

async fn screen(
    s: State<AppState>,
    i: Ingest,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SegmentAccepted>> {
    accept(s, i, h, b, Route::Single(Kind::Screen)).await
}

async fn group(
    s: State<AppState>,
    i: Ingest,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SegmentAccepted>> {
    accept(s, i, h, b, Route::Single(Kind::Group)).await
}

async fn alias(
    s: State<AppState>,
    i: Ingest,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SegmentAccepted>> {
    accept(s, i, h, b, Route::Single(Kind::Alias)).await
}

async fn batch(
    s: State<AppState>,
    i: Ingest,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SegmentAccepted>> {
    accept(s, i, h, b, Route::Batch).await
}

/// Cluster mode (issue 16): the events a Segment route's body carries (`route` the path's last
/// segment), read as the route reads them, and whether it is a batch; `None` for a path that
/// is not a Segment route. A node reads them to route the body to its customers' partitions.
pub(crate) fn read_for_routing(
    route: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<ApiResult<(Vec<crate::model::Event>, Bytes)>> {
    let route = match route {
        "batch" => Route::Batch,
        name => Route::Single(Kind::named(name)?),
    };
    let limit = match route {
        Route::Single(_) => SEGMENT_MAX_MESSAGE_BYTES,
        Route::Batch => SEGMENT_MAX_BATCH_BYTES,
    };
    Some((|| {
        let body = inflate::decoded(headers, body, limit)?;
        let events = match route {
            Route::Single(kind) => vec![message::single(kind, &body, 0)?],
            Route::Batch => message::batch(&body, 0)?,
        };
        Ok((events, body))
    })())
}

/// Inflates, reads and ingests a Segment body (see the module's documentation).
async fn accept(
    State(state): State<AppState>,
    Ingest(tenant): Ingest,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: Route,
) -> ApiResult<Json<SegmentAccepted>> {
    let body = body?;
    let now = state.host.clock.now();
    let limit = match route {
        Route::Single(_) => SEGMENT_MAX_MESSAGE_BYTES,
        Route::Batch => SEGMENT_MAX_BATCH_BYTES,
    };
    // A gzip body's size says little of its work: any gzip body goes off the async workers.
    let heavy = body.len() > INLINE_BYTES || headers.contains_key(header::CONTENT_ENCODING);
    let read = move || {
        let body = inflate::decoded(&headers, body, limit)?;
        match route {
            Route::Single(kind) => message::single(kind, &body, now).map(|e| vec![e]),
            Route::Batch => message::batch(&body, now),
        }
    };
    let events = if heavy {
        tokio::task::spawn_blocking(read)
            .await
            .map_err(ApiError::internal)??
    } else {
        read()?
    };
    let accepted = ingest(&state, &tenant, events, now, Merged::PassOn).await?;
    Ok(Json(SegmentAccepted {
        success: true,
        accepted: accepted.accepted,
        duplicates: accepted.duplicates,
    }))
}
