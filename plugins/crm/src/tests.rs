//! Native tests of the adapter: the request it builds, what it reads from the message, and how
//! it classifies HubSpot's answers.

use super::*;
use waymark_channel::serde_json::{self, json, Value};
use waymark_channel::Customer;

const NOW: i64 = 1_764_496_800_000;
const ID: &str = "k1-0123456789abcdef0123456789abcdef-0";

fn config() -> Value {
    json!({"access_token": "pat-na1-secret", "owner_id": "64492917", "priority": "high"})
}

fn ana() -> Customer {
    Customer::new("ana").with_attribute("hubspot_contact_id", json!("101"))
}

fn message(config: Value, payload: Value) -> Message {
    Message::new(ID, "crm", "handoff")
        .with_customer(ana())
        .with_payload(payload)
        .with_config(config)
}

fn request(config: Value, payload: Value) -> Request {
    match build_request(&message(config, payload), NOW) {
        Ok(request) => request,
        Err(error) => panic!("expected a request, got {error}"),
    }
}

fn permanent(message: Message) -> String {
    match build_request(&message, NOW) {
        Err(DeliveryError::Permanent(reason)) => reason,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(request.body_bytes()).unwrap()
}

#[test]
fn a_message_becomes_a_create_task_request_associated_with_the_contact() {
    let request = request(
        config(),
        json!({"subject": "Call Ana", "body": "Stalled twice before first value"}),
    );
    assert_eq!(request.method(), "POST");
    assert_eq!(request.url(), "https://api.hubapi.com/crm/v3/objects/tasks");
    assert_eq!(
        request.header_value("authorization"),
        Some("Bearer pat-na1-secret")
    );
    assert_eq!(
        request.header_value("content-type"),
        Some("application/json")
    );
    assert_eq!(
        body(&request),
        json!({
            "properties": {
                "hs_timestamp": NOW.to_string(),
                "hs_task_subject": "Call Ana",
                "hs_task_body": format!("Stalled twice before first value\n\nWaymark message {ID}"),
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH",
                "hubspot_owner_id": "64492917",
            },
            "associations": [{
                "to": {"id": "101"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
            }],
        })
    );
}

#[test]
fn the_rendered_template_comes_first_and_the_message_id_can_go_to_a_custom_property() {
    let mut config = config();
    config["message_id_property"] = json!("waymark_message_id");
    config["task_type"] = json!("call");
    config["due_in_hours"] = json!(24);
    let payload = json!({
        "subject": "ignored", "priority": "low", "owner_id": 77,
        "content": {"template": "handoff", "version": 2, "locale": "en",
                    "subject": "Call Ana", "body": "Plan pro"},
    });
    let properties = body(&request(config, payload))["properties"].clone();
    assert_eq!(
        properties,
        json!({
            "hs_timestamp": (NOW + 24 * 3_600_000).to_string(),
            "hs_task_subject": "Call Ana",
            "hs_task_body": "Plan pro",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "LOW",
            "hs_task_type": "CALL",
            "hubspot_owner_id": "77",
            "waymark_message_id": ID,
        })
    );
}

#[test]
fn the_payload_may_name_the_contact_and_the_due_time() {
    let request = request(
        json!({"access_token": "t", "base_url": "http://127.0.0.1:9/"}),
        json!({"subject": "s", "contact_id": 555, "due_at": 42}),
    );
    assert_eq!(request.url(), "http://127.0.0.1:9/crm/v3/objects/tasks");
    let body = body(&request);
    assert_eq!(body["associations"][0]["to"]["id"], "555");
    assert_eq!(body["properties"]["hs_timestamp"], "42");
    assert_eq!(
        body["properties"]["hs_task_body"],
        format!("Waymark message {ID}")
    );
    assert!(body["properties"].get("hs_task_priority").is_none());
}

#[test]
fn a_message_hubspot_would_refuse_is_permanent_before_any_request() {
    let no_subject = message(config(), json!({"body": "b"}));
    assert!(permanent(no_subject).starts_with("no subject"));

    let nobody = message(config(), json!({"subject": "s"})).with_customer(Customer::new("bo"));
    assert_eq!(
        permanent(nobody),
        "customer \"bo\" has no HubSpot contact id (attribute \"hubspot_contact_id\") and the payload names no contact_id"
    );

    let bad_contact = message(config(), json!({"subject": "s", "contact_id": "ana@x"}));
    assert_eq!(
        permanent(bad_contact),
        "payload.contact_id must be a HubSpot id (digits), not \"ana@x\""
    );

    let bad_priority = message(config(), json!({"subject": "s", "priority": "urgent"}));
    assert_eq!(
        permanent(bad_priority),
        "priority must be one of LOW, MEDIUM, HIGH, not \"urgent\""
    );

    let mut own_property = config();
    own_property["message_id_property"] = json!("hs_task_body");
    assert!(permanent(message(own_property, json!({"subject": "s"})))
        .contains("one of HubSpot's own task properties"));

    let no_token = Message::new(ID, "crm", "t").with_customer(ana());
    assert_eq!(permanent(no_token), "config.access_token is missing");

    let bad_due = message(config(), json!({"subject": "s", "due_at": "tomorrow"}));
    assert!(permanent(bad_due).starts_with("payload.due_at must be milliseconds"));
}

fn answer(status: u16, body: Value, headers: &[(&str, &str)]) -> Response {
    let mut response = Response::new(status, body.to_string().into_bytes());
    for (name, value) in headers {
        response.headers.push((name.to_string(), value.to_string()));
    }
    response
}

#[test]
fn a_201_is_delivered_with_the_tasks_id() {
    let created = answer(
        201,
        json!({"id": "512", "properties": {"hs_task_subject": "Call Ana"},
               "createdAt": "2026-11-30T10:00:00.000Z", "updatedAt": "2026-11-30T10:00:00.000Z",
               "archived": false}),
        &[],
    );
    assert_eq!(outcome(&created), Ok(Receipt::with_provider_id("512")));
}

#[test]
fn hubspot_errors_keep_their_category_message_and_correlation_id() {
    let unauthorized = answer(
        401,
        json!({"status": "error", "message": "Authentication credentials not found.",
               "correlationId": "c1010b3d-3453-4fe8-a0cd-afbda4f58a38",
               "category": "INVALID_AUTHENTICATION"}),
        &[],
    );
    assert_eq!(
        outcome(&unauthorized),
        Err(DeliveryError::permanent(
            "HubSpot HTTP 401: INVALID_AUTHENTICATION: Authentication credentials not found. [correlationId c1010b3d-3453-4fe8-a0cd-afbda4f58a38]"
        ))
    );
    let limited = answer(
        429,
        json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
               "errorType": "RATE_LIMIT", "correlationId": "c033cdaa",
               "policyName": "TEN_SECONDLY_ROLLING"}),
        &[("Retry-After", "1")],
    );
    assert_eq!(
        outcome(&limited),
        Err(DeliveryError::retryable(
            "HubSpot HTTP 429: RATE_LIMIT: You have reached your ten_secondly_rolling limit. (policy TEN_SECONDLY_ROLLING) [correlationId c033cdaa] (Retry-After: 1)"
        ))
    );
    assert!(outcome(&Response::new(502, b"Bad Gateway".to_vec())).is_err_and(|e| e.is_retryable()));
    assert!(outcome(&answer(
        400,
        json!({"message": "Property values were not valid"}),
        &[]
    ))
    .is_err_and(|e| !e.is_retryable()));
}

#[test]
fn the_manifest_declares_exactly_the_keys_the_adapter_reads() {
    let manifest: toml::Table = toml::from_str(include_str!("../channel.toml")).unwrap();
    let mut declared = Vec::new();
    let mut required = Vec::new();
    for kind in ["settings", "secrets"] {
        for (key, spec) in manifest[kind].as_table().unwrap() {
            declared.push(key.clone());
            if spec.get("required").and_then(toml::Value::as_bool) == Some(true) {
                required.push(key.clone());
            }
        }
    }
    declared.sort();
    assert_eq!(
        declared,
        [
            "access_token",
            "base_url",
            "contact_id_attribute",
            "due_in_hours",
            "message_id_property",
            "owner_id",
            "priority",
            "task_type"
        ]
    );
    assert_eq!(required, ["access_token"]);
}

#[test]
fn delivering_natively_fails_permanently_instead_of_touching_the_network() {
    let outcome = Crm::deliver(message(config(), json!({"subject": "x"})));
    assert!(
        matches!(outcome, Err(DeliveryError::Permanent(r)) if r.contains("inside the Waymark host"))
    );
}
