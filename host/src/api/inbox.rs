//! In-app inbox (issue 11): what `inapp` channels delivered, read two ways.
//!
//! - The tenant's backend, with its key: `GET /v1/customers/{id}/inbox`; it mints a
//!   customer's token with an admin key (`POST /v1/customers/{id}/inbox/token`) or itself
//!   (the format is `signed`'s, documented in `docs/API.md`), and rotates the secret tokens
//!   are signed with (`POST /v1/inbox/secret`; the replaced secret still verifies until the
//!   next rotation).
//! - The tenant's front end, with a customer's token (`Authorization: Bearer <token>`):
//!   `GET /v1/inbox` lists that customer's messages, `POST /v1/inbox/{message}/{mark}` marks
//!   one `seen`, `read`, `clicked` or `archived`. These routes answer CORS requests from any
//!   origin (the token is the credential, never a cookie; [`cors`]); no other route does.
//!
//! A new mark is also an engagement event for the journey that sent the message, ingested as
//! any event is (`events::ingest`, id `inapp:{message}:{mark}` so a mark counts once):
//! `clicked` → `clicked`, `read` → `opened`, `seen` → `seen`, `archived` → `archived`, with
//! properties `message_id`, `channel` and `source: "inapp"` (`engine::profile::Engagement`).
//! Another customer's message is a 404, a missing, forged or expired token a 401.

use super::dto;
use super::prelude::*;
use crate::clock::system_now;
use crate::inapp::{fresh_secret, tenant_secret, SecretError};
use crate::model::Event;
use crate::signed::{self, InboxClaims, TokenError, INBOX_PURPOSE};
use crate::store::inbox::{InboxCursor, InboxMark};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use waymark_api::inbox::{InboxMessage, InboxPage, InboxSecret, InboxToken, InboxTokenRequest};

/// Default and longest life of a minted token, in seconds.
const DEFAULT_TTL: u64 = 3600;
const MAX_TTL: u64 = 30 * 24 * 3600;
/// Default page size.
const DEFAULT_PAGE: usize = 50;

/// The tenant-key routes (under the durable-reads layer: what a listing shows is durable).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/customers/{id}/inbox", get(customer_inbox))
        .route("/v1/customers/{id}/inbox/token", post(mint_token))
        .route("/v1/inbox/secret", post(rotate_secret))
}

/// The customer-token routes (CORS: [`cors`]).
pub(super) fn customer_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/inbox", get(own_inbox))
        .route("/v1/inbox/{message}/{mark}", post(mark_message))
}

/// Whether `path` is one of the customer-token routes (`/v1/inbox`,
/// `/v1/inbox/{message}/{mark}`), which browsers call from the tenant's front end.
fn customer_route(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["", "v1", "inbox"] | ["", "v1", "inbox", _, _]
    )
}

/// CORS for the customer-token routes only, outermost (a preflight is answered before
/// anything else looks at it). Any origin may call them: the credential is the bearer token a
/// script sends, never a cookie, so `*` is what the Fetch standard's CORS protocol allows
/// (<https://fetch.spec.whatwg.org/#http-cors-protocol>): a preflight (`OPTIONS` with
/// `Access-Control-Request-Method`) gets 204 with the methods and the request headers allowed,
/// and every answer of these routes `Access-Control-Allow-Origin: *`.
pub(super) async fn cors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue, Method};
    if !customer_route(request.uri().path()) {
        return next.run(request).await;
    }
    let any = HeaderValue::from_static("*");
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, any);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return response;
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, any);
    response
}

