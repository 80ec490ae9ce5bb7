//! `GET /openapi.json`: the API described as OpenAPI 3.1, generated from the code. Request and
//! response schemas come from the `waymark-api` types themselves (schemars, JSON Schema 2020-12,
//! which OpenAPI 3.1 speaks natively), so a changed DTO changes the document; the operations
//! come from [`OPERATIONS`], one row per route and method, which `tests/tests/openapi.rs` holds
//! to the router's own `.route(..)` calls in both directions.
//!
//! The document is built once per process (it never changes while the server runs) and served
//! to anyone: it holds no tenant data.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use waymark_api as api;

pub(super) fn routes() -> Router<super::AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| document().to_string());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// The operator's admin token.
    Admin,
    /// A tenant key of scope `read` (or `admin`) for reads; `admin` for changes.
    Tenant,
    /// A tenant key of scope `admin`.
    TenantAdmin,
    /// A tenant key of scope `write` (or `admin`), as a bearer token or Segment's Basic auth.
    Ingest,
    /// A customer's inbox token (issue 11).
    Customer,
}

/// A body: a schema, or raw bytes of a content type.
#[derive(Clone, Copy)]
pub enum Payload {
    None,
    Json(fn(&mut SchemaGenerator) -> Schema),
    /// A schema written out here (for bodies the host reads without a DTO of its own).
    Described(fn(&mut SchemaGenerator) -> Value),
    Bytes(&'static str),
    Text(&'static str),
}

/// One route and method.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub query: &'static [(&'static str, &'static str)],
    pub request: Payload,
    pub status: u16,
    pub response: Payload,
    /// Error statuses beyond those of every route (400, 401, 403, 413, 429, 500, 503).
    pub errors: &'static [u16],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

macro_rules! op {
    ($method:literal $path:literal, $tag:literal, $summary:literal, $access:ident,
     query: [$(($q:literal, $qd:literal)),*], request: $req:expr, $status:literal => $resp:expr,
     errors: [$($e:literal),*]) => {
        Operation {
            method: $method,
            path: $path,
            tag: $tag,
            summary: $summary,
            access: Access::$access,
            query: &[$(($q, $qd)),*],
            request: $req,
            status: $status,
            response: $resp,
            errors: &[$($e),*],
        }
    };
}

use Payload::{Bytes, Described, Json, Text};
const NONE: Payload = Payload::None;

/// Every operation of the API (see `docs/API.md` for the prose).
pub const OPERATIONS: &[Operation] = &[
    // Operator and health.
    op!("GET" "/healthz", "health", "Liveness", Public, query: [], request: NONE, 200 => Json(schema::<api::health::Health>), errors: []),
    op!("GET" "/metrics", "health", "Prometheus metrics", Public, query: [], request: NONE, 200 => Text("text/plain; version=0.0.4"), errors: []),
    op!("GET" "/openapi.json", "health", "This document", Public, query: [], request: NONE, 200 => Described(|_| json!({"type": "object"})), errors: []),
    op!("POST" "/v1/admin/tenants", "admin", "Create a tenant and its first (admin) key", Admin, query: [], request: Json(schema::<api::tenants::NewTenant>), 201 => Json(schema::<api::tenants::CreatedTenant>), errors: [409]),
    op!("GET" "/v1/admin/tenants/{id}/limits", "admin", "A tenant's limits: effective, overrides, defaults", Admin, query: [], request: NONE, 200 => Json(schema::<api::limits::TenantLimits>), errors: [404]),
    op!("PUT" "/v1/admin/tenants/{id}/limits", "admin", "Override a tenant's limits", Admin, query: [], request: Json(schema::<api::limits::LimitOverrides>), 200 => Json(schema::<api::limits::TenantLimits>), errors: [404]),
    op!("POST" "/v1/admin/tenants/{id}/keys", "keys", "Issue a key to a tenant", Admin, query: [], request: Json(schema::<api::keys::NewKey>), 201 => Json(schema::<api::keys::CreatedKey>), errors: [404]),
    op!("GET" "/v1/admin/cluster", "admin", "The cluster: nodes, partitions, owners, standbys' lag", Admin, query: [], request: NONE, 200 => Json(schema::<api::cluster::ClusterStatus>), errors: [503]),
    op!("POST" "/v1/admin/cluster/forwards", "admin", "Node to node: take another partition's forwards into this one's queue", Admin, query: [], request: Json(schema::<api::cluster::Forwards>), 200 => Json(schema::<api::cluster::ForwardsTaken>), errors: [409, 422]),
    op!("GET" "/v1/admin/clock", "admin", "The clock", Admin, query: [], request: NONE, 200 => Json(schema::<api::clock::Clock>), errors: []),
    op!("POST" "/v1/admin/clock/advance", "admin", "Move the manual clock forward", Admin, query: [], request: Json(schema::<api::clock::AdvanceClock>), 200 => Json(schema::<api::clock::ClockAdvanced>), errors: [409]),
    // Journeys.
    op!("GET" "/v1/journeys", "journeys", "List journeys with their latest, live and rolling-out versions", Tenant, query: [], request: NONE, 200 => Json(schema::<api::journeys::JourneyList>), errors: []),
    op!("PUT" "/v1/journeys/{name}", "journeys", "Upload a journey version (live, or a draft)", Tenant, query: [("stage", "`live` (default) or `draft`")], request: Bytes("application/wasm"), 201 => Json(schema::<api::journeys::UploadedJourney>), errors: [415]),
    op!("GET" "/v1/journeys/{name}", "journeys", "A journey's versions and rollout", Tenant, query: [], request: NONE, 200 => Json(schema::<api::journeys::JourneyVersions>), errors: [404]),
    op!("POST" "/v1/journeys/{name}/migrate", "journeys", "Move running enrollments to another version, each adapted by its `migrate`", Tenant, query: [], request: Json(schema::<api::journeys::Migrate>), 202 => Json(schema::<api::journeys::MigrationStatus>), errors: [404, 409]),
    op!("GET" "/v1/journeys/{name}/migrations/{id}", "journeys", "What became of a migration's enrollments so far", Tenant, query: [], request: NONE, 200 => Json(schema::<api::journeys::MigrationStatus>), errors: [404]),
    op!("POST" "/v1/journeys/{name}/promote", "journeys", "Make a version live, or roll it out to a share of new entrants", Tenant, query: [], request: Json(schema::<api::journeys::Promote>), 200 => Json(schema::<api::journeys::JourneyRollout>), errors: [404, 409]),
    op!("POST" "/v1/journeys/{name}/rollback", "journeys", "Stop a rollout, or return to the previous live version", Tenant, query: [], request: NONE, 200 => Json(schema::<api::journeys::JourneyRollout>), errors: [404, 409]),
    op!("POST" "/v1/journeys/{name}/decide", "journeys", "Dry-run a version's decide", Tenant, query: [], request: Json(schema::<api::journeys::DecideRequest>), 200 => Json(schema::<api::journeys::Decided>), errors: [400, 404, 422]),
    op!("GET" "/v1/journeys/{name}/report", "journeys", "The milestone funnel, per version and experiment arm", Tenant, query: [], request: NONE, 200 => Json(schema::<api::reports::JourneyReport>), errors: [404]),
    // Backtests (issue 13).
    op!("POST" "/v1/journeys/{name}/backtests", "backtests", "Start a backtest: a candidate (a stored version, or component bytes never stored) replayed over recorded events, compared with live", Tenant, query: [], request: Json(schema::<api::backtests::BacktestRequest>), 202 => Json(schema::<api::backtests::Backtest>), errors: [404]),
    op!("GET" "/v1/journeys/{name}/backtests/{id}", "backtests", "A backtest's progress, and its result and diff once done", Tenant, query: [], request: NONE, 200 => Json(schema::<api::backtests::Backtest>), errors: [404]),
    op!("POST" "/v1/journeys/{name}/backtests/{id}/cancel", "backtests", "Cancel a backtest", Tenant, query: [], request: NONE, 200 => Json(schema::<api::backtests::Backtest>), errors: [404]),
    op!("GET" "/v1/journeys/{name}/breaker", "journeys", "The circuit breakers of a journey's versions", Tenant, query: [], request: NONE, 200 => Json(schema::<api::isolation::JourneyBreakers>), errors: [404]),
    // Channels and templates.
    op!("GET" "/v1/channels", "channels", "List channel registrations", Tenant, query: [], request: NONE, 200 => Json(schema::<api::channels::ChannelList>), errors: []),
    op!("PUT" "/v1/channels/{name}", "channels", "Register (or replace) a channel adapter", Tenant, query: [], request: Json(schema::<api::channels::ChannelRegistration>), 201 => Json(schema::<api::channels::Channel>), errors: []),
    op!("GET" "/v1/templates", "templates", "List templates", Tenant, query: [], request: NONE, 200 => Json(schema::<api::templates::TemplateList>), errors: []),
    op!("PUT" "/v1/templates/{name}", "templates", "Store a template's next version", Tenant, query: [], request: Json(schema::<api::templates::TemplateUpload>), 201 => Json(schema::<api::templates::Template>), errors: []),
    op!("GET" "/v1/templates/{name}", "templates", "A template's latest (or a given) version", Tenant, query: [("version", "a version number")], request: NONE, 200 => Json(schema::<api::templates::Template>), errors: [404]),
    op!("DELETE" "/v1/templates/{name}", "templates", "Delete a template (its versions stay for pinned messages)", Tenant, query: [], request: NONE, 204 => NONE, errors: [404]),
    op!("POST" "/v1/templates/{name}/preview", "templates", "Render a template for a customer or sample data", Tenant, query: [], request: Json(schema::<api::templates::PreviewRequest>), 200 => Json(schema::<api::templates::Preview>), errors: [404, 422]),
    // Events and customers.
    op!("POST" "/v1/events", "events", "Ingest one event or a batch", Ingest, query: [], request: Described(event_batch), 202 => Json(schema::<api::events::EventsAccepted>), errors: [415]),
    op!("POST" "/v1/track", "segment", "Segment `track`", Ingest, query: [], request: Described(segment_message), 200 => Json(schema::<api::segment::SegmentAccepted>), errors: [415]),
    op!("POST" "/v1/identify", "segment", "Segment `identify`", Ingest, query: [], request: Described(segment_message), 200 => Json(schema::<api::segment::SegmentAccepted>), errors: [415]),
    op!("POST" "/v1/page", "segment", "Segment `page`", Ingest, query: [], request: Described(segment_message), 200 => Json(schema::<api::segment::SegmentAccepted>), errors: [415]),
    op!("POST" "/v1/screen", "segment", "Segment `screen`", Ingest, query: [], request: Described(segment_message), 200 => Json(schema::<api::segment::SegmentAccepted>), errors: [415]),
    op!("POST" "/v1/group", "segment", "Segment `group`: the customer's account and its traits", Ingest, query: [], request: Described(segment_message), 200 => Json(schema::<api::segment::SegmentAccepted>), errors: [415]),
    op!("POST" "/v1/alias", "segment", "Segment `alias`: merge `previousId` into `userId`", Ingest, query: [], request: Described(segment_message), 200 => Json(schema::<api::segment::SegmentAccepted>), errors: [415]),
    op!("POST" "/v1/batch", "segment", "Segment `batch`", Ingest, query: [], request: Described(segment_batch), 200 => Json(schema::<api::segment::SegmentAccepted>), errors: [415]),
    op!("GET" "/v1/customers/{id}", "customers", "A customer: attributes, enrollments, messages", Tenant, query: [], request: NONE, 200 => Json(schema::<api::customers::Customer>), errors: [404]),
    op!("GET" "/v1/customers/{id}/events", "customers", "A customer's latest processed events, newest first", Tenant, query: [("limit", "at most this many (default and at most 50)")], request: NONE, 200 => Json(schema::<api::customers::CustomerEvents>), errors: [404]),
    op!("POST" "/v1/customers/{id}/enrollments/{journey}/resume", "customers", "Resume an enrollment a loop budget paused", Tenant, query: [], request: NONE, 200 => Json(schema::<api::customers::Enrollment>), errors: [404, 409]),
    // Accounts (issue 12).
    op!("GET" "/v1/accounts/{id}", "accounts", "An account: traits and a page of members", Tenant, query: [("after", "members after this customer id"), ("limit", "at most this many members (default 100, at most 1000)")], request: NONE, 200 => Json(schema::<api::accounts::Account>), errors: [404]),
    // Policy, tasks, dead letters, keys.
    op!("GET" "/v1/policy", "policy", "The tenant's sending policy", Tenant, query: [], request: NONE, 200 => Json(schema::<api::policy::SendingPolicy>), errors: []),
    op!("PUT" "/v1/policy", "policy", "Set the sending policy", Tenant, query: [], request: Json(schema::<api::policy::SendingPolicy>), 200 => Json(schema::<api::policy::SendingPolicy>), errors: []),
    op!("GET" "/v1/tasks", "tasks", "List handoff tasks", Tenant, query: [("status", "`open`, `claimed` or `resolved`"), ("queue", "a queue"), ("limit", "at most this many (default 100, at most 1000)")], request: NONE, 200 => Json(schema::<api::tasks::TaskList>), errors: []),
    op!("GET" "/v1/tasks/{id}", "tasks", "A task", Tenant, query: [], request: NONE, 200 => Json(schema::<api::tasks::Task>), errors: [404]),
    op!("POST" "/v1/tasks/{id}/claim", "tasks", "Claim a task", Tenant, query: [], request: Json(schema::<api::tasks::ClaimTask>), 200 => Json(schema::<api::tasks::Task>), errors: [404, 409]),
    op!("POST" "/v1/tasks/{id}/resolve", "tasks", "Resolve a task (the journey hears of it)", Tenant, query: [], request: Json(schema::<api::tasks::ResolveTask>), 200 => Json(schema::<api::tasks::Task>), errors: [404, 409]),
    op!("GET" "/v1/dead-letters", "dead-letters", "List dead letters", Tenant, query: [("limit", "at most this many (default 100, at most 1000)"), ("after", "the previous page's next (a message id)")], request: NONE, 200 => Json(schema::<api::dead_letters::DeadLetters>), errors: []),
    op!("POST" "/v1/dead-letters/retry", "dead-letters", "Requeue dead letters", Tenant, query: [], request: Json(schema::<api::dead_letters::RetryDeadLetters>), 200 => Json(schema::<api::dead_letters::Requeued>), errors: []),
    op!("POST" "/v1/keys", "keys", "Create a key", TenantAdmin, query: [], request: Json(schema::<api::keys::NewKey>), 201 => Json(schema::<api::keys::CreatedKey>), errors: []),
    op!("GET" "/v1/keys", "keys", "List keys by prefix (never their secrets)", TenantAdmin, query: [], request: NONE, 200 => Json(schema::<api::keys::KeyList>), errors: []),
    op!("DELETE" "/v1/keys/{prefix}", "keys", "Revoke a key at once", TenantAdmin, query: [], request: NONE, 200 => Json(schema::<api::keys::Key>), errors: [404]),
    // In-app inbox, unsubscribe and subscription topics (issue 11).
    op!("GET" "/v1/customers/{id}/inbox", "inbox", "A customer's in-app inbox, newest first", Tenant, query: [("limit", "at most this many (default 50, at most 1000)"), ("cursor", "the previous page's next_cursor"), ("archived", "`true` lists archived messages too")], request: NONE, 200 => Json(schema::<api::inbox::InboxPage>), errors: []),
    op!("POST" "/v1/customers/{id}/inbox/token", "inbox", "Mint a customer's inbox token", TenantAdmin, query: [], request: Json(schema::<api::inbox::InboxTokenRequest>), 200 => Json(schema::<api::inbox::InboxToken>), errors: []),
    op!("POST" "/v1/inbox/secret", "inbox", "Rotate the secret inbox tokens are signed with", TenantAdmin, query: [], request: NONE, 200 => Json(schema::<api::inbox::InboxSecret>), errors: []),
    op!("GET" "/v1/inbox", "inbox", "The token's customer's inbox (CORS)", Customer, query: [("limit", "at most this many (default 50, at most 1000)"), ("cursor", "the previous page's next_cursor"), ("archived", "`true` lists archived messages too")], request: NONE, 200 => Json(schema::<api::inbox::InboxPage>), errors: []),
    op!("POST" "/v1/inbox/{message}/{mark}", "inbox", "Mark a message seen, read, clicked or archived (an engagement event; CORS)", Customer, query: [], request: NONE, 200 => Json(schema::<api::inbox::InboxMessage>), errors: [404]),
    op!("GET" "/u/{token}", "unsubscribe", "The unsubscribe confirmation page (changes nothing)", Public, query: [], request: NONE, 200 => Text("text/html; charset=utf-8"), errors: [404]),
    op!("POST" "/u/{token}", "unsubscribe", "One-click unsubscribe (RFC 8058)", Public, query: [], request: Text("application/x-www-form-urlencoded"), 200 => Text("text/html; charset=utf-8"), errors: [404]),
    op!("GET" "/v1/customers/{id}/subscriptions", "subscriptions", "What a customer is unsubscribed from", Tenant, query: [], request: NONE, 200 => Json(schema::<api::inbox::Subscriptions>), errors: [404]),
    op!("PUT" "/v1/customers/{id}/subscriptions", "subscriptions", "Replace what a customer is unsubscribed from", Tenant, query: [], request: Json(schema::<api::inbox::Subscriptions>), 202 => Json(schema::<api::inbox::Subscriptions>), errors: []),
    // Provider feedback (issue 11)
    op!("POST" "/v1/hooks/{tenant}/{channel}", "feedback", "A provider's webhook (delivery status, open, click, bounce, complaint, reply, inbound SMS), authenticated by the provider's signature, which the channel's adapter checks", Public, query: [], request: Text("*/*"), 200 => Json(schema::<api::feedback::HookReceived>), errors: [400, 401, 404, 422, 502]),
    op!("GET" "/v1/suppressions", "feedback", "Addresses a hard bounce or a complaint took off a channel", Tenant, query: [("limit", "at most this many (default 100, at most 1000)"), ("after", "the previous page's next (`channel/address`)")], request: NONE, 200 => Json(schema::<api::feedback::SuppressionPage>), errors: []),
    op!("DELETE" "/v1/suppressions/{channel}/{address}", "feedback", "Lift a suppression: the channel sends to the address again", Tenant, query: [], request: NONE, 204 => NONE, errors: [404]),
];

/// `POST /v1/events`: one event or an array of up to 10,000.
fn event_batch(g: &mut SchemaGenerator) -> Value {
    let event = schema::<api::events::EventInput>(g);
    json!({
        "oneOf": [event, {"type": "array", "items": event, "maxItems": 10000}]
    })
}

/// A message of Segment's HTTP Tracking API, as the host reads it (see `docs/API.md` §
/// Segment-compatible ingest; unknown fields are ignored, as Segment does).
fn segment_message(_: &mut SchemaGenerator) -> Value {
    json!({
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["track", "identify", "page", "screen", "group", "alias"]},
            "userId": {"type": ["string", "number"]},
            "anonymousId": {"type": ["string", "number"]},
            "messageId": {"type": "string"},
            "event": {"type": "string"},
            "name": {"type": "string"},
            "properties": {"type": "object"},
            "traits": {"type": "object"},
            "context": {"type": "object"},
            "timestamp": {"type": "string", "format": "date-time"},
            "sentAt": {"type": "string", "format": "date-time"},
            "originalTimestamp": {"type": "string", "format": "date-time"},
            "groupId": {"type": ["string", "number"]},
            "previousId": {"type": ["string", "number"]}
        },
        "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]
    })
}

