//! What every request passes before its handler, and every answer after it:
//!
//! - request target and header sizes (414, 431), `Content-Type` where the route declares one
//!   (415), `Content-Length` against the route's limit before reading (413), and the body read
//!   under a timeout (408) and the same limit;
//! - the tenant's request rate (token bucket, 429 with `Retry-After`, `RateLimit-Policy` and
//!   `RateLimit`) and its expensive requests in flight (429);
//! - every error answer that is not already `{"error": {"code", "message"}}` (axum's 405 with
//!   an empty body, its text/plain rejections) rewritten into that shape.
//!
//! Events per second and shard backpressure are checked by the events handler, which knows how
//! many events a batch carries and which shards they go to ([`Edge::take_events`],
//! [`Edge::shard_full`]).

use super::auth::Caller;
use super::limits::{shard_queue_trusted_for, EdgeConfig, TenantRates, LINGER, LINGER_BYTES};
use super::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The edge's state: the configuration and each tenant's buckets and permits.
pub struct Edge {
    pub config: EdgeConfig,
    tenants: Mutex<HashMap<String, Arc<TenantEdge>>>,
    /// Per shard: until when its last count is trusted, and whether it was past the bound.
    shards: Mutex<HashMap<u16, (Instant, bool)>>,
}

/// One tenant's rate state.
struct TenantEdge {
    rates: TenantRates,
    requests: Mutex<Bucket>,
    events: Mutex<Bucket>,
    expensive: Arc<Semaphore>,
}

/// A token bucket: `rate` tokens a second up to `burst`. A cost larger than the burst is let
/// through from a full bucket (leaving a debt), so a batch larger than the burst is slowed,
/// never refused for ever.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A refusal for rate: the policy's name, quota and window, and when to try again.
pub struct Limited {
    policy: &'static str,
    quota: u64,
    retry_after: u64,
}

impl Bucket {
    fn full(burst: u64) -> Bucket {
        Bucket {
            tokens: burst as f64,
            at: Instant::now(),
        }
    }

    /// Takes `cost` tokens, or says in how many whole seconds there will be enough.
    fn take(&mut self, cost: u64, rate: u64, burst: u64) -> Result<u64, u64> {
        if rate == 0 {
            return Ok(u64::MAX);
        }
        let now = Instant::now();
        let burst_f = burst.max(1) as f64;
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * rate as f64).min(burst_f);
        self.at = now;
        let needed = (cost as f64).min(burst_f);
        if self.tokens >= needed {
            self.tokens -= cost as f64;
            Ok(self.tokens.max(0.0) as u64)
        } else {
            Err(((needed - self.tokens) / rate as f64).ceil().max(1.0) as u64)
        }
    }
}

impl Edge {
    pub fn new(config: EdgeConfig) -> Edge {
        Edge {
            config,
            tenants: Mutex::default(),
            shards: Mutex::default(),
        }
    }

