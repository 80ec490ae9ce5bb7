//! Provider feedback (issue 11), end to end on the real server with the real plugins: the
//! messenger journey sends email through `plugins/email` (Postmark stand-in, and SendGrid as
//! channel `webhook`) and SMS through `plugins/sms` (Twilio stand-in); the providers' webhooks,
//! signed as each provider signs them (`waymark_tests::webhooks`), come back to
//! `POST /v1/hooks/{tenant}/{channel}`.
//!
//! - An email hard bounce suppresses the address: the next email to it is recorded
//!   `suppressed`, `GET /v1/suppressions` lists it, `DELETE` lifts it.
//! - An SMS `STOP` unsubscribes the customer from SMS only: the next SMS is suppressed while
//!   email still goes out. The SMS receipt reports its segment count.
//! - A forged signature is refused (401) and changes nothing.
//! - Delivered, opened and clicked reach the journey as those events, once each even when the
//!   provider posts the same webhook twice.
//! - A channel whose adapter receives no webhooks, an unknown channel or tenant, answer clear
//!   errors.
//! - Slack's `url_verification` handshake, signed, is answered with its challenge as plain
//!   text; a forged one is refused (401). An inbound SMS is answered with empty TwiML.

use waymark_api::tenants::CreatedTenant;
use waymark_tests::artifacts::MESSENGER_CRATE;
use waymark_tests::mail_providers::{MailProvider, Provider as Mail};
use waymark_tests::webhooks::{self, hook_url, SendGridSigner};
use waymark_tests::*;

const JOURNEY: &str = "messenger";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token";
const POSTMARK_TOKEN: &str = "postmark-server-token";
const HOOK_USER: &str = "waymark";
const HOOK_PASSWORD: &str = "hook-password-1";
const SENDGRID_KEY: &str = "SG.test-key";

struct World {
    server: Server,
    tenant: CreatedTenant,
    _twilio: StandIn,
    _postmark: MailProvider,
    _sendgrid: MailProvider,
    sendgrid_signer: SendGridSigner,
}

impl World {
    async fn start() -> World {
        let twilio = StandIn::start(Provider::Twilio {
            account_sid: ACCOUNT_SID.into(),
            auth_token: AUTH_TOKEN.into(),
        });
        let postmark = MailProvider::start(Mail::Postmark, POSTMARK_TOKEN);
        let sendgrid = MailProvider::start(Mail::SendGrid, SENDGRID_KEY);
        let sendgrid_signer = SendGridSigner::new();
        let server = Server::start(ServerOptions {
            args: vec!["--retry-base-ms".into(), "20".into()],
            ..ServerOptions::default()
        })
        .await;
        let tenant = server.api().create_tenant("acme").await;
        let api = server.as_tenant(&tenant);
        api.register_channel(
            "email",
            &artifacts().component(EMAIL_CRATE),
            json!({"provider": "postmark", "from": "hello@acme.example", "base_url": postmark.url()}),
            json!({
                "server_token": POSTMARK_TOKEN,
                "webhook_username": HOOK_USER,
                "webhook_password": HOOK_PASSWORD,
            }),
            &[postmark.authority()],
        )
        .await;
        api.register_channel(
            "webhook",
            &artifacts().component(EMAIL_CRATE),
            json!({"provider": "sendgrid", "from": "hello@acme.example", "base_url": sendgrid.url()}),
            json!({"api_key": SENDGRID_KEY, "webhook_public_key": sendgrid_signer.public_key()}),
            &[sendgrid.authority()],
        )
        .await;
        let hook = hook_url(server.url(), &tenant.id, "sms");
        api.register_channel(
            "sms",
            &artifacts().component(SMS_CRATE),
            json!({
                "provider": "twilio", "account_sid": ACCOUNT_SID, "from": "+15005550006",
                "status_callback": hook, "base_url": twilio.url(),
            }),
            json!({"auth_token": AUTH_TOKEN}),
            &[twilio.authority()],
        )
        .await;
        api.upload_journey(JOURNEY, artifacts().component(MESSENGER_CRATE))
            .await;
        World {
            server,
            tenant,
            _twilio: twilio,
            _postmark: postmark,
            _sendgrid: sendgrid,
            sendgrid_signer,
        }
    }

    fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    fn hook(&self, channel: &str) -> String {
        hook_url(self.server.url(), &self.tenant.id, channel)
    }

    /// Gives `customer` an email address and a phone number.
    async fn identify(&self, customer: &str) {
        let traits = json!({"email": format!("{customer}@example.com"), "phone": "+447700900123"});
        let answer = self
            .api()
            .post_events(&[identify(&format!("{customer}-id"), customer, traits)])
            .await;
        assert_eq!(answer.accepted, 1);
    }

    /// Has the messenger send one message through `channel` (event id `id`), and returns it
    /// once it is no longer pending.
    async fn send(&self, customer: &str, id: &str, channel: &str) -> Message {
        let payload = match channel {
            "sms" => json!({"text": "Your code is 1234"}),
            _ => json!({"subject": "Hello", "text": "Hi there"}),
        };
        let notify = event_with(
            id,
            customer,
            "notify",
            json!({"channel": channel, "template": id, "payload": payload}),
        );
        assert_eq!(self.api().post_events(&[notify]).await.accepted, 1);
        let api = self.api();
        wait_for_some(&format!("{customer}'s {id} to settle"), || async {
            let customer = api.customer(customer).await?;
            customer
                .messages
                .iter()
                .find(|m| m.template == id && m.status != MessageStatus::Pending)
                .cloned()
        })
        .await
    }

    /// What the journey heard so far: its state's lines.
    async fn heard(&self, customer: &str, line: &str) -> Vec<String> {
        let enrollment = self
            .api()
            .wait_for_enrollment(customer, JOURNEY, line, |e| {
                String::from_utf8_lossy(&e.state).lines().any(|l| l == line)
            })
            .await;
        String::from_utf8_lossy(&enrollment.state)
            .lines()
            .map(str::to_string)
            .collect()
    }

