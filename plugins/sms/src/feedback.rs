//! Twilio's webhooks (provider feedback, contract 0.1.2): status callbacks and inbound messages.
//!
//! Configure the hook URL, `{public_url}/v1/hooks/{tenant}/{channel}`, as the registration's
//! `status_callback` (sent as `StatusCallback` with every message) and as the sending number's
//! (or Messaging Service's) "A message comes in" webhook.
//!
//! **Signature**, as Twilio's webhook security page documents it
//! (<https://www.twilio.com/docs/usage/security#validating-requests>, and its worked example in
//! TwilioDevEd/api-snippets `security/signature_validation`): `X-Twilio-Signature` is the
//! base64 of HMAC-SHA1, keyed with the Auth Token, over the full URL Twilio called followed by
//! every POST parameter sorted by name, each name immediately followed by its value. A missing
//! or different signature is refused.
//!
//! **Status callbacks** (<https://www.twilio.com/docs/messaging/guides/track-outbound-message-status>):
//! a form with `MessageSid`, `MessageStatus` (`queued`, `sent`, `delivered`, `undelivered`,
//! `failed`, `read`), `ErrorCode` on failure, `To` and `From`. `delivered` → delivered, `read`
//! → opened, `undelivered`/`failed` → bounced, hard when the error code says the number can
//! never receive ([`HARD_ERRORS`]), soft otherwise; other statuses report nothing.
//!
//! **Inbound messages** (<https://www.twilio.com/docs/messaging/guides/webhook-request>): a form
//! with `MessageSid`, `From`, `To` and `Body`. A body that is one of Twilio's opt-out keywords
//! ([`OPT_OUT_KEYWORDS`], single word, any case: "Twilio support for opt-out keywords (SMS STOP
//! filtering)") → unsubscribed; any other → replied with the text. Both name the sender's
//! number, which the host matches to the latest message it sent there.
//!
//! **Answers**: Twilio reads the answer to an inbound message as instructions, by its content
//! type (<https://www.twilio.com/docs/api/twiml/sms/your_response>, "Twilio Understands Mime
//! Types": `text/xml` is TwiML, `text/plain` is texted back to the sender), so an inbound
//! message is answered with the empty TwiML document [`EMPTY_TWIML`] (`text/xml`): nothing is
//! texted back, and Twilio's own opt-out reply to `STOP` still goes out. A status callback's
//! answer is not read; it takes the host's JSON summary.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use waymark_channel::feedback::{
    constant_time_eq, BounceKind, FeedbackError, FeedbackEvent, Received, WebhookReply,
    WebhookRequest,
};

use crate::Provider;

/// The opt-out keywords Twilio honours by default on long codes and toll-free numbers.
pub const OPT_OUT_KEYWORDS: &[&str] = &["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];

/// Twilio error codes after which the number will never receive: 21211 invalid `To`, 21614
/// not a mobile number, 30005 unknown destination handset, 30006 landline or unreachable
/// carrier (<https://www.twilio.com/docs/api/errors>).
pub const HARD_ERRORS: &[&str] = &["21211", "21614", "30005", "30006"];

/// What `receive` needs of the registration.
#[derive(Debug, serde::Deserialize)]
struct Config {
    provider: Provider,
    #[serde(default)]
    auth_token: Option<String>,
}

/// `X-Twilio-Signature` for a POST to `url` with form `params`, under `auth_token`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Sorted by name; a repeated name keeps its values in order (a stable sort).
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The answer to an inbound message: TwiML that does nothing.
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// Checks the request's signature and maps it to feedback; an inbound message is answered
/// with [`EMPTY_TWIML`].
pub fn receive(request: &WebhookRequest) -> Result<Received, FeedbackError> {
    let config: Config = request.config_as()?;
    if config.provider != Provider::Twilio {
        return Err(FeedbackError::Unsupported(format!(
            "provider {} webhooks are not received (only twilio's)",
            config.provider.as_str()
        )));
    }
    let token = config
        .auth_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| FeedbackError::Invalid("config.auth_token is missing".into()))?;
    let given = request
        .header("x-twilio-signature")
        .ok_or_else(|| FeedbackError::Unauthorized("no X-Twilio-Signature header".into()))?;
    let params = request.form();
    let expected = signature(&token, &request.url, &params);
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(FeedbackError::Unauthorized(
            "X-Twilio-Signature does not match the URL and parameters".into(),
        ));
    }
    let received = Received::from(feedback_of(&params));
    if is_inbound(&params) {
        Ok(received.with_reply(WebhookReply::xml(EMPTY_TWIML)))
    } else {
        Ok(received)
    }
}

/// Whether a verified form is an inbound message (which Twilio answers with TwiML) rather than
/// a status callback: it has no `MessageStatus`.
fn is_inbound(params: &[(String, String)]) -> bool {
    !params.iter().any(|(name, _)| name == "MessageStatus")
}

