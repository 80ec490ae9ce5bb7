//! The task a message asks for, before any provider's shape: what it says, who owns it, when
//! it is due and which contact it is about. Every rule HubSpot would refuse a task for that can
//! be checked here is checked here, so a bad message is a permanent failure naming the field
//! before any request leaves.

use waymark_channel::serde_json::Value;
use waymark_channel::{DeliveryError, Message};

use crate::Config;

/// The customer attribute holding the HubSpot contact id unless `contact_id_attribute` names
/// another.
pub const DEFAULT_CONTACT_ID_ATTRIBUTE: &str = "hubspot_contact_id";

/// The priorities HubSpot's `hs_task_priority` takes.
pub const PRIORITIES: [&str; 3] = ["LOW", "MEDIUM", "HIGH"];
/// The types HubSpot's `hs_task_type` takes.
pub const TASK_TYPES: [&str; 3] = ["TODO", "CALL", "EMAIL"];

const HOUR_MS: f64 = 3_600_000.0;

/// One task to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Its title (`hs_task_subject`).
    pub subject: String,
    /// Its notes (`hs_task_body`), if any.
    pub body: Option<String>,
    /// `LOW`, `MEDIUM` or `HIGH`, if given.
    pub priority: Option<String>,
    /// `TODO`, `CALL` or `EMAIL`, if given.
    pub task_type: Option<String>,
    /// The owner's HubSpot id (digits), if given.
    pub owner_id: Option<String>,
    /// When it is due, milliseconds since the epoch (`hs_timestamp`).
    pub due_ms: i64,
    /// The HubSpot contact it is associated with (digits).
    pub contact_id: String,
}

impl Task {
    /// The task `message` asks for: subject and notes from `payload.content` (a rendered `crm`
    /// template) or the payload; priority, type and owner from the payload or the settings;
    /// due at the payload's `due_at` or `due_in_hours` after `now_ms`; the contact from the
    /// payload's `contact_id` or the customer's contact-id attribute.
    pub fn from_message(
        message: &Message,
        config: &Config,
        now_ms: i64,
    ) -> Result<Task, DeliveryError> {
        let payload = &message.payload;
        let content = payload.get("content");
        let part = |name: &str| {
            content
                .and_then(|c| c.get(name))
                .or_else(|| payload.get(name))
        };
        let subject = text(part("subject"), "subject")?.ok_or_else(|| {
            DeliveryError::permanent(
                "no subject: a crm message needs a `subject` (a crm template's or the payload's)",
            )
        })?;
        let body = text(part("body"), "body")?;
        let priority = match text(payload.get("priority"), "payload.priority")? {
            Some(p) => Some(p),
            None => config.priority.clone(),
        };
        let priority = one_of(priority, &PRIORITIES, "priority")?;
        let task_type = one_of(config.task_type.clone(), &TASK_TYPES, "config.task_type")?;
        let owner_id = match id(payload.get("owner_id"), "payload.owner_id")? {
            Some(owner) => Some(owner),
            None => id(
                config.owner_id.clone().map(Value::String).as_ref(),
                "config.owner_id",
            )?,
        };
        let due_ms = match payload.get("due_at") {
            None | Some(Value::Null) => {
                let hours = config.due_in_hours.unwrap_or(0.0);
                if !hours.is_finite() || hours < 0.0 {
                    return Err(DeliveryError::permanent(format!(
                        "config.due_in_hours must be a number of hours, 0 or more, not {hours}"
                    )));
                }
                now_ms.saturating_add((hours * HOUR_MS).round() as i64)
            }
            Some(due) => due.as_i64().filter(|ms| *ms >= 0).ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "payload.due_at must be milliseconds since the epoch, not {due}"
                ))
            })?,
        };
        let attribute = config
            .contact_id_attribute
            .as_deref()
            .unwrap_or(DEFAULT_CONTACT_ID_ATTRIBUTE);
        let contact_id = match id(payload.get("contact_id"), "payload.contact_id")? {
            Some(contact) => contact,
            None => id(
                message.customer.attribute(attribute),
                &format!("customer attribute {attribute:?}"),
            )?
            .ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "customer {:?} has no HubSpot contact id (attribute {attribute:?}) and the \
                     payload names no contact_id",
                    message.customer.id
                ))
            })?,
        };
        Ok(Task {
            subject,
            body,
            priority,
            task_type,
            owner_id,
            due_ms,
            contact_id,
        })
    }
}

/// A non-empty string field, if present; another type is a permanent error naming `what`.
fn text(value: Option<&Value>, what: &str) -> Result<Option<String>, DeliveryError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(DeliveryError::permanent(format!(
            "{what} must be a string, not {other}"
        ))),
    }
}

/// A HubSpot record id (owner, contact): digits, given as a string or a number.
fn id(value: Option<&Value>, what: &str) -> Result<Option<String>, DeliveryError> {
    let id = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(DeliveryError::permanent(format!(
                "{what} must be a HubSpot id (digits), not {other}"
            )))
        }
    };
    if id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DeliveryError::permanent(format!(
            "{what} must be a HubSpot id (digits), not {id:?}"
        )));
    }
    Ok(Some(id))
}

/// `value` upper-cased, if it is one of `allowed`; a permanent error naming `what` otherwise.
fn one_of(
    value: Option<String>,
    allowed: &[&str],
    what: &str,
) -> Result<Option<String>, DeliveryError> {
    let Some(value) = value else { return Ok(None) };
    let upper = value.trim().to_ascii_uppercase();
    if allowed.contains(&upper.as_str()) {
        Ok(Some(upper))
    } else {
        Err(DeliveryError::permanent(format!(
            "{what} must be one of {}, not {value:?}",
            allowed.join(", ")
        )))
    }
}
