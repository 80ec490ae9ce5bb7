//! A typed async client of Waymark's HTTP API: one method per route of `docs/API.md`, taking
//! and returning the [`waymark_api`] types, and [`Client::request`] for the raw status and
//! body that error tests look at.
//!
//! One [`Client`] carries one bearer token: the admin token for the admin routes, or a
//! tenant's API key for the tenant routes ([`Client::with_token`] switches, sharing the
//! connection pool). Every call returns `Result<T, ClientError>`; [`ClientError`] tells an
//! answer of the API (a status and its `{"error": {"code", "message"}}`) from a request that
//! never got one and from an answer that is not what the API documents.
//!
//! Only plain `http://` is spoken (the server runs on loopback or a private network); the
//! client links no TLS stack.

mod error;

pub use error::ClientError;
pub use reqwest::{self, Method, StatusCode};
pub use waymark_api as api;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;
use waymark_api::backtests::{Backtest, BacktestRequest}; // Backtests (issue 13)
use waymark_api::channels::{Channel, ChannelList, ChannelRegistration};
use waymark_api::clock::{AdvanceClock, Clock, ClockAdvanced};
use waymark_api::customers::Customer;
use waymark_api::dead_letters::{DeadLetters, Requeued, RetryDeadLetters};
use waymark_api::events::{EventInput, EventsAccepted};
use waymark_api::health::Health;
use waymark_api::journeys::{
    DecideRequest, Decided, JourneyList, JourneyRollout, JourneyVersions, Migrate, MigrationStatus,
    Promote, UploadedJourney,
};
use waymark_api::limits::{LimitOverrides, TenantLimits};
use waymark_api::policy::SendingPolicy;
use waymark_api::reports::JourneyReport;
use waymark_api::tasks::{ClaimTask, ResolveTask, Task, TaskList, TaskQuery};
use waymark_api::templates::{Preview, PreviewRequest, Template, TemplateList, TemplateUpload};
use waymark_api::tenants::{CreatedTenant, NewTenant};
// Issue 12.
use waymark_api::keys::{CreatedKey, Key, KeyList, NewKey};
use waymark_api::segment::SegmentAccepted;
// In-app inbox, unsubscribe and subscription topics (issue 11).
use waymark_api::inbox::{
    InappRegistration, InboxMessage, InboxPage, InboxSecret, InboxToken, InboxTokenRequest,
    Subscriptions,
};
// Provider feedback (issue 11).
use waymark_api::feedback::SuppressionPage;

