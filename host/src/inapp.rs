//! The channel the host keeps itself, and the links it puts in messages (issue 11).
//!
//! - An `inapp` registration (`store::ChannelAdapter::Inapp`) has no component: delivering a
//!   message on it writes the message into the customer's inbox (`store/inbox.rs`) with its
//!   in-app parts — `title`, `body`, `url` — from the rendered template (`content`) or, for a
//!   send that names no stored template, from the journey's payload itself. The write is the
//!   delivery: the attempt is recorded delivered and the journey hears of it as for any
//!   channel. The API reads inboxes and turns marks into engagement events (`api/inbox.rs`).
//! - Every message gets a signed one-click unsubscribe URL when the host knows its public URL
//!   (`--public-url`): `message.unsubscribe_url` in templates, and `unsubscribe_url` in the
//!   adapter's payload (the `email` plugin turns it into `List-Unsubscribe` headers). Its scope
//!   is the send's subscription topic if it names one, else its channel (`signed::Scope`).

use crate::engine::delivery::AttemptResult;
use crate::engine::profile::send_topic;
use crate::host::Host;
use crate::model::Customer;
use crate::signed::{self, Scope, UnsubscribeClaims};
use crate::store::inbox::InboxEntry;
use crate::store::signing_secrets::SigningSecret;
use crate::store::{Message, StoreError};
use serde_json::Value;

/// The key of an adapter's payload that carries the message's unsubscribe URL.
pub const UNSUBSCRIBE_URL_KEY: &str = "unsubscribe_url";

/// Why a tenant's signing secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no randomness for a new secret: {0}")]
    Random(String),
}

/// The tenant's secret for `purpose` (`signed::INBOX_PURPOSE`, `signed::UNSUBSCRIBE_PURPOSE`),
/// made on first use.
pub async fn tenant_secret(
    host: &Host,
    tenant: &str,
    purpose: &str,
) -> Result<SigningSecret, SecretError> {
    if let Some(secret) = host.store.signing_secret(tenant, purpose)? {
        return Ok(secret);
    }
    let fresh = fresh_secret()?;
    Ok(host
        .store
        .signing_secret_or_insert(tenant, purpose, fresh)
        .await?)
}

/// A new secret, not stored yet.
pub fn fresh_secret() -> Result<SigningSecret, SecretError> {
    Ok(SigningSecret {
        current: signed::new_secret().map_err(|e| SecretError::Random(e.to_string()))?,
        previous: None,
        created_at: crate::clock::system_now(),
    })
}

/// The scope an unsubscribe link of `message` leaves: its topic, else its channel.
pub fn unsubscribe_scope(message: &Message) -> Scope {
    match send_topic(&message.payload) {
        Some(topic) => Scope::Topic(topic.to_string()),
        None => Scope::Channel(message.channel.clone()),
    }
}

/// The message's one-click unsubscribe URL, if the host has a public URL.
pub async fn unsubscribe_url(
    host: &Host,
    message: &Message,
) -> Result<Option<String>, SecretError> {
    let Some(base) = &host.config.public_url else {
        return Ok(None);
    };
    let secret = tenant_secret(host, &message.tenant, signed::UNSUBSCRIBE_PURPOSE).await?;
    let token = signed::mint_unsubscribe_token(
        &secret.current,
        &UnsubscribeClaims {
            tenant: message.tenant.clone(),
            customer: message.customer.clone(),
            scope: unsubscribe_scope(message),
            message: message.id.clone(),
        },
    );
    Ok(Some(format!("{base}/u/{token}")))
}

/// The adapter's payload with `unsubscribe_url` set, when there is one and the payload is an
/// object (or nothing) that does not set it itself. Only an `https://` URL is set: RFC 8058
/// § 3.1 wants one HTTPS URI for one-click unsubscribe, and the `email` plugin refuses any
/// other (a host behind plain `http` still gives templates `message.unsubscribe_url`).
pub fn with_unsubscribe_url(payload: Value, url: Option<&str>) -> Value {
    let Some(url) = url.filter(|u| u.starts_with("https://")) else {
        return payload;
    };
    match payload {
        Value::Object(mut fields) => {
            fields
                .entry(UNSUBSCRIBE_URL_KEY)
                .or_insert_with(|| url.into());
            Value::Object(fields)
        }
        Value::Null => serde_json::json!({ UNSUBSCRIBE_URL_KEY: url }),
        other => other,
    }
}

