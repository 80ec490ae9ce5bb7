//! Waymark's webhook channel adapter: POSTs each message as JSON to a configured URL.
//!
//! Configuration (the channel registration's settings and secrets, merged):
//!
//! | key | required | meaning |
//! | --- | --- | --- |
//! | `url` | yes | absolute `http://` or `https://` URL to POST to |
//! | `bearer_token` | no | sent as `Authorization: Bearer <token>` |
//! | `headers` | no | object of extra header names to string values |
//!
//! The request body is `{"message_id", "customer": {"id", "attributes"}, "template", "payload"}`,
//! with `Content-Type: application/json` and `Idempotency-Key: <message id>`, so a receiver that
//! honours the key never acts twice on a retried message.
//!
//! Outcomes: a 2xx is delivered (the provider id is the response body's `id`, when it is JSON
//! and has one); a 5xx, a 429 or a transport failure is retryable; any other status, a missing
//! or invalid `url`, bad `headers`, or a request the host denies is permanent.
//!
//! Everything but the network call is a pure function, unit-tested natively.

use waymark_guest::http::{HttpError, Request, Response, Url};
use waymark_guest::serde_json::{json, Value};
use waymark_guest::{Channel, DeliveryError, Message, Receipt};

/// The webhook adapter.
pub struct Webhook;

impl Channel for Webhook {
    fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
        let request = build_request(&message)?;
        match request.send() {
            Ok(response) => classify_response(&response),
            Err(error) => Err(classify_transport(&error)),
        }
    }
}

waymark_guest::export_channel!(Webhook);

/// How much of a response body goes into an error message.
const SNIPPET: usize = 200;

/// Headers the adapter sets itself; `config.headers` may not override them.
const OWN_HEADERS: [&str; 2] = ["content-type", "idempotency-key"];

/// The JSON the receiver gets.
pub fn request_body(message: &Message) -> Value {
    json!({
        "message_id": message.id,
        "customer": {"id": message.customer.id, "attributes": message.customer.attributes},
        "template": message.template,
        "payload": message.payload,
    })
}

/// The request for `message`, or a permanent error when the configuration cannot work.
pub fn build_request(message: &Message) -> Result<Request, DeliveryError> {
    let url = match message.config("url") {
        Some(Value::String(url)) => url,
        Some(_) => return Err(DeliveryError::permanent("config.url must be a string")),
        None => return Err(DeliveryError::permanent("config.url is missing")),
    };
    Url::parse(url).map_err(|e| DeliveryError::permanent(format!("config.url: {e}")))?;

    let mut request = Request::post(url.as_str())
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", message.id.as_str());

    let bearer = match message.config("bearer_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if token.is_empty() => None,
        Some(Value::String(token)) => Some(token),
        Some(_) => {
            return Err(DeliveryError::permanent(
                "config.bearer_token must be a string",
            ))
        }
    };
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }

    match message.config("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(extra)) => {
            for (name, value) in extra {
                let lower = name.to_ascii_lowercase();
                if OWN_HEADERS.contains(&lower.as_str())
                    || (bearer.is_some() && lower == "authorization")
                {
                    return Err(DeliveryError::permanent(format!(
                        "config.headers may not set {name:?}: the adapter sets it"
                    )));
                }
                let Value::String(value) = value else {
                    return Err(DeliveryError::permanent(format!(
                        "config.headers.{name} must be a string"
                    )));
                };
                request = request.header(name.as_str(), value.as_str());
            }
        }
        Some(_) => {
            return Err(DeliveryError::permanent(
                "config.headers must be an object of strings",
            ))
        }
    }

    Ok(request.body(request_body(message).to_string()))
}

/// A response's meaning: 2xx delivered; 5xx and 429 retryable; anything else permanent.
pub fn classify_response(response: &Response) -> Result<Receipt, DeliveryError> {
    let status = response.status;
    if response.is_success() {
        return Ok(Receipt {
            provider_id: provider_id(&response.body),
        });
    }
    let detail = format!("HTTP {status}: {}", snippet(&response.text()));
    if status >= 500 || status == 429 {
        Err(DeliveryError::Retryable(detail))
    } else {
        Err(DeliveryError::Permanent(detail))
    }
}

/// A failure to get any response: retryable, unless the request could never succeed as built
/// (the host denied the destination, or the request is invalid).
pub fn classify_transport(error: &HttpError) -> DeliveryError {
    match error {
        HttpError::Transport(_) => DeliveryError::Retryable(error.to_string()),
        HttpError::Denied(_) | HttpError::InvalidRequest(_) | HttpError::Unsupported => {
            DeliveryError::Permanent(error.to_string())
        }
    }
}

