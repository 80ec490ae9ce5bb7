//! The SMS and Slack channel plugins (issue 11), end to end on the real server: the onboarding
//! journey's welcome goes out through `plugins/sms` (Twilio, Vonage) or `plugins/slack`
//! (incoming webhook, `chat.postMessage`), registered as the journey's `webhook` channel
//! against a loopback stand-in of the provider that checks every request as the provider's
//! reference specifies it. The text or blocks come from a stored template. A bad number is a
//! dead message and nothing is sent; a provider's refusal is permanent with its text; a 5xx
//! or a rate limit is retried, then delivered with the provider's id.

use waymark_tests::*;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token";

/// A server retrying quickly, its tenant, and a provider stand-in.
struct World {
    server: Server,
    tenant: waymark_api::tenants::CreatedTenant,
    standin: StandIn,
}

impl World {
    /// The onboarding journey, with `plugin` registered as its `webhook` channel pointed at a
    /// stand-in of `provider` (the stand-in's URL given to `settings` under `url_key`, unless
    /// `url_key` is a secret, then to `secrets`), and template `welcome` stored as `template`.
    async fn start(
        provider: Provider,
        plugin: &str,
        mut settings: Value,
        mut secrets: Value,
        url: (&str, &str),
        template: Value,
    ) -> World {
        let standin = StandIn::start(provider);
        let server = Server::start(ServerOptions {
            args: vec!["--retry-base-ms".into(), "20".into()],
            ..ServerOptions::default()
        })
        .await;
        let tenant = server.api().create_tenant("acme").await;
        let api = server.as_tenant(&tenant);
        let (key, path) = url;
        let target = if key == "webhook_url" {
            &mut secrets
        } else {
            &mut settings
        };
        target[key] = json!(format!("{}{path}", standin.url()));
        api.register_channel(
            WEBHOOK,
            &artifacts().component(plugin),
            settings,
            secrets,
            &[standin.authority()],
        )
        .await;
        api.upload_journey(ONBOARDING, artifacts().component(ONBOARDING_CRATE))
            .await;
        let key = tenant.api_key.clone();
        let (status, stored) = api
            .request(Method::PUT, "/v1/templates/welcome", Some(&key), template)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        World {
            server,
            tenant,
            standin,
        }
    }

    fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    /// Identifies `customer` with `traits`, then signs them up (the journey sends `welcome`).
    async fn sign_up(&self, customer: &str, traits: Value) {
        let answer = self
            .api()
            .post_events(&[
                identify(&format!("{customer}-identify"), customer, traits),
                event(&format!("{customer}-signed-up"), customer, "signed_up"),
            ])
            .await;
        assert_eq!(answer.accepted, 2, "{answer:?}");
    }

    /// The customer's welcome once it is `status`.
    async fn welcome(&self, customer: &str, status: MessageStatus) -> Message {
        let api = self.api();
        wait_for_some(
            &format!("{customer}'s welcome to be {status:?}"),
            || async {
                let customer = api.customer(customer).await?;
                customer
                    .messages_with_template("welcome")
                    .first()
                    .filter(|m| m.status == status)
                    .map(|m| (*m).clone())
            },
        )
        .await
    }
}

fn sms_template(text: &str) -> Value {
    json!({"channel": "sms", "default_locale": "en", "locales": {"en": {"text": text}}})
}

async fn twilio() -> World {
    World::start(
        Provider::Twilio {
            account_sid: ACCOUNT_SID.into(),
            auth_token: AUTH_TOKEN.into(),
        },
        SMS_CRATE,
        json!({
            "provider": "twilio",
            "account_sid": ACCOUNT_SID,
            "from": "+15005550006",
            "status_callback": "https://acme.example/hooks/sms",
        }),
        json!({"auth_token": AUTH_TOKEN}),
        ("base_url", ""),
        sms_template("Hi {{ customer.first_name }}, welcome to Acme! Reply STOP to opt out."),
    )
    .await
}

fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_templated_sms_goes_to_twilio_as_its_create_message_request() {
    let world = twilio().await;
    world
        .sign_up(
            "ana",
            json!({"first_name": "Ana", "phone": "+447700900123"}),
        )
        .await;
    let delivered = world.welcome("ana", MessageStatus::Delivered).await;

    let calls = world.standin.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call.problems, Vec::<String>::new());
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert_eq!(
        call.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        call.form(),
        pairs(&[
            ("To", "+447700900123"),
            ("From", "+15005550006"),
            ("Body", "Hi Ana, welcome to Acme! Reply STOP to opt out."),
            ("StatusCallback", "https://acme.example/hooks/sms"),
        ])
    );
    assert_eq!(delivered.attempts, 1);
    assert_eq!(
        delivered.provider_id.as_deref(),
        Some(format!("SM{:032x}", 1).as_str()),
        "the receipt is Twilio's sid"
    );
}

