//! The providers' webhooks (provider feedback, contract 0.1.2): Postmark's and SendGrid's.
//!
//! Configure `{public_url}/v1/hooks/{tenant}/{channel}` at the provider (README § Webhooks).
//! Each event names our message id when the provider echoes the custom id the adapter sent
//! ([`MESSAGE_ID_FIELD`](crate::MESSAGE_ID_FIELD) in Postmark's `Metadata`, SendGrid's
//! `custom_args`), and the provider's id and the recipient's address.
//!
//! - [`postmark`]: HTTP Basic credentials, as Postmark documents for securing webhooks.
//! - [`sendgrid`]: the Event Webhook's ECDSA signature.

pub mod postmark;
pub mod sendgrid;

use waymark_channel::feedback::{FeedbackError, FeedbackEvent, WebhookRequest};

use crate::Provider;

/// What `receive` needs of the registration: which provider, and its webhook secrets.
#[derive(Debug, serde::Deserialize)]
pub struct FeedbackConfig {
    pub provider: Provider,
    /// Postmark: the Basic auth user name in the webhook URL.
    #[serde(default)]
    pub webhook_username: Option<String>,
    /// Postmark: the Basic auth password in the webhook URL.
    #[serde(default)]
    pub webhook_password: Option<String>,
    /// SendGrid: the Event Webhook's verification key (base64 DER, as SendGrid shows it).
    #[serde(default)]
    pub webhook_public_key: Option<String>,
}

/// Checks the request's credentials or signature and maps it to feedback.
pub fn receive(request: &WebhookRequest) -> Result<Vec<FeedbackEvent>, FeedbackError> {
    let config: FeedbackConfig = request.config_as()?;
    match config.provider {
        Provider::Postmark => postmark::receive(&config, request),
        Provider::Sendgrid => sendgrid::receive(&config, request),
        Provider::Mailgun => Err(FeedbackError::Unsupported(
            "provider mailgun webhooks are not received (postmark's and sendgrid's are)".into(),
        )),
    }
}

/// A configured secret, or a refusal naming the key.
pub(crate) fn secret<'a>(value: &'a Option<String>, key: &str) -> Result<&'a str, FeedbackError> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| {
        FeedbackError::Invalid(format!(
            "config.{key} is missing: this provider's webhooks cannot be checked without it"
        ))
    })
}
