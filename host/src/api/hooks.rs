//! Provider feedback (issue 11): `POST /v1/hooks/{tenant}/{channel}`, where a
//! provider posts its webhooks (delivery statuses, opens, clicks, bounces, complaints, replies,
//! inbound SMS), and the tenant's suppression list.
//!
//! The hook route takes no API key: a provider cannot send one. The request is authenticated
//! by the provider's own signature, which the channel's adapter checks with the registration's
//! secrets (`receive`, contract 0.1.2; `sandbox::ChannelComponent::receive`). A refused
//! signature is a 401 and changes nothing; a request the adapter does not understand a 400; a
//! channel whose component has no `feedback` export (built before 0.1.2), or that says it takes
//! no webhooks, a 422; an unknown tenant or channel a 404 (one message for both, so the route
//! does not tell which tenants exist).
//!
//! Each event the adapter reports is matched to the message it is about (`store::feedback`: by
//! our id, the provider's id, or the latest message to its address) and ingested as an event of
//! that message's customer (`feedback::event_for`), with an id derived from the feedback so a
//! webhook the provider retries is processed once. A hard bounce or a complaint first
//! suppresses the address on the channel. The answer is 200 once everything is durable, so a
//! provider that gets anything else retries: the host's JSON summary ([`api::HookReceived`]),
//! or, when the adapter gives a reply (`received.reply`, contract 0.1.2), that body with its
//! content type, since some providers read the answer: Slack's `url_verification` handshake
//! wants its `challenge` echoed, and Twilio reads an inbound message's answer as TwiML (an
//! empty `<Response/>` sends nothing back to the texter).
//!
//! The suppression list: `GET /v1/suppressions` (paged by `after=channel/address`) and
//! `DELETE /v1/suppressions/{channel}/{address}` to lift one.

use super::prelude::*;
use crate::feedback::{self, FeedbackEvent, ReceiveFailure, WebhookRequest};
use crate::store::feedback::{MessageRef, Suppression};
use crate::store::ChannelAdapter;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::delete;
use waymark_api::events::EventStatus;
use waymark_api::feedback as api;

/// The largest webhook body read (a SendGrid batch holds up to 1,000 events, a few hundred
/// bytes each).
pub(super) const MAX_HOOK_BODY: usize = 1 << 20;

/// Default page of suppressions.
const DEFAULT_PAGE: usize = 100;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/hooks/{tenant}/{channel}", post(receive))
        .route("/v1/suppressions", get(list_suppressions))
        .route(
            "/v1/suppressions/{channel}/{address}",
            delete(lift_suppression),
        )
}

async fn receive(
    State(state): State<AppState>,
    Path((tenant, channel)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let hook = Hook { tenant, channel };
    received(&state, hook, method, uri, headers, body?).await
}

/// Which hook was called.
struct Hook {
    tenant: String,
    channel: String,
}

fn no_hook() -> ApiError {
    ApiError::not_found("no such tenant or channel to receive webhooks for")
}

/// The URL the provider called, as the public sees it: the host's public URL (`--public-url`)
/// with the request's path and query; without one, `http://` and the `Host` header.
fn public_url(state: &AppState, uri: &Uri, headers: &HeaderMap) -> String {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    match &state.host.config.public_url {
        Some(base) => format!("{}{path_and_query}", base.trim_end_matches('/')),
        None => {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}{path_and_query}")
        }
    }
}

async fn received(
    state: &AppState,
    hook: Hook,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let host = &state.host;
    let Hook { tenant, channel } = hook;
    if host.store.tenant(&tenant)?.is_none() {
        return Err(no_hook());
    }
    let record = host.store.channel(&tenant, &channel)?.ok_or_else(no_hook)?;
    if record.adapter == ChannelAdapter::Inapp {
        return Err(unsupported(format!(
            "channel {channel:?} is the host's in-app inbox: it has no provider to receive webhooks from"
        )));
    }
    let component = host
        .registry
        .channel(&tenant, &channel, &record.digest)
        .await
        .map_err(ApiError::internal)?;
    let limits = host.tenant_limits(&tenant)?;
    let mut config = record.settings.clone();
    config.extend(record.secrets.clone());
    let request = WebhookRequest {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: body.to_vec(),
        url: public_url(state, &uri, &headers),
        config,
        now: crate::clock::system_now(),
    };
    let received = component
        .receive(&request, &limits)
        .await
        .map_err(refused)?;
    let summary = apply(state, &tenant, &channel, received.events).await?;
    Ok(answer(summary, received.reply))
}

/// The 200 answer, once the events are durable: the adapter's reply when it gave one (checked
/// by the sandbox: bounded, a valid content type), else the host's JSON summary.
fn answer(summary: api::HookReceived, reply: Option<feedback::WebhookReply>) -> Response {
    match reply {
        Some(reply) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, reply.content_type)],
            reply.body,
        )
            .into_response(),
        None => Json(summary).into_response(),
    }
}

fn unsupported(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "feedback_unsupported",
        message,
    )
}

/// The answer to an adapter's refusal. Nothing was changed.
fn refused(failure: ReceiveFailure) -> ApiError {
    match failure {
        ReceiveFailure::Unauthorized(m) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("webhook signature refused: {m}"),
        ),
        ReceiveFailure::Invalid(m) => {
            ApiError::bad_request("invalid_webhook", format!("webhook refused: {m}"))
        }
        ReceiveFailure::Unsupported(m) => unsupported(m),
        ReceiveFailure::Guest(m) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "adapter_failed",
            format!("the channel's adapter failed on this webhook: {m}"),
        ),
    }
}

