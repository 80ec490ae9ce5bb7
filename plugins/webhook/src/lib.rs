//! Waymark's webhook channel adapter: POSTs each message as JSON to a configured URL.
//!
//! Configuration (the channel registration's settings and secrets, merged), declared in
//! `channel.toml` and embedded in the component for the host to check at registration:
//!
//! | key | kind | required | meaning |
//! | --- | --- | --- | --- |
//! | `url` | setting | yes | absolute `http://` or `https://` URL to POST to |
//! | `headers` | setting | no | object of extra header names to string values |
//! | `bearer_token` | secret | no | sent as `Authorization: Bearer <token>` |
//!
//! The request body is `{"message_id", "customer": {"id", "attributes"}, "template", "payload"}`,
//! with `Content-Type: application/json` and `Idempotency-Key: <message id>`, so a receiver that
//! honours the key never acts twice on a retried message.
//!
//! Outcomes are the SDK's ([`Response::outcome_with_id`]): a 2xx is delivered (the provider id
//! is the response body's `id`, when it is JSON and has one); a 5xx, a 429 or a transport
//! failure is retryable; any other status, a bad configuration, or a request the host denies is
//! permanent.
//!
//! The adapter is a request builder: [`build_request`] is pure and unit-tested natively, and
//! `deliver` only sends what it built.

use std::collections::BTreeMap;

use serde::Deserialize;
use waymark_channel::http::{ProviderId, Request, Url};
use waymark_channel::serde_json::{json, Value};
use waymark_channel::{Channel, DeliveryError, Message, Receipt};

/// The webhook adapter.
pub struct Webhook;

impl Channel for Webhook {
    fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
        build_request(&message)?
            .send()?
            .outcome_with_id(PROVIDER_ID)
    }
}

waymark_channel::export_channel!(Webhook);
waymark_channel::channel_manifest!();

/// Where a receiver's id for the message is: the `id` of a JSON response body.
pub const PROVIDER_ID: ProviderId<'static> = ProviderId::JsonField("id");

/// Headers the adapter sets itself; `config.headers` may not override them.
const OWN_HEADERS: [&str; 2] = ["content-type", "idempotency-key"];

/// The adapter's configuration, as `channel.toml` declares it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    /// Where to POST.
    pub url: String,
    /// Sent as a bearer token; empty or null means none.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Extra headers, by name (sent in name order).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
}

/// The JSON the receiver gets.
pub fn request_body(message: &Message) -> Value {
    json!({
        "message_id": message.id,
        "customer": {"id": message.customer.id, "attributes": message.customer.attributes},
        "template": message.template,
        "payload": message.payload,
    })
}