/// The `id` of a JSON response body, as a string; numbers are accepted too.
fn provider_id(body: &[u8]) -> Option<String> {
    let body: Value = waymark_guest::serde_json::from_slice(body).ok()?;
    match body.get("id")? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(SNIPPET) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::Customer;

    fn message(config: Value) -> Message {
        Message::new("acme/onboarding/1/c-1/7/0", "webhook", "welcome")
            .with_customer(Customer::new("c-1").with_attribute("email", json!("a@example.com")))
            .with_payload(json!({"plan": "pro"}))
            .with_config(config)
    }

    fn permanent(result: Result<Request, DeliveryError>) -> String {
        match result {
            Err(DeliveryError::Permanent(reason)) => reason,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn posts_the_documented_json_body() {
        let request =
            build_request(&message(json!({"url": "https://hooks.example.com/in"}))).unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url(), "https://hooks.example.com/in");
        let body: Value = waymark_guest::serde_json::from_slice(request.body_bytes()).unwrap();
        assert_eq!(
            body,
            json!({
                "message_id": "acme/onboarding/1/c-1/7/0",
                "customer": {"id": "c-1", "attributes": {"email": "a@example.com"}},
                "template": "welcome",
                "payload": {"plan": "pro"},
            })
        );
    }

    #[test]
    fn sets_content_type_and_idempotency_key() {
        let request = build_request(&message(json!({"url": "http://h/"}))).unwrap();
        assert_eq!(
            request.header_value("content-type"),
            Some("application/json")
        );
        assert_eq!(
            request.header_value("idempotency-key"),
            Some("acme/onboarding/1/c-1/7/0")
        );
        assert_eq!(request.header_value("authorization"), None);
    }

    #[test]
    fn bearer_token_becomes_an_authorization_header() {
        let request = build_request(&message(
            json!({"url": "http://h/", "bearer_token": "s3cret"}),
        ))
        .unwrap();
        assert_eq!(request.header_value("Authorization"), Some("Bearer s3cret"));
        let empty =
            build_request(&message(json!({"url": "http://h/", "bearer_token": ""}))).unwrap();
        assert_eq!(empty.header_value("Authorization"), None);
    }

    #[test]
    fn extra_headers_are_added() {
        let request = build_request(&message(json!({
            "url": "http://h/",
            "headers": {"X-Tenant": "acme", "Authorization": "Basic abc"},
        })))
        .unwrap();
        assert_eq!(request.header_value("x-tenant"), Some("acme"));
        assert_eq!(request.header_value("authorization"), Some("Basic abc"));
    }

    #[test]
    fn extra_headers_cannot_override_the_adapters_own() {
        let reason = permanent(build_request(&message(json!({
            "url": "http://h/", "headers": {"idempotency-key": "x"},
        }))));
        assert!(reason.contains("idempotency-key"), "{reason}");
        let reason = permanent(build_request(&message(json!({
            "url": "http://h/", "bearer_token": "t", "headers": {"Authorization": "Basic x"},
        }))));
        assert!(reason.contains("Authorization"), "{reason}");
    }

    #[test]
    fn bad_configuration_is_permanent() {
        assert!(permanent(build_request(&message(json!({})))).contains("url is missing"));
        assert!(permanent(build_request(&message(json!({"url": 3})))).contains("must be a string"));
        assert!(
            permanent(build_request(&message(json!({"url": "ftp://h/"})))).contains("config.url")
        );
        assert!(
            permanent(build_request(&message(json!({"url": "not a url"})))).contains("config.url")
        );
        permanent(build_request(&message(
            json!({"url": "http://h/", "headers": ["x"]}),
        )));
        permanent(build_request(&message(
            json!({"url": "http://h/", "headers": {"x": 1}}),
        )));
        permanent(build_request(&message(
            json!({"url": "http://h/", "bearer_token": 1}),
        )));
    }

    #[test]
    fn success_is_delivered_with_the_providers_id() {
        assert_eq!(
            classify_response(&Response::new(
                200,
                br#"{"id":"prov-1","ok":true}"#.to_vec()
            )),
            Ok(Receipt::with_provider_id("prov-1"))
        );
        assert_eq!(
            classify_response(&Response::new(202, br#"{"id":17}"#.to_vec())),
            Ok(Receipt::with_provider_id("17"))
        );
        assert_eq!(
            classify_response(&Response::new(204, Vec::new())),
            Ok(Receipt::new())
        );
        assert_eq!(
            classify_response(&Response::new(200, b"accepted".to_vec())),
            Ok(Receipt::new())
        );
        assert_eq!(
            classify_response(&Response::new(200, br#"[{"id":"x"}]"#.to_vec())),
            Ok(Receipt::new())
        );
    }

    #[test]
    fn server_errors_and_throttling_are_retryable() {
        for status in [500, 502, 503, 504, 429] {
            let outcome = classify_response(&Response::new(status, b"try later".to_vec()));
            assert!(
                matches!(&outcome, Err(DeliveryError::Retryable(r)) if r.contains(&status.to_string())),
                "{status}: {outcome:?}"
            );
        }
    }

    #[test]
    fn other_statuses_are_permanent() {
        for status in [400, 401, 403, 404, 410, 422, 301] {
            let outcome = classify_response(&Response::new(status, b"nope".to_vec()));
            assert!(
                matches!(&outcome, Err(DeliveryError::Permanent(r)) if r.contains("nope")),
                "{status}: {outcome:?}"
            );
        }
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let outcome = classify_response(&Response::new(400, "x".repeat(10_000)));
        assert!(outcome.unwrap_err().reason().len() < 300);
    }

    #[test]
    fn transport_failures_are_retryable_but_denials_are_permanent() {
        assert!(
            classify_transport(&HttpError::Transport("ConnectionRefused".into())).is_retryable()
        );
        assert!(!classify_transport(&HttpError::Denied("HttpRequestDenied".into())).is_retryable());
        assert!(!classify_transport(&HttpError::InvalidRequest("header".into())).is_retryable());
    }

    #[test]
    fn delivering_natively_fails_permanently_instead_of_touching_the_network() {
        let outcome = Webhook::deliver(message(json!({"url": "http://127.0.0.1:9/"})));
        assert!(
            matches!(outcome, Err(DeliveryError::Permanent(r)) if r.contains("inside the Waymark host"))
        );
    }
}