#[tokio::test]
async fn a_number_that_is_not_e164_is_a_dead_message_and_nothing_is_sent() {
    let world = twilio().await;
    world
        .sign_up("bob", json!({"first_name": "Bob", "phone": "07700 900123"}))
        .await;
    let dead = world.welcome("bob", MessageStatus::Dead).await;
    assert_eq!(dead.attempts, 1, "a permanent failure is not retried");
    assert_eq!(
        dead.last_error.as_deref(),
        Some("recipient: \"07700 900123\" is not an E.164 phone number (`+`, then 2 to 15 digits, the first not 0)")
    );
    assert!(world.standin.calls().is_empty(), "nothing reached Twilio");
}

#[tokio::test]
async fn a_twilio_400_is_permanent_and_keeps_twilios_error() {
    let world = twilio().await;
    world
        .standin
        .answer_next(Answer::refusal(world.standin.provider()));
    world
        .sign_up("cy", json!({"first_name": "Cy", "phone": "+14155552671"}))
        .await;
    let dead = world.welcome("cy", MessageStatus::Dead).await;
    assert_eq!(dead.attempts, 1);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("Twilio HTTP 400: error 21610: Attempt to send to unsubscribed recipient (https://www.twilio.com/docs/errors/21610)")
    );
    assert_eq!(world.standin.calls().len(), 1);
}

#[tokio::test]
async fn a_twilio_500_is_retried_and_then_delivered() {
    let world = twilio().await;
    world
        .standin
        .answer_next(Answer::server_error(world.standin.provider()));
    world
        .sign_up("dee", json!({"first_name": "Dee", "phone": "+14155552671"}))
        .await;
    let delivered = world.welcome("dee", MessageStatus::Delivered).await;
    assert_eq!(delivered.attempts, 2);
    let calls = world.standin.calls();
    assert_eq!(
        calls.iter().map(|c| c.answered).collect::<Vec<_>>(),
        [500, 201]
    );
    assert_eq!(calls[0].body, calls[1].body, "the retry sends the same SMS");
    assert_eq!(
        delivered.provider_id.as_deref(),
        Some(format!("SM{:032x}", 2).as_str())
    );
}

#[tokio::test]
async fn a_twilio_429_is_retried_and_then_delivered() {
    let world = twilio().await;
    world
        .standin
        .answer_next(Answer::rate_limited(world.standin.provider(), 1));
    world
        .sign_up("eve", json!({"first_name": "Eve", "phone": "+14155552671"}))
        .await;
    let delivered = world.welcome("eve", MessageStatus::Delivered).await;
    assert_eq!(delivered.attempts, 2);
    let calls = world.standin.calls();
    assert_eq!(
        calls.iter().map(|c| c.answered).collect::<Vec<_>>(),
        [429, 201]
    );
}

async fn vonage() -> World {
    World::start(
        Provider::Vonage {
            api_key: "vonage-key".into(),
            api_secret: "vonage-secret".into(),
        },
        SMS_CRATE,
        json!({"provider": "vonage", "api_key": "vonage-key", "from": "Acme"}),
        json!({"api_secret": "vonage-secret"}),
        ("base_url", ""),
        sms_template("Olá {{ customer.first_name }} 👋"),
    )
    .await
}

#[tokio::test]
async fn a_templated_unicode_sms_goes_to_vonage_as_its_send_request() {
    let world = vonage().await;
    world
        .sign_up(
            "ana",
            json!({"first_name": "Ana", "phone": "+5511999998888"}),
        )
        .await;
    let delivered = world.welcome("ana", MessageStatus::Delivered).await;
    let calls = world.standin.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call.problems, Vec::<String>::new());
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/sms/json")
    );
    assert_eq!(
        call.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        call.form(),
        pairs(&[
            ("api_key", "vonage-key"),
            ("api_secret", "vonage-secret"),
            ("from", "Acme"),
            ("to", "5511999998888"),
            ("text", "Olá Ana 👋"),
            ("type", "unicode"),
            ("client-ref", delivered.id.as_str()),
        ])
    );
    assert_eq!(delivered.provider_id.as_deref(), Some("0000000000000001"));
}

#[tokio::test]
async fn a_vonage_refusal_is_permanent_with_its_error_text() {
    let world = vonage().await;
    world
        .standin
        .answer_next(Answer::refusal(world.standin.provider()));
    world
        .sign_up("bo", json!({"first_name": "Bo", "phone": "+5511999998888"}))
        .await;
    let dead = world.welcome("bo", MessageStatus::Dead).await;
    assert_eq!(
        dead.last_error.as_deref(),
        Some("Vonage status 7: Number barred.")
    );
}

const HOOK_PATH: &str = "/services/T0001/B0001/abcdefghijklmnop";

