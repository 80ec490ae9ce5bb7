//! Loopback stand-ins for the email providers the `email` channel speaks (issue 11):
//! [`MailProvider::postmark`], [`MailProvider::sendgrid`] and [`MailProvider::mailgun`]. Each
//! checks every request exactly as the provider's API reference specifies it (method, path,
//! auth header, content type, required fields and their types, no fields the provider does not
//! know) and answers as the provider does: its success body or header, and its error shapes
//! with its statuses.
//! A test can script the next answers ([`Answer`]): the provider's refusal, a 429, a 500.
//!
//! References followed:
//! - Postmark: <https://postmarkapp.com/developer/user-guide/send-email-with-api>,
//!   <https://postmarkapp.com/developer/api/email-api>,
//!   <https://postmarkapp.com/developer/api/overview#response-codes> (401, 422 with
//!   `{"ErrorCode","Message"}`, 429, 500), error code 300 "Invalid email request" and 10 for a
//!   missing token; `Metadata` keys up to 20 characters, values up to 80.
//! - SendGrid v3 Mail Send: <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>,
//!   <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors> (400 with
//!   `{"errors":[{"message","field","help"}]}`), 202 with `X-Message-Id` on success;
//!   `content` with text/plain first; `custom_args` values strings.
//! - Mailgun: <https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages>
//!   (`POST /v3/{domain}/messages`, Basic `api:<key>`, a `multipart/form-data` body; `from`,
//!   `to`, `subject` required, one of `text`/`html`/`amp-html`/`template`; `h:`, `v:`, `o:`,
//!   `t:` options at most 16 KB in all), 200 `{"id","message":"Queued. Thank you."}`, errors
//!   `{"message"}` (<https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses>).

use crate::loopback::LoopbackServer;
use crate::sink::Received;
use crate::wait::patience;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sending domain [`MailProvider::start`] serves for Mailgun.
pub const MAILGUN_DOMAIN: &str = "mg.acme.example";

/// Which provider a stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Postmark's `POST /email`.
    Postmark,
    /// SendGrid's `POST /v3/mail/send`.
    SendGrid,
    /// Mailgun's `POST /v3/{domain}/messages`.
    Mailgun,
}

impl Provider {
    /// The registration's `provider` setting for it.
    pub fn setting(self) -> &'static str {
        match self {
            Provider::Postmark => "postmark",
            Provider::SendGrid => "sendgrid",
            Provider::Mailgun => "mailgun",
        }
    }

    /// The status with which the provider refuses an invalid email.
    fn refusal(self) -> StatusCode {
        match self {
            Provider::Postmark => StatusCode::UNPROCESSABLE_ENTITY,
            Provider::SendGrid | Provider::Mailgun => StatusCode::BAD_REQUEST,
        }
    }
}

/// A scripted answer, instead of the normal one, to a request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The provider refuses the email with this message: Postmark's 422
    /// `{"ErrorCode": 300, "Message"}`, SendGrid's 400 `{"errors": [{"message", ..}]}`,
    /// Mailgun's 400 `{"message"}`.
    Refuse(String),
    /// 429, in the provider's error shape.
    Throttle,
    /// 500, in the provider's error shape.
    ServerError,
}

struct State {
    provider: Provider,
    /// The server token (Postmark) or API key (SendGrid, Mailgun) it accepts.
    secret: String,
    /// The path it serves: `/email`, `/v3/mail/send`, `/v3/{domain}/messages`.
    path: String,
    received: Mutex<Vec<Received>>,
    /// What was wrong with each request that failed a check, in arrival order.
    violations: Mutex<Vec<String>>,
    script: Mutex<VecDeque<Answer>>,
    next_id: AtomicU64,
}

/// A loopback stand-in for one email provider, on its own thread and runtime.
pub struct MailProvider {
    server: LoopbackServer,
    state: Arc<State>,
}

