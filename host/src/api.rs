//! HTTP API (axum): authentication, input validation, and the mapping of every layer's errors to
//! a status plus `{"error": {"code", "message"}}`. Handlers are thin: they validate, call the
//! store, registry or sandbox, wake the workers, and shape the response. See `docs/API.md`.

use crate::clock::ClockError;
use crate::model::{
    ChannelStats, DecisionContext, Event, LimitOverrides, Limits, Millis, Object, Spec, TaskStatus,
};
use crate::registry::RegistryError;
use crate::runtime::Runtime;
use crate::sandbox::{FailureReason, SandboxError};
use crate::store::{ChannelRecord, Ingested, Message, StoreError, Task, TaskError, Tenant};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Largest accepted request body: bounds uploads (components are further limited by the
/// sandbox) and event batches.
const MAX_BODY: usize = 32 * 1024 * 1024;
const MAX_BATCH: usize = 10_000;
const MAX_ID: usize = 256;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    /// SHA-256 of the admin token; compared digest to digest.
    pub admin_digest: [u8; 32],
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/admin/tenants", post(create_tenant))
        .route(
            "/v1/admin/tenants/{id}/limits",
            get(get_tenant_limits).put(set_tenant_limits),
        )
        .route("/v1/admin/clock", get(clock))
        .route("/v1/admin/clock/advance", post(advance_clock))
        .route("/v1/journeys", get(list_journeys))
        .route("/v1/journeys/{name}", put(upload_journey).get(get_journey))
        .route("/v1/journeys/{name}/decide", post(dry_run_decide))
        .route("/v1/journeys/{name}/report", get(journey_report))
        .route("/v1/channels", get(list_channels))
        .route("/v1/channels/{name}", put(register_channel))
        .route("/v1/events", post(post_events))
        .route("/v1/policy", get(get_policy).put(set_policy))
        .route("/v1/customers/{id}", get(get_customer))
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/claim", post(claim_task))
        .route("/v1/tasks/{id}/resolve", post(resolve_task))
        .route("/v1/dead-letters", get(list_dead_letters))
        .route("/v1/dead-letters/retry", post(retry_dead_letters))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

// --- errors ----------------------------------------------------------------------------------

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Extra fields of the error object, for errors that carry more than a message.
    detail: Option<(&'static str, Value)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!(%message, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some((key, value)) = self.detail {
            error[key] = value;
        }
        let body = json!({ "error": error });
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Exists(what) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> ApiError {
        match e {
            SandboxError::Internal(m) => ApiError::internal(m),
            SandboxError::InvalidConfig(m) => ApiError::bad_request("invalid_config", m),
            SandboxError::ForbiddenImport(m) => ApiError::bad_request("forbidden_import", m),
            other => ApiError::bad_request("invalid_component", other.to_string()),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match e {
            RegistryError::Store(e) => e.into(),
            RegistryError::Sandbox(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(status, code, r.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body, with a message that says where it went wrong.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON body: {e}")))
}

// --- auth ------------------------------------------------------------------------------------

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// An authenticated tenant: the bearer token is one of its API keys.
pub struct TenantId(pub String);

impl FromRequestParts<AppState> for TenantId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<TenantId> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        let key_digest = hex::encode(digest(token));
        match state.runtime.store.tenant_by_key_digest(&key_digest)? {
            Some(tenant) => Ok(TenantId(tenant)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// The operator, holding the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Admin> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        // Comparing fixed-size digests keeps the comparison's time independent of the token.
        let given = digest(token);
        let same = given
            .iter()
            .zip(state.admin_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if same {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

// --- validation ------------------------------------------------------------------------------

/// Names of tenants, journeys and channels: short, URL- and key-safe.
fn valid_name(what: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!("{what} name {name:?} must be 1-64 characters of a-z, 0-9, '-' or '_'"),
        ))
    }
}

/// Ids chosen by tenants (customers, events): non-empty, bounded, no control characters (the
/// store uses one as a key separator).
fn valid_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        Err(format!(
            "{what} must be 1-{MAX_ID} bytes without control characters"
        ))
    } else {
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventInput {
    id: String,
    customer: String,
    name: String,
    #[serde(default)]
    properties: Option<Object>,
    #[serde(default)]
    timestamp: Option<Millis>,
}

fn parse_event(value: Value, now: Millis) -> Result<Event, String> {
    let input: EventInput = serde_json::from_value(value).map_err(|e| e.to_string())?;
    valid_id("id", &input.id)?;
    valid_id("customer", &input.customer)?;
    valid_id("name", &input.name)?;
    Ok(Event {
        id: input.id,
        customer: input.customer,
        name: input.name,
        properties: input.properties.unwrap_or_default(),
        timestamp: input.timestamp.unwrap_or(now),
    })
}

/// Checks what a journey declares before a version is accepted.
fn validate_spec(spec: &Spec) -> Result<(), String> {
    if spec.entry.is_empty() {
        return Err("the spec declares no entry trigger: no customer could ever enter".into());
    }
    let mut names = std::collections::HashSet::new();
    for m in &spec.milestones {
        if !names.insert(m.name.as_str()) {
            return Err(format!("milestone {:?} is declared twice", m.name));
        }
        if m.stall_after.is_some_and(|w| w <= 0) {
            return Err(format!(
                "milestone {:?} has a non-positive stall window",
                m.name
            ));
        }
    }
    if let Some(goal) = &spec.goal {
        if !names.contains(goal.as_str()) {
            return Err(format!("goal {goal:?} is not a declared milestone"));
        }
    }
    for x in &spec.experiments {
        if x.arms.is_empty() {
            return Err(format!("experiment {:?} has no arms", x.name));
        }
    }
    Ok(())
}

// --- handlers --------------------------------------------------------------------------------

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.runtime.metrics.encode(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
}

async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let input: NewTenant = parse_json(&body?)?;
    valid_name("tenant", &input.name)?;
    let api_key = format!("wmk_{}", hex::encode(rand_bytes()?));
    let tenant = Tenant {
        id: input.name.clone(),
        created_at: state.runtime.clock.now(),
        limits: LimitOverrides::default(),
        policy: Default::default(),
    };
    state
        .runtime
        .store
        .create_tenant(&tenant, &hex::encode(digest(&api_key)))
        .await
        .map_err(|e| match e {
            StoreError::Exists(what) => ApiError::new(
                StatusCode::CONFLICT,
                "tenant_exists",
                format!("{what} already exists"),
            ),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": tenant.id, "name": input.name, "api_key": api_key})),
    ))
}

/// 32 bytes from the operating system's CSPRNG, for API keys.
fn rand_bytes() -> ApiResult<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(ApiError::internal)?;
    Ok(b)
}

async fn clock(State(state): State<AppState>, _: Admin) -> Json<Value> {
    let clock = &state.runtime.clock;
    Json(json!({"kind": clock.kind(), "now": clock.now()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    by_ms: Millis,
}

async fn advance_clock(
    State(state): State<AppState>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let input: Advance = parse_json(&body?)?;
    let rt = &state.runtime;
    let now = rt.clock.advance(input.by_ms).map_err(|e| match e {
        ClockError::NotManual => {
            ApiError::new(StatusCode::CONFLICT, "clock_not_manual", e.to_string())
        }
        ClockError::Backwards => ApiError::bad_request("invalid_input", e.to_string()),
    })?;
    rt.store.save_manual_clock(now).await?;
    Ok(Json(json!({"now": now})))
}

async fn get_tenant_limits(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let tenant = state
        .runtime
        .store
        .tenant(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {id:?}")))?;
    Ok(Json(limits_json(&state, &tenant.limits)))
}

/// Replaces a tenant's limit overrides (fields left out take the operator's defaults).
async fn set_tenant_limits(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let overrides: LimitOverrides = parse_json(&body?)?;
    let rt = &state.runtime;
    let sandbox = rt.registry.sandbox().config();
    sandbox
        .check_limits(&sandbox.defaults.with(&overrides))
        .map_err(|m| ApiError::bad_request("invalid_input", m))?;
    let tenant = rt
        .store
        .update_tenant(&id, |t| t.limits = overrides)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {id:?}")))?;
    rt.forget_tenant_limits(&id);
    tracing::info!(tenant = %id, ?overrides, "tenant limits changed");
    Ok(Json(limits_json(&state, &tenant.limits)))
}

fn limits_json(state: &AppState, overrides: &LimitOverrides) -> Value {
    let defaults = state.runtime.registry.sandbox().config().defaults;
    json!({
        "effective": defaults.with(overrides),
        "overrides": overrides,
        "defaults": defaults,
    })
}

async fn upload_journey(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    valid_name("journey", &name)?;
    let bytes = body?;
    let rt = &state.runtime;
    let limits = rt.tenant_limits(&tenant)?;
    check_component_size(&bytes, &limits)?;
    let component = rt.registry.compile_journey(bytes.clone()).await?;
    let spec = component.describe(&limits).await.map_err(|f| {
        let code = if f.reason == FailureReason::InvalidSpec {
            "invalid_spec"
        } else {
            "invalid_component"
        };
        ApiError::bad_request(
            code,
            format!("describe failed ({}): {}", f.reason.as_str(), f.message),
        )
    })?;
    validate_spec(&spec).map_err(|m| ApiError::bad_request("invalid_spec", m))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let version = rt
        .store
        .add_journey_version(&tenant, &name, &digest, &bytes, &spec, rt.clock.now())
        .await?;
    rt.registry.insert_journey(&digest, component);
    tracing::info!(tenant, journey = %name, version = version.version, "journey version uploaded");
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "version": version.version, "digest": digest, "spec": spec})),
    ))
}

/// Refuses a component larger than the tenant may upload, before compiling it.
fn check_component_size(bytes: &[u8], limits: &Limits) -> ApiResult<()> {
    if bytes.len() as u64 > limits.max_component_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the component is {} bytes; this tenant's limit is {} bytes",
                bytes.len(),
                limits.max_component_bytes
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRun {
    /// The journey version to ask; the latest by default.
    #[serde(default)]
    version: Option<u32>,
    context: DecisionContext,
    #[serde(default)]
    stats: Vec<ChannelStats>,
}

/// Asks a stored journey version what it would decide in a given context, with no effect on
/// anything: the replay primitive, and how a tenant checks a deployed version's behaviour.
/// The answer is exactly what the live path would get for the same context.
async fn dry_run_decide(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let input: DryRun = parse_json(&body?)?;
    let rt = &state.runtime;
    let version = match input.version {
        Some(v) => rt.store.journey_version(&tenant, &name, v)?,
        None => rt
            .store
            .latest_journeys(&tenant)?
            .into_iter()
            .find(|j| j.name == name),
    }
    .ok_or_else(|| match input.version {
        Some(v) => ApiError::not_found(format!("journey {name:?} has no version {v}")),
        None => ApiError::not_found(format!("no journey named {name:?}")),
    })?;
    let limits = rt.tenant_limits(&tenant)?;
    let component = rt.registry.journey(&tenant, &version.digest).await?;
    match component.decide(&input.context, input.stats, &limits).await {
        Ok(commands) => Ok(Json(json!({
            "name": name,
            "version": version.version,
            "commands": commands,
        }))),
        Err(failure) => {
            let mut error = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "decide_failed",
                failure.message,
            );
            error.detail = Some(("reason", json!(failure.reason.as_str())));
            Err(error)
        }
    }
}

/// The journey's funnel, overall, per version and per experiment arm.
async fn journey_report(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = &state.runtime.store;
    let latest = store
        .latest_journeys(&tenant)?
        .into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no journey named {name:?}")))?;
    let enrollments = store.journey_enrollments(&tenant, &name)?;
    let report = crate::report::report(&latest.spec, &enrollments);
    Ok(Json(json!({
        "name": name,
        "latest_version": latest.version,
        "report": report,
    })))
}

async fn get_policy(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.runtime.tenant_policy(&tenant)?)))
}

