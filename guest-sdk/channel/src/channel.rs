//! Channel adapters: the [`Channel`] trait, the [`Message`] it delivers, and what it answers.
//!
//! An adapter turns a message into a request to a provider (usually with [`crate::http`]) and
//! says whether it worked. The host retries [`DeliveryError::Retryable`] failures with backoff
//! and dead-letters [`DeliveryError::Permanent`] ones at once, so the distinction matters.
//!
//! An adapter reads its configuration (the registration's settings and secrets) as a typed
//! struct with [`Message::config_as`], whose errors are permanent and name the offending key:
//!
//! ```
//! use waymark_channel::serde::Deserialize;
//! use waymark_channel::{json, Channel, DeliveryError, Message, Receipt};
//!
//! #[derive(Deserialize)]
//! #[serde(crate = "waymark_channel::serde")]
//! struct Config {
//!     mode: String,
//! }
//!
//! struct Null;
//!
//! impl Channel for Null {
//!     fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
//!         let config: Config = message.config_as()?;
//!         match config.mode.as_str() {
//!             "accept" => Ok(Receipt::new()),
//!             _ => Err(DeliveryError::permanent("config.mode must be \"accept\"")),
//!         }
//!     }
//! }
//!
//! let msg = Message::new("m-1", "null", "welcome").with_config(json!({"mode": "accept"}));
//! assert_eq!(Null::deliver(msg), Ok(Receipt::new()));
//!
//! let msg = Message::new("m-1", "null", "welcome").with_config(json!({"mode": 1}));
//! assert_eq!(
//!     Null::deliver(msg),
//!     Err(DeliveryError::permanent("config.mode: invalid type: integer `1`, expected a string"))
//! );
//! ```

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use waymark_guest::{Customer, Object};

use crate::feedback::{FeedbackError, Received, WebhookRequest};

/// A message to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable across retries and crash replays: pass it on to the provider as an idempotency
    /// key so that a retry never delivers twice.
    pub id: String,
    /// The channel's name, as the tenant registered it.
    pub channel: String,
    /// Who the message is for.
    pub customer: Customer,
    /// The template the journey chose.
    pub template: String,
    /// The payload the journey chose (a JSON object).
    pub payload: Value,
    /// The channel registration's settings and secrets, merged into one object.
    pub config: Object,
}

impl Message {
    /// A message with this id, channel and template, for customer `customer-1`, with an empty
    /// payload and config (builder style, for tests).
    pub fn new(
        id: impl Into<String>,
        channel: impl Into<String>,
        template: impl Into<String>,
    ) -> Self {
        Message {
            id: id.into(),
            channel: channel.into(),
            customer: Customer::new("customer-1"),
            template: template.into(),
            payload: Value::Object(Object::new()),
            config: Object::new(),
        }
    }

    /// Sets the customer.
    pub fn with_customer(mut self, customer: Customer) -> Self {
        self.customer = customer;
        self
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// Sets the config from a JSON object; anything else leaves it empty.
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = match config {
            Value::Object(map) => map,
            _ => Object::new(),
        };
        self
    }

    /// One config entry, if present.
    pub fn config(&self, key: &str) -> Option<&Value> {
        self.config.get(key)
    }

    /// One config entry as a string, if present and a string.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config(key).and_then(Value::as_str)
    }

    /// The whole config as the adapter's own type, or a permanent error naming the offending
    /// key: `config.url is missing`, `config.headers.X-Tenant: invalid type: integer `1`,
    /// expected a string`. Keys the type does not mention are ignored unless it says
    /// `#[serde(deny_unknown_fields)]`; optional keys are `Option`s or `#[serde(default)]`.
    ///
    /// The error is permanent because a configuration does not fix itself between retries;
    /// the host also checks the keys against the plugin's manifest at registration (see
    /// [`channel_manifest!`](crate::channel_manifest)).
    pub fn config_as<T: DeserializeOwned>(&self) -> Result<T, DeliveryError> {
        let config = Value::Object(self.config.clone());
        serde_path_to_error::deserialize(config)
            .map_err(|e| DeliveryError::Permanent(config_error(&e.path().to_string(), e.inner())))
    }
}

/// A config error as `config.<path>: <what>`, or `config.<key> is missing` for a missing key
/// (which serde reports at the enclosing object, naming the key only in its message).
pub(crate) fn config_error(path: &str, error: &serde_json::Error) -> String {
    let text = error.to_string();
    let at = match path {
        "." => "config".to_string(),
        path => format!("config.{path}"),
    };
    let missing = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    match missing {
        Some(key) => format!("{at}.{key} is missing"),
        None => format!("{at}: {text}"),
    }
}

/// Proof of delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The provider's id for the message, when it returns one.
    pub provider_id: Option<String>,
}

impl Receipt {
    /// A receipt without a provider id.
    pub fn new() -> Self {
        Receipt::default()
    }

