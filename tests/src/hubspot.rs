//! A loopback stand-in of HubSpot's CRM v3 tasks API (issue 11, crm slice), for `plugins/crm`:
//! it checks every request as HubSpot's reference gives "create a task"
//! (<https://developers.hubspot.com/docs/api/crm/tasks>) and answers as HubSpot does.
//!
//! - `POST /crm/v3/objects/tasks`, `Authorization: Bearer <private app token>`,
//!   `Content-Type: application/json`, a body of exactly `properties` and `associations`;
//! - `properties`: string values; `hs_timestamp` required (Unix milliseconds, or ISO 8601 UTC);
//!   `hs_task_status` `NOT_STARTED`/`COMPLETED` (and the UI's `IN_PROGRESS`, `WAITING`,
//!   `DEFERRED`), `hs_task_priority` `LOW`/`MEDIUM`/`HIGH`, `hs_task_type` `TODO`/`CALL`/
//!   `EMAIL`, `hubspot_owner_id` an owner's id; any other name must be a custom property the
//!   account has, or HubSpot refuses it (`PROPERTY_DOESNT_EXIST`);
//! - `associations`: `[{"to": {"id"}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
//!   "associationTypeId": 204}]}]`, 204 being task → contact, the contact one the account has;
//! - `201` with the object (`id`, `properties` with HubSpot's own `hs_object_id`,
//!   `hs_createdate`, `hs_lastmodifieddate` added, `createdAt`, `updatedAt`, `archived`);
//!   errors in HubSpot's shape `{"status": "error", "message", "correlationId", "category"}`
//!   (<https://developers.hubspot.com/docs/api-reference/error-handling>): 401
//!   `INVALID_AUTHENTICATION`, 400 `VALIDATION_ERROR`, 404 for an unknown path; and a rate
//!   limit as HubSpot documents it: 429 with `"errorType": "RATE_LIMIT"` and `policyName`, and
//!   the `X-HubSpot-RateLimit-*` headers.
//!
//! A request HubSpot would refuse is refused HubSpot's way *and* recorded with its problems, so
//! a test shows what was wrong. Each call records when it arrived, so a test can check that
//! starts were spaced (a lower bound, never a speed).

use crate::loopback::LoopbackServer;
use crate::wait::patience;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The path of "create a task".
pub const TASKS_PATH: &str = "/crm/v3/objects/tasks";

/// What the stand-in account holds.
#[derive(Debug, Clone)]
pub struct HubSpotAccount {
    /// The private app token it accepts.
    pub token: String,
    /// The contact ids that exist.
    pub contacts: Vec<String>,
    /// The custom task properties that exist.
    pub custom_properties: Vec<String>,
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct HubSpotCall {
    pub method: String,
    pub path: String,
    /// `(lower-cased name, value)`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// The status answered.
    pub answered: u16,
    /// What HubSpot's reference forbids in it (empty when it is well formed).
    pub problems: Vec<String>,
}

impl HubSpotCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A scripted answer, in HubSpot's shape.
#[derive(Debug, Clone)]
pub struct HubSpotAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HubSpotAnswer {
    fn json(status: u16, body: Value) -> HubSpotAnswer {
        HubSpotAnswer {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json;charset=utf-8".into(),
            )],
            body: body.to_string().into_bytes(),
        }
    }

    /// HubSpot's error body.
    fn error(status: u16, category: &str, message: &str, n: usize) -> HubSpotAnswer {
        HubSpotAnswer::json(
            status,
            json!({
                "status": "error",
                "message": message,
                "correlationId": correlation_id(n),
                "category": category,
            }),
        )
    }

    /// A token HubSpot does not accept (revoked, expired): 401.
    pub fn unauthorized() -> HubSpotAnswer {
        HubSpotAnswer::error(
            401,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            0,
        )
    }

    /// The ten-secondly rolling limit hit: 429 with HubSpot's rate-limit body and headers.
    pub fn rate_limited() -> HubSpotAnswer {
        let mut answer = HubSpotAnswer::json(
            429,
            json!({
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation_id(429),
                "policyName": "TEN_SECONDLY_ROLLING",
                "groupName": "publicapi:private-app:api-calls:1234567",
            }),
        );
        for (name, value) in [
            ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
            ("x-hubspot-ratelimit-max", "100"),
            ("x-hubspot-ratelimit-remaining", "0"),
        ] {
            answer.headers.push((name.into(), value.into()));
        }
        answer
    }

    /// HubSpot's edge failing: a 502 page.
    pub fn bad_gateway() -> HubSpotAnswer {
        HubSpotAnswer {
            status: 502,
            headers: vec![("content-type".into(), "text/html".into())],
            body: b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
        }
    }
}