    /// The tenant's rate state, made from its overrides on first use.
    fn tenant(&self, state: &AppState, tenant: &str) -> Result<Arc<TenantEdge>, ApiError> {
        if let Some(t) = lock(&self.tenants).get(tenant) {
            return Ok(t.clone());
        }
        let overrides = state
            .host
            .store
            .tenant(tenant)?
            .map(|t| t.limits)
            .unwrap_or_default();
        let rates = self.config.rates.with(&overrides);
        let permits = match rates.max_expensive_requests {
            0 => Semaphore::MAX_PERMITS,
            n => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS),
        };
        let t = Arc::new(TenantEdge {
            rates,
            requests: Mutex::new(Bucket::full(rates.request_burst)),
            events: Mutex::new(Bucket::full(rates.event_burst)),
            expensive: Arc::new(Semaphore::new(permits)),
        });
        Ok(lock(&self.tenants)
            .entry(tenant.to_string())
            .or_insert(t)
            .clone())
    }

    /// Forgets a tenant's rate state after its limits changed.
    pub fn forget(&self, tenant: &str) {
        lock(&self.tenants).remove(tenant);
    }

    /// Forgets every tenant's rate state.
    pub fn forget_all(&self) {
        lock(&self.tenants).clear();
    }

    /// Takes `n` events from the tenant's event bucket.
    pub fn take_events(&self, state: &AppState, tenant: &str, n: u64) -> Result<(), ApiError> {
        let t = self.tenant(state, tenant)?;
        let rates = t.rates;
        let taken = lock(&t.events).take(n, rates.events_per_second, rates.event_burst);
        taken.map(|_| ()).map_err(|retry_after| {
            limited(Limited {
                policy: "events",
                quota: rates.events_per_second,
                retry_after,
            })
        })
    }

    /// Whether `shard`'s trigger queue is past the bound: counted (up to the bound, off the
    /// async workers), the count trusted for [`shard_queue_trusted_for`] it.
    pub async fn shard_full(&self, state: &AppState, shard: u16) -> Result<bool, ApiError> {
        let bound = self.config.shard_queue_bound;
        if let Some((until, full)) = lock(&self.shards).get(&shard) {
            if Instant::now() < *until {
                return Ok(*full);
            }
        }
        let store = state.host.store.clone();
        let length = tokio::task::spawn_blocking(move || store.queue_length_up_to(shard, bound))
            .await
            .map_err(ApiError::internal)??;
        let full = length > bound;
        let until = Instant::now() + shard_queue_trusted_for(length, bound);
        lock(&self.shards).insert(shard, (until, full));
        Ok(full)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 429 with `Retry-After` and the draft's `RateLimit-Policy` and `RateLimit` fields.
fn limited(l: Limited) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "over this tenant's {} rate of {} a second; retry after {} s",
            l.policy, l.quota, l.retry_after
        ),
    )
    .with_headers(vec![
        (header::RETRY_AFTER, l.retry_after.to_string()),
        (
            header::HeaderName::from_static("ratelimit-policy"),
            format!("\"{}\";q={};w=1", l.policy, l.quota),
        ),
        (
            header::HeaderName::from_static("ratelimit"),
            format!("\"{}\";r=0;t={}", l.policy, l.retry_after),
        ),
    ])
}

/// What a route's body is, for its size limit and its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// `POST /v1/events`: JSON, up to `max_events_body`.
    Events,
    /// `PUT /v1/journeys/{name}`: the component's bytes.
    Component,
    /// `PUT /v1/channels/{name}`, `POST /v1/journeys/{name}/backtests`: JSON carrying a
    /// base64 component.
    ChannelUpload,
    /// Everything else: small JSON.
    Small,
    /// The Segment-compatible routes (issue 12): JSON, possibly gzipped, up to Segment's
    /// 500 KB a batch (`limits::SEGMENT_MAX_BATCH_BYTES`); inflated by the handler.
    Segment,
    /// `POST /u/{token}` (issue 11): a form, as RFC 8058's one-click POST and the page send it.
    Form,
    /// `POST /v1/hooks/...` (issue 11, provider feedback): whatever the provider sends (JSON,
    /// a form), up to `hooks::MAX_HOOK_BODY`; the channel's adapter reads it.
    Hook,
}

fn body_kind(method: &Method, path: &str) -> BodyKind {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["", "v1", "events"]) => BodyKind::Events,
        (&Method::PUT, ["", "v1", "journeys", _]) => BodyKind::Component,
        (&Method::PUT, ["", "v1", "channels", _]) => BodyKind::ChannelUpload,
        // Issue 13: a backtest's candidate may be a component's bytes.
        (&Method::POST, ["", "v1", "journeys", _, "backtests"]) => BodyKind::ChannelUpload,
        (&Method::POST, ["", "v1", route]) if super::segment::ROUTES.contains(route) => {
            BodyKind::Segment
        }
        (&Method::POST, ["", "u", _]) => BodyKind::Form,
        (&Method::POST, ["", "v1", "hooks", ..]) => BodyKind::Hook,
        _ => BodyKind::Small,
    }
}

/// Requests whose cost grows with their input or the tenant's data: a few at a time per tenant.
fn expensive(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        (method, segments.as_slice()),
        (&Method::PUT, ["", "v1", "journeys", _])
            | (&Method::PUT, ["", "v1", "channels", _])
            // Issue 13: may compile a candidate component.
            | (&Method::POST, ["", "v1", "journeys", _, "backtests"])
            | (&Method::POST, ["", "v1", "dead-letters", "retry"])
            | (&Method::GET, ["", "v1", "dead-letters"])
            | (&Method::GET, ["", "v1", "tasks"])
            | (&Method::GET, ["", "v1", "journeys", _, "report"])
            // A template upload compiles every locale's parts; a preview compiles and renders.
            | (&Method::PUT, ["", "v1", "templates", _])
            | (&Method::POST, ["", "v1", "templates", _, "preview"])
    )
}

