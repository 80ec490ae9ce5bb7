//! Slack incoming webhooks.
//!
//! As Slack documents them (<https://api.slack.com/messaging/webhooks>, and the error strings
//! of <https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks>):
//! `POST` JSON `{"text", "blocks"}` with `Content-Type: application/json` to the webhook URL,
//! which is the credential. Slack answers `200` with the body `ok`; errors are plain-text
//! strings with a status: 400 `invalid_payload` / `user_not_found`, 403 `action_prohibited`,
//! 404 `channel_not_found` (and `no_service` for a revoked webhook), 410
//! `channel_is_archived`, 500 `rollup_error`; 429 when rate limited. A webhook returns no
//! message id.

use waymark_channel::http::{Request, Response};
use waymark_channel::serde_json::Map;
use waymark_channel::{DeliveryError, Receipt};

use crate::{checked_url, described, Config, Post};

/// The webhook POST of `post`.
pub fn build_request(config: &Config, post: &Post) -> Result<Request, DeliveryError> {
    let url = config.needed(&config.webhook_url, "webhook_url")?;
    checked_url(url, "webhook_url")?;
    Ok(Request::post(url).json(&post.body(Map::new())))
}

/// 2xx delivered (no id); 429 and 5xx retryable; other statuses permanent with Slack's error
/// string.
pub fn classify(response: &Response) -> Result<Receipt, DeliveryError> {
    if response.is_success() {
        return Ok(Receipt::new());
    }
    let reason = format!(
        "Slack webhook HTTP {}: {}",
        response.status,
        described(response)
    );
    if response.status == 429 || response.status >= 500 {
        response.pass_on_retry_after();
        Err(DeliveryError::Retryable(reason))
    } else {
        Err(DeliveryError::Permanent(reason))
    }
}
