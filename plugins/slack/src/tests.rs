//! Native tests of the adapter: the requests it builds in each mode, what it reads from the
//! message, and how it classifies Slack's answers.

use super::*;
use waymark_channel::serde_json::{self, json};

const HOOK: &str = "https://hooks.slack.com/services/T000/B000/XXXX";

fn webhook_config() -> Value {
    json!({"mode": "webhook", "webhook_url": HOOK})
}

fn bot_config() -> Value {
    json!({"mode": "bot", "bot_token": "xoxb-1-2-abc", "channel": "C0123ABCD"})
}

fn blocks() -> Value {
    json!([
        {"type": "header", "text": {"type": "plain_text", "text": "Handoff: Ana"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Plan:* pro"},
         "fields": [{"type": "mrkdwn", "text": "Stalled 3 days"}]},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "via Waymark"}]}
    ])
}

fn message(config: Value, payload: Value) -> Message {
    Message::new("acme/guided/1/ana/3/0", "slack", "handoff")
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

fn body(request: &Request) -> Value {
    serde_json::from_slice(request.body_bytes()).unwrap()
}

#[test]
fn webhook_mode_posts_text_and_blocks_as_json_to_the_webhook_url() {
    let request = request(
        webhook_config(),
        json!({"text": "Ana needs a call", "blocks": blocks()}),
    );
    assert_eq!(request.method(), "POST");
    assert_eq!(request.url(), HOOK);
    assert_eq!(
        request.header_value("content-type"),
        Some("application/json")
    );
    assert_eq!(request.header_value("authorization"), None);
    assert_eq!(
        body(&request),
        json!({"text": "Ana needs a call", "blocks": blocks()})
    );
}

#[test]
fn bot_mode_calls_chat_post_message_with_the_bearer_token() {
    let request = request(
        bot_config(),
        json!({"text": "Ana needs a call", "blocks": blocks()}),
    );
    assert_eq!(request.url(), "https://slack.com/api/chat.postMessage");
    assert_eq!(
        request.header_value("authorization"),
        Some("Bearer xoxb-1-2-abc")
    );
    assert_eq!(
        request.header_value("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        body(&request),
        json!({"channel": "C0123ABCD", "text": "Ana needs a call", "blocks": blocks()})
    );
}

#[test]
fn the_payloads_channel_overrides_the_configured_one() {
    let request = request(bot_config(), json!({"text": "x", "channel": "C999"}));
    assert_eq!(body(&request)["channel"], "C999");
    let mut config = bot_config();
    config.as_object_mut().unwrap().remove("channel");
    assert_eq!(
        permanent(config, json!({"text": "x"})),
        "config.channel is missing (mode bot needs it)"
    );
}

#[test]
fn rendered_template_blocks_come_first_and_give_the_fallback_text() {
    let payload = json!({"blocks": [{"type": "divider"}], "content": {"template": "handoff", "version": 1, "locale": "en", "blocks": blocks()}});
    let request = request(webhook_config(), payload);
    assert_eq!(
        body(&request),
        json!({"text": "Handoff: Ana\n*Plan:* pro\nStalled 3 days\nvia Waymark", "blocks": blocks()})
    );
}

#[test]
fn text_alone_is_posted_without_blocks() {
    assert_eq!(
        body(&request(webhook_config(), json!({"text": "hi"}))),
        json!({"text": "hi"})
    );
}

#[test]
fn a_message_without_any_text_is_permanent() {
    let reason = permanent(webhook_config(), json!({"blocks": [{"type": "divider"}]}));
    assert!(reason.starts_with("no text"), "{reason}");
    assert!(permanent(webhook_config(), json!({})).starts_with("no text"));
    assert!(permanent(
        webhook_config(),
        json!({"text": "x", "blocks": {"type": "divider"}})
    )
    .starts_with("blocks must be a JSON array"));
}

#[test]
fn each_mode_needs_its_secret_and_a_usable_url() {
    assert_eq!(
        permanent(json!({"mode": "webhook"}), json!({"text": "x"})),
        "config.webhook_url is missing (mode webhook needs it)"
    );
    assert_eq!(
        permanent(
            json!({"mode": "bot", "channel": "C1"}),
            json!({"text": "x"})
        ),
        "config.bot_token is missing (mode bot needs it)"
    );
    assert_eq!(
        permanent(
            json!({"mode": "webhook", "webhook_url": "hooks.slack.com/x"}),
            json!({"text": "x"})
        ),
        "config.webhook_url is not an http(s) URL"
    );
    assert!(permanent(json!({"mode": "email"}), json!({"text": "x"}))
        .starts_with("config.mode: unknown variant"));
    let mut config = bot_config();
    config["base_url"] = json!("http://127.0.0.1:9/api/");
    assert_eq!(
        request(config, json!({"text": "x"})).url(),
        "http://127.0.0.1:9/api/chat.postMessage"
    );
}

fn answer(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
    let mut response = Response::new(status, body.as_bytes().to_vec());
    for (name, value) in headers {
        response.headers.push((name.to_string(), value.to_string()));
    }
    response
}

#[test]
fn webhook_answers_are_classified_as_slack_documents_them() {
    assert_eq!(
        webhook::classify(&answer(200, "ok", &[])),
        Ok(Receipt::new())
    );
    for (status, error) in [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "channel_not_found"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ] {
        assert_eq!(
            webhook::classify(&answer(status, error, &[])),
            Err(DeliveryError::permanent(format!(
                "Slack webhook HTTP {status}: {error}"
            )))
        );
    }
    assert_eq!(
        webhook::classify(&answer(429, "rate_limited", &[("retry-after", "30")])),
        Err(DeliveryError::retryable(
            "Slack webhook HTTP 429: rate_limited (Retry-After: 30)"
        ))
    );
    assert!(webhook::classify(&answer(500, "rollup_error", &[])).is_err_and(|e| e.is_retryable()));
}

#[test]
fn bot_answers_are_classified_by_ok_and_error() {
    assert_eq!(
        bot::classify(&answer(
            200,
            r#"{"ok":true,"channel":"C0123ABCD","ts":"1503435956.000247"}"#,
            &[]
        )),
        Ok(Receipt::with_provider_id("1503435956.000247"))
    );
    for error in [
        "channel_not_found",
        "not_in_channel",
        "invalid_auth",
        "is_archived",
        "invalid_blocks",
    ] {
        assert_eq!(
            bot::classify(&answer(
                200,
                &format!(r#"{{"ok":false,"error":"{error}"}}"#),
                &[]
            )),
            Err(DeliveryError::permanent(format!(
                "Slack chat.postMessage: {error}"
            )))
        );
    }
    assert_eq!(
        bot::classify(&answer(
            429,
            r#"{"ok":false,"error":"ratelimited"}"#,
            &[("retry-after", "2")]
        )),
        Err(DeliveryError::retryable(
            r#"Slack HTTP 429: {"ok":false,"error":"ratelimited"} (Retry-After: 2)"#
        ))
    );
    assert!(bot::classify(&answer(
        200,
        r#"{"ok":false,"error":"internal_error"}"#,
        &[]
    ))
    .is_err_and(|e| e.is_retryable()));
    assert!(bot::classify(&answer(503, "", &[])).is_err_and(|e| e.is_retryable()));
    assert!(bot::classify(&answer(401, "", &[])).is_err_and(|e| !e.is_retryable()));
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
            "base_url",
            "bot_token",
            "channel",
            "mode",
            "signing_secret",
            "webhook_url"
        ]
    );
    assert_eq!(required, ["mode"]);
}

#[test]
fn delivering_natively_fails_permanently_instead_of_touching_the_network() {
    let outcome = Slack::deliver(message(webhook_config(), json!({"text": "x"})));
    assert!(
        matches!(outcome, Err(DeliveryError::Permanent(r)) if r.contains("inside the Waymark host"))
    );
}