/// Replaces the tenant's sending policy: frequency caps and quiet hours.
async fn set_policy(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let policy: crate::model::SendingPolicy = parse_json(&body?)?;
    crate::policy::validate(&policy).map_err(|m| ApiError::bad_request("invalid_policy", m))?;
    let rt = &state.runtime;
    rt.store
        .update_tenant(&tenant, |t| t.policy = policy.clone())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {tenant:?}")))?;
    rt.forget_tenant_limits(&tenant);
    tracing::info!(tenant, ?policy, "sending policy changed");
    Ok(Json(json!(policy)))
}

async fn list_journeys(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
) -> ApiResult<Json<Value>> {
    let journeys: Vec<Value> = state
        .runtime
        .store
        .latest_journeys(&tenant)?
        .into_iter()
        .map(|j| json!({"name": j.name, "latest_version": j.version}))
        .collect();
    Ok(Json(json!({"journeys": journeys})))
}

async fn get_journey(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let versions = state.runtime.store.journey_versions(&tenant, &name)?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no journey named {name:?}")));
    }
    Ok(Json(json!({"name": name, "versions": versions})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelInput {
    /// The component's bytes, base64.
    component: String,
    #[serde(default)]
    settings: Object,
    #[serde(default)]
    secrets: Object,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

async fn register_channel(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    valid_name("channel", &name)?;
    let input: ChannelInput = parse_json(&body?)?;
    crate::sandbox::check_allowed_hosts(&input.allowed_hosts)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(input.component.as_bytes())
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_component",
                format!("component is not valid base64: {e}"),
            )
        })?;
    let rt = &state.runtime;
    let bytes = Bytes::from(bytes);
    check_component_size(&bytes, &rt.tenant_limits(&tenant)?)?;
    let component = rt.registry.compile_channel(bytes.clone()).await?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let record = ChannelRecord {
        name: name.clone(),
        version: 0,
        digest: digest.clone(),
        settings: input.settings,
        secrets: input.secrets,
        allowed_hosts: input.allowed_hosts,
        updated_at: rt.clock.now(),
    };
    let record = rt.store.put_channel(&tenant, record, &bytes).await?;
    rt.registry.insert_channel(&digest, component);
    Ok((StatusCode::CREATED, Json(channel_json(&record))))
}