    async fn suppressions(&self) -> Value {
        let (status, body) = self
            .api()
            .request(
                Method::GET,
                "/v1/suppressions",
                Some(&self.tenant.api_key),
                Body::Empty,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn postmark_bounce(message: &Message, email: &str) -> Value {
    json!({
        "RecordType": "Bounce", "ID": 4242, "Type": "HardBounce", "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "", "MessageID": message.provider_id,
        "ServerID": 23, "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email, "From": "hello@acme.example", "BouncedAt": "2026-11-30T10:00:00Z",
        "DumpAvailable": false, "Inactive": true, "CanActivate": true, "Subject": "Hello",
        "Metadata": {"waymark_message_id": message.id},
    })
}

#[tokio::test]
async fn an_email_hard_bounce_suppresses_the_address_and_the_next_email_is_suppressed() {
    let world = World::start().await;
    world.identify("ana").await;
    let first = world.send("ana", "first", "email").await;
    assert_eq!(first.status, MessageStatus::Delivered, "{first:?}");

    let bounce = webhooks::postmark(
        &world.hook("email"),
        HOOK_USER,
        HOOK_PASSWORD,
        &postmark_bounce(&first, "Ana@Example.com"),
    );
    let (status, answer) = bounce.post().await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["suppressed"], json!(["ana@example.com"]), "{answer}");
    assert_eq!(answer["events"][0]["message_id"], first.id.as_str());
    world.heard("ana", &format!("bounced:{}", first.id)).await;

    let listed = world.suppressions().await;
    let row = &listed["suppressions"][0];
    assert_eq!(
        (
            row["channel"].as_str(),
            row["address"].as_str(),
            row["reason"].as_str()
        ),
        (Some("email"), Some("ana@example.com"), Some("hard_bounce")),
        "{listed}"
    );
    assert_eq!(row["customer"], "ana");

    let second = world.send("ana", "second", "email").await;
    assert_eq!(second.status, MessageStatus::Suppressed, "{second:?}");
    assert!(
        second
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("ana@example.com") && e.contains("hard_bounce")),
        "{second:?}"
    );
    assert_eq!(second.attempts, 1);
    // The journey hears a failed delivery whose reason says it was suppressed.
    world
        .heard("ana", &format!("delivery_suppressed:{}", second.id))
        .await;

    // Lifted, the address receives email again.
    let client = world.api().tenant_client().clone();
    client
        .lift_suppression("email", "ana@example.com")
        .await
        .expect("lifted");
    assert_eq!(world.suppressions().await["suppressions"], json!([]));
    let third = world.send("ana", "third", "email").await;
    assert_eq!(third.status, MessageStatus::Delivered, "{third:?}");
    // The report counts the suppressed email once, as suppressed: not as sent, not as failed.
    let api = world.api();
    let email = wait_for_some("the report to count both deliveries", || async {
        let report = api.report(JOURNEY).await;
        let email = report["report"]["overall"]["channels"]["email"].clone();
        (email["delivered"] == 2).then_some(email)
    })
    .await;
    assert_eq!(
        (&email["sent"], &email["suppressed"], &email["failed"]),
        (&json!(2), &json!(1), &json!(0)),
        "{email}"
    );
    assert_error(
        &world
            .api()
            .request(
                Method::DELETE,
                "/v1/suppressions/email/ana%40example.com",
                Some(&world.tenant.api_key),
                Body::Empty,
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn an_sms_stop_unsubscribes_from_sms_while_email_still_goes_out() {
    let world = World::start().await;
    world.identify("bo").await;
    let sms = world.send("bo", "code", "sms").await;
    assert_eq!(sms.status, MessageStatus::Delivered, "{sms:?}");
    assert_eq!(
        sms.receipt,
        Some(json!({"segments": 1, "encoding": "GSM-7", "units": 17})),
        "the receipt reports the segment count"
    );

    let stop = webhooks::twilio_inbound(
        &world.hook("sms"),
        ACCOUNT_SID,
        AUTH_TOKEN,
        "SMinbound0001",
        "+447700900123",
        "STOP",
    );
    // Twilio reads an inbound message's answer as TwiML: an empty document texts nothing back.
    let (status, content_type, answer) = stop.post_raw().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/xml");
    assert_eq!(
        String::from_utf8_lossy(&answer),
        r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#
    );
    world.heard("bo", &format!("unsubscribed:{}", sms.id)).await;
    let subscriptions = world
        .api()
        .tenant_client()
        .subscriptions("bo")
        .await
        .expect("subscriptions");
    assert_eq!(subscriptions.channels, vec!["sms".to_string()]);
    assert!(!subscriptions.unsubscribed_all);

    let after = world.send("bo", "after-stop", "sms").await;
    assert_eq!(after.status, MessageStatus::Suppressed, "{after:?}");
    let email = world.send("bo", "still-email", "email").await;
    assert_eq!(email.status, MessageStatus::Delivered, "{email:?}");
}

#[tokio::test]
async fn a_forged_webhook_signature_is_refused_and_changes_nothing() {
    let world = World::start().await;
    world.identify("cy").await;
    let email = world.send("cy", "mail", "email").await;
    let sms = world.send("cy", "text", "sms").await;
    let sid = sms.provider_id.clone().expect("Twilio's sid");

    let forged_twilio = webhooks::twilio_status_callback(
        &world.hook("sms"),
        ACCOUNT_SID,
        "not-the-auth-token",
        &sid,
        "+447700900123",
        "undelivered",
        Some("30005"),
    );
    let forged_postmark = webhooks::postmark(
        &world.hook("email"),
        HOOK_USER,
        "guessed",
        &postmark_bounce(&email, "cy@example.com"),
    );
    let tampered = webhooks::twilio_inbound(
        &world.hook("sms"),
        ACCOUNT_SID,
        AUTH_TOKEN,
        "SMinbound0002",
        "+447700900123",
        "hello",
    );
    let tampered = webhooks::Hook {
        body: b"Body=STOP&From=%2B447700900123&MessageSid=SMinbound0002".to_vec(),
        ..tampered
    };
    let unsigned = webhooks::postmark(
        &world.hook("email"),
        HOOK_USER,
        HOOK_PASSWORD,
        &postmark_bounce(&email, "cy@example.com"),
    )
    .with_header("Authorization", "Bearer nothing");
    for hook in [forged_twilio, forged_postmark, tampered, unsigned] {
        let (status, body) = hook.post().await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }

    // Nothing changed: no suppression, no unsubscribe, nothing heard, both still delivered.
    assert_eq!(world.suppressions().await["suppressions"], json!([]));
    let customer = world.api().customer("cy").await.expect("cy");
    assert!(!customer.attributes.contains_key("unsubscribed_channels"));
    let state = customer
        .enrollment(JOURNEY)
        .map(|e| e.state.clone())
        .unwrap_or_default();
    assert!(state.is_empty(), "{:?}", String::from_utf8_lossy(&state));
    let again = world.send("cy", "again", "email").await;
    assert_eq!(again.status, MessageStatus::Delivered);
}

#[tokio::test]
async fn delivered_opened_and_clicked_reach_the_journey_once_each() {
    let world = World::start().await;
    world.identify("di").await;
    let sms = world.send("di", "text", "sms").await;
    let email = world.send("di", "mail", "email").await;
    let sendgrid = world.send("di", "grid", "webhook").await;
    assert_eq!(sendgrid.status, MessageStatus::Delivered, "{sendgrid:?}");

    // Twilio's status callback names the message by its sid only.
    let delivered = webhooks::twilio_status_callback(
        &world.hook("sms"),
        ACCOUNT_SID,
        AUTH_TOKEN,
        sms.provider_id.as_deref().expect("sid"),
        "+447700900123",
        "delivered",
        None,
    );
    let (status, answer) = delivered.post().await;
    assert_eq!(
        (status, &answer["accepted"]),
        (StatusCode::OK, &json!(1)),
        "{answer}"
    );
    // The provider retries: the same webhook twice is processed once.
    let (status, again) = delivered.post().await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (&again["accepted"], &again["duplicates"]),
        (&json!(0), &json!(1)),
        "{again}"
    );

    let click = webhooks::postmark(
        &world.hook("email"),
        HOOK_USER,
        HOOK_PASSWORD,
        &json!({
            "RecordType": "Click", "MessageStream": "outbound", "ClickLocation": "HTML",
            "OriginalLink": "https://acme.example/pricing", "MessageID": email.provider_id,
            "Recipient": "di@example.com", "ReceivedAt": "2026-11-30T10:00:00Z", "Tag": "",
            "Metadata": {"waymark_message_id": email.id},
        }),
    );
    assert_eq!(click.post().await.0, StatusCode::OK);
    assert_eq!(click.post().await.1["duplicates"], 1);

    let timestamp = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs())
    .to_string();
    let opened = world.sendgrid_signer.batch(
        &world.hook("webhook"),
        &timestamp,
        &json!([{
            "email": "di@example.com", "timestamp": 1_764_496_800, "event": "open",
            "sg_event_id": "sg-open-1", "useragent": "Mozilla/5.0",
            "sg_message_id": format!("{}.filterdrecv-1", sendgrid.provider_id.as_deref().expect("X-Message-Id")),
            "waymark_message_id": sendgrid.id,
        }]),
    );
    let (status, answer) = opened.post().await;
    assert_eq!(
        (status, &answer["accepted"]),
        (StatusCode::OK, &json!(1)),
        "{answer}"
    );

    let heard = world.heard("di", &format!("opened:{}", sendgrid.id)).await;
    let heard = if heard.iter().any(|l| l == &format!("clicked:{}", email.id))
        && heard.iter().any(|l| l == &format!("delivered:{}", sms.id))
    {
        heard
    } else {
        world.heard("di", &format!("clicked:{}", email.id)).await;
        world.heard("di", &format!("delivered:{}", sms.id)).await
    };
    for line in [
        format!("delivered:{}", sms.id),
        format!("clicked:{}", email.id),
        format!("opened:{}", sendgrid.id),
    ] {
        assert_eq!(
            heard.iter().filter(|l| **l == line).count(),
            1,
            "{line} heard once: {heard:?}"
        );
    }
    let enrollment = world
        .api()
        .customer("di")
        .await
        .and_then(|c| c.enrollment(JOURNEY).cloned())
        .expect("enrolled");
    assert_eq!(enrollment.channels["email"].clicked, 1);
    assert_eq!(enrollment.channels["webhook"].opened, 1);
}

#[tokio::test]
async fn a_channel_that_receives_no_webhooks_and_unknown_hooks_answer_clear_errors() {
    let world = World::start().await;
    let api = world.api();
    api.register_channel(
        "plain",
        &artifacts().component(WEBHOOK_CRATE),
        json!({"url": "http://127.0.0.1:9/hook"}),
        json!({}),
        &["127.0.0.1:9".to_string()],
    )
    .await;
    let body = |url: &str| webhooks::Hook {
        url: url.to_string(),
        headers: vec![],
        content_type: "application/json",
        body: b"{}".to_vec(),
    };
    let (status, answer) = body(&world.hook("plain")).post().await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "feedback_unsupported", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("receives no webhooks")),
        "{answer}"
    );
    for url in [
        world.hook("nope"),
        hook_url(world.server.url(), "no-such-tenant", "email"),
    ] {
        let (status, answer) = body(&url).post().await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    // Over the route's 1 MiB: refused before the adapter runs.
    let (status, answer) = webhooks::Hook {
        body: vec![b' '; (1 << 20) + 1],
        ..body(&world.hook("email"))
    }
    .post()
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["code"], "too_large");
    // A body the provider never sends, correctly authenticated: 400.
    let (status, answer) =
        webhooks::postmark(&world.hook("email"), HOOK_USER, HOOK_PASSWORD, &json!([1]))
            .post()
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_webhook");
}

