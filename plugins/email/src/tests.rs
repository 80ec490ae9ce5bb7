//! Native tests of the email adapter: each provider's request as its reference gives it, the
//! headers, and the classification of each provider's answers.

use super::*;
use waymark_channel::serde_json::{self, json};
use waymark_channel::Customer;

const ID: &str = "acme/post-purchase/1/ana/3/0";

fn message(config: Value, payload: Value) -> Message {
    Message::new(ID, "email", "thank_you")
        .with_customer(
            Customer::new("ana")
                .with_attribute("email", json!("ana@example.com"))
                .with_attribute("name", json!("Ana Lima")),
        )
        .with_payload(payload)
        .with_config(config)
}

fn rendered() -> Value {
    json!({
        "order_id": "o-1",
        "content": {"template": "thank_you", "version": 1, "locale": "en",
                    "subject": "Thanks, Ana", "html": "<p>Thanks</p>", "text": "Thanks"},
    })
}

fn postmark() -> Value {
    json!({
        "provider": "postmark",
        "from": {"email": "hello@acme.example", "name": "Acme"},
        "server_token": "pm-token",
    })
}

fn sendgrid() -> Value {
    json!({
        "provider": "sendgrid",
        "from": {"email": "hello@acme.example", "name": "Acme"},
        "api_key": "SG.key",
    })
}