impl MailProvider {
    /// Postmark, accepting the server token `token`.
    pub fn postmark(token: &str) -> MailProvider {
        MailProvider::start(Provider::Postmark, token)
    }

    /// SendGrid, accepting the API key `key`.
    pub fn sendgrid(key: &str) -> MailProvider {
        MailProvider::start(Provider::SendGrid, key)
    }

    /// Mailgun, for sending domain `domain`, accepting the API key `key`.
    pub fn mailgun(key: &str, domain: &str) -> MailProvider {
        MailProvider::start_at(Provider::Mailgun, key, &format!("/v3/{domain}/messages"))
    }

    /// `provider`, accepting `secret` (Mailgun's domain is [`MAILGUN_DOMAIN`]).
    pub fn start(provider: Provider, secret: &str) -> MailProvider {
        let path = match provider {
            Provider::Postmark => "/email".to_string(),
            Provider::SendGrid => "/v3/mail/send".to_string(),
            Provider::Mailgun => format!("/v3/{MAILGUN_DOMAIN}/messages"),
        };
        MailProvider::start_at(provider, secret, &path)
    }

    fn start_at(provider: Provider, secret: &str, path: &str) -> MailProvider {
        let state = Arc::new(State {
            provider,
            secret: secret.to_string(),
            path: path.to_string(),
            received: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let server = LoopbackServer::start(&format!("{} stand-in", provider.setting()), app);
        MailProvider { server, state }
    }

    /// `http://127.0.0.1:PORT`: the registration's `base_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `127.0.0.1:PORT`, for the registration's `allowed_hosts`.
    pub fn authority(&self) -> String {
        self.server.authority()
    }

    /// Answers the next request that passes every check with `answer`, instead of accepting it.
    pub fn answer_next(&self, answer: Answer) {
        self.state.script.lock().unwrap().push_back(answer);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// What was wrong with the requests that failed a check; empty when every request was as
    /// the provider's reference specifies.
    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }

    /// Waits until `holds` of the requests so far; returns them.
    pub async fn wait_for(&self, what: &str, holds: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let timeout = patience();
        let start = Instant::now();
        loop {
            let received = self.requests();
            if holds(&received) {
                return received;
            }
            assert!(
                start.elapsed() <= timeout,
                "waited {timeout:?} for {} to receive {what}; it received {received:#?}; violations {:?}",
                self.state.provider.setting(),
                self.violations()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lowered: BTreeMap<String, String> = headers
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_ascii_lowercase(), value)
        })
        .collect();
    let json_body: Option<Value> = match state.provider {
        Provider::Mailgun => form_fields(lowered.get("content-type"), body.clone()).await,
        _ => serde_json::from_slice(&body).ok(),
    };
    let (status, answer_headers, answer) =
        answer(&state, &method, &uri, &lowered, json_body.as_ref());
    state.received.lock().unwrap().push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: lowered,
        body: json_body.unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into())),
        answered: status.as_u16(),
        at: std::time::Instant::now(),
    });
    let mut response = match &answer {
        // Mailgun answers a bad key with a plain-text 401.
        Value::String(text) => (status, text.clone()).into_response(),
        _ => {
            let mut response = (status, answer.to_string()).into_response();
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            response
        }
    };
    for (name, value) in answer_headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    if answer.is_null() {
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

/// The provider's answer to one request: status, headers, JSON body (`null` for none).
fn answer(
    state: &State,
    method: &Method,
    uri: &Uri,
    headers: &BTreeMap<String, String>,
    body: Option<&Value>,
) -> (StatusCode, Vec<(&'static str, String)>, Value) {
    let provider = state.provider;
    let violation = |status: StatusCode, what: String| {
        state.violations.lock().unwrap().push(what.clone());
        (status, Vec::new(), error_body(provider, &what))
    };
    if method != Method::POST || uri.path() != state.path {
        return violation(
            StatusCode::NOT_FOUND,
            format!("{method} {uri} is not POST {}", state.path),
        );
    }
    let authorization = headers.get("authorization").map(String::as_str);
    let authorized = match provider {
        Provider::Postmark => headers.get("x-postmark-server-token") == Some(&state.secret),
        Provider::SendGrid => authorization == Some(&format!("Bearer {}", state.secret)),
        Provider::Mailgun => {
            use base64::Engine as _;
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("api:{}", state.secret));
            authorization == Some(&format!("Basic {credentials}"))
        }
    };
    if !authorized {
        let what = match provider {
            Provider::Postmark => {
                "No Account or Server API tokens were supplied in the HTTP headers."
            }
            Provider::SendGrid => {
                "The provided authorization grant is invalid, expired, or revoked"
            }
            Provider::Mailgun => {
                // Mailgun answers bad credentials with a plain-text 401.
                let what = "Forbidden: bad Basic credentials".to_string();
                state.violations.lock().unwrap().push(what);
                let forbidden = Value::String("Forbidden".into());
                return (StatusCode::UNAUTHORIZED, Vec::new(), forbidden);
            }
        };
        return violation(StatusCode::UNAUTHORIZED, what.to_string());
    }
    let json = |name: &str| {
        headers
            .get(name)
            .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json")
    };
    let multipart = headers
        .get("content-type")
        .is_some_and(|v| v.starts_with("multipart/form-data;") && v.contains("boundary="));
    match provider {
        Provider::Mailgun if !multipart => {
            return violation(
                StatusCode::BAD_REQUEST,
                "the body must be multipart/form-data".into(),
            );
        }
        Provider::Postmark | Provider::SendGrid if !json("content-type") => {
            return violation(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json".into(),
            );
        }
        _ => {}
    }
    if provider == Provider::Postmark && !json("accept") {
        return violation(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must be application/json".into(),
        );
    }
    let Some(body) = body else {
        return violation(StatusCode::BAD_REQUEST, "the body cannot be parsed".into());
    };
    let problems = match provider {
        Provider::Postmark => check_postmark(body),
        Provider::SendGrid => check_sendgrid(body),
        Provider::Mailgun => check_mailgun(body),
    };
    if !problems.is_empty() {
        return violation(
            provider.refusal(),
            format!("Invalid email request: {}", problems.join("; ")),
        );
    }
    match state.script.lock().unwrap().pop_front() {
        Some(Answer::Refuse(message)) => {
            return (
                provider.refusal(),
                Vec::new(),
                error_body(provider, &message),
            );
        }
        Some(Answer::Throttle) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                Vec::new(),
                error_body(provider, "Rate limit exceeded"),
            );
        }
        Some(Answer::ServerError) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Vec::new(),
                error_body(provider, "Internal server error"),
            );
        }
        None => {}
    }
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    match provider {
        Provider::Postmark => (
            StatusCode::OK,
            Vec::new(),
            json!({
                "To": body["To"],
                "SubmittedAt": "2026-11-30T08:00:00.0000000Z",
                "MessageID": postmark_message_id(n),
                "ErrorCode": 0,
                "Message": "OK",
            }),
        ),
        Provider::SendGrid => (
            StatusCode::ACCEPTED,
            vec![("x-message-id", sendgrid_message_id(n))],
            Value::Null,
        ),
        Provider::Mailgun => (
            StatusCode::OK,
            Vec::new(),
            json!({"id": mailgun_message_id(n), "message": "Queued. Thank you."}),
        ),
    }
}