const SLACK_SIGNING_SECRET: &str = "slack-signing-secret";

#[tokio::test]
async fn slacks_signed_url_verification_is_answered_with_its_challenge_and_a_forged_one_refused() {
    let world = World::start().await;
    // Bot mode; `receive` needs only the signing secret, so the Web API is never called.
    world
        .api()
        .register_channel(
            "slack",
            &artifacts().component(SLACK_CRATE),
            json!({"mode": "bot", "channel": "C0123ABCD", "base_url": "http://127.0.0.1:9/api"}),
            json!({"bot_token": "xoxb-test", "signing_secret": SLACK_SIGNING_SECRET}),
            &["127.0.0.1:9".to_string()],
        )
        .await;
    // The payload of Slack's `url_verification` reference page, signed as Slack signs it at
    // the host's now (the adapter refuses five minutes' skew).
    let handshake = json!({
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification"
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as i64;
    let signed = webhooks::slack_event(&world.hook("slack"), SLACK_SIGNING_SECRET, now, &handshake);
    let (status, content_type, body) = signed.post_raw().await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "text/plain");
    assert_eq!(
        body,
        b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".to_vec()
    );

    let forged = webhooks::slack_event(&world.hook("slack"), "guessed", now, &handshake);
    let (status, answer) = forged.post().await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized", "{answer}");

    // A signed event callback that reports nothing still takes the host's JSON summary.
    let ping =
        json!({"type": "event_callback", "event_id": "Ev0", "event": {"type": "app_mention"}});
    let (status, answer) =
        webhooks::slack_event(&world.hook("slack"), SLACK_SIGNING_SECRET, now, &ping)
            .post()
            .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["events"], json!([]), "{answer}");
}
