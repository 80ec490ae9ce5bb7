//! One-click unsubscribe (issue 11): `/u/{token}`, the link every message carries when the
//! host has a public URL (`inapp::unsubscribe_url`; the token is `signed`'s, with no expiry so
//! an old email's link still works).
//!
//! - `GET` shows a small HTML page with two forms (leave what the message was sent under, or
//!   everything) and changes nothing: mail software and link scanners fetch URLs on their own,
//!   which is why RFC 8058 unsubscribes on `POST` only.
//! - `POST` unsubscribes. RFC 8058 § 3.2: the mail receiver POSTs the `List-Unsubscribe-Post`
//!   header's key/value pair, `List-Unsubscribe=One-Click`, as the body, "SHOULD" as
//!   `multipart/form-data` and "MAY" as `application/x-www-form-urlencoded`, with no cookies or
//!   authorization: the signed URL alone is the credential. That body leaves the message's
//!   scope (its topic, else its channel); the page's second form (`scope=all`) leaves
//!   everything. The unsubscribe is ingested as an `unsubscribed` event
//!   (`engine::profile::update_profile` records it on the customer, the sending enrollment
//!   counts it), with the id `unsubscribe:{message}:{scope}` so a repeated POST counts once.
//!
//! A link that does not verify is a 404 (JSON, as every error); no route here takes a key.

use super::prelude::*;
use crate::model::{Event, Object};
use crate::signed::{self, Scope, UnsubscribeClaims, UNSUBSCRIBE_PURPOSE};
use axum::http::{header, HeaderMap};
use axum::response::{Html, Response};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/u/{token}", get(show_page).post(unsubscribe))
}

fn invalid_link() -> ApiError {
    ApiError::not_found("this unsubscribe link is not valid")
}

/// The claims of a token that verifies under its tenant's unsubscribe secret.
async fn verified(state: &AppState, token: &str) -> ApiResult<UnsubscribeClaims> {
    let claims = signed::read_unsubscribe_token(token).map_err(|_| invalid_link())?;
    let secret = state
        .host
        .store
        .signing_secret(&claims.tenant, UNSUBSCRIBE_PURPOSE)?
        .ok_or_else(invalid_link)?;
    signed::verify_unsubscribe_token(token, secret.verifying()).map_err(|_| invalid_link())
}

/// `&`, `<`, `>`, `"`, `'` as HTML entities: names in the page are the tenant's text.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn scope_words(scope: &Scope) -> String {
    match scope {
        Scope::Channel(c) => format!("messages through {}", escape(c)),
        Scope::Topic(t) => format!("“{}” messages", escape(t)),
    }
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\
         <body style=\"font-family: sans-serif; max-width: 32rem; margin: 3rem auto\">\
         <h1>{title}</h1>{body}</body></html>"
    );
    let mut response = Html(html).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

async fn show_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    let claims = verified(&state, &token).await?;
    let what = scope_words(&claims.scope);
    // The forms post back to this same URL (a relative empty action).
    let body = format!(
        "<p>Stop receiving {what}?</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe from {what}</button></form>\
         <form method=\"post\" style=\"margin-top: 1rem\"><input type=\"hidden\" name=\"scope\" value=\"all\">\
         <button type=\"submit\">Unsubscribe from everything</button></form>"
    );
    Ok(page("Unsubscribe", &body))
}

/// What a POST asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// RFC 8058's `List-Unsubscribe=One-Click`: the link's scope.
    OneClick,
    /// The page's `scope=all`.
    Everything,
}

/// The form fields of a POST body, `application/x-www-form-urlencoded` or
/// `multipart/form-data` (RFC 7578: parts separated by `--boundary`, each with a
/// `Content-Disposition: form-data; name="..."` header and its value after a blank line).
fn form_fields(headers: &HeaderMap, body: &[u8]) -> ApiResult<Vec<(String, String)>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "multipart/form-data" {
        return Ok(form_urlencoded::parse(body).into_owned().collect());
    }
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("invalid_body", "multipart/form-data without a boundary")
        })?;
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let Some((head, value)) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))
        else {
            continue;
        };
        let name = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .and_then(|l| l.split(';').find_map(|p| p.trim().strip_prefix("name=")))
            .map(|n| n.trim_matches('"').to_string());
        if let Some(name) = name {
            let value = value
                .strip_suffix("\r\n")
                .or_else(|| value.strip_suffix('\n'));
            fields.push((name, value.unwrap_or_default().to_string()));
        }
    }
    Ok(fields)
}

fn asked(fields: &[(String, String)]) -> ApiResult<Asked> {
    let has = |k: &str, v: &str| fields.iter().any(|(fk, fv)| fk == k && fv == v);
    if has("scope", "all") {
        Ok(Asked::Everything)
    } else if has("List-Unsubscribe", "One-Click") {
        Ok(Asked::OneClick)
    } else {
        Err(ApiError::bad_request(
            "invalid_body",
            "an unsubscribe POST carries List-Unsubscribe=One-Click (RFC 8058) or scope=all",
        ))
    }
}

async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let claims = verified(&state, &token).await?;
    let asked = asked(&form_fields(&headers, &body?)?)?;
    let mut properties = Object::new();
    properties.insert("message_id".into(), claims.message.clone().into());
    properties.insert("source".into(), "unsubscribe_link".into());
    let scope = match (asked, &claims.scope) {
        (Asked::Everything, _) => "all".to_string(),
        (Asked::OneClick, Scope::Channel(c)) => {
            properties.insert("channel".into(), c.clone().into());
            format!("channel:{c}")
        }
        (Asked::OneClick, Scope::Topic(t)) => {
            properties.insert("topic".into(), t.clone().into());
            format!("topic:{t}")
        }
    };
    let now = state.host.clock.now();
    let event = Event {
        id: format!("unsubscribe:{}:{scope}", claims.message),
        customer: claims.customer.clone(),
        name: crate::engine::UNSUBSCRIBED.to_string(),
        properties,
        timestamp: now,
    };
    super::events::ingest(
        &state,
        &claims.tenant,
        vec![event],
        now,
        super::events::Merged::Here,
    )
    .await?;
    let what = match asked {
        Asked::Everything => "anything from us".to_string(),
        Asked::OneClick => scope_words(&claims.scope),
    };
    Ok(page(
        "Unsubscribed",
        &format!("<p>You will no longer receive {what}.</p>"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_8058_bodies_are_read_in_both_encodings() {
        let mut headers = HeaderMap::new();
        let fields = form_fields(&headers, b"List-Unsubscribe=One-Click").unwrap();
        assert_eq!(asked(&fields).unwrap(), Asked::OneClick);
        headers.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
        let fields = form_fields(&headers, body).unwrap();
        assert_eq!(asked(&fields).unwrap(), Asked::OneClick);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let fields = form_fields(&headers, b"scope=all").unwrap();
        assert_eq!(asked(&fields).unwrap(), Asked::Everything);
        let fields = form_fields(&headers, b"List-Unsubscribe=Yes").unwrap();
        assert!(asked(&fields).is_err());
    }

    #[test]
    fn names_on_the_page_are_escaped() {
        assert_eq!(
            scope_words(&Scope::Topic("<b>&\"".into())),
            "“&lt;b&gt;&amp;&quot;” messages"
        );
    }
}
