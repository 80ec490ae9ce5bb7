//! Twilio Programmable Messaging: create a Message resource.
//!
//! As the API reference gives it (<https://www.twilio.com/docs/messaging/api/message-resource>,
//! "Create a Message resource"; <https://www.twilio.com/docs/usage/twilios-response> for
//! errors): `POST https://api.twilio.com/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP
//! Basic auth with the Account SID and Auth Token, an `application/x-www-form-urlencoded` body
//! with `To` (E.164), `From` or `MessagingServiceSid`, `Body` and optionally `StatusCallback`.
//! It answers `201 Created` with the Message as JSON, whose `sid` (`SM...`) is the receipt;
//! errors are JSON `{"code", "message", "more_info", "status"}` (e.g. 400 with code 21211 for
//! an invalid `To`, 401 with 20003 for bad credentials, 429 with 20429 when throttled).
//!
//! Twilio offers no idempotency key on this resource, so a retry after a lost answer can send
//! twice; the host retries only what the classification calls retryable.

use base64::Engine as _;
use waymark_channel::http::{Request, Response};
use waymark_channel::{DeliveryError, Receipt};

use crate::{form, retry_after, Config, Outgoing};

/// Twilio's public API origin.
pub const API: &str = "https://api.twilio.com";

/// The Create Message request for `sms`.
pub fn build_request(config: &Config, sms: &Outgoing) -> Result<Request, DeliveryError> {
    let account = config.needed(&config.account_sid, "account_sid")?;
    // The SID goes into the path: refuse anything that could change which path it is.
    if !account.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(DeliveryError::permanent(format!(
            "config.account_sid: {account:?} is not an Account SID (letters and digits only)"
        )));
    }
    let token = config.needed(&config.auth_token, "auth_token")?;
    let sender = match (
        Config::given(&config.messaging_service_sid),
        Config::given(&config.from),
    ) {
        (Some(service), _) => ("MessagingServiceSid", service),
        (None, Some(from)) => ("From", from),
        (None, None) => return Err(DeliveryError::permanent(
            "config.from is missing (provider twilio needs it, or config.messaging_service_sid)",
        )),
    };
    let mut pairs = vec![("To", sms.to.as_str()), sender, ("Body", sms.text.as_str())];
    if let Some(callback) = Config::given(&config.status_callback) {
        pairs.push(("StatusCallback", callback));
    }
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{account}:{token}"));
    let url = format!(
        "{}/2010-04-01/Accounts/{account}/Messages.json",
        config.origin(API)?
    );
    Ok(Request::post(url)
        .header("Authorization", format!("Basic {credentials}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(form(&pairs)))
}

/// 2xx delivered with the Message's `sid`; 429 and 5xx retryable; any other status permanent,
/// with Twilio's error code, message and `more_info` kept.
pub fn classify(response: &Response) -> Result<Receipt, DeliveryError> {
    if response.is_success() {
        let sid = response
            .json()
            .ok()
            .and_then(|body| body.get("sid").and_then(|s| s.as_str()).map(str::to_string));
        return Ok(Receipt { provider_id: sid });
    }
    let described = response.json().ok().and_then(|body| {
        let message = body.get("message")?.as_str()?.to_string();
        let code = body.get("code").map(|c| c.to_string()).unwrap_or_default();
        let more = body
            .get("more_info")
            .and_then(|m| m.as_str())
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        Some(format!("error {code}: {message}{more}"))
    });
    let described = described.unwrap_or_else(|| response.text().chars().take(200).collect());
    let reason = format!(
        "Twilio HTTP {}: {described}{}",
        response.status,
        retry_after(response)
    );
    if response.status == 429 || response.status >= 500 {
        response.pass_on_retry_after();
        Err(DeliveryError::Retryable(reason))
    } else {
        Err(DeliveryError::Permanent(reason))
    }
}
