//! The email a message asks for, whatever the provider: recipient, subject, HTML and text
//! parts, and the one-click unsubscribe URL.
//!
//! Where the parts come from (see `docs/API.md` § Templates): when the journey's send names a
//! stored template, the host renders it and hands the parts over under the payload's
//! `content` (`{"template","version","locale","subject","html","text"}`), and they are used as
//! they are; otherwise the journey wrote them itself, as the payload's `subject`, `html` and
//! `text`. A message with no subject, or with neither body, fails permanently: retrying would
//! send the same nothing.

use waymark_channel::serde_json::Value;
use waymark_channel::{DeliveryError, Message};

use crate::address::Address;

/// An email to send, provider-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The recipient: the customer's `email` attribute (with their `name` attribute, when
    /// they have one), else the payload's `to`.
    pub to: Address,
    /// The subject line.
    pub subject: String,
    /// The HTML part, if any.
    pub html: Option<String>,
    /// The plain-text part, if any.
    pub text: Option<String>,
    /// The one-click unsubscribe URL (RFC 8058), from the content or the payload.
    pub unsubscribe_url: Option<String>,
}

impl Email {
    /// The email `message` asks for, or a permanent error saying what is missing or wrong.
    pub fn from_message(message: &Message) -> Result<Email, DeliveryError> {
        let payload = &message.payload;
        // A rendered template's parts, when the send named one; else the journey's own.
        let source = match payload.get("content") {
            Some(content @ Value::Object(_)) => Source::Template(content),
            _ => Source::Payload(payload),
        };
        let subject = source
            .part("subject")?
            .ok_or_else(|| DeliveryError::permanent(format!("{} has no subject", source.name())))?;
        let html = source.part("html")?;
        let text = source.part("text")?;
        if html.is_none() && text.is_none() {
            return Err(DeliveryError::permanent(format!(
                "{} has no body: neither html nor text",
                source.name()
            )));
        }
        let unsubscribe_url = match source.part("unsubscribe_url")? {
            Some(url) => Some(url),
            None => text_field(payload, "payload", "unsubscribe_url")?,
        };
        if let Some(url) = &unsubscribe_url {
            check_unsubscribe_url(url)?;
        }
        Ok(Email {
            to: recipient(message)?,
            subject,
            html,
            text,
            unsubscribe_url,
        })
    }
}

/// Where the parts come from.
enum Source<'a> {
    Template(&'a Value),
    Payload(&'a Value),
}

impl Source<'_> {
    fn name(&self) -> &'static str {
        match self {
            Source::Template(_) => "the rendered template (payload.content)",
            Source::Payload(_) => "the payload (no stored template was named)",
        }
    }

    fn part(&self, key: &str) -> Result<Option<String>, DeliveryError> {
        match self {
            Source::Template(content) => text_field(content, "payload.content", key),
            Source::Payload(payload) => text_field(payload, "payload", key),
        }
    }
}

/// `object[key]` as text: absent, null or blank is `None`; anything but a string is a
/// permanent error naming `at.key`.
fn text_field(object: &Value, at: &str, key: &str) -> Result<Option<String>, DeliveryError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(DeliveryError::permanent(format!(
            "{at}.{key} must be a string, not {other}"
        ))),
    }
}

/// The customer's `email` attribute, else the payload's `to`; checked.
fn recipient(message: &Message) -> Result<Address, DeliveryError> {
    let attributes = &message.customer.attributes;
    let (email, what) = match attributes.get("email") {
        Some(Value::String(email)) if !email.trim().is_empty() => (email, "customer.email"),
        _ => match message.payload.get("to") {
            Some(Value::String(to)) => (to, "payload.to"),
            _ => {
                return Err(DeliveryError::permanent(format!(
                    "customer {:?} has no email attribute and the payload no `to`",
                    message.customer.id
                )))
            }
        },
    };
    let name = attributes
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let to = Address::new(email.trim(), name);
    to.check(what).map_err(DeliveryError::Permanent)?;
    Ok(to)
}

