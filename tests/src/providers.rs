//! Loopback stand-ins of the SMS and Slack providers (issue 11): each checks every request
//! exactly as the provider's API reference specifies it (method, path, auth, content type,
//! field names) and answers as the provider does, success or error, including its rate-limit
//! answer. A request the real provider would refuse is refused the provider's way *and*
//! recorded with the problems found, so a test shows what was wrong, not only that it failed.
//!
//! - [`Provider::Twilio`]: Programmable Messaging, Create a Message resource
//!   (<https://www.twilio.com/docs/messaging/api/message-resource>): `POST
//!   /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic `AccountSid:AuthToken`, a
//!   form body with `To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`; `201` with
//!   the Message (`sid`), errors `{"code","message","more_info","status"}`
//!   (<https://www.twilio.com/docs/usage/twilios-response>).
//! - [`Provider::Vonage`]: the SMS API (<https://developer.vonage.com/en/messaging/sms/technical-details>):
//!   `POST /sms/json`, a form body with `api_key`, `api_secret`, `from`, `to`, `text` and
//!   optional `type`, `callback`, `client-ref`; always HTTP 200 with `messages[].status`
//!   (`"0"` accepted, `"2"` missing parameters, `"4"` bad credentials, ...:
//!   <https://developer.vonage.com/messaging/sms/guides/troubleshooting-sms>).
//! - [`Provider::SlackWebhook`]: an incoming webhook (<https://api.slack.com/messaging/webhooks>):
//!   `POST /services/...` with JSON `{"text","blocks"}`; `200 ok`, or a status with a plain
//!   error string (`invalid_payload`, `no_service`, ...).
//! - [`Provider::SlackBot`]: `chat.postMessage` (<https://api.slack.com/methods/chat.postMessage>):
//!   `POST /api/chat.postMessage`, `Authorization: Bearer xoxb-...`, JSON `channel`, `text`,
//!   `blocks`; HTTP 200 with `{"ok": true, "ts"}` or `{"ok": false, "error"}`, and 429 with
//!   `Retry-After` and `ratelimited` when rate limited.

use crate::loopback::LoopbackServer;
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::wait::patience;

/// Which provider a [`StandIn`] plays, with the credentials it accepts.
#[derive(Debug, Clone)]
pub enum Provider {
    /// Twilio, accepting this Account SID and Auth Token.
    Twilio {
        account_sid: String,
        auth_token: String,
    },
    /// Vonage, accepting this API key and secret.
    Vonage { api_key: String, api_secret: String },
    /// A Slack incoming webhook at this path (`/services/T../B../..`).
    SlackWebhook { path: String },
    /// Slack's Web API, accepting this bot token, with these conversations the bot is in.
    SlackBot {
        token: String,
        channels: Vec<String>,
    },
}

/// One request a stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// `(lower-cased name, value)`, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The status answered.
    pub answered: u16,
    /// What the provider's reference forbids in this request (empty when it is well formed).
    pub problems: Vec<String>,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The form body's pairs, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The form body's field `name`, if present once or more (the first).
    pub fn field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An answer a test scripts: the provider's own shape, built by [`Answer::server_error`],