/// The inbox entry for `message`, from the payload the adapter would receive: the rendered
/// `content` of a templated message, else the payload's own `title`, `body` and `url`. A
/// message with neither a title nor a body cannot be shown: that is its send's fault, a
/// permanent failure.
pub fn inbox_entry(message: &Message, payload: &Value) -> Result<InboxEntry, String> {
    let source = match message.template_version {
        Some(_) => payload
            .get(crate::template::CONTENT_KEY)
            .unwrap_or(&Value::Null),
        None => payload,
    };
    let text = |name: &str| source.get(name).and_then(Value::as_str).map(String::from);
    let (title, body, url) = (text("title"), text("body"), text("url"));
    if title.is_none() && body.is_none() {
        return Err(format!(
            "an in-app message needs a \"title\" or a \"body\" (a string) in its {}",
            if message.template_version.is_some() {
                "rendered template"
            } else {
                "payload"
            }
        ));
    }
    Ok(InboxEntry {
        message_id: message.id.clone(),
        customer: message.customer.clone(),
        channel: message.channel.clone(),
        journey: message.journey.clone(),
        template: message.template.clone(),
        title,
        body,
        url,
        data: message.payload.clone(),
        created_at: message.created_at,
        seen_at: None,
        read_at: None,
        clicked_at: None,
        archived_at: None,
    })
}

/// Delivers `message` on an `inapp` channel: renders it as any message is rendered and writes
/// it into the customer's inbox. A store failure is retried; a message that cannot be shown
/// fails permanently.
pub fn deliver(
    host: &Host,
    message: &Message,
    customer: &Customer,
    unsubscribe_url: Option<&str>,
) -> AttemptResult {
    let payload = match crate::delivery::adapter_payload(host, message, customer, unsubscribe_url) {
        Ok(payload) => payload,
        Err(failed) => return failed,
    };
    let entry = match inbox_entry(message, &payload) {
        Ok(entry) => entry,
        Err(error) => {
            return AttemptResult::Failed {
                retryable: false,
                error,
                retry_after: None,
            }
        }
    };
    match host.store.put_inbox_entry(&message.tenant, &entry) {
        Ok(()) => AttemptResult::Delivered {
            provider_id: Some(message.id.clone()),
        },
        Err(e) => AttemptResult::Failed {
            retryable: true,
            error: e.to_string(),
            retry_after: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(payload: Value, template_version: Option<u32>) -> Message {
        Message {
            payload,
            template_version,
            ..crate::store::fixtures::message(
                "m1",
                "inapp",
                crate::store::MessageStatus::Pending,
                0,
            )
        }
    }

    #[test]
    fn an_untemplated_message_shows_its_payloads_title_body_and_url() {
        let m = message(
            json!({"title": "Hi", "body": "There", "url": "/x", "n": 1}),
            None,
        );
        let entry = inbox_entry(&m, &m.payload).unwrap();
        assert_eq!(
            (
                entry.title.as_deref(),
                entry.body.as_deref(),
                entry.url.as_deref()
            ),
            (Some("Hi"), Some("There"), Some("/x"))
        );
        assert_eq!(entry.data["n"], 1);
        let empty = message(json!({"n": 1}), None);
        assert!(inbox_entry(&empty, &empty.payload)
            .unwrap_err()
            .contains("needs a \"title\" or a \"body\""));
    }

    #[test]
    fn a_templated_message_shows_its_rendered_content() {
        let m = message(json!({"title": "ignored"}), Some(2));
        let payload = json!({"title": "ignored", "content": {"title": "T", "body": "B"}});
        let entry = inbox_entry(&m, &payload).unwrap();
        assert_eq!((entry.title.as_deref(), entry.url), (Some("T"), None));
    }

    #[test]
    fn the_unsubscribe_url_joins_an_object_payload_unless_it_has_one() {
        let url = Some("https://w.example/u/x");
        assert_eq!(
            with_unsubscribe_url(json!({"a": 1}), url),
            json!({"a": 1, "unsubscribe_url": "https://w.example/u/x"})
        );
        assert_eq!(
            with_unsubscribe_url(json!({"unsubscribe_url": "mine"}), url),
            json!({"unsubscribe_url": "mine"})
        );
        assert_eq!(with_unsubscribe_url(json!([1]), url), json!([1]));
        assert_eq!(with_unsubscribe_url(json!({"a": 1}), None), json!({"a": 1}));
        assert_eq!(
            with_unsubscribe_url(json!({"a": 1}), Some("http://127.0.0.1/u/x")),
            json!({"a": 1}),
            "RFC 8058 wants HTTPS"
        );
    }

    #[test]
    fn a_send_under_a_topic_unsubscribes_from_the_topic() {
        let m = message(json!({"topic": "billing"}), None);
        assert_eq!(unsubscribe_scope(&m), Scope::Topic("billing".into()));
        let m = message(json!({}), None);
        assert_eq!(unsubscribe_scope(&m), Scope::Channel("inapp".into()));
    }
}
