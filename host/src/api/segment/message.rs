//! Segment's HTTP Tracking API messages, read as Segment documents them, and mapped onto
//! Waymark's events (pure: the handler does the I/O). Field names are Segment's
//! (<https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/> and the
//! common fields of <https://segment.com/docs/connections/spec/common/>): `type`, `userId`,
//! `anonymousId`, `messageId`, `timestamp`, `originalTimestamp`, `sentAt`, `context`,
//! `properties`, `traits`, `event`, `name`, `category`; a batch is
//! `{"batch": [...], "sentAt", "context"}`. Other fields (`integrations`, `writeKey`,
//! `channel`, ...) are taken and ignored, as Segment's clients send them.
//!
//! The mapping (documented in `docs/API.md` § Segment-compatible ingest):
//!
//! | Segment | Waymark event |
//! | --- | --- |
//! | `messageId` | `id` (the dedup id); without one, `segment-` and a digest of the message's text |
//! | `userId`, else `anonymousId` | `customer` |
//! | `track` | `name` = `event`, `properties` = `properties` |
//! | `identify` | `name` = `identify`, `properties.traits` = `traits` |
//! | `page`, `screen` | `name` = `page` / `screen`, `properties` with `name` and `category` |
//! | `group` | `name` = `group`, `properties.group_id` = `groupId`, `properties.traits` = `traits` (sets the account: `engine::accounts`) |
//! | `alias` | `name` = `alias`, `customer` = `userId`, `properties.previous_id` = `previousId` (merges it: `engine::identity`) |
//! | `context`, `userId`, `anonymousId`, `type` | kept under `properties["$segment"]` |
//! | `timestamp`; else `originalTimestamp` corrected by `sentAt` | `timestamp` |

use super::super::events::{check_event, oversized, refusal, Refused, MAX_BATCH};
use super::super::limits::SEGMENT_MAX_MESSAGE_BYTES;
use super::super::prelude::*;
use crate::model::Event;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::Digest as _;
use waymark_api::events::EventInput;

/// The kinds of Segment call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Track,
    Identify,
    Page,
    Screen,
    /// Sets the customer's account and its traits (accounts).
    Group,
    /// Merges `previousId` into `userId` (identity merge).
    Alias,
}

impl Kind {
    /// The kind a message's `type` names.
    pub(super) fn named(name: &str) -> Option<Kind> {
        Some(match name {
            "track" => Kind::Track,
            "identify" => Kind::Identify,
            "page" => Kind::Page,
            "screen" => Kind::Screen,
            "group" => Kind::Group,
            "alias" => Kind::Alias,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Track => "track",
            Kind::Identify => "identify",
            Kind::Page => "page",
            Kind::Screen => "screen",
            Kind::Group => "group",
            Kind::Alias => "alias",
        }
    }
}

/// One Segment message, as far as Waymark reads it.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    #[serde(rename = "type")]
    kind: Option<String>,
    message_id: Option<Value>,
    user_id: Option<Value>,
    anonymous_id: Option<Value>,
    event: Option<String>,
    name: Option<String>,
    category: Option<String>,
    properties: Option<Value>,
    traits: Option<Value>,
    previous_id: Option<Value>,
    group_id: Option<Value>,
    context: Option<Value>,
    timestamp: Option<String>,
    original_timestamp: Option<String>,
    sent_at: Option<String>,
}

/// A body of `POST /v1/batch`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Batch<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    sent_at: Option<String>,
    context: Option<Value>,
}

/// What a batch adds to each of its messages.
#[derive(Default)]
struct Shared<'a> {
    sent_at: Option<&'a str>,
    context: Option<&'a Map<String, Value>>,
}

/// The body of a single call (`/v1/track`, ...) as the event it carries, received at `now`.
pub(super) fn single(kind: Kind, body: &[u8], now: Millis) -> ApiResult<Event> {
    if body.len() > SEGMENT_MAX_MESSAGE_BYTES {
        return Err(refusal(false, 0, too_big(body.len())));
    }
    let raw: &RawValue = parse_json(body)?;
    parse_message(Some(kind), raw, &Shared::default(), now).map_err(|r| refusal(false, 0, r))
}