/// Whether a `Content-Type` is JSON: `application/json` or `application/*+json`, any
/// parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A form body (issue 11, `POST /u/{token}`): what RFC 8058 § 3.2 lets a mail receiver send.
fn is_form(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        || essence.eq_ignore_ascii_case("multipart/form-data")
}

fn is_text(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/plain")
}

fn is_component(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/wasm" || essence == "application/octet-stream"
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

fn too_large(what: &str, size: u64, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the {what} is {size} bytes; this route takes at most {limit}"),
    )
}

/// The checks before the handler (see the module's documentation), in order: sizes of the
/// head, content type, declared length, the tenant's rate and expensive requests, the body.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match guarded(state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The checks made on a request's head before any of its body is read: target and header
/// sizes, content type, declared length, the tenant's request rate and expensive-request cap.
fn admit(state: &AppState, request: &mut Parts) -> Result<Admitted, ApiError> {
    let edge = &state.edge;
    let config = &edge.config;
    let uri_len = request
        .uri
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > config.max_uri_bytes {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the request target is {uri_len} bytes; at most {} are read",
                config.max_uri_bytes
            ),
        ));
    }
    let head = header_bytes(&request.headers);
    if head > config.max_header_bytes {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request headers are {head} bytes; at most {} are read",
                config.max_header_bytes
            ),
        ));
    }
    let method = request.method.clone();
    let path = request.uri.path().to_string();
    let kind = body_kind(&method, &path);
    let has_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
    if has_body {
        // A missing Content-Type is taken as the route's own (as clients and docs always did).
        if let Some(content_type) = request.headers.get(header::CONTENT_TYPE) {
            let content_type = content_type.to_str().unwrap_or_default();
            let ok = match kind {
                BodyKind::Component => is_component(content_type),
                // Browser Segment clients send JSON as `text/plain` (a "simple" request, no
                // CORS preflight).
                BodyKind::Segment => is_json(content_type) || is_text(content_type),
                BodyKind::Form => is_form(content_type),
                BodyKind::Hook => true,
                _ => is_json(content_type),
            };
            if !ok {
                let wanted = match kind {
                    BodyKind::Component => "application/wasm (or application/octet-stream)",
                    BodyKind::Form => "multipart/form-data or application/x-www-form-urlencoded",
                    _ => "application/json",
                };
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("this route takes {wanted}, not {content_type:?}"),
                ));
            }
        }
    }
    let limit = match kind {
        BodyKind::Events => config.max_events_body,
        BodyKind::Component | BodyKind::ChannelUpload => config.max_upload_body,
        BodyKind::Small | BodyKind::Form => config.max_small_body,
        BodyKind::Segment => super::limits::SEGMENT_MAX_BATCH_BYTES,
        BodyKind::Hook => super::hooks::MAX_HOOK_BODY,
    };
    let declared = request
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared {
        if length > limit as u64 {
            // Refused before a byte of it is read.
            return Err(too_large("body", length, limit));
        }
    }

    // The tenant, if the key is one: rate-limited and remembered for the handler.
    let mut rate = None;
    let mut _permit: Option<OwnedSemaphorePermit> = None;
    if let Some(caller) = Caller::resolve(&request.headers, state)? {
        let tenant = caller.tenant.clone();
        let t = edge.tenant(state, &tenant)?;
        let rates = t.rates;
        let remaining = lock(&t.requests)
            .take(1, rates.requests_per_second, rates.request_burst)
            .map_err(|retry_after| {
                limited(Limited {
                    policy: "requests",
                    quota: rates.requests_per_second,
                    retry_after,
                })
            })?;
        if rates.requests_per_second > 0 {
            rate = Some((rates.requests_per_second, remaining));
        }
        if expensive(&method, &path) {
            _permit = Some(t.expensive.clone().try_acquire_owned().map_err(|_| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_concurrent",
                    format!(
                        "this tenant already has {} expensive requests in flight",
                        rates.max_expensive_requests
                    ),
                )
                .with_headers(vec![(header::RETRY_AFTER, "1".to_string())])
            })?);
        }
        tracing::debug!(tenant, %method, path, "tenant request admitted");
        request.extensions.insert(caller);
    }

    Ok(Admitted {
        limit,
        has_body,
        rate,
        _permit,
    })
}