/// The request for `message`, or a permanent error naming the key when the configuration
/// cannot work.
pub fn build_request(message: &Message) -> Result<Request, DeliveryError> {
    let config: Config = message.config_as()?;
    Url::parse(&config.url).map_err(|e| DeliveryError::permanent(format!("config.url: {e}")))?;

    let mut request = Request::post(config.url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", message.id.as_str());

    let bearer = config.bearer_token.filter(|token| !token.is_empty());
    if let Some(token) = &bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    for (name, value) in config.headers.unwrap_or_default() {
        let lower = name.to_ascii_lowercase();
        if OWN_HEADERS.contains(&lower.as_str()) || (bearer.is_some() && lower == "authorization") {
            return Err(DeliveryError::permanent(format!(
                "config.headers may not set {name:?}: the adapter sets it"
            )));
        }
        request = request.header(name, value);
    }

    Ok(request.body(request_body(message).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_channel::http::Response;
    use waymark_channel::Customer;

    fn message(config: Value) -> Message {
        Message::new("acme/onboarding/1/c-1/7/0", "webhook", "welcome")
            .with_customer(Customer::new("c-1").with_attribute("email", json!("a@example.com")))
            .with_payload(json!({"plan": "pro"}))
            .with_config(config)
    }

    fn request(config: Value) -> Request {
        match build_request(&message(config)) {
            Ok(request) => request,
            Err(error) => panic!("expected a request, got {error}"),
        }
    }

    fn permanent(config: Value) -> String {
        match build_request(&message(config)) {
            Err(DeliveryError::Permanent(reason)) => reason,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn posts_the_documented_json_body() {
        let request = request(json!({"url": "https://hooks.example.com/in"}));
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url(), "https://hooks.example.com/in");
        let body: Value = waymark_channel::serde_json::from_slice(request.body_bytes()).unwrap();
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
        let request = request(json!({"url": "http://h/"}));
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
        let with = request(json!({"url": "http://h/", "bearer_token": "s3cret"}));
        assert_eq!(with.header_value("Authorization"), Some("Bearer s3cret"));
        for none in [json!(""), json!(null)] {
            let without = request(json!({"url": "http://h/", "bearer_token": none}));
            assert_eq!(without.header_value("Authorization"), None);
        }
    }

    #[test]
    fn extra_headers_are_added() {
        let request = request(json!({
            "url": "http://h/",
            "headers": {"X-Tenant": "acme", "Authorization": "Basic abc"},
        }));
        assert_eq!(request.header_value("x-tenant"), Some("acme"));
        assert_eq!(request.header_value("authorization"), Some("Basic abc"));
    }

    #[test]
    fn extra_headers_cannot_override_the_adapters_own() {
        let reason = permanent(json!({"url": "http://h/", "headers": {"idempotency-key": "x"}}));
        assert!(reason.contains("idempotency-key"), "{reason}");
        let reason = permanent(json!({
            "url": "http://h/", "bearer_token": "t", "headers": {"Authorization": "Basic x"},
        }));
        assert!(reason.contains("Authorization"), "{reason}");
    }

    #[test]
    fn a_missing_or_unusable_url_is_permanent_and_named() {
        assert_eq!(permanent(json!({})), "config.url is missing");
        assert!(permanent(json!({"url": 3})).starts_with("config.url: invalid type"));
        for bad in ["ftp://h/", "not a url", "http://u:p@h/"] {
            let reason = permanent(json!({ "url": bad }));
            assert!(
                reason.starts_with("config.url: invalid request"),
                "{bad}: {reason}"
            );
        }
    }

    #[test]
    fn badly_typed_headers_or_token_are_permanent_and_named() {
        assert!(
            permanent(json!({"url": "http://h/", "headers": ["x"]})).starts_with("config.headers:")
        );
        assert!(permanent(json!({"url": "http://h/", "headers": {"x": 1}}))
            .starts_with("config.headers.x:"));
        assert!(permanent(json!({"url": "http://h/", "bearer_token": 1}))
            .starts_with("config.bearer_token:"));
    }

    #[test]
    fn keys_the_adapter_does_not_know_are_ignored() {
        let request = request(json!({"url": "http://h/", "region": "eu"}));
        assert_eq!(request.url(), "http://h/");
    }

    /// Every key `channel.toml` declares, with a value `build_request` accepts, and whether the
    /// manifest says it is required.
    fn declared_keys() -> Vec<(String, bool)> {
        let manifest: toml::Table = toml::from_str(include_str!("../channel.toml")).unwrap();
        let mut keys = Vec::new();
        for kind in ["settings", "secrets"] {
            for (key, spec) in manifest[kind].as_table().unwrap() {
                let required = spec.get("required").and_then(toml::Value::as_bool);
                keys.push((key.clone(), required.unwrap_or(false)));
            }
        }
        keys
    }

    #[test]
    fn the_manifest_declares_the_keys_the_adapter_reads_and_which_it_requires() {
        let full = json!({"url": "http://h/", "headers": {"X-A": "1"}, "bearer_token": "t"});
        let mut declared: Vec<String> = declared_keys().into_iter().map(|(k, _)| k).collect();
        declared.sort();
        let mut read: Vec<String> = full.as_object().unwrap().keys().cloned().collect();
        read.sort();
        assert_eq!(declared, read, "channel.toml and Config disagree");

        let built = request(full.clone());
        assert_eq!(built.header_value("x-a"), Some("1"));
        assert_eq!(built.header_value("authorization"), Some("Bearer t"));
        for (key, required) in declared_keys() {
            let mut without = full.clone();
            without.as_object_mut().unwrap().remove(&key);
            match build_request(&message(without)) {
                Ok(_) => assert!(!required, "{key} is required in channel.toml only"),
                Err(error) => {
                    assert!(required, "{key} is required by Config only: {error}");
                    assert_eq!(error.reason(), format!("config.{key} is missing"));
                }
            }
        }
    }

    #[test]
    fn success_is_delivered_with_the_receivers_id() {
        let outcome = |status, body: &str| {
            Response::new(status, body.as_bytes().to_vec()).outcome_with_id(PROVIDER_ID)
        };
        assert_eq!(
            outcome(200, r#"{"id":"prov-1","ok":true}"#),
            Ok(Receipt::with_provider_id("prov-1"))
        );
        assert_eq!(
            outcome(202, r#"{"id":17}"#),
            Ok(Receipt::with_provider_id("17"))
        );
        assert_eq!(outcome(204, ""), Ok(Receipt::new()));
        assert_eq!(outcome(200, "accepted"), Ok(Receipt::new()));
    }

    #[test]
    fn delivering_natively_fails_permanently_instead_of_touching_the_network() {
        let outcome = Webhook::deliver(message(json!({"url": "http://127.0.0.1:9/"})));
        assert!(
            matches!(outcome, Err(DeliveryError::Permanent(r)) if r.contains("inside the Waymark host"))
        );
    }

    #[test]
    fn delivering_with_a_bad_config_fails_before_sending() {
        let outcome = Webhook::deliver(message(json!({"url": 3})));
        assert!(matches!(outcome, Err(DeliveryError::Permanent(r)) if r.starts_with("config.url")));
    }
}