/// What a call returns.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A request body for [`Client::request`].
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON value, sent as `application/json`.
    Json(Value),
    /// Bytes with a content type: a component, or JSON text that is malformed on purpose.
    Raw {
        /// The `Content-Type`.
        content_type: &'static str,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

impl Body {
    /// Text sent as `application/json`, valid or (the point of it) not.
    pub fn json_text(text: &str) -> Body {
        Body::Raw {
            content_type: "application/json",
            bytes: text.as_bytes().to_vec(),
        }
    }

    /// A component's bytes, sent as `application/wasm`.
    pub fn wasm(bytes: Vec<u8>) -> Body {
        Body::Raw {
            content_type: "application/wasm",
            bytes,
        }
    }

    fn json(value: &impl Serialize) -> Result<Body> {
        serde_json::to_value(value)
            .map(Body::Json)
            .map_err(|e| ClientError::Encode(e.to_string()))
    }
}

impl From<Value> for Body {
    fn from(value: Value) -> Body {
        Body::Json(value)
    }
}

/// A client of one server, acting with one bearer token (or none).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `base_url` (`http://IP:PORT`), sending `token` as
    /// `Authorization: Bearer`; requests time out after `timeout`. Proxies are ignored.
    pub fn new(base_url: &str, token: Option<&str>, timeout: Duration) -> Result<Client> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|source| ClientError::Transport {
                route: "building the HTTP client".into(),
                source,
            })?;
        Ok(Client::with_http(http, base_url, token))
    }

    /// The same over a `reqwest::Client` configured by the caller.
    pub fn with_http(http: reqwest::Client, base_url: &str, token: Option<&str>) -> Client {
        Client {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
        }
    }

    /// This client with another token (or none), sharing the connection pool.
    pub fn with_token(&self, token: Option<&str>) -> Client {
        Client {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// This client pointed at another server (a restarted one listens on another port),
    /// with the same token and connection pool.
    pub fn with_base_url(&self, base_url: &str) -> Client {
        Client {
            base: base_url.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// `http://IP:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Any request, with this client's token: the status and the body as JSON (a body that
    /// is not JSON comes back as a JSON string). Fails only when no answer arrived.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Body>,
    ) -> Result<(StatusCode, Value)> {
        let (status, bytes) = self.send(method, path, body.into()).await?;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }

    async fn send(&self, method: Method, path: &str, body: Body) -> Result<(StatusCode, Vec<u8>)> {
        let (status, _, bytes) = self.exchange(method, path, body).await?;
        Ok((status, bytes))
    }

    /// One request: the status, the `Retry-After` it carried, and the body.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<(StatusCode, Option<Duration>, Vec<u8>)> {
        let route = format!("{method} {path}");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Body::Empty => request,
            Body::Json(value) => request.json(&value),
            Body::Raw {
                content_type,
                bytes,
            } => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
        };
        let transport = |source| ClientError::Transport {
            route: route.clone(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = error::retry_after(response.headers());
        let bytes = response.bytes().await.map_err(transport)?;
        Ok((status, retry_after, bytes.to_vec()))
    }

    /// A call whose 2xx answer is a `T`.
    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Body) -> Result<T> {
        let route = format!("{method} {path}");
        let (status, retry_after, bytes) = self.exchange(method, path, body).await?;
        error::decode(&route, status, &bytes).map_err(|e| match e {
            ClientError::Api {
                route,
                status,
                error,
                ..
            } => ClientError::Api {
                route,
                status,
                error,
                retry_after,
            },
            other => other,
        })
    }

    // --- anyone ------------------------------------------------------------------------------

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health> {
        self.call(Method::GET, "/healthz", Body::Empty).await
    }

    /// `GET /metrics`: the OpenMetrics text.
    pub async fn metrics(&self) -> Result<String> {
        let route = "GET /metrics";
        let (status, bytes) = self.send(Method::GET, "/metrics", Body::Empty).await?;
        if !status.is_success() {
            return Err(error::error(route, status, &bytes));
        }
        String::from_utf8(bytes).map_err(|e| ClientError::Decode {
            route: route.into(),
            status,
            reason: e.to_string(),
            body: String::new(),
        })
    }

    // --- admin -------------------------------------------------------------------------------

    /// `POST /v1/admin/tenants` (admin).
    pub async fn create_tenant(&self, name: &str) -> Result<CreatedTenant> {
        let body = Body::json(&NewTenant { name: name.into() })?;
        self.call(Method::POST, "/v1/admin/tenants", body).await
    }

    /// `GET /v1/admin/tenants/{id}/limits` (admin).
    pub async fn tenant_limits(&self, tenant: &str) -> Result<TenantLimits> {
        let path = format!("/v1/admin/tenants/{}/limits", segment(tenant));
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `PUT /v1/admin/tenants/{id}/limits` (admin): replaces the tenant's overrides.
    pub async fn set_tenant_limits(
        &self,
        tenant: &str,
        overrides: &LimitOverrides,
    ) -> Result<TenantLimits> {
        let path = format!("/v1/admin/tenants/{}/limits", segment(tenant));
        self.call(Method::PUT, &path, Body::json(overrides)?).await
    }

    /// `GET /v1/admin/clock` (admin).
    pub async fn clock(&self) -> Result<Clock> {
        self.call(Method::GET, "/v1/admin/clock", Body::Empty).await
    }

    /// `POST /v1/admin/clock/advance` (admin): moves the manual clock forward.
    pub async fn advance_clock(&self, by_ms: i64) -> Result<ClockAdvanced> {
        let body = Body::json(&AdvanceClock { by_ms })?;
        self.call(Method::POST, "/v1/admin/clock/advance", body)
            .await
    }

    // --- journeys ----------------------------------------------------------------------------

    /// `GET /v1/journeys`.
    pub async fn journeys(&self) -> Result<JourneyList> {
        self.call(Method::GET, "/v1/journeys", Body::Empty).await
    }

    /// `GET /v1/journeys/{name}`.
    pub async fn journey(&self, name: &str) -> Result<JourneyVersions> {
        let path = format!("/v1/journeys/{}", segment(name));
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `PUT /v1/journeys/{name}` with the component's bytes: a new version.
    pub async fn upload_journey(&self, name: &str, component: Vec<u8>) -> Result<UploadedJourney> {
        let path = format!("/v1/journeys/{}", segment(name));
        self.call(Method::PUT, &path, Body::wasm(component)).await
    }

    /// `PUT /v1/journeys/{name}?stage=draft`: a new version that no one enters until it is
    /// promoted.
    pub async fn upload_journey_draft(
        &self,
        name: &str,
        component: Vec<u8>,
    ) -> Result<UploadedJourney> {
        let path = format!("/v1/journeys/{}?stage=draft", segment(name));
        self.call(Method::PUT, &path, Body::wasm(component)).await
    }

    /// `POST /v1/journeys/{name}/promote`: a version live, or rolled out to a share.
    pub async fn promote_journey(&self, name: &str, promote: &Promote) -> Result<JourneyRollout> {
        let path = format!("/v1/journeys/{}/promote", segment(name));
        self.call(Method::POST, &path, Body::json(promote)?).await
    }

    /// `POST /v1/journeys/{name}/rollback`: stops a rollout, or returns to the previous live
    /// version.
    pub async fn rollback_journey(&self, name: &str) -> Result<JourneyRollout> {
        let path = format!("/v1/journeys/{}/rollback", segment(name));
        self.call(Method::POST, &path, Body::Empty).await
    }

    /// `POST /v1/journeys/{name}/migrate`: moves running enrollments to another version.
    pub async fn migrate_journey(&self, name: &str, migrate: &Migrate) -> Result<MigrationStatus> {
        let path = format!("/v1/journeys/{}/migrate", segment(name));
        self.call(Method::POST, &path, Body::json(migrate)?).await
    }

    /// `GET /v1/journeys/{name}/migrations/{id}`: what became of a migration's enrollments.
    pub async fn migration(&self, name: &str, id: &str) -> Result<MigrationStatus> {
        let path = format!("/v1/journeys/{}/migrations/{}", segment(name), segment(id));
        self.call(Method::GET, &path, Body::Empty).await
    }

    // Backtests (issue 13)
    /// `POST /v1/journeys/{name}/backtests`: starts a backtest of a candidate version.
    pub async fn start_backtest(&self, name: &str, request: &BacktestRequest) -> Result<Backtest> {
        let path = format!("/v1/journeys/{}/backtests", segment(name));
        self.call(Method::POST, &path, Body::json(request)?).await
    }

    /// `GET /v1/journeys/{name}/backtests/{id}`: a backtest's progress, and its result once done.
    pub async fn backtest(&self, name: &str, id: &str) -> Result<Backtest> {
        let path = format!("/v1/journeys/{}/backtests/{}", segment(name), segment(id));
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `POST /v1/journeys/{name}/backtests/{id}/cancel`: stops a backtest.
    pub async fn cancel_backtest(&self, name: &str, id: &str) -> Result<Backtest> {
        let path = format!(
            "/v1/journeys/{}/backtests/{}/cancel",
            segment(name),
            segment(id)
        );
        self.call(Method::POST, &path, Body::Empty).await
    }

    /// `POST /v1/journeys/{name}/decide`: what a stored version decides, with no effect.
    pub async fn decide(&self, name: &str, request: &DecideRequest) -> Result<Decided> {
        let path = format!("/v1/journeys/{}/decide", segment(name));
        self.call(Method::POST, &path, Body::json(request)?).await
    }

    /// `GET /v1/journeys/{name}/report`.
    pub async fn report(&self, name: &str) -> Result<JourneyReport> {
        let path = format!("/v1/journeys/{}/report", segment(name));
        self.call(Method::GET, &path, Body::Empty).await
    }

    // --- channels ----------------------------------------------------------------------------

    /// `GET /v1/channels`.
    pub async fn channels(&self) -> Result<ChannelList> {
        self.call(Method::GET, "/v1/channels", Body::Empty).await
    }

    /// `PUT /v1/channels/{name}` (see [`component_base64`] for the component field).
    pub async fn register_channel(
        &self,
        name: &str,
        registration: &ChannelRegistration,
    ) -> Result<Channel> {
        let path = format!("/v1/channels/{}", segment(name));
        self.call(Method::PUT, &path, Body::json(registration)?)
            .await
    }

    // --- events and customers ----------------------------------------------------------------

    /// `POST /v1/events` with a batch (1 to 10,000 events).
    pub async fn post_events(&self, events: &[EventInput]) -> Result<EventsAccepted> {
        self.call(Method::POST, "/v1/events", Body::json(&events)?)
            .await
    }

    /// `POST /v1/events` with a JSON body serialized beforehand: for load generators that
    /// build their bodies before they time the requests.
    pub async fn post_events_json(&self, body: Vec<u8>) -> Result<EventsAccepted> {
        let body = Body::Raw {
            content_type: "application/json",
            bytes: body,
        };
        self.call(Method::POST, "/v1/events", body).await
    }

    /// `GET /v1/customers/{id}`; an unknown customer is an API error with status 404.
    pub async fn customer(&self, id: &str) -> Result<Customer> {
        let path = format!("/v1/customers/{}", segment(id));
        self.call(Method::GET, &path, Body::Empty).await
    }

    // --- accounts (issue 12) --------------------------------------------------------------

    /// `GET /v1/accounts/{id}?after=&limit=`: the account's traits and a page of its members
    /// (the next page is `after` = the answer's `next_after`); an unknown account is an API
    /// error with status 404.
    pub async fn account(
        &self,
        id: &str,
        query: &waymark_api::accounts::AccountQuery,
    ) -> Result<waymark_api::accounts::Account> {
        let mut params = Vec::new();
        if let Some(after) = &query.after {
            params.push(format!("after={}", segment(after)));
        }
        if let Some(limit) = query.limit {
            params.push(format!("limit={limit}"));
        }
        let mut path = format!("/v1/accounts/{}", segment(id));
        if !params.is_empty() {
            path = format!("{path}?{}", params.join("&"));
        }
        self.call(Method::GET, &path, Body::Empty).await
    }

    // --- policy ------------------------------------------------------------------------------

    /// `GET /v1/policy`.
    pub async fn policy(&self) -> Result<SendingPolicy> {
        self.call(Method::GET, "/v1/policy", Body::Empty).await
    }

    /// `PUT /v1/policy`: replaces the sending policy.
    pub async fn set_policy(&self, policy: &SendingPolicy) -> Result<SendingPolicy> {
        self.call(Method::PUT, "/v1/policy", Body::json(policy)?)
            .await
    }

    // --- tasks -------------------------------------------------------------------------------

    /// `GET /v1/tasks?...`: most urgent and oldest first.
    pub async fn tasks(&self, query: &TaskQuery) -> Result<TaskList> {
        let mut params = Vec::new();
        if let Some(status) = query.status {
            params.push(format!("status={}", status.as_str()));
        }
        if let Some(queue) = &query.queue {
            params.push(format!("queue={}", segment(queue)));
        }
        if let Some(limit) = query.limit {
            params.push(format!("limit={limit}"));
        }
        let path = if params.is_empty() {
            "/v1/tasks".to_string()
        } else {
            format!("/v1/tasks?{}", params.join("&"))
        };
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `GET /v1/tasks/{id}`.
    pub async fn task(&self, id: &str) -> Result<Task> {
        let path = format!("/v1/tasks/{}", segment(id));
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `POST /v1/tasks/{id}/claim`.
    pub async fn claim_task(&self, id: &str, assignee: &str) -> Result<Task> {
        let path = format!("/v1/tasks/{}/claim", segment(id));
        let body = Body::json(&ClaimTask {
            assignee: assignee.into(),
        })?;
        self.call(Method::POST, &path, body).await
    }

    /// `POST /v1/tasks/{id}/resolve`: the customer's journeys hear `task_resolved`.
    pub async fn resolve_task(&self, id: &str, resolve: &ResolveTask) -> Result<Task> {
        let path = format!("/v1/tasks/{}/resolve", segment(id));
        self.call(Method::POST, &path, Body::json(resolve)?).await
    }

    // --- dead letters ------------------------------------------------------------------------

    /// `GET /v1/dead-letters?limit=n&after=id`: a page (the server's default size, 100, when
    /// `limit` is `None`) after message `after` (the previous page's `next`), from the first.
    pub async fn dead_letters(
        &self,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> Result<DeadLetters> {
        let path = page("/v1/dead-letters", limit, after);
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `POST /v1/dead-letters/retry`.
    pub async fn retry_dead_letters(&self, retry: &RetryDeadLetters) -> Result<Requeued> {
        self.call(Method::POST, "/v1/dead-letters/retry", Body::json(retry)?)
            .await
    }

    // --- scoped keys and Segment-compatible ingest (issue 12) --------------------------------

    /// `POST /v1/keys` (admin key): a new key of `scope`, shown this once.
    pub async fn create_key(&self, new: &NewKey) -> Result<CreatedKey> {
        self.call(Method::POST, "/v1/keys", Body::json(new)?).await
    }

    /// `GET /v1/keys` (admin key): the tenant's keys by prefix, never their secrets.
    pub async fn keys(&self) -> Result<KeyList> {
        self.call(Method::GET, "/v1/keys", Body::Empty).await
    }

    /// `DELETE /v1/keys/{prefix}` (admin key): revokes the key at once.
    pub async fn revoke_key(&self, prefix: &str) -> Result<Key> {
        let path = format!("/v1/keys/{}", segment(prefix));
        self.call(Method::DELETE, &path, Body::Empty).await
    }

    /// `POST /v1/batch` (write or admin key): a Segment HTTP Tracking API batch,
    /// `{"batch": [...], ...}`, sent as JSON with this client's key as a bearer token.
    pub async fn segment_batch(&self, batch: &Value) -> Result<SegmentAccepted> {
        self.call(Method::POST, "/v1/batch", Body::Json(batch.clone()))
            .await
    }

    // --- templates (issue 11) ----------------------------------------------------------------

    /// `PUT /v1/templates/{name}`: stores the template's next version.
    pub async fn put_template(&self, name: &str, upload: &TemplateUpload) -> Result<Template> {
        let path = format!("/v1/templates/{}", segment(name));
        self.call(Method::PUT, &path, Body::json(upload)?).await
    }

    /// `GET /v1/templates`.
    pub async fn templates(&self) -> Result<TemplateList> {
        self.call(Method::GET, "/v1/templates", Body::Empty).await
    }

    /// `GET /v1/templates/{name}[?version=n]`: the latest version when `version` is `None`.
    pub async fn template(&self, name: &str, version: Option<u32>) -> Result<Template> {
        let mut path = format!("/v1/templates/{}", segment(name));
        if let Some(v) = version {
            path.push_str(&format!("?version={v}"));
        }
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `DELETE /v1/templates/{name}` (answered 204, no body).
    pub async fn delete_template(&self, name: &str) -> Result<()> {
        let path = format!("/v1/templates/{}", segment(name));
        let route = format!("DELETE {path}");
        let (status, bytes) = self.send(Method::DELETE, &path, Body::Empty).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(error::error(&route, status, &bytes))
        }
    }

    /// `POST /v1/templates/{name}/preview`.
    pub async fn preview_template(&self, name: &str, request: &PreviewRequest) -> Result<Preview> {
        let path = format!("/v1/templates/{}/preview", segment(name));
        self.call(Method::POST, &path, Body::json(request)?).await
    }

    // --- in-app inbox, subscriptions (issue 11) ----------------------------------------------

    /// `PUT /v1/channels/{name}` with `{"kind": "inapp"}`: a channel the host delivers into
    /// customers' inboxes itself.
    pub async fn register_inapp_channel(&self, name: &str) -> Result<Channel> {
        let path = format!("/v1/channels/{}", segment(name));
        let body = InappRegistration {
            kind: "inapp".into(),
        };
        self.call(Method::PUT, &path, Body::json(&body)?).await
    }

    /// `GET /v1/customers/{id}/inbox` (tenant key): one page, newest first.
    pub async fn customer_inbox(&self, id: &str, query: &InboxQuery) -> Result<InboxPage> {
        let path = format!("/v1/customers/{}/inbox{}", segment(id), query.to_query());
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `POST /v1/customers/{id}/inbox/token` (admin key).
    pub async fn mint_inbox_token(
        &self,
        id: &str,
        request: &InboxTokenRequest,
    ) -> Result<InboxToken> {
        let path = format!("/v1/customers/{}/inbox/token", segment(id));
        self.call(Method::POST, &path, Body::json(request)?).await
    }

    /// `POST /v1/inbox/secret` (admin key): a new inbox secret, shown once.
    pub async fn rotate_inbox_secret(&self) -> Result<InboxSecret> {
        self.call(Method::POST, "/v1/inbox/secret", Body::Empty)
            .await
    }

    /// `GET /v1/inbox`, with a client whose token is a customer's inbox token.
    pub async fn inbox(&self, query: &InboxQuery) -> Result<InboxPage> {
        let path = format!("/v1/inbox{}", query.to_query());
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `POST /v1/inbox/{message}/{mark}` (`seen`, `read`, `clicked`, `archived`), with a
    /// customer's inbox token.
    pub async fn mark_inbox_message(&self, message: &str, mark: &str) -> Result<InboxMessage> {
        let path = format!("/v1/inbox/{}/{}", segment(message), segment(mark));
        self.call(Method::POST, &path, Body::Empty).await
    }

    /// `GET /v1/customers/{id}/subscriptions`.
    pub async fn subscriptions(&self, id: &str) -> Result<Subscriptions> {
        let path = format!("/v1/customers/{}/subscriptions", segment(id));
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `PUT /v1/customers/{id}/subscriptions` (answered 202: applied in order with the
    /// customer's events).
    pub async fn set_subscriptions(
        &self,
        id: &str,
        subscriptions: &Subscriptions,
    ) -> Result<Subscriptions> {
        let path = format!("/v1/customers/{}/subscriptions", segment(id));
        self.call(Method::PUT, &path, Body::json(subscriptions)?)
            .await
    }
}

// Provider feedback (issue 11)
impl Client {
    /// `GET /v1/suppressions`: a page of the tenant's suppressed addresses; `after` is the
    /// previous page's `next`.
    pub async fn suppressions(
        &self,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> Result<SuppressionPage> {
        let path = page("/v1/suppressions", limit, after);
        self.call(Method::GET, &path, Body::Empty).await
    }

    /// `DELETE /v1/suppressions/{channel}/{address}`: the channel sends to the address again.
    pub async fn lift_suppression(&self, channel: &str, address: &str) -> Result<()> {
        let path = format!("/v1/suppressions/{}/{}", segment(channel), segment(address));
        let route = format!("DELETE {path}");
        let (status, bytes) = self.send(Method::DELETE, &path, Body::Empty).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(error::error(&route, status, &bytes))
        }
    }
}

/// The query of an inbox listing (issue 11).
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    /// List archived messages too.
    pub archived: bool,
}

impl InboxQuery {
    fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        if let Some(cursor) = &self.cursor {
            parts.push(format!("cursor={}", segment(cursor)));
        }
        if self.archived {
            parts.push("archived=true".to_string());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// A component's bytes as [`ChannelRegistration::component`] wants them: standard base64.
pub fn component_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Percent-encodes one path segment or query value: ids are chosen by tenants.
/// A paged listing's path: `path?limit=n&after=cursor`, each only when given.
fn page(path: &str, limit: Option<usize>, after: Option<&str>) -> String {
    let mut params = Vec::new();
    if let Some(limit) = limit {
        params.push(format!("limit={limit}"));
    }
    if let Some(after) = after {
        params.push(format!("after={}", segment(after)));
    }
    match params.is_empty() {
        true => path.to_string(),
        false => format!("{path}?{}", params.join("&")),
    }
}

fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn path_segments_keep_unreserved_characters_and_escape_the_rest() {
        assert_eq!(segment("ada-1_x.y~z"), "ada-1_x.y~z");
        assert_eq!(segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }
}