/// Mailgun's id is a Message-ID in angle brackets at the sending domain.
pub fn mailgun_message_id(n: u64) -> String {
    format!("<20261130080000.{n}.STANDIN@{MAILGUN_DOMAIN}>")
}

/// A `multipart/form-data` body as a JSON object of its fields (a repeated field becomes an
/// array), parsed with `multer` as a real server would; `None` if it does not parse.
async fn form_fields(content_type: Option<&String>, body: axum::body::Bytes) -> Option<Value> {
    let boundary = multer::parse_boundary(content_type?).ok()?;
    let stream = axum::body::Body::from(body).into_data_stream();
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields = Map::new();
    while let Some(field) = multipart.next_field().await.ok()? {
        let name = field.name()?.to_string();
        let value = Value::String(field.text().await.ok()?);
        match fields.get_mut(&name) {
            None => {
                fields.insert(name, value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.clone(), value]),
        }
    }
    Some(Value::Object(fields))
}

/// Mailgun's `POST /v3/{domain}/messages` form, field by field.
fn check_mailgun(body: &Value) -> Vec<String> {
    const FIELDS: &[&str] = &[
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "text",
        "html",
        "amp-html",
        "template",
        "recipient-variables",
        "attachment",
        "inline",
    ];
    const OPTION_PREFIXES: &[&str] = &["h:", "v:", "o:", "t:"];
    let is_option = |k: &str| OPTION_PREFIXES.iter().any(|p| k.starts_with(p));
    let Some(object) = body.as_object() else {
        return vec!["the body is not a form".into()];
    };
    let mut problems: Vec<String> = object
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()) && !is_option(k))
        .map(|k| format!("{k} is not a parameter of the API"))
        .collect();
    for required in ["from", "to", "subject"] {
        if !is_text(object.get(required)) {
            problems.push(format!("'{required}' parameter is missing"));
        }
    }
    let parts = ["text", "html", "amp-html", "template"];
    if !parts.iter().any(|k| is_text(object.get(*k))) {
        problems.push(
            "Need at least one of 'text', 'html', 'amp-html' or 'template' parameters specified"
                .into(),
        );
    }
    let options: usize = object
        .iter()
        .filter(|(k, _)| is_option(k))
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if options > 16 * 1024 {
        problems.push("send options (o:, h:, v:, t:) are limited to 16KB total".into());
    }
    problems.extend(check_one_click(object.iter().filter_map(|(k, v)| {
        Some((k.strip_prefix("h:")?, v.as_str().unwrap_or_default()))
    })));
    if let Some(tracking) = object.get("o:tracking-opens") {
        let allowed = ["yes", "no", "true", "false", "htmlonly"];
        if !allowed.contains(&tracking.as_str().unwrap_or("")) {
            problems.push("o:tracking-opens must be yes, no, true, false or htmlonly".into());
        }
    }
    problems
}