/// A correlation id in HubSpot's UUID form, distinct per `n`.
fn correlation_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

struct State {
    account: HubSpotAccount,
    calls: Mutex<Vec<HubSpotCall>>,
    script: Mutex<VecDeque<HubSpotAnswer>>,
}

/// HubSpot's tasks API on `127.0.0.1:PORT`.
pub struct HubSpot {
    server: LoopbackServer,
    state: Arc<State>,
}

impl HubSpot {
    pub fn start(account: HubSpotAccount) -> HubSpot {
        let state = Arc::new(State {
            account,
            calls: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let server = LoopbackServer::start("hubspot stand-in", app);
        HubSpot { server, state }
    }

    /// `http://127.0.0.1:PORT`, the registration's `base_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `127.0.0.1:PORT`, for the channel's `allowed_hosts`.
    pub fn authority(&self) -> String {
        self.server.authority()
    }

    /// Answers the next well-formed request with `answer` (then as HubSpot normally does).
    pub fn answer_next(&self, answer: HubSpotAnswer) {
        self.state.script.lock().unwrap().push_back(answer);
    }

    pub fn calls(&self) -> Vec<HubSpotCall> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived; returns them.
    pub async fn wait_for_calls(&self, n: usize) -> Vec<HubSpotCall> {
        let start = Instant::now();
        loop {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            if start.elapsed() > patience() {
                panic!("waited for {n} requests at HubSpot; it received {calls:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let at = Instant::now();
    let mut call = HubSpotCall {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at,
        answered: 0,
        problems: Vec::new(),
    };
    let n = state.calls.lock().unwrap().len() + 1;
    let (checked, problems) = check(&state.account, &call, n);
    let answer = if problems.is_empty() {
        state.script.lock().unwrap().pop_front().unwrap_or(checked)
    } else {
        checked
    };
    call.answered = answer.status;
    call.problems = problems;
    state.calls.lock().unwrap().push(call);
    let mut response = axum::response::Response::new(axum::body::Body::from(answer.body));
    *response.status_mut() = axum::http::StatusCode::from_u16(answer.status).expect("a status");
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// HubSpot's own task properties, and the values of those that take a fixed set.
const STATUSES: [&str; 5] = [
    "NOT_STARTED",
    "COMPLETED",
    "IN_PROGRESS",
    "WAITING",
    "DEFERRED",
];
const PRIORITIES: [&str; 3] = ["LOW", "MEDIUM", "HIGH"];
const TYPES: [&str; 3] = ["TODO", "CALL", "EMAIL"];
const TASK_TO_CONTACT: u64 = 204;

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `2026-11-30T10:00:00Z` or with milliseconds: the UTC form HubSpot takes besides Unix ms.
fn is_utc_iso(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && s.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
}

/// What HubSpot answers `call` (the `n`th) when nothing is scripted, and the problems found.
fn check(account: &HubSpotAccount, call: &HubSpotCall, n: usize) -> (HubSpotAnswer, Vec<String>) {
    if call.method != "POST" || call.path != TASKS_PATH {
        return (
            HubSpotAnswer::error(404, "OBJECT_NOT_FOUND", "Resource not found", n),
            vec![format!(
                "{} {}: HubSpot serves POST {TASKS_PATH}",
                call.method, call.path
            )],
        );
    }
    if call.header("authorization") != Some(format!("Bearer {}", account.token).as_str()) {
        return (
            HubSpotAnswer::unauthorized(),
            vec![format!(
                "Authorization {:?} is not the private app's bearer token",
                call.header("authorization")
            )],
        );
    }
    let json_type = call
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return (
            HubSpotAnswer::error(415, "VALIDATION_ERROR", "Unsupported Media Type", n),
            vec![format!(
                "Content-Type {:?} is not JSON",
                call.header("content-type")
            )],
        );
    }
    let invalid = |message: String| {
        (
            HubSpotAnswer::error(400, "VALIDATION_ERROR", &message, n),
            vec![message],
        )
    };
    let Value::Object(body) = call.json() else {
        return invalid("Invalid input JSON: the body is not a JSON object".into());
    };
    if let Some(extra) = body
        .keys()
        .find(|k| *k != "properties" && *k != "associations")
    {
        return invalid(format!("Invalid input JSON: unknown field {extra:?}"));
    }
    let Some(Value::Object(properties)) = body.get("properties") else {
        return invalid("Invalid input JSON: properties must be an object".into());
    };
    let mut problems = property_problems(account, properties);
    problems.extend(association_problems(account, body.get("associations")));
    if !problems.is_empty() {
        let message = format!("Property values were not valid: {}", problems.join("; "));
        return (
            HubSpotAnswer::error(400, "VALIDATION_ERROR", &message, n),
            problems,
        );
    }
    let now = "2026-11-30T10:00:00.000Z";
    let id = format!("{}", 90_000 + n);
    let mut echoed = properties.clone();
    echoed.insert("hs_object_id".into(), json!(id));
    echoed.insert("hs_createdate".into(), json!(now));
    echoed.insert("hs_lastmodifieddate".into(), json!(now));
    (
        HubSpotAnswer::json(
            201,
            json!({"id": id, "properties": echoed, "createdAt": now, "updatedAt": now, "archived": false}),
        ),
        Vec::new(),
    )
}

fn property_problems(account: &HubSpotAccount, properties: &Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in properties {
        let Some(value) = value.as_str() else {
            problems.push(format!("property {name:?}: {value} is not a string"));
            continue;
        };
        let ok = match name.as_str() {
            "hs_timestamp" => is_digits(value) || is_utc_iso(value),
            "hs_task_subject" | "hs_task_body" => true,
            "hs_task_status" => STATUSES.contains(&value),
            "hs_task_priority" => PRIORITIES.contains(&value),
            "hs_task_type" => TYPES.contains(&value),
            "hubspot_owner_id" => is_digits(value),
            custom if account.custom_properties.iter().any(|p| p == custom) => true,
            unknown => {
                problems.push(format!(
                    "Property {unknown:?} does not exist (PROPERTY_DOESNT_EXIST)"
                ));
                continue;
            }
        };
        if !ok {
            problems.push(format!(
                "{value:?} was not a valid value for {name:?} (INVALID_OPTION)"
            ));
        }
    }
    if !properties.contains_key("hs_timestamp") {
        problems.push("Property \"hs_timestamp\" is required (REQUIRED_PROPERTY)".into());
    }
    problems
}

fn association_problems(account: &HubSpotAccount, associations: Option<&Value>) -> Vec<String> {
    let Some(associations) = associations else {
        return Vec::new();
    };
    let Some(associations) = associations.as_array() else {
        return vec!["associations must be an array".into()];
    };
    let mut problems = Vec::new();
    for association in associations {
        let id = association.pointer("/to/id");
        match id.and_then(Value::as_str) {
            Some(id) if account.contacts.iter().any(|c| c == id) => {}
            Some(id) => problems.push(format!("contact {id:?} does not exist")),
            None => problems.push(format!(
                "association {association}: to.id must be a string id"
            )),
        }
        let types_ok = association
            .get("types")
            .and_then(Value::as_array)
            .is_some_and(|types| {
                !types.is_empty()
                    && types.iter().all(|t| {
                        t.get("associationCategory").and_then(Value::as_str)
                            == Some("HUBSPOT_DEFINED")
                            && t.get("associationTypeId").and_then(Value::as_u64)
                                == Some(TASK_TO_CONTACT)
                    })
            });
        if !types_ok {
            problems.push(format!(
                "association {association}: types must be HUBSPOT_DEFINED {TASK_TO_CONTACT} (task to contact)"
            ));
        }
    }
    problems
}