fn with(mut config: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

fn request(config: Value, payload: Value) -> Request {
    match build_request(&message(config, payload)) {
        Ok((_, request)) => request,
        Err(error) => panic!("expected a request, got {error}"),
    }
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(request.body_bytes()).unwrap()
}

fn permanent(config: Value, payload: Value) -> String {
    match build_request(&message(config, payload)) {
        Err(DeliveryError::Permanent(reason)) => reason,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[test]
fn postmark_gets_its_documented_request() {
    let request = request(postmark(), rendered());
    assert_eq!(request.method(), "POST");
    assert_eq!(request.url(), "https://api.postmarkapp.com/email");
    assert_eq!(
        request.header_value("X-Postmark-Server-Token"),
        Some("pm-token")
    );
    assert_eq!(request.header_value("Accept"), Some("application/json"));
    assert_eq!(
        request.header_value("Content-Type"),
        Some("application/json")
    );
    assert_eq!(
        body(&request),
        json!({
            "From": "Acme <hello@acme.example>",
            "To": "Ana Lima <ana@example.com>",
            "Subject": "Thanks, Ana",
            "HtmlBody": "<p>Thanks</p>",
            "TextBody": "Thanks",
            "Metadata": {"waymark_message_id": ID},
        })
    );
}

#[test]
fn postmark_takes_reply_to_headers_stream_and_tracking() {
    let config = with(
        postmark(),
        json!({"reply_to": "support@acme.example", "message_stream": "broadcast",
               "track_opens": true, "headers": {"X-Campaign": "spring"},
               "base_url": "http://127.0.0.1:9/"}),
    );
    let mut payload = rendered();
    payload["content"]["unsubscribe_url"] = json!("https://acme.example/u/t1");
    let request = request(config, payload);
    assert_eq!(request.url(), "http://127.0.0.1:9/email");
    let body = body(&request);
    assert_eq!(body["ReplyTo"], "support@acme.example");
    assert_eq!(body["MessageStream"], "broadcast");
    assert_eq!(body["TrackOpens"], true);
    assert_eq!(
        body["Headers"],
        json!([
            {"Name": "X-Campaign", "Value": "spring"},
            {"Name": "List-Unsubscribe", "Value": "<https://acme.example/u/t1>"},
            {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
        ])
    );
}

#[test]
fn sendgrid_gets_its_documented_request_with_text_before_html() {
    let request = request(sendgrid(), rendered());
    assert_eq!(request.method(), "POST");
    assert_eq!(request.url(), "https://api.sendgrid.com/v3/mail/send");
    assert_eq!(request.header_value("Authorization"), Some("Bearer SG.key"));
    assert_eq!(
        request.header_value("Content-Type"),
        Some("application/json")
    );
    assert_eq!(
        body(&request),
        json!({
            "personalizations": [{
                "to": [{"email": "ana@example.com", "name": "Ana Lima"}],
                "custom_args": {"waymark_message_id": ID},
            }],
            "from": {"email": "hello@acme.example", "name": "Acme"},
            "subject": "Thanks, Ana",
            "content": [
                {"type": "text/plain", "value": "Thanks"},
                {"type": "text/html", "value": "<p>Thanks</p>"},
            ],
        })
    );
}

#[test]
fn sendgrid_takes_reply_to_and_headers_including_one_click_unsubscribe() {
    let config = with(
        sendgrid(),
        json!({"reply_to": {"email": "support@acme.example"}, "headers": {"X-Campaign": "spring"},
               "base_url": "https://api.eu.sendgrid.com"}),
    );
    let payload = json!({"subject": "Hi", "html": "<b>Hi</b>",
                         "unsubscribe_url": "https://acme.example/u/t2"});
    let request = request(config, payload);
    assert_eq!(request.url(), "https://api.eu.sendgrid.com/v3/mail/send");
    let body = body(&request);
    assert_eq!(body["reply_to"], json!({"email": "support@acme.example"}));
    assert_eq!(
        body["content"],
        json!([{"type": "text/html", "value": "<b>Hi</b>"}])
    );
    assert_eq!(
        body["headers"],
        json!({
            "X-Campaign": "spring",
            "List-Unsubscribe": "<https://acme.example/u/t2>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        })
    );
}

#[test]
fn each_provider_needs_its_own_secret() {
    assert_eq!(
        permanent(with(postmark(), json!({"server_token": ""})), rendered()),
        "config.server_token is missing: provider postmark needs it"
    );
    let mut config = sendgrid();
    config.as_object_mut().unwrap().remove("api_key");
    assert_eq!(
        permanent(config, rendered()),
        "config.api_key is missing: provider sendgrid needs it"
    );
}

#[test]
fn a_bad_configuration_is_permanent_and_named() {
    assert!(permanent(
        with(postmark(), json!({"provider": "mailchimp"})),
        rendered()
    )
    .starts_with("config.provider: unknown variant `mailchimp`"));
    assert!(
        permanent(with(postmark(), json!({"from": "nobody"})), rendered())
            .starts_with("config.from \"nobody\" is not a valid email address")
    );
    assert!(
        permanent(with(sendgrid(), json!({"reply_to": "x@"})), rendered())
            .starts_with("config.reply_to \"x@\" is not a valid email address")
    );
    assert!(
        permanent(with(sendgrid(), json!({"base_url": "ftp://x"})), rendered())
            .starts_with("config.base_url: invalid request")
    );
    let reason = permanent(
        with(sendgrid(), json!({"headers": {"Subject": "x"}})),
        rendered(),
    );
    assert!(reason.contains("may not set \"Subject\""), "{reason}");
    let reason = permanent(
        with(postmark(), json!({"headers": {"list-unsubscribe": "<x>"}})),
        rendered(),
    );
    assert!(reason.contains("list-unsubscribe"), "{reason}");
}

#[test]
fn a_message_without_subject_body_or_recipient_is_permanent() {
    assert_eq!(
        permanent(postmark(), json!({"text": "no subject"})),
        "the payload (no stored template was named) has no subject"
    );
    let nobody = Message::new(ID, "email", "thank_you")
        .with_payload(rendered())
        .with_config(sendgrid());
    assert!(
        matches!(build_request(&nobody), Err(DeliveryError::Permanent(r)) if r.contains("no email attribute"))
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
fn the_manifest_declares_the_keys_the_adapter_reads_and_which_it_requires() {
    let full = json!({
        "provider": "postmark", "from": "a@acme.example", "reply_to": "b@acme.example",
        "message_stream": "outbound", "track_opens": false, "base_url": "https://h.example",
        "headers": {"X-A": "1"}, "server_token": "t", "api_key": "k", "domain": "mg.acme.example",
        "webhook_username": "u", "webhook_password": "p", "webhook_public_key": "k",
    });
    let mut declared: Vec<String> = declared_keys().into_iter().map(|(k, _)| k).collect();
    declared.sort();
    let mut read: Vec<String> = full.as_object().unwrap().keys().cloned().collect();
    read.sort();
    assert_eq!(declared, read, "channel.toml and Config disagree");
    for (key, required) in declared_keys() {
        let mut without = full.clone();
        without.as_object_mut().unwrap().remove(&key);
        // Secrets are required per provider, not by the manifest; postmark reads server_token.
        match build_request(&message(without, rendered())) {
            Ok(_) => assert!(!required, "{key} is required in channel.toml only"),
            Err(error) if key == "server_token" => {
                assert!(!required);
                assert!(error.reason().starts_with("config.server_token is missing"));
            }
            Err(error) => {
                assert!(required, "{key} is required by Config only: {error}");
                assert_eq!(error.reason(), format!("config.{key} is missing"));
            }
        }
    }
}

fn answer(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
    let mut response = Response::new(status, body.as_bytes().to_vec());
    for (name, value) in headers {
        response.headers.push((name.to_string(), value.to_string()));
    }
    response
}

#[test]
fn postmark_answers_are_classified_as_postmark_documents_them() {
    let ok = answer(
        200,
        r#"{"To":"ana@example.com","SubmittedAt":"2026-11-30T08:00:00Z","MessageID":"b7bc2f4a-e38e-4336-af7d-e6c392c2f817","ErrorCode":0,"Message":"OK"}"#,
        &[],
    );
    assert_eq!(
        outcome(Provider::Postmark, &ok),
        Ok(Receipt::with_provider_id(
            "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"
        ))
    );
    let refused = answer(
        422,
        r#"{"ErrorCode":300,"Message":"Invalid 'From' address."}"#,
        &[],
    );
    assert_eq!(
        outcome(Provider::Postmark, &refused),
        Err(DeliveryError::permanent(
            "HTTP 422: Postmark error 300: Invalid 'From' address."
        ))
    );
    let unauthorized = answer(
        401,
        r#"{"ErrorCode":10,"Message":"No Account or Server API tokens were supplied in the HTTP headers."}"#,
        &[],
    );
    assert!(
        matches!(outcome(Provider::Postmark, &unauthorized), Err(DeliveryError::Permanent(r)) if r.starts_with("HTTP 401: Postmark error 10:"))
    );
    let throttled = answer(
        429,
        r#"{"ErrorCode":429,"Message":"Rate limit exceeded."}"#,
        &[("retry-after", "2")],
    );
    assert_eq!(
        outcome(Provider::Postmark, &throttled),
        Err(DeliveryError::retryable(
            "HTTP 429: Postmark error 429: Rate limit exceeded. (Retry-After: 2)"
        ))
    );
    assert!(matches!(
        outcome(Provider::Postmark, &answer(500, "<html>oops</html>", &[])),
        Err(DeliveryError::Retryable(r)) if r == "HTTP 500: <html>oops</html>"
    ));
}

#[test]
fn sendgrid_answers_are_classified_as_sendgrid_documents_them() {
    let accepted = answer(202, "", &[("x-message-id", "W1A2b3C4d5E6f7G8h9I0jA")]);
    assert_eq!(
        outcome(Provider::Sendgrid, &accepted),
        Ok(Receipt::with_provider_id("W1A2b3C4d5E6f7G8h9I0jA"))
    );
    let refused = answer(
        400,
        r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null},{"message":"Bad subject","field":null,"help":null}]}"#,
        &[],
    );
    assert_eq!(
        outcome(Provider::Sendgrid, &refused),
        Err(DeliveryError::permanent(
            "HTTP 400: SendGrid: The from address does not match a verified Sender Identity. (field from); Bad subject"
        ))
    );
    let throttled = answer(
        429,
        r#"{"errors":[{"message":"too many requests","field":null,"help":null}]}"#,
        &[],
    );
    assert!(
        matches!(outcome(Provider::Sendgrid, &throttled), Err(DeliveryError::Retryable(r)) if r.contains("too many requests"))
    );
    assert!(matches!(
        outcome(Provider::Sendgrid, &answer(503, "", &[])),
        Err(DeliveryError::Retryable(_))
    ));
}

#[test]
fn delivering_natively_fails_permanently_instead_of_touching_the_network() {
    let outcome = EmailChannel::deliver(message(postmark(), rendered()));
    assert!(
        matches!(outcome, Err(DeliveryError::Permanent(r)) if r.contains("inside the Waymark host"))
    );
}

fn mailgun() -> Value {
    json!({
        "provider": "mailgun",
        "from": {"email": "hello@acme.example", "name": "Acme"},
        "domain": "mg.acme.example",
        "api_key": "key-123",
    })
}

#[test]
fn mailgun_gets_its_documented_multipart_request() {
    let config = with(
        mailgun(),
        json!({"reply_to": "support@acme.example", "track_opens": false,
               "headers": {"X-Campaign": "spring"}}),
    );
    let mut payload = rendered();
    payload["content"]["unsubscribe_url"] = json!("https://acme.example/u/t3");
    let request = request(config, payload);
    assert_eq!(request.method(), "POST");
    assert_eq!(
        request.url(),
        "https://api.mailgun.net/v3/mg.acme.example/messages"
    );
    // base64("api:key-123")
    assert_eq!(
        request.header_value("Authorization"),
        Some("Basic YXBpOmtleS0xMjM=")
    );
    let boundary = "waymark-email-boundary-00000000";
    assert_eq!(
        request.header_value("Content-Type"),
        Some(format!("multipart/form-data; boundary={boundary}").as_str())
    );
    let part = |name: &str, value: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
    };
    let expected: String = [
        part("from", "Acme <hello@acme.example>"),
        part("to", "Ana Lima <ana@example.com>"),
        part("subject", "Thanks, Ana"),
        part("text", "Thanks"),
        part("html", "<p>Thanks</p>"),
        part("h:Reply-To", "support@acme.example"),
        part("h:X-Campaign", "spring"),
        part("h:List-Unsubscribe", "<https://acme.example/u/t3>"),
        part("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        part("o:tracking-opens", "no"),
        part("v:waymark_message_id", ID),
        format!("--{boundary}--\r\n"),
    ]
    .concat();
    assert_eq!(String::from_utf8_lossy(request.body_bytes()), expected);
}

#[test]
fn the_multipart_boundary_never_occurs_in_a_value() {
    let tricky = "a --waymark-email-boundary-00000000 b".to_string();
    let (content_type, body) = mailgun::multipart(&[("text".into(), tricky)]);
    assert_eq!(
        content_type,
        "multipart/form-data; boundary=waymark-email-boundary-00000001"
    );
    assert!(String::from_utf8(body)
        .unwrap()
        .starts_with("--waymark-email-boundary-00000001\r\n"));
}

#[test]
fn mailgun_needs_a_domain_and_a_key() {
    let mut config = mailgun();
    config.as_object_mut().unwrap().remove("domain");
    assert_eq!(
        permanent(config, rendered()),
        "config.domain is missing: provider mailgun needs it"
    );
    assert_eq!(
        permanent(with(mailgun(), json!({"domain": "mg/../x"})), rendered()),
        "config.domain \"mg/../x\" is not a domain name"
    );
    assert_eq!(
        permanent(with(mailgun(), json!({"api_key": null})), rendered()),
        "config.api_key is missing: provider mailgun needs it"
    );
}

#[test]
fn mailgun_answers_are_classified_as_mailgun_documents_them() {
    let queued = answer(
        200,
        r#"{"id":"<20261130080000.1.ABCD@mg.acme.example>","message":"Queued. Thank you."}"#,
        &[],
    );
    assert_eq!(
        outcome(Provider::Mailgun, &queued),
        Ok(Receipt::with_provider_id(
            "<20261130080000.1.ABCD@mg.acme.example>"
        ))
    );
    let refused = answer(
        400,
        r#"{"message":"to parameter is not a valid address. please check documentation"}"#,
        &[],
    );
    assert_eq!(
        outcome(Provider::Mailgun, &refused),
        Err(DeliveryError::permanent(
            "HTTP 400: Mailgun: to parameter is not a valid address. please check documentation"
        ))
    );
    assert_eq!(
        outcome(Provider::Mailgun, &answer(401, "Forbidden", &[])),
        Err(DeliveryError::permanent("HTTP 401: Forbidden"))
    );
    assert!(matches!(
        outcome(Provider::Mailgun, &answer(429, r#"{"message":"slow down"}"#, &[])),
        Err(DeliveryError::Retryable(r)) if r == "HTTP 429: Mailgun: slow down"
    ));
}