    /// A receipt carrying the provider's id for the message.
    pub fn with_provider_id(id: impl Into<String>) -> Self {
        Receipt {
            provider_id: Some(id.into()),
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryError {
    /// Worth trying again later: a timeout, a 5xx, a refused connection.
    Retryable(String),
    /// Will never succeed as sent: a 4xx, a bad address, a bad configuration.
    Permanent(String),
}

impl DeliveryError {
    /// A failure worth retrying.
    pub fn retryable(reason: impl Into<String>) -> Self {
        DeliveryError::Retryable(reason.into())
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError::Permanent(reason.into())
    }

    /// Whether the host should try again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable(_))
    }

    /// The reason, without the kind.
    pub fn reason(&self) -> &str {
        match self {
            DeliveryError::Retryable(r) | DeliveryError::Permanent(r) => r,
        }
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Retryable(r) => write!(f, "retryable: {r}"),
            DeliveryError::Permanent(r) => write!(f, "permanent: {r}"),
        }
    }
}

impl std::error::Error for DeliveryError {}

/// A channel adapter. Implement it on a unit struct and export it with
/// [`export_channel!`](crate::export_channel).
pub trait Channel {
    /// Delivers one message. Called again with the same [`Message::id`] after a retryable
    /// failure, a timeout or a host crash, so pass the id on as an idempotency key.
    fn deliver(message: Message) -> Result<Receipt, DeliveryError>;

    /// Receives the provider's webhook request (contract 0.1.2, `feedback`): checks its
    /// signature with the registration's secrets ([`WebhookRequest::config_as`]) and says what
    /// it reports, and how to answer it when the provider reads the answer
    /// ([`Received::reply`]). The default receives nothing: the host answers the provider 422.
    ///
    /// Answer [`FeedbackError::Unsupported`] only when the adapter receives no webhooks at all
    /// under the request's config: the host asks each registration once with an empty request
    /// (`POST`, no headers, no body), and does not index the messages of one that answers
    /// `Unsupported` for webhooks to find (a request it cannot check is `Invalid` or
    /// `Unauthorized`).
    fn receive(request: WebhookRequest) -> Result<Received, FeedbackError> {
        let _ = request;
        Err(FeedbackError::Unsupported(
            "this channel adapter receives no webhooks".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_builders_set_what_they_say() {
        let m = Message::new("m-1", "webhook", "welcome")
            .with_customer(Customer::new("c-1"))
            .with_payload(json!({"x": 1}))
            .with_config(json!({"url": "http://example.com", "n": 3}));
        assert_eq!(m.customer.id, "c-1");
        assert_eq!(m.payload, json!({"x": 1}));
        assert_eq!(m.config_str("url"), Some("http://example.com"));
        assert_eq!(m.config_str("n"), None);
        assert_eq!(m.config("n"), Some(&json!(3)));
    }

    #[test]
    fn non_object_config_is_empty() {
        assert!(Message::new("m", "c", "t")
            .with_config(json!([1]))
            .config
            .is_empty());
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        url: String,
        #[serde(default)]
        retries: Option<u8>,
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
    }

    fn config_of(config: Value) -> Result<Config, DeliveryError> {
        Message::new("m", "c", "t").with_config(config).config_as()
    }

    #[test]
    fn config_as_reads_the_config_as_the_adapters_type() {
        assert_eq!(
            config_of(json!({"url": "http://h/", "headers": {"X-A": "1"}})),
            Ok(Config {
                url: "http://h/".into(),
                retries: None,
                headers: [("X-A".to_string(), "1".to_string())].into(),
            })
        );
    }

    #[test]
    fn a_missing_required_key_is_a_permanent_error_naming_it() {
        assert_eq!(
            config_of(json!({"retries": 2})),
            Err(DeliveryError::permanent("config.url is missing"))
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_a_permanent_error_naming_its_key() {
        assert_eq!(
            config_of(json!({"url": 3})),
            Err(DeliveryError::permanent(
                "config.url: invalid type: integer `3`, expected a string"
            ))
        );
        assert_eq!(
            config_of(json!({"url": "http://h/", "retries": 300})),
            Err(DeliveryError::permanent(
                "config.retries: invalid value: integer `300`, expected u8"
            ))
        );
    }

    #[test]
    fn a_wrong_type_inside_a_nested_value_names_the_whole_path() {
        assert_eq!(
            config_of(json!({"url": "http://h/", "headers": {"X-Tenant": 1}})),
            Err(DeliveryError::permanent(
                "config.headers.X-Tenant: invalid type: integer `1`, expected a string"
            ))
        );
    }

    #[test]
    fn an_unknown_key_is_named_when_the_type_denies_unknown_keys() {
        let reason = config_of(json!({"url": "http://h/", "ulr": "x"}))
            .unwrap_err()
            .to_string();
        assert!(
            reason.starts_with("permanent: config") && reason.contains("`ulr`"),
            "{reason}"
        );
    }

    #[test]
    fn delivery_errors_know_their_kind() {
        assert!(DeliveryError::retryable("503").is_retryable());
        assert!(!DeliveryError::permanent("404").is_retryable());
        assert_eq!(DeliveryError::permanent("404").reason(), "404");
        assert_eq!(
            DeliveryError::retryable("503").to_string(),
            "retryable: 503"
        );
        assert_eq!(
            Receipt::with_provider_id("p").provider_id.as_deref(),
            Some("p")
        );
    }
}
