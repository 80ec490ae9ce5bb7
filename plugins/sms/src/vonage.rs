//! The Vonage (formerly Nexmo) SMS API: send an SMS.
//!
//! As Vonage documents it (<https://developer.vonage.com/en/messaging/sms/technical-details>,
//! the API reference's "Send an SMS", and <https://developer.vonage.com/messaging/sms/guides/troubleshooting-sms>
//! for statuses): `POST https://rest.nexmo.com/sms/json`, an
//! `application/x-www-form-urlencoded` body with `api_key`, `api_secret`, `from`, `to` (E.164
//! digits, no `+`), `text`, `type=unicode` when the text needs UCS-2 (the "Concatenation and encoding" guide), optionally `callback`
//! (the delivery receipt URL) and `client-ref` (our message id, echoed in receipts). It
//! answers HTTP 200 with `{"message-count", "messages": [{"to", "message-id", "status",
//! "error-text", ..}]}`, one entry per part: `status` `"0"` is accepted, `"1"` (Throttled) and
//! `"5"` (Internal Error) are worth retrying, every other status is a permanent refusal
//! (missing or invalid parameters, invalid credentials, barred number, ...).

use waymark_channel::http::{Request, Response};
use waymark_channel::serde_json::Value;
use waymark_channel::{DeliveryError, Message, Receipt};

use crate::segments::{self, Encoding};
use crate::{form, retry_after, Config, Outgoing};

/// Vonage's public SMS API origin.
pub const API: &str = "https://rest.nexmo.com";

/// How much of the message id goes into `client-ref` (the field's documented limit is not
/// shorter).
pub const CLIENT_REF_CHARS: usize = 40;

/// The send request for `sms`.
pub fn build_request(
    message: &Message,
    config: &Config,
    sms: &Outgoing,
) -> Result<Request, DeliveryError> {
    let key = config.needed(&config.api_key, "api_key")?;
    let secret = config.needed(&config.api_secret, "api_secret")?;
    let from = config.needed(&config.from, "from")?;
    let to = sms.to.trim_start_matches('+');
    let client_ref: String = message.id.chars().take(CLIENT_REF_CHARS).collect();
    let mut pairs = vec![
        ("api_key", key),
        ("api_secret", secret),
        ("from", from),
        ("to", to),
        ("text", sms.text.as_str()),
    ];
    if segments::count(&sms.text).encoding == Encoding::Ucs2 {
        pairs.push(("type", "unicode"));
    }
    if let Some(callback) = Config::given(&config.status_callback) {
        pairs.push(("callback", callback));
    }
    pairs.push(("client-ref", client_ref.as_str()));
    Ok(Request::post(format!("{}/sms/json", config.origin(API)?))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(form(&pairs)))
}

/// Statuses Vonage documents as transient: 1 Throttled, 5 Internal Error.
const RETRYABLE_STATUSES: [&str; 2] = ["1", "5"];

/// HTTP 429 or 5xx retryable, other non-2xx permanent; on 200 the first part with a non-zero
/// `status` decides (retryable for 1 and 5, else permanent with its `error-text`), and when
/// every part is accepted the first part's `message-id` is the receipt.
pub fn classify(response: &Response) -> Result<Receipt, DeliveryError> {
    if !response.is_success() {
        let reason = format!(
            "Vonage HTTP {}: {}{}",
            response.status,
            response.text().chars().take(200).collect::<String>(),
            retry_after(response)
        );
        return if response.status == 429 || response.status >= 500 {
            response.pass_on_retry_after();
            Err(DeliveryError::Retryable(reason))
        } else {
            Err(DeliveryError::Permanent(reason))
        };
    }
    let body = response.json().unwrap_or(Value::Null);
    let parts = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let status = |part: &Value| {
        part.get("status")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string()
    };
    if let Some(failed) = parts.iter().find(|part| status(part) != "0") {
        let code = status(failed);
        let text = failed
            .get("error-text")
            .and_then(Value::as_str)
            .unwrap_or("no error-text");
        let reason = format!("Vonage status {code}: {text}");
        return if RETRYABLE_STATUSES.contains(&code.as_str()) {
            Err(DeliveryError::Retryable(reason))
        } else {
            Err(DeliveryError::Permanent(reason))
        };
    }
    let id = parts
        .first()
        .and_then(|part| part.get("message-id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Receipt { provider_id: id })
}