impl From<SecretError> for ApiError {
    fn from(e: SecretError) -> ApiError {
        match e {
            SecretError::Store(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

/// The customer a valid inbox token speaks for.
pub(super) struct InboxCustomer {
    tenant: String,
    customer: String,
}

fn refused(e: TokenError) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!("inbox token refused: {e}"),
    )
}

impl FromRequestParts<AppState> for InboxCustomer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<InboxCustomer> {
        // A tenant key (resolved by the edge) is a credential, but not this route's.
        if parts.extensions.get::<super::auth::Caller>().is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a tenant key cannot read a customer's inbox here: send the customer's inbox token \
                 (or read GET /v1/customers/{id}/inbox)",
            ));
        }
        let token = super::auth::bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let claims = signed::read_inbox_token(token).map_err(refused)?;
        // A tenant with no secret yet has issued no token.
        let secret = state
            .host
            .store
            .signing_secret(&claims.tenant, INBOX_PURPOSE)?
            .ok_or(refused(TokenError::BadSignature))?;
        let now = system_now() / 1000;
        let claims = signed::verify_inbox_token(token, secret.verifying(), now).map_err(refused)?;
        Ok(InboxCustomer {
            tenant: claims.tenant,
            customer: claims.customer,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    /// Whether archived messages are listed too.
    #[serde(default)]
    archived: bool,
}

fn page(
    state: &AppState,
    tenant: &str,
    customer: &str,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<InboxPage>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1 to {MAX_LIST}"),
        ));
    }
    let cursor = match query.cursor.as_deref() {
        None => None,
        Some(text) => Some(InboxCursor::from_hex(text).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "cursor is not one a page answered")
        })?),
    };
    let page =
        state
            .host
            .store
            .inbox_page(tenant, customer, cursor.as_ref(), limit, query.archived)?;
    Ok(Json(dto::inbox::page(page)))
}

async fn customer_inbox(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<InboxPage>> {
    page(&state, &tenant, &id, query)
}

async fn own_inbox(
    State(state): State<AppState>,
    who: InboxCustomer,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<InboxPage>> {
    page(&state, &who.tenant, &who.customer, query)
}

fn parse_mark(text: &str) -> ApiResult<(InboxMark, &'static str)> {
    Ok(match text {
        "seen" => (InboxMark::Seen, "seen"),
        "read" => (InboxMark::Read, "opened"),
        "clicked" => (InboxMark::Clicked, "clicked"),
        "archived" => (InboxMark::Archived, "archived"),
        other => {
            return Err(ApiError::not_found(format!(
                "no mark {other:?}: seen, read, clicked or archived"
            )))
        }
    })
}

async fn mark_message(
    State(state): State<AppState>,
    who: InboxCustomer,
    Path((message, mark)): Path<(String, String)>,
) -> ApiResult<Json<InboxMessage>> {
    let (mark, event_name) = parse_mark(&mark)?;
    let host = &state.host;
    let now = host.clock.now();
    let (entry, new) = host
        .store
        .mark_inbox_entry(&who.tenant, &who.customer, &message, mark, now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no message {message:?} in this inbox")))?;
    if new {
        let mut properties = crate::model::Object::new();
        properties.insert("message_id".into(), entry.message_id.clone().into());
        properties.insert("channel".into(), entry.channel.clone().into());
        properties.insert("source".into(), "inapp".into());
        let event = Event {
            id: format!("inapp:{}:{event_name}", entry.message_id),
            customer: who.customer.clone(),
            name: event_name.to_string(),
            properties,
            timestamp: now,
        };
        super::events::ingest(
            &state,
            &who.tenant,
            vec![event],
            now,
            super::events::Merged::Here,
        )
        .await?;
    }
    Ok(Json(dto::inbox::message(entry)))
}

async fn mint_token(
    State(state): State<AppState>,
    TenantAdmin(tenant): TenantAdmin,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<InboxToken>> {
    let body = body?;
    let request: InboxTokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        InboxTokenRequest::default()
    } else {
        parse_json(&body)?
    };
    let ttl = request.ttl_seconds.unwrap_or(DEFAULT_TTL);
    if ttl == 0 || ttl > MAX_TTL {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("ttl_seconds must be 1 to {MAX_TTL}"),
        ));
    }
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_input",
            "a customer id has no control characters",
        ));
    }
    let secret = tenant_secret(&state.host, &tenant, INBOX_PURPOSE).await?;
    let claims = InboxClaims {
        tenant,
        customer: id,
        expires_at: system_now() / 1000 + ttl as i64,
    };
    let token = signed::mint_inbox_token(&secret.current, &claims);
    Ok(Json(InboxToken {
        token,
        customer: claims.customer,
        expires_at: claims.expires_at,
    }))
}

async fn rotate_secret(
    State(state): State<AppState>,
    TenantAdmin(tenant): TenantAdmin,
) -> ApiResult<Json<InboxSecret>> {
    let stored = state
        .host
        .store
        .rotate_signing_secret(&tenant, INBOX_PURPOSE, fresh_secret()?)
        .await?;
    Ok(Json(InboxSecret {
        previous_still_valid: stored.previous.is_some(),
        secret: stored.current,
    }))
}