fn slack_template() -> Value {
    json!({"channel": "slack", "default_locale": "en", "locales": {"en": {"blocks":
        r#"[{"type": "header", "text": {"type": "plain_text", "text": "New signup: {{ customer.first_name }}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "Plan *{{ customer.plan }}*"}}]"#}}})
}

fn slack_blocks() -> Value {
    json!([
        {"type": "header", "text": {"type": "plain_text", "text": "New signup: Ana"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "Plan *pro*"}}
    ])
}

async fn slack_webhook() -> World {
    World::start(
        Provider::SlackWebhook {
            path: HOOK_PATH.into(),
        },
        SLACK_CRATE,
        json!({"mode": "webhook"}),
        json!({}),
        ("webhook_url", HOOK_PATH),
        slack_template(),
    )
    .await
}

#[tokio::test]
async fn templated_blocks_go_to_a_slack_incoming_webhook() {
    let world = slack_webhook().await;
    world
        .sign_up("ana", json!({"first_name": "Ana", "plan": "pro"}))
        .await;
    let delivered = world.welcome("ana", MessageStatus::Delivered).await;
    let calls = world.standin.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call.problems, Vec::<String>::new());
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", HOOK_PATH)
    );
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        call.json(),
        json!({"text": "New signup: Ana\nPlan *pro*", "blocks": slack_blocks()})
    );
    assert_eq!(delivered.provider_id, None, "a webhook answers no id");
}

#[tokio::test]
async fn a_slack_webhook_404_is_permanent_with_slacks_error() {
    let world = slack_webhook().await;
    world
        .standin
        .answer_next(Answer::refusal(world.standin.provider()));
    world
        .sign_up("bo", json!({"first_name": "Bo", "plan": "free"}))
        .await;
    let dead = world.welcome("bo", MessageStatus::Dead).await;
    assert_eq!(
        dead.last_error.as_deref(),
        Some("Slack webhook HTTP 404: channel_not_found")
    );
}

async fn slack_bot() -> World {
    World::start(
        Provider::SlackBot {
            token: "xoxb-123-456-abc".into(),
            channels: vec!["C0SIGNUPS".into()],
        },
        SLACK_CRATE,
        json!({"mode": "bot", "channel": "C0SIGNUPS"}),
        json!({"bot_token": "xoxb-123-456-abc"}),
        ("base_url", "/api"),
        slack_template(),
    )
    .await
}

#[tokio::test]
async fn templated_blocks_go_to_chat_post_message_and_the_receipt_is_the_ts() {
    let world = slack_bot().await;
    world
        .sign_up("ana", json!({"first_name": "Ana", "plan": "pro"}))
        .await;
    let delivered = world.welcome("ana", MessageStatus::Delivered).await;
    let calls = world.standin.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call.problems, Vec::<String>::new());
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/api/chat.postMessage")
    );
    assert_eq!(
        call.header("authorization"),
        Some("Bearer xoxb-123-456-abc")
    );
    assert_eq!(
        call.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        call.json(),
        json!({"channel": "C0SIGNUPS", "text": "New signup: Ana\nPlan *pro*", "blocks": slack_blocks()})
    );
    assert_eq!(delivered.provider_id.as_deref(), Some("1700000000.000001"));
}

#[tokio::test]
async fn not_in_channel_is_permanent_and_ratelimited_is_retried() {
    let world = slack_bot().await;
    let provider = world.standin.provider().clone();
    world.standin.answer_next(Answer::refusal(&provider));
    world
        .sign_up("bo", json!({"first_name": "Bo", "plan": "free"}))
        .await;
    let dead = world.welcome("bo", MessageStatus::Dead).await;
    assert_eq!(
        dead.last_error.as_deref(),
        Some("Slack chat.postMessage: not_in_channel")
    );

    world
        .standin
        .answer_next(Answer::rate_limited(&provider, 1));
    world
        .sign_up("cy", json!({"first_name": "Cy", "plan": "pro"}))
        .await;
    let delivered = world.welcome("cy", MessageStatus::Delivered).await;
    assert_eq!(delivered.attempts, 2);
    let answered: Vec<u16> = world.standin.calls().iter().map(|c| c.answered).collect();
    assert_eq!(answered, [200, 429, 200]);
}

#[tokio::test]
async fn a_vonage_throttle_is_retried_and_then_delivered() {
    let world = vonage().await;
    world
        .standin
        .answer_next(Answer::rate_limited(world.standin.provider(), 1));
    world
        .sign_up("cy", json!({"first_name": "Cy", "phone": "+5511999998888"}))
        .await;
    let delivered = world.welcome("cy", MessageStatus::Delivered).await;
    assert_eq!(delivered.attempts, 2, "status 1 (Throttled) is retried");
    let calls = world.standin.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].body, calls[1].body, "the retry sends the same SMS");
    assert_eq!(delivered.provider_id.as_deref(), Some("0000000000000002"));
}

#[tokio::test]
async fn a_slack_webhook_500_is_retried_and_then_delivered() {
    let world = slack_webhook().await;
    world
        .standin
        .answer_next(Answer::server_error(world.standin.provider()));
    world
        .sign_up("dee", json!({"first_name": "Dee", "plan": "pro"}))
        .await;
    let delivered = world.welcome("dee", MessageStatus::Delivered).await;
    assert_eq!(delivered.attempts, 2);
    let answered: Vec<u16> = world.standin.calls().iter().map(|c| c.answered).collect();
    assert_eq!(answered, [500, 200]);
}