/// A channel as the API shows it: never its secrets.
fn channel_json(c: &ChannelRecord) -> Value {
    json!({
        "name": c.name,
        "version": c.version,
        "digest": c.digest,
        "allowed_hosts": c.allowed_hosts,
        "settings": c.settings,
        "secrets": c.secrets.keys().collect::<Vec<_>>(),
    })
}

async fn list_channels(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
) -> ApiResult<Json<Value>> {
    let channels: Vec<Value> = state
        .runtime
        .store
        .channels(&tenant)?
        .iter()
        .map(channel_json)
        .collect();
    Ok(Json(json!({"channels": channels})))
}

async fn post_events(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: Value = parse_json(&body?)?;
    let rt = &state.runtime;
    let now = rt.clock.now();
    let values = match body {
        Value::Array(values) => values,
        single @ Value::Object(_) => vec![single],
        _ => {
            return Err(ApiError::bad_request(
                "invalid_event",
                "expected an event object or an array of events",
            ))
        }
    };
    if values.is_empty() || values.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_event",
            format!("a batch holds 1 to {MAX_BATCH} events"),
        ));
    }
    let batch = values.len() > 1;
    let events = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            parse_event(v, now).map_err(|m| {
                let at = if batch {
                    format!("event {i}: ")
                } else {
                    String::new()
                };
                ApiError::bad_request("invalid_event", format!("{at}{m}"))
            })
        })
        .collect::<ApiResult<Vec<Event>>>()?;
    let window = rt.config.dedup_window_ms();
    let results = rt.store.ingest(&tenant, &events, now, window).await?;
    let mut accepted = 0;
    let mut out = Vec::with_capacity(events.len());
    for (event, result) in events.iter().zip(&results) {
        let status = match result {
            Ingested::Accepted => {
                accepted += 1;
                rt.wake_customer(&tenant, &event.customer);
                "accepted"
            }
            Ingested::Duplicate => "duplicate",
        };
        out.push(json!({"id": event.id, "status": status}));
    }
    let duplicates = events.len() - accepted;
    rt.metrics.events_accepted.inc_by(accepted as u64);
    rt.metrics.events_duplicate.inc_by(duplicates as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": accepted, "duplicates": duplicates, "results": out})),
    ))
}

