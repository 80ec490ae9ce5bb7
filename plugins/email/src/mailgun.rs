//! Mailgun's "send an email" API, as its reference gives it:
//! <https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages> and
//! <https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses>.
//!
//! - `POST {base}/v3/{domain}/messages`, HTTP Basic auth with user `api` and the API key as
//!   password, a `multipart/form-data` body (the schema the reference gives);
//! - fields `from` and `to` (`addr` or `Name <addr>`), `subject`, `text` and/or `html`; a
//!   header as `h:<Name>` (so `h:Reply-To`, `h:List-Unsubscribe`); a custom variable as
//!   `v:<name>` (echoed in Mailgun's webhooks as `user-variables`); `o:tracking-opens`
//!   `yes`/`no`;
//! - a 200 answers `{"id": "<...@domain>", "message": "Queued. Thank you."}`; errors answer
//!   `{"message"}` with 400, 401 (or 403) for bad credentials, 429 (retry as the response
//!   says), 500.
//!
//! Mailgun has no idempotency key; the message id travels as `v:waymark_message_id`.

use base64::Engine as _;
use waymark_channel::http::{ProviderId, Request};
use waymark_channel::serde_json::Value;
use waymark_channel::DeliveryError;

use crate::email::Email;
use crate::{Config, MESSAGE_ID_FIELD};

/// Mailgun's public (US) API; EU domains set `base_url` to `https://api.eu.mailgun.net`.
pub const DEFAULT_BASE_URL: &str = "https://api.mailgun.net";

/// Where Mailgun puts its id for a queued message: the 200 body's `id`.
pub const PROVIDER_ID: ProviderId<'static> = ProviderId::JsonField("id");

/// The request sending `email` through Mailgun.
pub fn request(
    config: &Config,
    email: &Email,
    headers: &[(String, String)],
    message_id: &str,
) -> Result<Request, DeliveryError> {
    let key = config.secret(&config.api_key, "api_key")?;
    let domain = match config.domain.as_deref().map(str::trim) {
        Some(domain) if is_domain(domain) => domain,
        Some(domain) => {
            return Err(DeliveryError::permanent(format!(
                "config.domain {domain:?} is not a domain name"
            )))
        }
        None => {
            return Err(DeliveryError::permanent(
                "config.domain is missing: provider mailgun needs it",
            ))
        }
    };
    let mut fields: Vec<(String, String)> = vec![
        ("from".into(), config.from.to_header()),
        ("to".into(), email.to.to_header()),
        ("subject".into(), email.subject.clone()),
    ];
    if let Some(text) = &email.text {
        fields.push(("text".into(), text.clone()));
    }
    if let Some(html) = &email.html {
        fields.push(("html".into(), html.clone()));
    }
    if let Some(reply_to) = &config.reply_to {
        fields.push(("h:Reply-To".into(), reply_to.to_header()));
    }
    for (name, value) in headers {
        fields.push((format!("h:{name}"), value.clone()));
    }
    if let Some(track) = config.track_opens {
        fields.push((
            "o:tracking-opens".into(),
            if track { "yes" } else { "no" }.into(),
        ));
    }
    fields.push((format!("v:{MESSAGE_ID_FIELD}"), message_id.to_string()));

    let (content_type, body) = multipart(&fields);
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"));
    Ok(Request::post(format!(
        "{}/v3/{domain}/messages",
        config.base_url(DEFAULT_BASE_URL)?
    ))
    .header("Authorization", format!("Basic {credentials}"))
    .header("Content-Type", content_type)
    .body(body))
}

/// A DNS name: dot-separated labels of letters, digits and hyphens (it goes into the path).
fn is_domain(domain: &str) -> bool {
    domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `fields` as a `multipart/form-data` body (RFC 7578): the content type, with a boundary
/// that occurs in no value, and the body.
pub fn multipart(fields: &[(String, String)]) -> (String, Vec<u8>) {
    let mut n = 0u32;
    let boundary = loop {
        let candidate = format!("waymark-email-boundary-{n:08x}");
        if !fields.iter().any(|(_, value)| value.contains(&candidate)) {
            break candidate;
        }
        n += 1;
    };
    let mut body = String::new();
    for (name, value) in fields {
        // RFC 7578 § 4.2: the name in a quoted string; a quote or line break percent-encoded,
        // as browsers do.
        let name = name
            .replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

/// Mailgun's error text from an error body, `{"message": "..."}`, as `Mailgun: ...`.
pub fn error_text(body: &Value) -> Option<String> {
    let message = body.get("message")?.as_str()?;
    Some(format!("Mailgun: {message}"))
}