/// The message `event` is about, if this channel delivered it: by our id, the provider's id,
/// or the latest message to its address, in that order.
fn target(
    state: &AppState,
    tenant: &str,
    channel: &str,
    event: &FeedbackEvent,
) -> ApiResult<Option<MessageRef>> {
    let store = &state.host.store;
    if let Some(id) = &event.message_id {
        if let Some(found) = store.message_by_id(tenant, id)? {
            // Only this channel's messages: a signed webhook of one provider says nothing
            // about another channel's.
            let message = store.message(tenant, &found.customer, &found.message_id)?;
            if message.is_some_and(|m| m.channel == channel) {
                return Ok(Some(found));
            }
        }
    }
    if let Some(id) = &event.provider_id {
        if let Some(found) = store.message_by_provider_id(tenant, channel, id)? {
            return Ok(Some(found));
        }
    }
    if let Some(address) = &event.address {
        let address = feedback::normalize_address(address);
        return Ok(store.message_to_address(tenant, channel, &address)?);
    }
    Ok(None)
}

/// Suppresses the addresses hard bounces and complaints name, then ingests the matched events
/// in one batch (deduplicated by their derived ids).
async fn apply(
    state: &AppState,
    tenant: &str,
    channel: &str,
    reported: Vec<FeedbackEvent>,
) -> ApiResult<api::HookReceived> {
    let now = state.host.clock.now();
    let mut answer = api::HookReceived {
        accepted: 0,
        duplicates: 0,
        unmatched: 0,
        suppressed: Vec::new(),
        events: Vec::with_capacity(reported.len()),
    };
    let mut events = Vec::new();
    for event in &reported {
        let found = target(state, tenant, channel, event)?;
        if let (Some(reason), Some(address)) =
            (feedback::suppression_reason(&event.kind), &event.address)
        {
            let detail = match &event.kind {
                feedback::FeedbackKind::Bounced { reason, .. } if !reason.is_empty() => {
                    Some(reason.clone())
                }
                _ => None,
            };
            let suppression = Suppression {
                channel: channel.to_string(),
                address: feedback::normalize_address(address),
                reason: reason.to_string(),
                detail,
                customer: found.as_ref().map(|f| f.customer.clone()),
                message_id: found.as_ref().map(|f| f.message_id.clone()),
                created_at: now,
            };
            if state
                .host
                .store
                .suppress_address(tenant, &suppression)
                .await?
            {
                answer.suppressed.push(suppression.address);
            }
        }
        let name = event.kind.event_name().to_string();
        match found {
            Some(found) => {
                let e = feedback::event_for(channel, &found, event, now);
                answer.events.push(api::HookEvent {
                    name,
                    id: Some(e.id.clone()),
                    customer: Some(found.customer),
                    message_id: Some(found.message_id),
                    status: String::new(),
                });
                events.push(e);
            }
            None => {
                answer.unmatched += 1;
                answer.events.push(api::HookEvent {
                    name,
                    id: None,
                    customer: None,
                    message_id: None,
                    status: "unmatched".into(),
                });
            }
        }
    }
    if !events.is_empty() {
        let ingested =
            super::events::ingest(state, tenant, events, now, super::events::Merged::Here).await?;
        answer.accepted = ingested.accepted;
        answer.duplicates = ingested.duplicates;
        let mut results = ingested.results.into_iter();
        for event in answer.events.iter_mut().filter(|e| e.id.is_some()) {
            event.status = match results.next().map(|r| r.status) {
                Some(EventStatus::Duplicate) => "duplicate".into(),
                _ => "accepted".into(),
            };
        }
    }
    Ok(answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<usize>,
    /// `channel/address` of the last suppression of the previous page.
    after: Option<String>,
}

fn to_api(s: Suppression) -> api::Suppression {
    let Suppression {
        channel,
        address,
        reason,
        detail,
        customer,
        message_id,
        created_at,
    } = s;
    api::Suppression {
        channel,
        address,
        reason,
        detail,
        customer,
        message_id,
        created_at,
    }
}

async fn list_suppressions(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<api::SuppressionPage>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1 to {MAX_LIST}"),
        ));
    }
    let after =
        match query.after.as_deref() {
            None => None,
            Some(text) => Some(text.split_once('/').ok_or_else(|| {
                ApiError::bad_request("invalid_query", "after is `channel/address`")
            })?),
        };
    let mut page = state.host.store.suppressions(&tenant, after, limit + 1)?;
    let more = page.len() > limit;
    page.truncate(limit);
    let next = more
        .then(|| page.last().map(|s| format!("{}/{}", s.channel, s.address)))
        .flatten();
    Ok(Json(api::SuppressionPage {
        suppressions: page.into_iter().map(to_api).collect(),
        next,
    }))
}

async fn lift_suppression(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path((channel, address)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let address = feedback::normalize_address(&address);
    if state
        .host
        .store
        .lift_suppression(&tenant, &channel, &address)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "{address:?} is not suppressed on channel {channel:?}"
        )))
    }
}