// One-click unsubscribe (issue 11, in-app inbox and unsubscribe slice)
/// RFC 8058 § 3.1, on the custom headers a request asks the provider to add (whatever the
/// provider's field): `List-Unsubscribe-Post` "MUST contain the single key/value pair
/// `List-Unsubscribe=One-Click`", and then `List-Unsubscribe` "MUST contain one HTTPS URI"
/// (in angle brackets, RFC 2369 § 2); one without the other is no one-click unsubscribe.
fn check_one_click<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut unsubscribe = None;
    let mut post = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("List-Unsubscribe") {
            unsubscribe = Some(value);
        } else if name.eq_ignore_ascii_case("List-Unsubscribe-Post") {
            post = Some(value);
        }
    }
    let mut problems = Vec::new();
    match (unsubscribe, post) {
        (None, None) => {}
        (Some(url), Some(post)) => {
            if post != "List-Unsubscribe=One-Click" {
                problems.push(format!(
                    "List-Unsubscribe-Post must be List-Unsubscribe=One-Click, not {post:?}"
                ));
            }
            let uri = url.strip_prefix('<').and_then(|u| u.strip_suffix('>'));
            if !uri.is_some_and(|u| u.starts_with("https://") && !u.contains(['<', '>', ','])) {
                problems.push(format!(
                    "List-Unsubscribe must be one HTTPS URI in angle brackets, not {url:?}"
                ));
            }
        }
        (Some(_), None) => {
            problems.push("List-Unsubscribe without List-Unsubscribe-Post: no one-click".into())
        }
        (None, Some(_)) => problems.push("List-Unsubscribe-Post without List-Unsubscribe".into()),
    }
    problems
}

