//! Provider feedback (issue 11): webhook requests built and signed exactly as each provider
//! sends them, for the stand-ins' providers to "call back" the server's
//! `POST /v1/hooks/{tenant}/{channel}`.
//!
//! - Twilio ([`twilio_status_callback`], [`twilio_inbound`]): a form body, `X-Twilio-Signature`
//!   = base64 HMAC-SHA1 (Auth Token) over the full URL then every POST parameter sorted by name,
//!   name then value (<https://www.twilio.com/docs/usage/security#validating-requests>).
//! - Postmark ([`postmark`]): one JSON record, HTTP Basic credentials from the webhook URL
//!   (<https://postmarkapp.com/developer/webhooks/webhooks-overview>).
//! - SendGrid ([`SendGridSigner`]): a JSON array of events, ECDSA P-256/SHA-256 over the
//!   timestamp then the body, base64 DER in `X-Twilio-Email-Event-Webhook-Signature`
//!   (<https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features>).
//! - Slack ([`slack_event`]): a JSON Events API envelope, `X-Slack-Signature` = `v0=` hex
//!   HMAC-SHA256 (signing secret) over `v0:{timestamp}:{body}`
//!   (<https://api.slack.com/authentication/verifying-requests-from-slack>).
//!
//! A [`Hook`] is posted with [`Hook::post`] and answers the status and JSON body.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::Value;
use sha2::Sha256;

/// A webhook request as a provider would send it.
#[derive(Debug, Clone)]
pub struct Hook {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Hook {
    /// Posts it; the answer's status and JSON body.
    pub async fn post(&self) -> (reqwest::StatusCode, Value) {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", self.content_type)
            .body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Posts it; the answer's status, `Content-Type` and raw body (for the answers a provider
    /// reads: Slack's challenge, Twilio's TwiML).
    pub async fn post_raw(&self) -> (reqwest::StatusCode, String, Vec<u8>) {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", self.content_type)
            .body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.bytes().await.expect("a body").to_vec();
        (status, content_type, body)
    }

    /// The same request with header `name` set to `value` (replacing it).
    pub fn with_header(mut self, name: &str, value: &str) -> Hook {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// The hook URL of `channel` of `tenant` on the server at `base`.
pub fn hook_url(base: &str, tenant: &str, channel: &str) -> String {
    format!("{}/v1/hooks/{tenant}/{channel}", base.trim_end_matches('/'))
}

/// `X-Twilio-Signature` of a POST of `params` to `url`.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn twilio_form(url: &str, auth_token: &str, params: &[(&str, &str)]) -> Hook {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        body.append_pair(name, value);
    }
    Hook {
        url: url.to_string(),
        headers: vec![(
            "X-Twilio-Signature".into(),
            twilio_signature(auth_token, url, params),
        )],
        content_type: "application/x-www-form-urlencoded",
        body: body.finish().into_bytes(),
    }
}

/// A Twilio status callback for message `sid` to `to` now `status` (with `error_code` when it
/// failed), as Twilio posts it to the message's `StatusCallback`.
pub fn twilio_status_callback(
    url: &str,
    account_sid: &str,
    auth_token: &str,
    sid: &str,
    to: &str,
    status: &str,
    error_code: Option<&str>,
) -> Hook {
    let mut params = vec![
        ("AccountSid", account_sid),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", to),
    ];
    if let Some(code) = error_code {
        params.push(("ErrorCode", code));
    }
    twilio_form(url, auth_token, &params)
}

/// An inbound SMS from `from` saying `text`, as Twilio posts it to the number's webhook.
pub fn twilio_inbound(
    url: &str,
    account_sid: &str,
    auth_token: &str,
    sid: &str,
    from: &str,
    text: &str,
) -> Hook {
    let params = [
        ("AccountSid", account_sid),
        ("ApiVersion", "2010-04-01"),
        ("Body", text),
        ("From", from),
        ("MessageSid", sid),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsMessageSid", sid),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("To", "+15005550006"),
    ];
    twilio_form(url, auth_token, &params)
}

/// A Postmark webhook posting `record`, with the Basic credentials of its URL.
pub fn postmark(url: &str, user: &str, password: &str, record: &Value) -> Hook {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Hook {
        url: url.to_string(),
        headers: vec![("Authorization".into(), format!("Basic {credentials}"))],
        content_type: "application/json",
        body: record.to_string().into_bytes(),
    }
}

/// Signs SendGrid Event Webhook batches with a key pair of its own, as SendGrid does with
/// the account's.
pub struct SendGridSigner {
    key: SigningKey,
}

impl SendGridSigner {
    /// A signer with a fixed key (tests are reproducible).
    pub fn new() -> SendGridSigner {
        let scalar = [7u8; 32];
        SendGridSigner {
            key: SigningKey::from_slice(&scalar).expect("a valid P-256 scalar"),
        }
    }

    /// The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo.
    pub fn public_key(&self) -> String {
        let der = self
            .key
            .verifying_key()
            .to_public_key_der()
            .expect("a DER public key");
        base64::engine::general_purpose::STANDARD.encode(der.as_bytes())
    }

    /// The batch `events` posted at `timestamp` (seconds), signed.
    pub fn batch(&self, url: &str, timestamp: &str, events: &Value) -> Hook {
        let body = events.to_string().into_bytes();
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(&body);
        let signature: Signature = self.key.sign(&signed);
        let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_der());
        Hook {
            url: url.to_string(),
            headers: vec![
                ("X-Twilio-Email-Event-Webhook-Signature".into(), signature),
                (
                    "X-Twilio-Email-Event-Webhook-Timestamp".into(),
                    timestamp.to_string(),
                ),
            ],
            content_type: "application/json",
            body,
        }
    }
}

impl Default for SendGridSigner {
    fn default() -> Self {
        SendGridSigner::new()
    }
}

/// A Slack Events API request carrying `envelope`, sent at `timestamp` (seconds), signed with
/// `signing_secret`.
pub fn slack_event(url: &str, signing_secret: &str, timestamp: i64, envelope: &Value) -> Hook {
    let body = envelope.to_string().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("any key");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(&body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Hook {
        url: url.to_string(),
        headers: vec![
            ("X-Slack-Request-Timestamp".into(), timestamp.to_string()),
            ("X-Slack-Signature".into(), format!("v0={hex}")),
        ],
        content_type: "application/json",
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_twilio_signature_is_twilios_documented_example() {
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ];
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
    }
}
