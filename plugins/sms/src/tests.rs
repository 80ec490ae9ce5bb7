//! Native tests of the adapter: the requests it builds for each provider, what it reads from
//! the message, and how it classifies each provider's answers.

use super::*;
use waymark_channel::serde_json::{self, json};
use waymark_channel::Customer;

fn twilio_config() -> Value {
    json!({
        "provider": "twilio",
        "account_sid": "AC0123456789abcdef0123456789abcdef",
        "auth_token": "tok3n",
        "from": "+15005550006",
        "status_callback": "https://acme.example/hooks/sms",
    })
}

fn vonage_config() -> Value {
    json!({"provider": "vonage", "api_key": "k3y", "api_secret": "s3cret", "from": "Acme"})
}

fn message(config: Value, payload: Value) -> Message {
    Message::new("acme/onboarding/1/ana/7/0", "sms", "welcome")
        .with_customer(Customer::new("ana").with_attribute("phone", json!("+447700900123")))
        .with_payload(payload)
        .with_config(config)
}

fn request(config: Value, payload: Value) -> Request {
    match build_request(&message(config, payload)) {
        Ok(request) => request,
        Err(error) => panic!("expected a request, got {error}"),
    }
}

fn permanent(config: Value, payload: Value) -> String {
    match build_request(&message(config, payload)) {
        Err(DeliveryError::Permanent(reason)) => reason,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

/// The form body's pairs, in order.
fn pairs(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(request.body_bytes())
        .into_owned()
        .collect()
}

#[test]
fn twilio_gets_a_form_encoded_create_message_with_basic_auth() {
    let request = request(twilio_config(), json!({"text": "Hi Ana & co"}));
    assert_eq!(request.method(), "POST");
    assert_eq!(
        request.url(),
        "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    );
    assert_eq!(
        request.header_value("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // base64("AC0123456789abcdef0123456789abcdef:tok3n")
    assert_eq!(
        request.header_value("authorization"),
        Some("Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjp0b2szbg==")
    );
    assert_eq!(
        pairs(&request),
        [
            ("To".into(), "+447700900123".into()),
            ("From".into(), "+15005550006".into()),
            ("Body".into(), "Hi Ana & co".into()),
            (
                "StatusCallback".into(),
                "https://acme.example/hooks/sms".into()
            ),
        ]
    );
    // `+` and `&` are escaped, not read as a space or a separator.
    let body = String::from_utf8(request.body_bytes().to_vec()).unwrap();
    assert!(
        body.starts_with("To=%2B447700900123&From=%2B15005550006&Body=Hi+Ana+%26+co"),
        "{body}"
    );
}

#[test]
fn twilio_sends_from_a_messaging_service_when_one_is_set() {
    let mut config = twilio_config();
    config["messaging_service_sid"] = json!("MG0123");
    config["status_callback"] = json!(null);
    let request = request(config, json!({"text": "x"}));
    assert_eq!(
        pairs(&request),
        [
            ("To".into(), "+447700900123".into()),
            ("MessagingServiceSid".into(), "MG0123".into()),
            ("Body".into(), "x".into()),
        ]
    );
}

#[test]
fn twilio_needs_its_account_token_and_a_sender() {
    for (key, expected) in [
        (
            "account_sid",
            "config.account_sid is missing (provider twilio needs it)",
        ),
        (
            "auth_token",
            "config.auth_token is missing (provider twilio needs it)",
        ),
        (
            "from",
            "config.from is missing (provider twilio needs it, or config.messaging_service_sid)",
        ),
    ] {
        let mut config = twilio_config();
        config.as_object_mut().unwrap().remove(key);
        assert_eq!(permanent(config, json!({"text": "x"})), expected);
    }
    let mut config = twilio_config();
    config["account_sid"] = json!("AC1/../x");
    assert!(permanent(config, json!({"text": "x"})).starts_with("config.account_sid:"));
}

#[test]
fn vonage_gets_a_form_encoded_send_with_key_and_secret_in_the_body() {
    let request = request(vonage_config(), json!({"text": "Your code is 1234"}));
    assert_eq!(request.method(), "POST");
    assert_eq!(request.url(), "https://rest.nexmo.com/sms/json");
    assert_eq!(
        request.header_value("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.header_value("authorization"), None);
    assert_eq!(
        pairs(&request),
        [
            ("api_key".into(), "k3y".into()),
            ("api_secret".into(), "s3cret".into()),
            ("from".into(), "Acme".into()),
            ("to".into(), "447700900123".into()),
            ("text".into(), "Your code is 1234".into()),
            ("client-ref".into(), "acme/onboarding/1/ana/7/0".into()),
        ]
    );
}

#[test]
fn vonage_is_told_when_the_text_needs_unicode() {
    let mut config = vonage_config();
    config["status_callback"] = json!("https://acme.example/dlr");
    let request = request(config, json!({"text": "Olá, 👋"}));
    let pairs = pairs(&request);
    assert!(
        pairs.contains(&("type".into(), "unicode".into())),
        "{pairs:?}"
    );
    assert!(pairs.contains(&("callback".into(), "https://acme.example/dlr".into())));
}

#[test]
fn vonage_needs_key_secret_and_sender() {
    for key in ["api_key", "api_secret", "from"] {
        let mut config = vonage_config();
        config[key] = json!("");
        assert_eq!(
            permanent(config, json!({"text": "x"})),
            format!("config.{key} is missing (provider vonage needs it)")
        );
    }
}

#[test]
fn base_url_points_either_provider_elsewhere() {
    let mut config = twilio_config();
    config["base_url"] = json!("http://127.0.0.1:4010/");
    assert!(request(config, json!({"text": "x"}))
        .url()
        .starts_with("http://127.0.0.1:4010/2010-04-01/Accounts/"));
    let mut config = vonage_config();
    config["base_url"] = json!("http://127.0.0.1:4011");
    assert_eq!(
        request(config, json!({"text": "x"})).url(),
        "http://127.0.0.1:4011/sms/json"
    );
    let mut config = vonage_config();
    config["base_url"] = json!("ftp://x/");
    assert!(permanent(config, json!({"text": "x"})).starts_with("config.base_url:"));
}

#[test]
fn an_unknown_or_missing_provider_is_permanent_and_named() {
    assert_eq!(
        permanent(json!({}), json!({"text": "x"})),
        "config.provider is missing"
    );
    let reason = permanent(json!({"provider": "carrier-pigeon"}), json!({"text": "x"}));
    assert!(
        reason.starts_with("config.provider: unknown variant"),
        "{reason}"
    );
}

#[test]
fn the_rendered_template_text_comes_before_the_payload_text() {
    let payload = json!({"text": "raw", "content": {"template": "welcome", "version": 2, "text": "rendered"}});
    assert_eq!(
        pairs(&request(twilio_config(), payload))[2],
        ("Body".into(), "rendered".into())
    );
    assert_eq!(
        permanent(twilio_config(), json!({"plan": "pro"})),
        "no text: the send names no sms template with a `text` part and its payload has no `text`"
    );
    assert_eq!(
        permanent(twilio_config(), json!({"text": ""})),
        "the text is empty"
    );
    assert!(permanent(twilio_config(), json!({"text": 3})).starts_with("the text must be a string"));
}

#[test]
fn the_payloads_to_overrides_the_customers_phone() {
    let request = request(twilio_config(), json!({"text": "x", "to": "+14155552671"}));
    assert_eq!(pairs(&request)[0], ("To".into(), "+14155552671".into()));
}

#[test]
fn a_number_that_is_not_e164_is_a_permanent_failure() {
    assert_eq!(
        permanent(twilio_config(), json!({"text": "x", "to": "07700 900123"})),
        "recipient: \"07700 900123\" is not an E.164 phone number (`+`, then 2 to 15 digits, the first not 0)"
    );
    let nobody = Message::new("m", "sms", "t")
        .with_payload(json!({"text": "x"}))
        .with_config(twilio_config());
    assert_eq!(
        build_request(&nobody),
        Err(DeliveryError::permanent(
            "no recipient: the payload has no `to` and the customer no `phone` attribute"
        ))
    );
    assert!(permanent(twilio_config(), json!({"text": "x", "to": 44}))
        .starts_with("payload.to must be a string"));
}

fn answer(status: u16, body: Value, headers: &[(&str, &str)]) -> Response {
    let mut response = Response::new(status, serde_json::to_vec(&body).unwrap());
    for (name, value) in headers {
        response.headers.push((name.to_string(), value.to_string()));
    }
    response
}

#[test]
fn twilio_answers_are_classified_as_twilio_documents_them() {
    let created = answer(
        201,
        json!({"sid": "SM0123", "status": "queued", "num_segments": "1"}),
        &[],
    );
    assert_eq!(
        twilio::classify(&created),
        Ok(Receipt::with_provider_id("SM0123"))
    );

    let invalid = json!({
        "code": 21211,
        "message": "The 'To' number 5551234567 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    });
    assert_eq!(
        twilio::classify(&answer(400, invalid, &[])),
        Err(DeliveryError::permanent(
            "Twilio HTTP 400: error 21211: The 'To' number 5551234567 is not a valid phone number. (https://www.twilio.com/docs/errors/21211)"
        ))
    );
    let throttled = json!({"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429});
    assert_eq!(
        twilio::classify(&answer(429, throttled, &[("retry-after", "2")])),
        Err(DeliveryError::retryable(
            "Twilio HTTP 429: error 20429: Too Many Requests (https://www.twilio.com/docs/errors/20429) (Retry-After: 2)"
        ))
    );
    assert!(twilio::classify(&Response::new(503, b"upstream".to_vec()))
        .is_err_and(|e| e.is_retryable()));
    assert!(twilio::classify(&Response::new(401, b"nope".to_vec()))
        .is_err_and(|e| !e.is_retryable() && e.reason() == "Twilio HTTP 401: nope"));
}

#[test]
fn vonage_answers_are_classified_by_each_parts_status() {
    let accepted = json!({"message-count": "1", "messages": [{"to": "447700900123", "message-id": "0C000000217B7F02", "status": "0"}]});
    assert_eq!(
        vonage::classify(&answer(200, accepted, &[])),
        Ok(Receipt::with_provider_id("0C000000217B7F02"))
    );
    let throttled = json!({"message-count": "1", "messages": [{"status": "1", "error-text": "Throughput Rate Exceeded - please wait [ 10 ] and retry"}]});
    assert_eq!(
        vonage::classify(&answer(200, throttled, &[])),
        Err(DeliveryError::retryable(
            "Vonage status 1: Throughput Rate Exceeded - please wait [ 10 ] and retry"
        ))
    );
    let bad_credentials = json!({"message-count": "1", "messages": [{"status": "4", "error-text": "Bad Credentials"}]});
    assert_eq!(
        vonage::classify(&answer(200, bad_credentials, &[])),
        Err(DeliveryError::permanent("Vonage status 4: Bad Credentials"))
    );
    let second_part_failed = json!({"message-count": "2", "messages": [
        {"status": "0", "message-id": "A"}, {"status": "5", "error-text": "Internal Error"}]});
    assert!(
        vonage::classify(&answer(200, second_part_failed, &[])).is_err_and(|e| e.is_retryable())
    );
    assert!(vonage::classify(&Response::new(429, Vec::new())).is_err_and(|e| e.is_retryable()));
    assert!(vonage::classify(&Response::new(500, Vec::new())).is_err_and(|e| e.is_retryable()));
    assert!(
        vonage::classify(&Response::new(401, b"Unauthorized".to_vec()))
            .is_err_and(|e| !e.is_retryable())
    );
}

/// Every key `channel.toml` declares, and whether it says the key is required.
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
fn the_manifest_declares_exactly_the_keys_the_adapter_reads() {
    let mut declared: Vec<String> = declared_keys().into_iter().map(|(k, _)| k).collect();
    declared.sort();
    let mut read: Vec<String> = twilio_config()
        .as_object()
        .unwrap()
        .keys()
        .chain(vonage_config().as_object().unwrap().keys())
        .cloned()
        .chain(["messaging_service_sid".to_string(), "base_url".to_string()])
        .collect();
    read.sort();
    read.dedup();
    assert_eq!(declared, read, "channel.toml and Config disagree");
    let required: Vec<String> = declared_keys()
        .into_iter()
        .filter(|(_, required)| *required)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(required, ["provider"]);
}

#[test]
fn delivering_natively_fails_permanently_instead_of_touching_the_network() {
    let outcome = Sms::deliver(message(twilio_config(), json!({"text": "x"})));
    assert!(
        matches!(outcome, Err(DeliveryError::Permanent(r)) if r.contains("inside the Waymark host"))
    );
}