/// Postmark's MessageID is a UUID.
pub fn postmark_message_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// SendGrid's X-Message-Id is a 22-character token.
pub fn sendgrid_message_id(n: u64) -> String {
    format!("sgstandin{n:013}")
}

fn error_body(provider: Provider, message: &str) -> Value {
    match provider {
        // Postmark's ErrorCode: 300 "Invalid email request", 10 "Bad or missing API token";
        // the stand-in uses 300 for every refusal but authentication.
        Provider::Postmark => {
            let code = if message.starts_with("No Account") {
                10
            } else {
                300
            };
            json!({"ErrorCode": code, "Message": message})
        }
        Provider::SendGrid => {
            json!({"errors": [{"message": message, "field": null, "help": null}]})
        }
        Provider::Mailgun => json!({"message": message}),
    }
}

/// `value` is a non-empty string.
fn is_text(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty())
}

/// Unknown keys of `object`, as `where.key`.
fn unknown(object: &Map<String, Value>, known: &[&str], at: &str) -> Vec<String> {
    object
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("{at}{k} is not a field of the API"))
        .collect()
}

/// Postmark's `POST /email` body, field by field.
fn check_postmark(body: &Value) -> Vec<String> {
    const FIELDS: &[&str] = &[
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Tag",
        "HtmlBody",
        "TextBody",
        "ReplyTo",
        "Headers",
        "TrackOpens",
        "TrackLinks",
        "Metadata",
        "Attachments",
        "MessageStream",
    ];
    let Some(object) = body.as_object() else {
        return vec!["the body is not a JSON object".into()];
    };
    let mut problems = unknown(object, FIELDS, "");
    for required in ["From", "To", "Subject"] {
        if !is_text(object.get(required)) {
            problems.push(format!("{required} must be a non-empty string"));
        }
    }
    if !is_text(object.get("HtmlBody")) && !is_text(object.get("TextBody")) {
        problems.push("Provide either email TextBody or HtmlBody or both.".into());
    }
    for optional in ["HtmlBody", "TextBody", "ReplyTo", "MessageStream", "Tag"] {
        if object.get(optional).is_some_and(|v| !v.is_string()) {
            problems.push(format!("{optional} must be a string"));
        }
    }
    if object.get("TrackOpens").is_some_and(|v| !v.is_boolean()) {
        problems.push("TrackOpens must be a boolean".into());
    }
    if let Some(headers) = object.get("Headers") {
        let ok = headers.as_array().is_some_and(|list| {
            list.iter().all(|h| {
                h.as_object().is_some_and(|h| {
                    h.len() == 2
                        && is_text(h.get("Name"))
                        && h.get("Value").is_some_and(Value::is_string)
                })
            })
        });
        if !ok {
            problems.push("Headers must be an array of {\"Name\", \"Value\"} strings".into());
        }
        let pairs = headers
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| Some((h.get("Name")?.as_str()?, h.get("Value")?.as_str()?)));
        problems.extend(check_one_click(pairs));
    }
    if let Some(metadata) = object.get("Metadata") {
        let ok = metadata.as_object().is_some_and(|m| {
            m.iter().all(|(k, v)| {
                k.chars().count() <= 20 && v.as_str().is_some_and(|v| v.chars().count() <= 80)
            })
        });
        if !ok {
            problems.push(
                "Metadata must map keys of up to 20 characters to strings of up to 80".into(),
            );
        }
    }
    problems
}