/// The body of `/v1/batch` as the events it carries, received at `now`. A refused message
/// refuses the whole batch with the message's index, nothing stored.
pub(super) fn batch(body: &[u8], now: Millis) -> ApiResult<Vec<Event>> {
    let batch: Batch = parse_json(body)?;
    if batch.batch.is_empty() || batch.batch.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_event",
            format!("a batch holds 1 to {MAX_BATCH} messages"),
        ));
    }
    let context = match &batch.context {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(c),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_event",
                "the batch's context must be an object",
            ))
        }
    };
    let shared = Shared {
        sent_at: batch.sent_at.as_deref(),
        context,
    };
    batch
        .batch
        .iter()
        .enumerate()
        .map(|(i, raw)| parse_message(None, raw, &shared, now).map_err(|r| refusal(true, i, r)))
        .collect()
}

fn too_big(size: usize) -> Refused {
    oversized(format!(
        "the message is {size} bytes; Segment's limit, and Waymark's, is {SEGMENT_MAX_MESSAGE_BYTES}"
    ))
}

/// One message as the event it maps to: `route` is the route's kind, or `None` in a batch,
/// where the message's `type` names it.
fn parse_message(
    route: Option<Kind>,
    raw: &RawValue,
    shared: &Shared,
    now: Millis,
) -> Result<Event, Refused> {
    let text = raw.get();
    if text.len() > SEGMENT_MAX_MESSAGE_BYTES {
        return Err(too_big(text.len()));
    }
    let m: Message = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let kind = match route {
        Some(kind) => kind,
        None => {
            let name = m
                .kind
                .as_deref()
                .ok_or("type is required in a batch".to_string())?;
            Kind::named(name).ok_or_else(|| {
                format!("type {name:?} is not a Segment call (track, identify, page, screen, group, alias)")
            })?
        }
    };
    let user_id = id("userId", m.user_id.as_ref())?;
    let anonymous_id = id("anonymousId", m.anonymous_id.as_ref())?;
    if kind == Kind::Alias && user_id.is_none() {
        return Err("userId is required in an alias call".to_string().into());
    }
    let customer = user_id
        .clone()
        .or_else(|| anonymous_id.clone())
        .ok_or("userId or anonymousId is required".to_string())?;
    let message_id = match id("messageId", m.message_id.as_ref())? {
        Some(id) => id,
        None => format!("segment-{}", &hex::encode(sha2::Sha256::digest(text))[..32]),
    };
    let mut properties = object("properties", m.properties.as_ref())?;
    let name = match kind {
        Kind::Track => match m.event.as_deref() {
            Some(event) if !event.is_empty() => event.to_string(),
            _ => return Err("event is required in a track call".to_string().into()),
        },
        Kind::Identify => {
            let traits = object("traits", m.traits.as_ref())?;
            properties = Map::from_iter([("traits".to_string(), Value::Object(traits))]);
            "identify".to_string()
        }
        Kind::Page | Kind::Screen => {
            for (field, value) in [("name", &m.name), ("category", &m.category)] {
                if let Some(value) = value {
                    properties
                        .entry(field)
                        .or_insert_with(|| Value::String(value.clone()));
                }
            }
            kind.name().to_string()
        }
        Kind::Alias => {
            let previous = id("previousId", m.previous_id.as_ref())?
                .ok_or("previousId is required in an alias call".to_string())?;
            properties = Map::from_iter([("previous_id".to_string(), Value::String(previous))]);
            crate::engine::identity::ALIAS.to_string()
        }
        Kind::Group => {
            let group = id("groupId", m.group_id.as_ref())?
                .ok_or("groupId is required in a group call".to_string())?;
            let traits = object("traits", m.traits.as_ref())?;
            properties = Map::from_iter([
                ("group_id".to_string(), Value::String(group)),
                ("traits".to_string(), Value::Object(traits)),
            ]);
            crate::engine::accounts::GROUP.to_string()
        }
    };
    let mut context = object("context", m.context.as_ref())?;
    for (k, v) in shared.context.into_iter().flatten() {
        context.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut segment = Map::new();
    segment.insert("type".into(), kind.name().into());
    if !context.is_empty() {
        segment.insert("context".into(), Value::Object(context));
    }
    if let Some(user_id) = user_id {
        segment.insert("userId".into(), user_id.into());
    }
    if let Some(anonymous_id) = anonymous_id {
        segment.insert("anonymousId".into(), anonymous_id.into());
    }
    properties.insert("$segment".into(), Value::Object(segment));
    let timestamp = event_time(&m, shared.sent_at, now)?;
    let input = EventInput {
        id: message_id,
        customer,
        name,
        properties: Some(properties),
        timestamp,
    };
    check_event(input, now)
}

/// An id field: a string, or a number as its decimal text (Segment's libraries stringify
/// numeric ids); `null` or missing is none.
fn id(field: &str, value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

/// An object field; `null` or missing is `{}`.
fn object(field: &str, value: Option<&Value>) -> Result<Map<String, Value>, String> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(_) => Err(format!("{field} must be an object")),
    }
}