/// Reads and drops what comes of a refused request's body, for at most [`LINGER`] and
/// [`LINGER_BYTES`], while the refusal is answered; then the connection closes. A server that
/// closes a connection with unread bytes in it makes the kernel reset it, and a client still
/// sending its body then sees the reset instead of the answer (the "lingering close" of
/// RFC 9112 §9.6).
fn linger(body: Body) {
    tokio::spawn(async move {
        let drain = async {
            use http_body_util::BodyExt as _;
            let mut body = body;
            let mut read = 0;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    read += data.len();
                    if read > LINGER_BYTES {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

/// What [`admit`] let through: the body's limit and whether there is one, the tenant's rate
/// for the answer's headers, and its expensive-request permit (held until the answer).
struct Admitted {
    limit: usize,
    has_body: bool,
    rate: Option<(u64, u64)>,
    _permit: Option<OwnedSemaphorePermit>,
}

async fn guarded(state: AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    let config = &state.edge.config;
    let (mut parts, body) = request.into_parts();
    let Admitted {
        limit,
        has_body,
        rate,
        _permit,
    } = match admit(&state, &mut parts) {
        Ok(admitted) => admitted,
        Err(error) => {
            linger(body);
            return Err(error);
        }
    };
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let mut request = Request::from_parts(parts, body);
    if has_body {
        let (parts, body) = request.into_parts();
        let read = axum::body::to_bytes(body, limit);
        let bytes = match tokio::time::timeout(config.body_timeout, read).await {
            Err(_) => {
                tracing::debug!(%method, path, "request body timed out");
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the body did not arrive within {} ms",
                        config.body_timeout.as_millis()
                    ),
                ));
            }
            Ok(Err(error)) => {
                tracing::debug!(%method, path, %error, "request body refused");
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is over this route's {limit} bytes"),
                ));
            }
            Ok(Ok(bytes)) => bytes,
        };
        request = Request::from_parts(parts, Body::from(bytes));
    }
    let mut response = next.run(request).await;
    if let Some((quota, remaining)) = rate {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("\"requests\";q={quota};w=1")) {
            headers.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"requests\";r={remaining};t=1")) {
            headers.entry("ratelimit").or_insert(v);
        }
    }
    Ok(response)
}

/// Rewrites an error answer that is not JSON (axum's 405 with no body, its text/plain
/// extractor rejections, a 404 of a nested router) into `{"error": {"code", "message"}}`.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (code, default) = match status {
        StatusCode::BAD_REQUEST => ("invalid_input", "malformed request"),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not take this method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported Content-Type")
        }
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_input", "the body does not fit the route"),
        s if s.is_server_error() => ("internal", "internal error; see the server log"),
        _ => ("error", "request refused"),
    };
    let message = if text.is_empty() {
        default.to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    // Keep what the status needs (e.g. `Allow` on a 405).
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_when_to_retry() {
        let mut b = Bucket::full(2);
        assert!(b.take(1, 1, 2).is_ok());
        assert!(b.take(1, 1, 2).is_ok());
        assert_eq!(b.take(1, 1, 2), Err(1));
        // A cost above the burst passes from a full bucket, leaving a debt.
        let mut b = Bucket::full(10);
        assert!(b.take(50, 10, 10).is_ok());
        assert!(b.take(1, 10, 10).unwrap_err() >= 4);
        // Rate 0: unlimited.
        assert!(Bucket::full(0).take(1_000_000, 0, 0).is_ok());
    }

    #[test]
    fn content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(is_component("application/wasm"));
        assert!(!is_component("application/json"));
    }

    #[test]
    fn routes_are_classified() {
        assert_eq!(body_kind(&Method::POST, "/v1/events"), BodyKind::Events);
        assert_eq!(
            body_kind(&Method::PUT, "/v1/journeys/a"),
            BodyKind::Component
        );
        assert_eq!(
            body_kind(&Method::PUT, "/v1/channels/a"),
            BodyKind::ChannelUpload
        );
        assert_eq!(body_kind(&Method::PUT, "/v1/policy"), BodyKind::Small);
        assert_eq!(body_kind(&Method::POST, "/v1/batch"), BodyKind::Segment);
        assert_eq!(body_kind(&Method::POST, "/v1/track/"), BodyKind::Segment);
        assert_eq!(body_kind(&Method::GET, "/v1/track"), BodyKind::Small);
        assert!(expensive(&Method::POST, "/v1/dead-letters/retry"));
        assert!(expensive(&Method::POST, "/v1/templates/welcome/preview"));
        assert!(expensive(&Method::PUT, "/v1/templates/welcome"));
        assert!(!expensive(&Method::GET, "/v1/templates/welcome"));
        assert!(!expensive(&Method::POST, "/v1/events"));
    }
}
