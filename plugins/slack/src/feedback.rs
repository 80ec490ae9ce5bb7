//! Slack's Events API (provider feedback, contract 0.1.2): a reply in the thread of a message
//! the bot posted is `replied`, with its text.
//!
//! Configure `{public_url}/v1/hooks/{tenant}/{channel}` as the Slack app's Event Subscriptions
//! request URL and subscribe to `message.channels` (and `message.groups` for private channels).
//!
//! **Signature**, as Slack's "Verifying requests from Slack" documents it
//! (<https://api.slack.com/authentication/verifying-requests-from-slack>): `X-Slack-Signature`
//! is `v0=` and the hex of HMAC-SHA256, keyed with the app's signing secret, over
//! `v0:{X-Slack-Request-Timestamp}:{raw body}`; a timestamp more than five minutes from the
//! host's now is refused (a replay). The worked example of that page is this module's test.
//!
//! **Events** (<https://api.slack.com/apis/connections/events-api>): an `event_callback` whose
//! `event` is a `message` with a `thread_ts` is a reply to the message whose `ts` is that
//! `thread_ts` (the bot mode's receipt); its `event_id` names it. Other events report nothing.
//!
//! **Handshake** (<https://api.slack.com/events/url_verification>): when the app's request URL
//! is set, Slack sends `{"type": "url_verification", "challenge": …}`, signed like every other
//! request; once verified, it is answered `200` with `Content-Type: text/plain` and the
//! challenge as the body, the first of the three answers Slack's reference accepts.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use waymark_channel::feedback::{
    constant_time_eq, FeedbackError, FeedbackEvent, Received, WebhookReply, WebhookRequest,
};

/// How far a request's timestamp may be from the host's now, in seconds.
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;

#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    signing_secret: Option<String>,
}

/// `X-Slack-Signature` for `body` sent at `timestamp`, under `secret`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    event: Option<Event>,
    /// `url_verification`'s value to echo.
    #[serde(default)]
    challenge: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
}

/// Checks the signature and its timestamp, then answers a `url_verification` handshake with
/// its challenge or maps the event.
pub fn receive(request: &WebhookRequest) -> Result<Received, FeedbackError> {
    let config: Config = request.config_as()?;
    let secret = config
        .signing_secret
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FeedbackError::Invalid("config.signing_secret is missing".into()))?;
    let timestamp = request
        .header("x-slack-request-timestamp")
        .ok_or_else(|| FeedbackError::Unauthorized("no X-Slack-Request-Timestamp header".into()))?;
    let given = request
        .header("x-slack-signature")
        .ok_or_else(|| FeedbackError::Unauthorized("no X-Slack-Signature header".into()))?;
    let sent: i64 = timestamp.trim().parse().map_err(|_| {
        FeedbackError::Unauthorized("X-Slack-Request-Timestamp is not a number".into())
    })?;
    if (request.now / 1000 - sent).abs() > MAX_SKEW_SECONDS {
        return Err(FeedbackError::Unauthorized(
            "X-Slack-Request-Timestamp is more than five minutes from now".into(),
        ));
    }
    let expected = signature(&secret, timestamp, &request.body);
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(FeedbackError::Unauthorized(
            "X-Slack-Signature does not match the body".into(),
        ));
    }
    let envelope: Envelope = request.json()?;
    if envelope.kind == "url_verification" {
        let challenge = envelope
            .challenge
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                FeedbackError::Invalid("a url_verification request without its challenge".into())
            })?;
        return Ok(Received::reply(WebhookReply::text(challenge)));
    }
    Ok(feedback_of(envelope).into_iter().collect::<Vec<_>>().into())
}

fn feedback_of(envelope: Envelope) -> Option<FeedbackEvent> {
    if envelope.kind != "event_callback" {
        return None;
    }
    let event = envelope.event?;
    // A reply is a message in a thread that is not the thread's own first message, and not
    // the bot's (or another bot's) post.
    if event.kind != "message" || event.bot_id.is_some() {
        return None;
    }
    let thread = event.thread_ts?;
    if event.ts.as_deref() == Some(thread.as_str()) {
        return None;
    }
    Some(
        FeedbackEvent::replied(event.text.unwrap_or_default())
            .provider_id(Some(thread))
            .event_id(envelope.event_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_channel::feedback::FeedbackKind;
    use waymark_channel::json;

    // The worked example of Slack's "Verifying requests from Slack".
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn the_signature_matches_slacks_documented_example() {
        assert_eq!(signature(SECRET, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
    }

    fn request(body: &str, ts: &str, sig: &str, now_s: i64) -> WebhookRequest {
        WebhookRequest::new("POST", "https://w/v1/hooks/acme/slack")
            .with_header("X-Slack-Request-Timestamp", ts)
            .with_header("X-Slack-Signature", sig)
            .with_body(body)
            .with_config(json!({"mode": "bot", "signing_secret": SECRET}))
            .at(now_s * 1000)
    }

    #[test]
    fn a_signed_thread_reply_is_replied_and_stale_or_forged_requests_are_refused() {
        let body = json!({
            "type": "event_callback", "event_id": "Ev1",
            "event": {"type": "message", "text": "On it", "ts": "1700000001.000200",
                      "thread_ts": "1700000000.000100", "user": "U1"}
        })
        .to_string();
        let sig = signature(SECRET, "1700000001", body.as_bytes());
        let received = receive(&request(&body, "1700000001", &sig, 1_700_000_030)).unwrap();
        assert_eq!(received.reply, None);
        let events = received.events;
        assert_eq!(events[0].kind, FeedbackKind::Replied("On it".into()));
        assert_eq!(events[0].provider_id.as_deref(), Some("1700000000.000100"));
        assert_eq!(events[0].event_id.as_deref(), Some("Ev1"));

        let stale = receive(&request(&body, "1700000001", &sig, 1_700_000_001 + 301));
        assert!(matches!(stale, Err(FeedbackError::Unauthorized(_))));
        let forged = signature("other", "1700000001", body.as_bytes());
        let refused = receive(&request(&body, "1700000001", &forged, 1_700_000_030));
        assert!(matches!(refused, Err(FeedbackError::Unauthorized(_))));
    }

    #[test]
    fn a_signed_url_verification_is_answered_with_its_challenge_in_plain_text() {
        // The payload of Slack's `url_verification` reference page.
        let body = json!({
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification"
        })
        .to_string();
        let sig = signature(SECRET, "1700000001", body.as_bytes());
        let received = receive(&request(&body, "1700000001", &sig, 1_700_000_030)).unwrap();
        assert!(received.events.is_empty());
        let reply = received.reply.expect("the challenge is echoed");
        assert_eq!(reply.content_type, "text/plain");
        assert_eq!(
            reply.body,
            b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        );

        let forged = signature("other", "1700000001", body.as_bytes());
        let refused = receive(&request(&body, "1700000001", &forged, 1_700_000_030));
        assert!(matches!(refused, Err(FeedbackError::Unauthorized(_))));

        let empty = json!({"type": "url_verification", "challenge": ""}).to_string();
        let sig = signature(SECRET, "1700000001", empty.as_bytes());
        let invalid = receive(&request(&empty, "1700000001", &sig, 1_700_000_030));
        assert!(matches!(invalid, Err(FeedbackError::Invalid(_))));
    }
}