async fn get_customer(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = &state.runtime.store;
    let customer = store
        .customer(&tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no customer {id:?}")))?;
    let enrollments = store.enrollments(&tenant, &id)?;
    let messages: Vec<Value> = store
        .messages(&tenant, &id)?
        .iter()
        .map(message_json)
        .collect();
    Ok(Json(json!({
        "id": customer.id,
        "attributes": customer.attributes,
        "enrollments": enrollments,
        "messages": messages,
    })))
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> ApiError {
        match e {
            TaskError::NotFound(_) => ApiError::not_found(e.to_string()),
            TaskError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "task_conflict", e.to_string())
            }
            TaskError::Store(e) => e.into(),
        }
    }
}

#[derive(Deserialize)]
struct TaskQuery {
    status: Option<String>,
    queue: Option<String>,
    limit: Option<usize>,
}

/// The tenant's handoff queue, most urgent (lowest priority number) and oldest first.
async fn list_tasks(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    query: Result<Query<TaskQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let status = match &query.status {
        Some(status) => Some(status.parse::<TaskStatus>().map_err(|_| {
            ApiError::bad_request(
                "invalid_input",
                format!("status must be open, claimed or resolved, not {status:?}"),
            )
        })?),
        None => None,
    };
    let mut tasks = state.runtime.store.tasks(&tenant)?;
    tasks.retain(|t| {
        status.is_none_or(|s| s == t.status) && query.queue.as_ref().is_none_or(|q| *q == t.queue)
    });
    tasks.sort_by(|a, b| (a.priority, a.created_at, &a.id).cmp(&(b.priority, b.created_at, &b.id)));
    tasks.truncate(query.limit.unwrap_or(100).min(MAX_LIST));
    Ok(Json(json!({ "tasks": tasks })))
}