/// A SendGrid `{"email", "name"?}`.
fn check_mailbox(value: Option<&Value>, at: &str, problems: &mut Vec<String>) {
    match value.and_then(Value::as_object) {
        Some(mailbox) => {
            problems.extend(unknown(mailbox, &["email", "name"], &format!("{at}.")));
            if !is_text(mailbox.get("email")) {
                problems.push(format!("{at}.email must be a non-empty string"));
            }
            if mailbox.get("name").is_some_and(|n| !n.is_string()) {
                problems.push(format!("{at}.name must be a string"));
            }
        }
        None => problems.push(format!("{at} must be an object with an email")),
    }
}

/// An object whose values are all strings (SendGrid's `headers`, `custom_args`).
fn check_strings(value: &Value, at: &str, problems: &mut Vec<String>) {
    if !value
        .as_object()
        .is_some_and(|m| m.values().all(Value::is_string))
    {
        problems.push(format!("{at} must be an object of strings"));
    }
}

/// SendGrid's `POST /v3/mail/send` body, field by field.
fn check_sendgrid(body: &Value) -> Vec<String> {
    const FIELDS: &[&str] = &[
        "personalizations",
        "from",
        "reply_to",
        "reply_to_list",
        "subject",
        "content",
        "attachments",
        "template_id",
        "headers",
        "categories",
        "custom_args",
        "send_at",
        "batch_id",
        "asm",
        "ip_pool_name",
        "mail_settings",
        "tracking_settings",
    ];
    const PERSONALIZATION: &[&str] = &[
        "to",
        "cc",
        "bcc",
        "from",
        "subject",
        "headers",
        "substitutions",
        "dynamic_template_data",
        "custom_args",
        "send_at",
    ];
    let Some(object) = body.as_object() else {
        return vec!["the body is not a JSON object".into()];
    };
    let mut problems = unknown(object, FIELDS, "");
    match object.get("personalizations").and_then(Value::as_array) {
        Some(list) if !list.is_empty() && list.len() <= 1000 => {
            for (i, p) in list.iter().enumerate() {
                let at = format!("personalizations.{i}");
                let Some(p) = p.as_object() else {
                    problems.push(format!("{at} must be an object"));
                    continue;
                };
                problems.extend(unknown(p, PERSONALIZATION, &format!("{at}.")));
                match p.get("to").and_then(Value::as_array) {
                    Some(to) if !to.is_empty() => {
                        for (j, mailbox) in to.iter().enumerate() {
                            check_mailbox(Some(mailbox), &format!("{at}.to.{j}"), &mut problems);
                        }
                    }
                    _ => problems.push(format!("{at}.to must list at least one recipient")),
                }
                if let Some(args) = p.get("custom_args") {
                    check_strings(args, &format!("{at}.custom_args"), &mut problems);
                }
            }
        }
        _ => problems.push("You must have at least one personalization.".into()),
    }
    check_mailbox(object.get("from"), "from", &mut problems);
    if let Some(reply_to) = object.get("reply_to") {
        check_mailbox(Some(reply_to), "reply_to", &mut problems);
    }
    if !is_text(object.get("subject")) {
        problems.push("subject must be a non-empty string".into());
    }
    match object.get("content").and_then(Value::as_array) {
        Some(content) if !content.is_empty() => {
            for (i, part) in content.iter().enumerate() {
                let ok = part.as_object().is_some_and(|p| {
                    p.len() == 2 && is_text(p.get("type")) && is_text(p.get("value"))
                });
                if !ok {
                    problems.push(format!(
                        "content.{i} must be {{\"type\", \"value\"}} non-empty strings"
                    ));
                }
            }
            let plain = content.iter().position(|p| p["type"] == "text/plain");
            if plain.is_some_and(|i| i != 0) {
                problems.push(
                    "If present, text/plain content must be first, followed by any other content."
                        .into(),
                );
            }
        }
        _ => problems.push("content must hold at least one part".into()),
    }
    if let Some(headers) = object.get("headers") {
        check_strings(headers, "headers", &mut problems);
        let pairs = headers
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)));
        problems.extend(check_one_click(pairs));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmark_checks_catch_what_postmark_refuses() {
        let good = json!({"From": "a@x.io", "To": "b@x.io", "Subject": "S", "TextBody": "T",
                          "Metadata": {"waymark_message_id": "m"}, "Headers": [{"Name": "X", "Value": "1"}]});
        assert!(
            check_postmark(&good).is_empty(),
            "{:?}",
            check_postmark(&good)
        );
        let bad = json!({"from": "a@x.io", "To": "b@x.io", "Subject": 3, "Headers": {"X": "1"},
                         "Metadata": {"a_key_longer_than_twenty": "v"}});
        let problems = check_postmark(&bad);
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn sendgrid_checks_catch_what_sendgrid_refuses() {
        let good = json!({"personalizations": [{"to": [{"email": "b@x.io"}], "custom_args": {"k": "v"}}],
                          "from": {"email": "a@x.io"}, "subject": "S",
                          "content": [{"type": "text/plain", "value": "T"}, {"type": "text/html", "value": "<b>T</b>"}]});
        assert!(
            check_sendgrid(&good).is_empty(),
            "{:?}",
            check_sendgrid(&good)
        );
        let bad = json!({"personalizations": [{"to": [], "custom_args": {"k": 1}}], "from": "a@x.io",
                         "content": [{"type": "text/html", "value": "H"}, {"type": "text/plain", "value": "T"}]});
        let problems = check_sendgrid(&bad);
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn every_provider_holds_one_click_unsubscribe_headers_to_rfc_8058() {
        let url = "<https://waymark.test/u/tok>";
        let one_click = "List-Unsubscribe=One-Click";
        let postmark = |post: &str| {
            json!({"From": "a@x.io", "To": "b@x.io", "Subject": "S", "TextBody": "T",
                   "Headers": [{"Name": "List-Unsubscribe", "Value": url},
                               {"Name": "List-Unsubscribe-Post", "Value": post}]})
        };
        assert!(check_postmark(&postmark(one_click)).is_empty());
        assert_eq!(check_postmark(&postmark("yes")).len(), 1);
        let sendgrid = |headers: Value| {
            json!({"personalizations": [{"to": [{"email": "b@x.io"}]}], "from": {"email": "a@x.io"},
                   "subject": "S", "content": [{"type": "text/plain", "value": "T"}],
                   "headers": headers})
        };
        let both = json!({"List-Unsubscribe": url, "List-Unsubscribe-Post": one_click});
        assert!(check_sendgrid(&sendgrid(both)).is_empty());
        let lone = json!({"List-Unsubscribe": url});
        assert_eq!(check_sendgrid(&sendgrid(lone)).len(), 1);
        let mailgun = |url: &str| {
            json!({"from": "a@x.io", "to": "b@x.io", "subject": "S", "text": "T",
                   "h:List-Unsubscribe": url, "h:List-Unsubscribe-Post": one_click})
        };
        assert!(check_mailgun(&mailgun(url)).is_empty());
        assert_eq!(
            check_mailgun(&mailgun("<http://waymark.test/u/tok>")).len(),
            1,
            "HTTPS only"
        );
    }

    #[test]
    fn mailgun_checks_catch_what_mailgun_refuses() {
        let good = json!({"from": "a@x.io", "to": "b@x.io", "subject": "S", "text": "T",
                          "h:Reply-To": "c@x.io", "v:waymark_message_id": "m", "o:tracking-opens": "no"});
        assert!(
            check_mailgun(&good).is_empty(),
            "{:?}",
            check_mailgun(&good)
        );
        let bad = json!({"From": "a@x.io", "to": "b@x.io", "subject": "",
                         "o:tracking-opens": "maybe", "v:big": "x".repeat(17 * 1024)});
        let problems = check_mailgun(&bad);
        assert_eq!(problems.len(), 6, "{problems:?}");
    }
}