fn segment_batch(g: &mut SchemaGenerator) -> Value {
    json!({
        "type": "object",
        "properties": {
            "batch": {"type": "array", "items": segment_message(g)},
            "context": {"type": "object"},
            "sentAt": {"type": "string", "format": "date-time"}
        },
        "required": ["batch"]
    })
}

/// The statuses every route may answer besides its own (see `docs/API.md` § Errors).
const COMMON_ERRORS: &[(u16, &str)] = &[
    (400, "Malformed input"),
    (401, "Missing, wrong or revoked key"),
    (403, "The key's scope does not allow this route"),
    (408, "The body did not arrive in time"),
    (413, "A body or event past its limit"),
    (
        429,
        "Over the tenant's rate or concurrency limit (`Retry-After`)",
    ),
    (500, "Internal error"),
    (503, "Overloaded (`Retry-After`)"),
];

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No content",
        404 => "Not found",
        409 => "Conflict",
        415 => "Unsupported content type",
        422 => "Unprocessable",
        501 => "Not implemented",
        _ => "Answer",
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut g = SchemaGenerator::new(settings);
    let error = schema::<api::errors::ErrorBody>(&mut g);
    let mut paths: Map<String, Value> = Map::new();
    for op in OPERATIONS {
        let mut operation = json!({
            "operationId": operation_id(op),
            "summary": op.summary,
            "tags": [op.tag],
        });
        let mut parameters: Vec<Value> = path_parameters(op.path)
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        parameters.extend(op.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": false, "description": description,
                   "schema": {"type": "string"}})
        }));
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(content) = content(op.request, &mut g) {
            operation["requestBody"] = json!({"required": true, "content": content});
        }
        let mut responses = Map::new();
        let mut answer = json!({"description": status_text(op.status)});
        if let Some(content) = content(op.response, &mut g) {
            answer["content"] = content;
        }
        responses.insert(op.status.to_string(), answer);
        let errors = op
            .errors
            .iter()
            .map(|&s| (s, status_text(s)))
            .chain(COMMON_ERRORS.iter().copied());
        for (status, description) in errors {
            responses.entry(status.to_string()).or_insert_with(|| {
                json!({"description": description,
                           "content": {"application/json": {"schema": error.clone()}}})
            });
        }
        operation["responses"] = Value::Object(responses);
        operation["security"] = security(op.access);
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        item[op.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Waymark",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Journey automation with WebAssembly journeys and channels. Every error answers `{\"error\": {\"code\", \"message\"}}`; see docs/API.md."
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "The operator's admin token (`--admin-token`)."},
                "tenantKey": {"type": "http", "scheme": "bearer", "description": "A tenant key; its scope (`admin`, `read`, `write`) decides the routes it may call."},
                "writeKeyBasic": {"type": "http", "scheme": "basic", "description": "Segment's way: the key as the user name, an empty password."},
                "inboxToken": {"type": "http", "scheme": "bearer", "description": "A customer's signed, expiring inbox token (issue 11; format in docs/API.md § In-app inbox)."}
            }
        }
    })
}