/// RFC 8058 § 3.1: the List-Unsubscribe header of a one-click unsubscribe "MUST contain one
/// HTTPS URI"; and the URL goes inside `<...>`, so it may hold no `<`, `>` or whitespace.
fn check_unsubscribe_url(url: &str) -> Result<(), DeliveryError> {
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    let parsed = waymark_channel::http::Url::parse(url);
    if !https || parsed.is_err() || url.contains(['<', '>', ',']) {
        return Err(DeliveryError::permanent(format!(
            "unsubscribe_url {url:?} must be an absolute https:// URL (RFC 8058 one-click \
             unsubscribe) without <, > or commas"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_channel::serde_json::json;
    use waymark_channel::Customer;

    fn message(attributes: Value, payload: Value) -> Message {
        let mut customer = Customer::new("c-1");
        if let Value::Object(map) = attributes {
            for (k, v) in map {
                customer = customer.with_attribute(&k, v);
            }
        }
        Message::new("m-1", "email", "welcome")
            .with_customer(customer)
            .with_payload(payload)
    }

    fn permanent(attributes: Value, payload: Value) -> String {
        match Email::from_message(&message(attributes, payload)) {
            Err(DeliveryError::Permanent(reason)) => reason,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn a_rendered_template_supplies_the_parts() {
        let email = Email::from_message(&message(
            json!({"email": "ana@example.com", "name": "Ana"}),
            json!({
                "subject": "the journey's, ignored",
                "content": {"template": "welcome", "version": 2, "locale": "en",
                            "subject": "Welcome", "html": "<p>Hi</p>", "text": "Hi"},
            }),
        ))
        .unwrap();
        assert_eq!(
            email,
            Email {
                to: Address::new("ana@example.com", Some("Ana".into())),
                subject: "Welcome".into(),
                html: Some("<p>Hi</p>".into()),
                text: Some("Hi".into()),
                unsubscribe_url: None,
            }
        );
    }

    #[test]
    fn without_a_template_the_payload_supplies_the_parts_and_may_name_the_recipient() {
        let email = Email::from_message(&message(
            json!({}),
            json!({"to": "bo@example.com", "subject": "Hello", "text": "Plain only",
                   "unsubscribe_url": "https://acme.example/u/tok"}),
        ))
        .unwrap();
        assert_eq!(email.to, Address::new("bo@example.com", None));
        assert_eq!(
            (email.html, email.text.as_deref()),
            (None, Some("Plain only"))
        );
        assert_eq!(
            email.unsubscribe_url.as_deref(),
            Some("https://acme.example/u/tok")
        );
    }

    #[test]
    fn no_subject_or_no_body_is_permanent_and_says_which() {
        let to = json!({"email": "a@example.com"});
        assert_eq!(
            permanent(to.clone(), json!({"text": "x"})),
            "the payload (no stored template was named) has no subject"
        );
        assert_eq!(
            permanent(
                to.clone(),
                json!({"content": {"subject": "S", "html": " "}})
            ),
            "the rendered template (payload.content) has no body: neither html nor text"
        );
        assert_eq!(
            permanent(to, json!({"subject": "S", "text": 3})),
            "payload.text must be a string, not 3"
        );
    }

    #[test]
    fn a_missing_or_bad_recipient_is_permanent() {
        let body = json!({"subject": "S", "text": "T"});
        assert_eq!(
            permanent(json!({}), body.clone()),
            "customer \"c-1\" has no email attribute and the payload no `to`"
        );
        assert!(permanent(json!({"email": "not-an-address"}), body.clone())
            .starts_with("customer.email \"not-an-address\" is not a valid email address"));
        assert!(
            permanent(json!({}), json!({"to": "x@", "subject": "S", "text": "T"}))
                .starts_with("payload.to \"x@\" is not a valid email address")
        );
    }

    #[test]
    fn an_unsubscribe_url_must_be_https() {
        let to = json!({"email": "a@example.com"});
        for bad in [
            "http://acme.example/u",
            "mailto:u@acme.example",
            "https://a.example/<x>",
        ] {
            let reason = permanent(
                to.clone(),
                json!({"subject": "S", "text": "T", "unsubscribe_url": bad}),
            );
            assert!(reason.contains("RFC 8058"), "{bad}: {reason}");
        }
    }
}