/// [`Answer::rate_limited`] or [`Answer::refusal`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "text/html".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// The provider failing on its side: a 500 in its error shape.
    pub fn server_error(provider: &Provider) -> Answer {
        match provider {
            Provider::Twilio { .. } => twilio_error(500, 20500, "Internal Server Error"),
            Provider::Vonage { .. } => Answer::text(500, "Internal Server Error"),
            Provider::SlackWebhook { .. } => Answer::text(500, "rollup_error"),
            Provider::SlackBot { .. } => {
                Answer::json(500, json!({"ok": false, "error": "internal_error"}))
            }
        }
    }

    /// The provider's rate-limit answer, with `Retry-After: seconds` where it sends one.
    pub fn rate_limited(provider: &Provider, seconds: u32) -> Answer {
        let mut answer = match provider {
            Provider::Twilio { .. } => twilio_error(429, 20429, "Too Many Requests"),
            // Vonage throttles inside a 200 (status 1).
            Provider::Vonage { .. } => {
                return vonage_status(
                    "1",
                    "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
                )
            }
            Provider::SlackWebhook { .. } => Answer::text(429, "rate_limited"),
            Provider::SlackBot { .. } => {
                Answer::json(429, json!({"ok": false, "error": "ratelimited"}))
            }
        };
        answer
            .headers
            .push(("retry-after".into(), seconds.to_string()));
        answer
    }

    /// A refusal the provider documents for a request it will never accept as sent: Twilio's
    /// 400 21610 (unsubscribed recipient), Vonage's status 7 (number barred), a webhook's 404
    /// `channel_not_found`, the Web API's `not_in_channel`.
    pub fn refusal(provider: &Provider) -> Answer {
        match provider {
            Provider::Twilio { .. } => {
                twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
            }
            Provider::Vonage { .. } => vonage_status("7", "Number barred."),
            Provider::SlackWebhook { .. } => Answer::text(404, "channel_not_found"),
            Provider::SlackBot { .. } => {
                Answer::json(200, json!({"ok": false, "error": "not_in_channel"}))
            }
        }
    }
}