fn operation_id(op: &Operation) -> String {
    let mut id = op.method.to_ascii_lowercase();
    for part in op.path.split('/').filter(|p| !p.is_empty() && *p != "v1") {
        let part = part.trim_matches(|c| c == '{' || c == '}');
        id.push('_');
        id.push_str(&part.replace(['-', '.'], "_"));
    }
    id
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
}

fn content(payload: Payload, g: &mut SchemaGenerator) -> Option<Value> {
    match payload {
        Payload::None => None,
        Payload::Json(schema) => Some(json!({"application/json": {"schema": schema(g)}})),
        Payload::Described(schema) => Some(json!({"application/json": {"schema": schema(g)}})),
        Payload::Bytes(kind) => {
            Some(json!({ kind: {"schema": {"type": "string", "contentMediaType": kind}} }))
        }
        Payload::Text(kind) => Some(json!({ kind: {"schema": {"type": "string"}} })),
    }
}

fn security(access: Access) -> Value {
    match access {
        Access::Public => json!([]),
        Access::Admin => json!([{"adminToken": []}]),
        Access::Tenant | Access::TenantAdmin => json!([{"tenantKey": []}]),
        Access::Ingest => json!([{"tenantKey": []}, {"writeKeyBasic": []}]),
        Access::Customer => json!([{"inboxToken": []}]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_unique_and_every_reference_resolves() {
        let doc = document();
        let mut seen = std::collections::BTreeSet::new();
        for op in OPERATIONS {
            assert!(
                seen.insert((op.method, op.path)),
                "{} {} twice",
                op.method,
                op.path
            );
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = &reference[..reference.find('"').unwrap()];
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a reference outside components: {target}"));
            assert!(schemas.contains_key(name), "{name} is not in components");
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(schemas.contains_key("ErrorBody") && schemas.contains_key("JourneyReport"));
    }
}