/// The feedback a verified Twilio form reports.
pub fn feedback_of(params: &[(String, String)]) -> Vec<FeedbackEvent> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let sid = get("MessageSid").or_else(|| get("SmsSid"));
    if let Some(status) = get("MessageStatus") {
        let event_id = sid.map(|sid| format!("{sid}:{status}"));
        let event = match status {
            "delivered" => FeedbackEvent::delivered(),
            "read" => FeedbackEvent::opened(),
            "undelivered" | "failed" => {
                let code = get("ErrorCode").unwrap_or("");
                let kind = if HARD_ERRORS.contains(&code) {
                    BounceKind::Hard
                } else {
                    BounceKind::Soft
                };
                FeedbackEvent::bounced(kind, format!("Twilio {status}, error {code}"))
            }
            _ => return Vec::new(),
        };
        return vec![event.provider_id(sid).address(get("To")).event_id(event_id)];
    }
    let Some(body) = get("Body") else {
        return Vec::new();
    };
    let word = body.trim();
    let event = if OPT_OUT_KEYWORDS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
    {
        FeedbackEvent::unsubscribed()
    } else {
        FeedbackEvent::replied(body)
    };
    // The inbound message's own sid is its event id, not the id of a message we sent.
    vec![event.address(get("From")).event_id(sid)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_channel::feedback::FeedbackKind;
    use waymark_channel::json;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Twilio's own worked example (TwilioDevEd/api-snippets,
    /// `security/signature_validation/signature_validation.3.x.js`).
    #[test]
    fn the_signature_matches_twilios_documented_example() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
        let mut shuffled = params.clone();
        shuffled.reverse();
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &shuffled
            ),
            "GvWf1cFY/Q7PnoempGyD5oXAezc=",
            "parameters are sorted before signing"
        );
    }

    fn signed(url: &str, body: &str, token: &str) -> WebhookRequest {
        let request = WebhookRequest::new("POST", url).with_body(body);
        let sig = signature(token, url, &request.form());
        request
            .with_header("X-Twilio-Signature", sig)
            .with_config(json!({"provider": "twilio", "auth_token": "tok"}))
    }

    #[test]
    fn a_signed_status_callback_is_received_and_a_forged_one_refused() {
        let url = "https://w.example/v1/hooks/acme/sms";
        let body = "MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30005&To=%2B15005550006";
        let received = receive(&signed(url, body, "tok")).unwrap();
        assert_eq!(
            received.reply, None,
            "a status callback's answer is not read"
        );
        let events = received.events;
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].kind,
            FeedbackKind::Bounced(BounceKind::Hard, "Twilio undelivered, error 30005".into())
        );
        assert_eq!(events[0].provider_id.as_deref(), Some("SM1"));
        assert_eq!(events[0].address.as_deref(), Some("+15005550006"));
        assert_eq!(events[0].event_id.as_deref(), Some("SM1:undelivered"));

        let forged = signed(url, body, "not-the-token");
        assert!(matches!(
            receive(&forged),
            Err(FeedbackError::Unauthorized(_))
        ));
        let elsewhere = signed("https://w.example/v1/hooks/other/sms", body, "tok");
        let moved = WebhookRequest {
            url: url.into(),
            ..elsewhere
        };
        assert!(
            matches!(receive(&moved), Err(FeedbackError::Unauthorized(_))),
            "the URL is signed"
        );
        let unsigned = WebhookRequest::new("POST", url)
            .with_body(body)
            .with_config(json!({"provider": "twilio", "auth_token": "tok"}));
        assert!(matches!(
            receive(&unsigned),
            Err(FeedbackError::Unauthorized(_))
        ));
    }

    #[test]
    fn an_inbound_stop_unsubscribes_and_other_text_is_a_reply() {
        let stop = feedback_of(&pairs(&[
            ("MessageSid", "SMin"),
            ("From", "+15005550006"),
            ("Body", " stop "),
        ]));
        assert_eq!(stop[0].kind, FeedbackKind::Unsubscribed);
        assert_eq!(stop[0].address.as_deref(), Some("+15005550006"));
        assert_eq!(stop[0].provider_id, None);
        let reply = feedback_of(&pairs(&[("From", "+15005550006"), ("Body", "Stop please")]));
        assert_eq!(reply[0].kind, FeedbackKind::Replied("Stop please".into()));
        let delivered = feedback_of(&pairs(&[("MessageSid", "SM1"), ("MessageStatus", "sent")]));
        assert!(delivered.is_empty(), "`sent` is not yet delivered");
    }

    #[test]
    fn a_signed_inbound_message_is_answered_with_empty_twiml() {
        let url = "https://w.example/v1/hooks/acme/sms";
        let body = "MessageSid=SMin&From=%2B15005550006&To=%2B15005550001&Body=STOP";
        let received = receive(&signed(url, body, "tok")).unwrap();
        assert_eq!(received.events[0].kind, FeedbackKind::Unsubscribed);
        let reply = received.reply.expect("Twilio reads the answer as TwiML");
        assert_eq!(reply.content_type, "text/xml");
        assert_eq!(reply.body, EMPTY_TWIML.as_bytes());
    }
}
