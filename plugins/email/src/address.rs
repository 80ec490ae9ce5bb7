//! Mailbox addresses: an email address, checked, with an optional display name.
//!
//! Settings name a mailbox either as a plain address (`"hello@acme.example"`) or as an object
//! (`{"email": "hello@acme.example", "name": "Acme"}`); recipients come from the customer's
//! attributes. Every address is checked before anything is sent, so a bad one is a permanent
//! failure saying which address is wrong rather than a provider's 4xx.

use email_address::{EmailAddress, Options};
use serde::Deserialize;

/// A mailbox: an address and, optionally, the name shown beside it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Address {
    /// `"hello@acme.example"`.
    Plain(String),
    /// `{"email": "hello@acme.example", "name": "Acme"}`.
    Named {
        /// The address.
        email: String,
        /// The display name, if any.
        #[serde(default)]
        name: Option<String>,
    },
}

impl Address {
    /// A mailbox from an address and an optional name.
    pub fn new(email: impl Into<String>, name: Option<String>) -> Address {
        Address::Named {
            email: email.into(),
            name,
        }
    }

    /// The address.
    pub fn email(&self) -> &str {
        match self {
            Address::Plain(email) | Address::Named { email, .. } => email,
        }
    }

    /// The display name, if any and not blank.
    pub fn name(&self) -> Option<&str> {
        match self {
            Address::Plain(_) => None,
            Address::Named { name, .. } => name.as_deref().filter(|n| !n.trim().is_empty()),
        }
    }

    /// Checks the address: RFC 5321/5322 syntax, no display text inside it, and a domain with
    /// at least one dot (a deliverable Internet address, not `root@localhost`). `what` names
    /// the address in the error.
    pub fn check(&self, what: &str) -> Result<(), String> {
        let options = Options {
            minimum_sub_domains: 2,
            allow_domain_literal: false,
            allow_display_text: false,
            ..Options::default()
        };
        EmailAddress::parse_with_options(self.email(), options)
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "{what} {:?} is not a valid email address: {e}",
                    self.email()
                )
            })
    }

    /// The mailbox as a header value: `addr`, or `Name <addr>` with the name quoted when it
    /// holds characters RFC 5322 does not allow in an unquoted display name. This is the form
    /// Postmark's `From`, `To` and `ReplyTo` take ("John Doe <email@example.com>").
    pub fn to_header(&self) -> String {
        match self.name() {
            None => self.email().to_string(),
            Some(name) if name.chars().all(is_atext_or_space) => {
                format!("{name} <{}>", self.email())
            }
            Some(name) => {
                let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{quoted}\" <{}>", self.email())
            }
        }
    }
}

/// RFC 5322 `atext` (letters, digits and ``!#$%&'*+-/=?^_`{|}~``), non-ASCII letters (RFC 6532),
/// or a space: what a display name may hold without quotes.
fn is_atext_or_space(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_channel::serde_json::{from_value, json};

    #[test]
    fn a_setting_names_a_mailbox_as_text_or_as_an_object() {
        let plain: Address = from_value(json!("hi@acme.example")).unwrap();
        assert_eq!((plain.email(), plain.name()), ("hi@acme.example", None));
        let named: Address =
            from_value(json!({"email": "hi@acme.example", "name": "Acme"})).unwrap();
        assert_eq!(
            (named.email(), named.name()),
            ("hi@acme.example", Some("Acme"))
        );
        let blank: Address = from_value(json!({"email": "hi@acme.example", "name": " "})).unwrap();
        assert_eq!(blank.name(), None);
    }

    #[test]
    fn only_deliverable_addresses_pass() {
        for good in [
            "a@example.com",
            "first.last+tag@mail.example.co.uk",
            "josé@exämple.com",
        ] {
            assert_eq!(Address::new(good, None).check("to"), Ok(()), "{good}");
        }
        for bad in [
            "",
            "no-at-sign",
            "a@",
            "@example.com",
            "a@localhost",
            "a b@example.com",
            "Ann <a@example.com>",
            "a@[127.0.0.1]",
        ] {
            let error = Address::new(bad, None).check("to").unwrap_err();
            assert!(
                error.starts_with(&format!("to {bad:?} is not a valid email address")),
                "{error}"
            );
        }
    }

    #[test]
    fn a_display_name_is_quoted_only_when_it_must_be() {
        assert_eq!(Address::new("a@x.io", None).to_header(), "a@x.io");
        assert_eq!(
            Address::new("a@x.io", Some("Ana Lima".into())).to_header(),
            "Ana Lima <a@x.io>"
        );
        assert_eq!(
            Address::new("a@x.io", Some("Lima, Ana \"AL\"".into())).to_header(),
            r#""Lima, Ana \"AL\"" <a@x.io>"#
        );
    }
}
