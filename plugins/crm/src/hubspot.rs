//! HubSpot's CRM v3 tasks API, "create a task", as its reference gives it
//! (<https://developers.hubspot.com/docs/api/crm/tasks>, and the endpoint's reference
//! <https://developers.hubspot.com/docs/reference/api/crm/engagements/tasks>):
//!
//! - `POST {base}/crm/v3/objects/tasks`, `Authorization: Bearer <private app token>`,
//!   `Content-Type: application/json`;
//! - a body `{"properties": {...}, "associations": [...]}`: properties `hs_timestamp`
//!   (required: the due date, Unix milliseconds or UTC ISO 8601), `hs_task_subject`,
//!   `hs_task_body`, `hs_task_status` (`NOT_STARTED` or `COMPLETED`), `hs_task_priority`
//!   (`LOW`, `MEDIUM`, `HIGH`), `hs_task_type` (`TODO`, `CALL`, `EMAIL`), `hubspot_owner_id`;
//!   each association `{"to": {"id"}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
//!   "associationTypeId": 204}]}` — 204 is HubSpot's default task-to-contact type. Property
//!   values are sent as strings, as HubSpot gives them back;
//! - a `201` answers the object: `{"id", "properties", "createdAt", "updatedAt", "archived"}`;
//! - errors answer `{"status": "error", "message", "correlationId", "category"}` (plus
//!   `errors`, `context`), every field optional by HubSpot's own advice
//!   (<https://developers.hubspot.com/docs/api-reference/error-handling>): 400
//!   `VALIDATION_ERROR`, 401 `INVALID_AUTHENTICATION`, 403 `MISSING_SCOPES`; a rate limit is
//!   a 429 with `"errorType": "RATE_LIMIT"` and `policyName` (`TEN_SECONDLY_ROLLING`,
//!   `DAILY`).
//!
//! HubSpot has no idempotency key for creates. The message id goes into the custom task
//! property `message_id_property` names, when the registration names one (a property the
//! tenant creates: HubSpot refuses an unknown property with a 400), else it is the last line of
//! the task's notes: either way the task can be traced back to the message, and found by
//! HubSpot's search. A create retried after a lost answer may therefore make a second task
//! (at-least-once).

use waymark_channel::http::{ProviderId, Request};
use waymark_channel::serde_json::{json, Map, Value};
use waymark_channel::DeliveryError;

use crate::task::Task;
use crate::Config;

/// HubSpot's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// The path of "create a task".
pub const TASKS_PATH: &str = "/crm/v3/objects/tasks";

/// HubSpot's default association type from a task to a contact.
pub const TASK_TO_CONTACT: u32 = 204;

/// A new task's status: nobody has started on a handoff yet.
pub const NEW_TASK_STATUS: &str = "NOT_STARTED";

/// Where HubSpot puts its id for the created task: the 201 body's `id`.
pub const PROVIDER_ID: ProviderId<'static> = ProviderId::JsonField("id");

/// The request creating `task` for message `message_id`.
pub fn request(config: &Config, task: &Task, message_id: &str) -> Result<Request, DeliveryError> {
    let mut properties = Map::new();
    let mut set = |name: &str, value: &str| {
        properties.insert(name.to_string(), Value::String(value.to_string()));
    };
    set("hs_timestamp", &task.due_ms.to_string());
    set("hs_task_subject", &task.subject);
    set("hs_task_status", NEW_TASK_STATUS);
    if let Some(priority) = &task.priority {
        set("hs_task_priority", priority);
    }
    if let Some(task_type) = &task.task_type {
        set("hs_task_type", task_type);
    }
    if let Some(owner) = &task.owner_id {
        set("hubspot_owner_id", owner);
    }
    let body = match config.message_id_property.as_deref().map(str::trim) {
        Some(property) if !property.is_empty() => {
            if property.starts_with("hs_") || property == "hubspot_owner_id" {
                return Err(DeliveryError::permanent(format!(
                    "config.message_id_property {property:?} is one of HubSpot's own task properties"
                )));
            }
            set(property, message_id);
            task.body.clone()
        }
        _ => Some(match &task.body {
            Some(body) => format!("{body}\n\nWaymark message {message_id}"),
            None => format!("Waymark message {message_id}"),
        }),
    };
    if let Some(body) = &body {
        set("hs_task_body", body);
    }
    let associations = json!([{
        "to": {"id": task.contact_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}],
    }]);
    Ok(Request::post(format!("{}{TASKS_PATH}", config.base_url()?))
        .header(
            "Authorization",
            format!("Bearer {}", config.access_token.trim()),
        )
        .header("Accept", "application/json")
        .json(&json!({"properties": properties, "associations": associations})))
}

/// HubSpot's error text from an error body: `{category}: {message}`, a rate limit's
/// `policyName`, and the `correlationId` HubSpot's support asks for.
pub fn error_text(body: &Value) -> Option<String> {
    let message = body.get("message")?.as_str()?;
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    let mut text = match field("category").or_else(|| field("errorType")) {
        Some(category) => format!("{category}: {message}"),
        None => message.to_string(),
    };
    if let Some(policy) = field("policyName") {
        text.push_str(&format!(" (policy {policy})"));
    }
    if let Some(id) = field("correlationId") {
        text.push_str(&format!(" [correlationId {id}]"));
    }
    Some(text)
}