/// When the message happened: its `timestamp` if given; else its `originalTimestamp`
/// corrected for the device's clock skew as Segment does, `now - (sentAt -
/// originalTimestamp)` when `sentAt` (the message's or the batch's) is known
/// (<https://segment.com/docs/connections/spec/common/#timestamp-overview>); else the
/// `originalTimestamp`; else `None` (the server's now).
fn event_time(
    m: &Message,
    batch_sent_at: Option<&str>,
    now: Millis,
) -> Result<Option<Millis>, String> {
    if let Some(t) = &m.timestamp {
        return iso_millis("timestamp", t).map(Some);
    }
    let Some(original) = &m.original_timestamp else {
        return Ok(None);
    };
    let original = iso_millis("originalTimestamp", original)?;
    match m.sent_at.as_deref().or(batch_sent_at) {
        Some(sent) => {
            let sent = iso_millis("sentAt", sent)?;
            Ok(Some(now.saturating_sub(sent.saturating_sub(original))))
        }
        None => Ok(Some(original)),
    }
}

/// An ISO-8601 date-time as ms since the epoch: RFC 3339 (`2026-01-02T03:04:05.678Z`,
/// `...+01:00`), or without an offset, read as UTC (what some clients send).
fn iso_millis(field: &str, text: &str) -> Result<Millis, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp_millis())
        .map_err(|_| format!("{field} must be an ISO-8601 date-time, not {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(kind: Kind, v: Value) -> Result<Event, (StatusCode, String)> {
        single(kind, v.to_string().as_bytes(), 1_000_000).map_err(|e| {
            let r = e.into_response();
            (r.status(), String::new())
        })
    }

    #[test]
    fn a_track_call_is_an_event_named_by_its_event() {
        let e = one(
            Kind::Track,
            json!({"userId": "u1", "anonymousId": "a1", "event": "Order Completed",
                   "messageId": "m1", "properties": {"total": 5},
                   "context": {"ip": "1.2.3.4"}, "timestamp": "2026-01-02T03:04:05.678Z",
                   "integrations": {"All": true}}),
        )
        .unwrap();
        assert_eq!((e.id.as_str(), e.customer.as_str()), ("m1", "u1"));
        assert_eq!(e.name, "Order Completed");
        assert_eq!(e.timestamp, 1_767_323_045_678);
        assert_eq!(e.properties["total"], 5);
        assert_eq!(
            e.properties["$segment"],
            json!({"type": "track", "context": {"ip": "1.2.3.4"}, "userId": "u1", "anonymousId": "a1"})
        );
    }

    #[test]
    fn identify_carries_traits_and_an_anonymous_id_is_the_customer() {
        let e = one(
            Kind::Identify,
            json!({"anonymousId": "anon-7", "traits": {"plan": "pro"}, "messageId": "m2"}),
        )
        .unwrap();
        assert_eq!(
            (e.customer.as_str(), e.name.as_str()),
            ("anon-7", "identify")
        );
        assert_eq!(e.properties["traits"], json!({"plan": "pro"}));
        // No time given: the server's now.
        assert_eq!(e.timestamp, 1_000_000);
    }

    #[test]
    fn group_names_the_account_and_its_traits() {
        let e = one(
            Kind::Group,
            json!({"userId": "ada", "groupId": "acme", "traits": {"plan": "pro"}, "messageId": "g1"}),
        )
        .unwrap();
        assert_eq!((e.customer.as_str(), e.name.as_str()), ("ada", "group"));
        assert_eq!(e.properties["group_id"], "acme");
        assert_eq!(e.properties["traits"], json!({"plan": "pro"}));
    }

    #[test]
    fn alias_names_the_previous_id_it_merges_into_the_user() {
        let e = one(
            Kind::Alias,
            json!({"userId": "ada", "previousId": "anon-1", "messageId": "m3",
                   "timestamp": "2026-01-02T03:04:05Z"}),
        )
        .unwrap();
        assert_eq!((e.customer.as_str(), e.name.as_str()), ("ada", "alias"));
        assert_eq!(e.properties["previous_id"], "anon-1");
        assert_eq!(crate::engine::identity::merge_source(&e), Some("anon-1"));
    }

    #[test]
    fn page_and_screen_keep_their_name_and_category() {
        let e = one(
            Kind::Page,
            json!({"userId": 42, "name": "Pricing", "category": "Docs", "properties": {"path": "/p"}}),
        )
        .unwrap();
        assert_eq!((e.customer.as_str(), e.name.as_str()), ("42", "page"));
        assert_eq!(e.properties["name"], "Pricing");
        assert_eq!(e.properties["category"], "Docs");
        assert!(e.id.starts_with("segment-"));
        let again = one(
            Kind::Page,
            json!({"userId": 42, "name": "Pricing", "category": "Docs", "properties": {"path": "/p"}}),
        )
        .unwrap();
        assert_eq!(
            e.id, again.id,
            "an exact resend without messageId is a duplicate"
        );
    }

    #[test]
    fn original_timestamp_is_corrected_by_sent_at_as_segment_does() {
        let body = json!({"sentAt": "2026-01-01T00:00:10Z", "batch": [
            {"type": "track", "userId": "u", "event": "e", "originalTimestamp": "2026-01-01T00:00:07Z"},
            {"type": "track", "userId": "u", "event": "e", "originalTimestamp": "2026-01-01T00:00:07",
             "sentAt": "2026-01-01T00:00:08Z"},
        ]});
        let events = batch(body.to_string().as_bytes(), 1_000_000).unwrap();
        assert_eq!(events[0].timestamp, 1_000_000 - 3_000);
        assert_eq!(events[1].timestamp, 1_000_000 - 1_000);
    }

    #[test]
    fn a_batch_merges_its_context_into_each_message() {
        let body = json!({"context": {"library": {"name": "x"}, "ip": "9"}, "batch": [
            {"type": "identify", "userId": "u", "context": {"ip": "1"}},
        ]});
        let events = batch(body.to_string().as_bytes(), 0).unwrap();
        assert_eq!(
            events[0].properties["$segment"]["context"],
            json!({"ip": "1", "library": {"name": "x"}})
        );
    }

    #[test]
    fn bad_messages_are_refused_with_the_reason() {
        let status = |kind, v| one(kind, v).unwrap_err().0;
        assert_eq!(
            status(Kind::Track, json!({"event": "e"})),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(Kind::Track, json!({"userId": "u"})),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                Kind::Track,
                json!({"userId": "u", "event": "e", "timestamp": "yesterday"})
            ),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(Kind::Identify, json!({"userId": "u", "traits": [1]})),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                Kind::Track,
                json!({"userId": "u", "event": "e", "properties": {"x": "y".repeat(33 * 1024)}})
            ),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(Kind::Alias, json!({"previousId": "a"})),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(Kind::Alias, json!({"userId": "u"})),
            StatusCode::BAD_REQUEST
        );
        let batch_status = |v: Value| {
            batch(v.to_string().as_bytes(), 0)
                .unwrap_err()
                .into_response()
                .status()
        };
        assert_eq!(batch_status(json!({"batch": []})), StatusCode::BAD_REQUEST);
        assert_eq!(
            batch_status(json!({"batch": [{"userId": "u", "event": "e"}]})),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            batch_status(
                json!({"batch": [{"type": "track", "userId": "u", "event": "e"},
                                          {"type": "group", "userId": "u"}]})
            ),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            batch_status(
                json!({"batch": [{"type": "track", "userId": "u", "event": "e",
                                           "properties": {"x": "y".repeat(33 * 1024)}}]})
            ),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