/// Twilio's error body (<https://www.twilio.com/docs/usage/twilios-response>).
fn twilio_error(status: u16, code: u32, message: &str) -> Answer {
    Answer::json(
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

/// Vonage's answer for one refused message: HTTP 200, a non-zero `status`.
fn vonage_status(status: &str, text: &str) -> Answer {
    Answer::json(
        200,
        json!({"message-count": "1", "messages": [{"status": status, "error-text": text}]}),
    )
}

struct State {
    provider: Provider,
    calls: Mutex<Vec<Call>>,
    script: Mutex<VecDeque<Answer>>,
}

/// A provider stand-in on `127.0.0.1:PORT`, on its own thread and runtime like [`crate::Sink`].
pub struct StandIn {
    server: LoopbackServer,
    state: Arc<State>,
}

impl StandIn {
    pub fn start(provider: Provider) -> StandIn {
        let state = Arc::new(State {
            provider,
            calls: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let server = LoopbackServer::start("provider stand-in", app);
        StandIn { server, state }
    }

    /// `http://127.0.0.1:PORT` (the `base_url` a registration points at it).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `127.0.0.1:PORT`, for a channel's `allowed_hosts`.
    pub fn authority(&self) -> String {
        self.server.authority()
    }

    /// Answers the next request with `answer` (then as the provider normally does).
    pub fn answer_next(&self, answer: Answer) {
        self.state.script.lock().unwrap().push_back(answer);
    }

    /// The provider this stands in for.
    pub fn provider(&self) -> &Provider {
        &self.state.provider
    }

    /// Everything received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived; returns them.
    pub async fn wait_for_calls(&self, n: usize) -> Vec<Call> {
        let start = Instant::now();
        loop {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            if start.elapsed() > patience() {
                panic!("waited for {n} requests at the stand-in; it received {calls:#?}");
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
    let mut call = Call {
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
        answered: 0,
        problems: Vec::new(),
    };
    let n = state.calls.lock().unwrap().len() + 1;
    let (checked, problems) = check(&state.provider, &call, n);
    // A malformed request gets the provider's refusal even when the test scripted something
    // else: the real provider would never get as far as failing or throttling it.
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

/// What the provider answers `call` (the `n`th request) with when nothing is scripted, and the
/// problems it finds in it.
fn check(provider: &Provider, call: &Call, n: usize) -> (Answer, Vec<String>) {
    match provider {
        Provider::Twilio {
            account_sid,
            auth_token,
        } => check_twilio(call, account_sid, auth_token, n),
        Provider::Vonage {
            api_key,
            api_secret,
        } => check_vonage(call, api_key, api_secret, n),
        Provider::SlackWebhook { path } => check_slack_webhook(call, path),
        Provider::SlackBot { token, channels } => check_slack_bot(call, token, channels, n),
    }
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

fn content_type_is(call: &Call, expected: &str) -> bool {
    call.header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case(expected))
}

fn check_twilio(
    call: &Call,
    account_sid: &str,
    auth_token: &str,
    n: usize,
) -> (Answer, Vec<String>) {
    let expected_path = format!("/2010-04-01/Accounts/{account_sid}/Messages.json");
    if call.method != "POST" || call.path != expected_path {
        return (
            twilio_error(404, 20404, "The requested resource was not found"),
            vec![format!(
                "{} {}: Twilio serves POST {expected_path}",
                call.method, call.path
            )],
        );
    }
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{account_sid}:{auth_token}"));
    if call.header("authorization") != Some(format!("Basic {basic}").as_str()) {
        return (
            twilio_error(401, 20003, "Authenticate"),
            vec![format!(
                "Authorization {:?} is not Basic AccountSid:AuthToken",
                call.header("authorization")
            )],
        );
    }
    if !content_type_is(call, "application/x-www-form-urlencoded") {
        return (
            twilio_error(400, 21602, "Message body is required."),
            vec![format!(
                "Content-Type {:?} is not a form",
                call.header("content-type")
            )],
        );
    }
    const KNOWN: [&str; 5] = [
        "To",
        "From",
        "MessagingServiceSid",
        "Body",
        "StatusCallback",
    ];
    let form = call.form();
    let mut problems: Vec<String> = form
        .iter()
        .filter(|(name, _)| !KNOWN.contains(&name.as_str()))
        .map(|(name, _)| format!("unknown field {name:?}"))
        .collect();
    let to = call.field("To");
    let answer = match (
        &to,
        call.field("From"),
        call.field("MessagingServiceSid"),
        call.field("Body"),
    ) {
        (None, ..) => twilio_error(400, 21604, "A 'To' phone number is required."),
        (Some(to), ..) if !is_e164(to) => {
            twilio_error(400, 21211, &format!("Invalid 'To' Phone Number: {to}"))
        }
        (_, None, None, _) => twilio_error(400, 21603, "A 'From' phone number is required."),
        (_, Some(_), Some(_), _) => {
            problems.push("both From and MessagingServiceSid".into());
            twilio_error(
                400,
                21603,
                "Only one of 'From' or 'MessagingServiceSid' may be given.",
            )
        }
        (_, _, _, None) => twilio_error(400, 21602, "Message body is required."),
        (Some(to), from, service, Some(body)) => {
            return (
                Answer::json(
                    201,
                    json!({
                        "sid": format!("SM{n:032x}"),
                        "account_sid": account_sid,
                        "to": to,
                        "from": from,
                        "messaging_service_sid": service,
                        "body": body,
                        "status": "queued",
                        "num_segments": "1",
                        "direction": "outbound-api",
                        "api_version": "2010-04-01",
                        "error_code": null,
                        "error_message": null,
                        "uri": format!("/2010-04-01/Accounts/{account_sid}/Messages/SM{n:032x}.json"),
                    }),
                ),
                problems,
            )
        }
    };
    problems.push(String::from_utf8_lossy(&answer.body).into_owned());
    (answer, problems)
}

fn check_vonage(call: &Call, api_key: &str, api_secret: &str, n: usize) -> (Answer, Vec<String>) {
    if call.method != "POST" || call.path != "/sms/json" {
        return (
            Answer::text(404, "Not Found"),
            vec![format!(
                "{} {}: Vonage serves POST /sms/json",
                call.method, call.path
            )],
        );
    }
    if !content_type_is(call, "application/x-www-form-urlencoded") {
        return (
            vonage_status("2", "Missing api_key"),
            vec![format!(
                "Content-Type {:?} is not a form",
                call.header("content-type")
            )],
        );
    }
    const KNOWN: [&str; 8] = [
        "api_key",
        "api_secret",
        "from",
        "to",
        "text",
        "type",
        "callback",
        "client-ref",
    ];
    let mut problems: Vec<String> = call
        .form()
        .iter()
        .filter(|(name, _)| !KNOWN.contains(&name.as_str()))
        .map(|(name, _)| format!("unknown field {name:?}"))
        .collect();
    let field = |name: &str| call.field(name).filter(|v| !v.is_empty());
    let answer = if let Some(missing) = ["api_key", "api_secret", "from", "to", "text"]
        .into_iter()
        .find(|name| field(name).is_none())
    {
        vonage_status("2", &format!("Missing {missing}"))
    } else if field("api_key").as_deref() != Some(api_key)
        || field("api_secret").as_deref() != Some(api_secret)
    {
        vonage_status("4", "Bad Credentials")
    } else if !field("to").is_some_and(|to| is_e164(&format!("+{to}"))) {
        vonage_status("3", "Invalid to param")
    } else if field("type").is_some_and(|t| t != "text" && t != "unicode") {
        vonage_status("3", "Invalid type param")
    } else {
        return (
            Answer::json(
                200,
                json!({"message-count": "1", "messages": [{
                    "to": field("to"),
                    "message-id": format!("{n:016X}"),
                    "status": "0",
                    "remaining-balance": "15.53590000",
                    "message-price": "0.03330000",
                    "network": "23410",
                    "client-ref": field("client-ref"),
                }]}),
            ),
            problems,
        );
    };
    problems.push(String::from_utf8_lossy(&answer.body).into_owned());
    (answer, problems)
}

/// Whether `value` is a JSON array of objects that each have a string `type`: the least a
/// Block Kit `blocks` field must be.
fn are_blocks(value: &Value) -> bool {
    value.as_array().is_some_and(|blocks| {
        blocks
            .iter()
            .all(|b| b.get("type").and_then(Value::as_str).is_some())
    })
}

fn check_slack_webhook(call: &Call, path: &str) -> (Answer, Vec<String>) {
    if call.method != "POST" || call.path != path {
        return (
            Answer::text(404, "no_service"),
            vec![format!(
                "{} {}: the webhook is POST {path}",
                call.method, call.path
            )],
        );
    }
    let body = call.json();
    let well_formed = content_type_is(call, "application/json")
        && body
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
        && body.get("blocks").is_none_or(are_blocks)
        && body
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k == "text" || k == "blocks"));
    if !well_formed {
        return (
            Answer::text(400, "invalid_payload"),
            vec![format!(
                "not a JSON {{text, blocks}}: {:?} {body}",
                call.header("content-type")
            )],
        );
    }
    (Answer::text(200, "ok"), Vec::new())
}

fn check_slack_bot(
    call: &Call,
    token: &str,
    channels: &[String],
    n: usize,
) -> (Answer, Vec<String>) {
    let error = |error: &str, problem: String| {
        (
            Answer::json(200, json!({"ok": false, "error": error})),
            vec![problem],
        )
    };
    if call.method != "POST" || call.path != "/api/chat.postMessage" {
        return (
            Answer::json(404, json!({"ok": false, "error": "unknown_method"})),
            vec![format!(
                "{} {}: not POST /api/chat.postMessage",
                call.method, call.path
            )],
        );
    }
    match call.header("authorization") {
        None => return error("not_authed", "no Authorization".into()),
        Some(auth) if auth != format!("Bearer {token}") => {
            return error("invalid_auth", format!("Authorization {auth:?}"))
        }
        Some(_) => {}
    }
    if !content_type_is(call, "application/json") {
        return error(
            "invalid_arguments",
            format!("Content-Type {:?}", call.header("content-type")),
        );
    }
    let body = call.json();
    let channel = body.get("channel").and_then(Value::as_str).unwrap_or("");
    if channel.is_empty() {
        return error("channel_not_found", "no channel".into());
    }
    if !channels.iter().any(|c| c == channel) {
        return error(
            "channel_not_found",
            format!("channel {channel:?} is not one of {channels:?}"),
        );
    }
    let text = body.get("text").and_then(Value::as_str).unwrap_or("");
    if text.is_empty() && body.get("blocks").is_none() {
        return error("no_text", "neither text nor blocks".into());
    }
    if body.get("blocks").is_some_and(|b| !are_blocks(b)) {
        return error("invalid_blocks", format!("blocks {}", body["blocks"]));
    }
    let ts = format!("1700000000.{n:06}");
    let mut answer = json!({
        "ok": true,
        "channel": channel,
        "ts": ts,
        "message": {"type": "message", "subtype": "bot_message", "text": text, "ts": ts, "blocks": body.get("blocks")},
    });
    // Slack warns (but posts) when a JSON body comes without its charset.
    let charset = call.header("content-type").is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .replace(' ', "")
            .contains("charset=utf-8")
    });
    if !charset {
        answer["warning"] = json!("missing_charset");
        answer["response_metadata"] = json!({"warnings": ["missing_charset"]});
    }
    let problems = if charset {
        Vec::new()
    } else {
        vec!["missing_charset".to_string()]
    };
    (Answer::json(200, answer), problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::http_client;

    fn twilio() -> Provider {
        Provider::Twilio {
            account_sid: "AC1".into(),
            auth_token: "t".into(),
        }
    }

    #[tokio::test]
    async fn the_twilio_stand_in_refuses_what_twilio_refuses_and_follows_its_script() {
        let standin = StandIn::start(twilio());
        let http = http_client();
        let url = format!("{}/2010-04-01/Accounts/AC1/Messages.json", standin.url());
        let send = |auth: &'static str, form: &'static str| {
            http.post(&url)
                .header("authorization", auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
        };
        let good = "Basic QUMxOnQ="; // AC1:t
        let created = send(good, "To=%2B14155552671&From=%2B15005550006&Body=hi")
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
        let created: Value = created.json().await.unwrap();
        assert!(created["sid"].as_str().unwrap().starts_with("SM"));
        assert_eq!(
            send("Basic eDp5", "To=%2B1415&Body=x")
                .await
                .unwrap()
                .status()
                .as_u16(),
            401
        );
        let bad_to = send(good, "To=555&From=%2B15005550006&Body=x")
            .await
            .unwrap();
        assert_eq!(bad_to.status().as_u16(), 400);
        assert_eq!(bad_to.json::<Value>().await.unwrap()["code"], 21211);
        standin.answer_next(Answer::rate_limited(&twilio(), 2));
        let limited = send(good, "To=%2B14155552671&From=%2B15005550006&Body=hi")
            .await
            .unwrap();
        assert_eq!(limited.status().as_u16(), 429);
        assert_eq!(limited.headers()["retry-after"], "2");

        let calls = standin.calls();
        assert_eq!(
            calls.iter().map(|c| c.answered).collect::<Vec<_>>(),
            [201, 401, 400, 429]
        );
        assert!(calls[0].problems.is_empty() && calls[3].problems.is_empty());
        assert!(!calls[1].problems.is_empty() && !calls[2].problems.is_empty());
    }

    #[tokio::test]
    async fn the_slack_bot_stand_in_checks_token_channel_and_charset() {
        let standin = StandIn::start(Provider::SlackBot {
            token: "xoxb-1".into(),
            channels: vec!["C1".into()],
        });
        let http = http_client();
        let url = format!("{}/api/chat.postMessage", standin.url());
        let post = |auth: &'static str, content_type: &'static str, body: Value| {
            http.post(&url)
                .header("authorization", auth)
                .header("content-type", content_type)
                .body(body.to_string())
                .send()
        };
        let json_utf8 = "application/json; charset=utf-8";
        let ok: Value = post(
            "Bearer xoxb-1",
            json_utf8,
            json!({"channel": "C1", "text": "hi"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(
            (ok["ok"].clone(), ok["ts"].clone()),
            (json!(true), json!("1700000000.000001"))
        );
        let bad_auth: Value = post(
            "Bearer xoxb-2",
            json_utf8,
            json!({"channel": "C1", "text": "hi"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(bad_auth, json!({"ok": false, "error": "invalid_auth"}));
        let elsewhere: Value = post(
            "Bearer xoxb-1",
            json_utf8,
            json!({"channel": "C2", "text": "hi"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(elsewhere["error"], "channel_not_found");
        let no_charset: Value = post(
            "Bearer xoxb-1",
            "application/json",
            json!({"channel": "C1", "text": "hi"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(no_charset["warning"], "missing_charset");
        let problems: Vec<usize> = standin.calls().iter().map(|c| c.problems.len()).collect();
        assert_eq!(problems, [0, 1, 1, 1]);
    }
}