async fn get_task(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let task = state
        .runtime
        .store
        .task(&tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no task {id:?}")))?;
    Ok(Json(json!(task)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimInput {
    assignee: String,
}

/// Claims an open task: 409 `task_conflict` if someone else has it or it is resolved.
async fn claim_task(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let input: ClaimInput = parse_json(&body?)?;
    if input.assignee.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_input",
            "assignee must not be empty",
        ));
    }
    let rt = &state.runtime;
    let task = rt
        .store
        .claim_task(&tenant, &id, &input.assignee, rt.clock.now())
        .await?;
    Ok(Json(json!(task)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveInput {
    resolution: String,
    #[serde(default)]
    properties: Object,
}

/// Resolves a task; the customer's journeys get a `task_resolved` event.
async fn resolve_task(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let input: ResolveInput = parse_json(&body?)?;
    if input.resolution.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_input",
            "resolution must not be empty",
        ));
    }
    let rt = &state.runtime;
    let now = rt.clock.now();
    let current = rt
        .store
        .task(&tenant, &id)?
        .ok_or_else(|| TaskError::NotFound(id.clone()))?;
    let event = task_resolved_event(&current, &input.resolution, input.properties, now);
    let task = rt
        .store
        .resolve_task(
            &tenant,
            &id,
            &input.resolution,
            &event,
            now,
            rt.config.dedup_window_ms(),
        )
        .await?;
    rt.wake_customer(&tenant, &task.customer);
    Ok(Json(json!(task)))
}

/// The event that tells a customer's journeys a task was resolved: `task_resolved` with the
/// task, its queue and journey, the resolution and the caller's `properties`. Its id is
/// `{task id}:resolved`, so it happens once.
fn task_resolved_event(task: &Task, resolution: &str, properties: Object, now: Millis) -> Event {
    let mut properties = properties;
    properties.insert("task".into(), task.id.clone().into());
    properties.insert("queue".into(), task.queue.clone().into());
    properties.insert("journey".into(), task.journey.clone().into());
    properties.insert("resolution".into(), resolution.into());
    Event {
        id: format!("{}:resolved", task.id),
        customer: task.customer.clone(),
        name: "task_resolved".into(),
        properties,
        timestamp: now,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

/// The most entries one listing returns.
const MAX_LIST: usize = 1000;

async fn list_dead_letters(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let limit = query.limit.unwrap_or(100).min(MAX_LIST);
    let dead: Vec<Value> = state
        .runtime
        .store
        .dead_letters(&tenant, limit)?
        .iter()
        .map(message_json)
        .collect();
    Ok(Json(json!({ "dead_letters": dead })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryInput {
    /// Message ids to retry; none means all dead letters (of `channel`, if given).
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
}

/// Requeues dead letters with a fresh attempt budget, e.g. after fixing a channel's config.
async fn retry_dead_letters(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let input: RetryInput = parse_json(&body?)?;
    let rt = &state.runtime;
    let requeued = rt
        .store
        .retry_dead_letters(
            &tenant,
            &input.ids,
            input.channel.as_deref(),
            crate::clock::system_now(),
        )
        .await?;
    if !requeued.is_empty() {
        rt.outbox_changed.notify_one();
    }
    tracing::info!(tenant, requeued = requeued.len(), "dead letters requeued");
    let ids: Vec<&str> = requeued.iter().map(|e| e.id.as_str()).collect();
    Ok(Json(json!({ "requeued": ids.len(), "ids": ids })))
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "journey": m.journey,
        "enrollment": m.enrollment,
        "channel": m.channel,
        "template": m.template,
        "payload": m.payload,
        "status": m.status,
        "attempts": m.attempts,
        "last_error": m.last_error,
        "provider_id": m.provider_id,
        "created_at": m.created_at,
        "delivered_at": m.delivered_at,
        "release_at": m.release_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EntryTrigger, MilestoneSpec, Reentry};

    fn spec() -> Spec {
        Spec {
            description: String::new(),
            entry: vec![EntryTrigger {
                event: "signed_up".into(),
                filter: None,
            }],
            exit_on: vec![],
            milestones: vec![MilestoneSpec {
                name: "first_value".into(),
                stall_after: None,
            }],
            goal: Some("first_value".into()),
            reentry: Reentry::Never,
            channels: vec![],
            experiments: vec![],
        }
    }

    #[test]
    fn a_spec_without_entry_or_with_an_undeclared_goal_is_refused() {
        assert!(validate_spec(&spec()).is_ok());
        let mut no_entry = spec();
        no_entry.entry.clear();
        assert!(validate_spec(&no_entry).is_err());
        let mut bad_goal = spec();
        bad_goal.goal = Some("nope".into());
        assert!(validate_spec(&bad_goal).unwrap_err().contains("nope"));
    }

    #[test]
    fn events_default_their_timestamp_and_properties() {
        let e = parse_event(json!({"id": "1", "customer": "c", "name": "x"}), 77).unwrap();
        assert_eq!(e.timestamp, 77);
        assert!(e.properties.is_empty());
    }

    #[test]
    fn events_with_bad_fields_are_refused_with_the_reason() {
        assert!(parse_event(json!({"customer": "c", "name": "x"}), 0)
            .unwrap_err()
            .contains("id"));
        assert!(parse_event(json!({"id": "", "customer": "c", "name": "x"}), 0).is_err());
        assert!(parse_event(json!({"id": "1", "customer": "a\u{1f}b", "name": "x"}), 0).is_err());
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "x", "properties": [1]}),
            0
        )
        .is_err());
        assert!(parse_event(
            json!({"id": "1", "customer": "c", "name": "x", "extra": 1}),
            0
        )
        .is_err());
    }

    #[test]
    fn names_are_slugs() {
        assert!(valid_name("journey", "win-back_2").is_ok());
        assert!(valid_name("journey", "Win Back").is_err());
        assert!(valid_name("journey", "").is_err());
    }
}
