//! The email channel (issue 11), end to end on the real server, for each provider: the
//! `email` plugin registered against a loopback stand-in of Postmark, SendGrid or Mailgun that
//! checks every request as the provider's reference specifies; the post-purchase journey's
//! `thank_you` send names a stored template, and the stand-in receives exactly the rendered
//! email; the provider's refusal leaves the message dead with the provider's error text; a 429
//! and a 500 are retried and the message is then delivered, with the provider's id; a bad
//! address, or a send with no subject, is dead with the reason and reaches no provider.

use waymark_tests::mail_providers::{
    mailgun_message_id, postmark_message_id, sendgrid_message_id, Answer, MailProvider, Provider,
    MAILGUN_DOMAIN,
};
use waymark_tests::*;

/// The stand-ins' secret: Postmark's server token or SendGrid's API key.
const SECRET: &str = "test-secret-1";
const JOURNEY: &str = "post-purchase";

/// A server that retries quickly, a tenant with the `email` plugin registered as channel
/// `email` against a stand-in of `provider`, the `thank_you` template stored, and the
/// post-purchase journey uploaded.
struct World {
    server: Server,
    stand_in: MailProvider,
    tenant: CreatedTenant,
}

impl World {
    async fn start(provider: Provider) -> World {
        let stand_in = MailProvider::start(provider, SECRET);
        let server = Server::start(ServerOptions {
            args: vec!["--retry-base-ms".into(), "20".into()],
            ..ServerOptions::default()
        })
        .await;
        let tenant = server.api().create_tenant("acme").await;
        let api = server.as_tenant(&tenant);
        let mut settings = json!({
            "provider": provider.setting(),
            "from": {"email": "hello@acme.example", "name": "Acme Shop"},
            "reply_to": "support@acme.example",
            "base_url": stand_in.url(),
            "headers": {"X-Campaign": "post-purchase"},
        });
        let secrets = match provider {
            Provider::Postmark => {
                settings["message_stream"] = json!("outbound");
                json!({"server_token": SECRET})
            }
            Provider::SendGrid => json!({"api_key": SECRET}),
            Provider::Mailgun => {
                settings["domain"] = json!(MAILGUN_DOMAIN);
                json!({"api_key": SECRET})
            }
        };
        api.register_channel(
            "email",
            &artifacts().component(EMAIL_CRATE),
            settings,
            secrets,
            &[stand_in.authority()],
        )
        .await;
        let (status, stored) = api
            .request(
                Method::PUT,
                "/v1/templates/thank_you",
                Some(&tenant.api_key),
                json!({
                    "channel": "email",
                    "default_locale": "en",
                    "locales": {"en": {
                        "subject": "Thanks for order {{ payload.order_id }}, {{ customer.first_name }}",
                        "html": "<p>Hi {{ customer.first_name }}</p>",
                        "text": "Hi {{ customer.first_name }}, order {{ payload.order_id }} is on its way."
                    }}
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        api.upload_journey(JOURNEY, artifacts().component(&example_crate(JOURNEY)))
            .await;
        World {
            server,
            stand_in,
            tenant,
        }
    }

    fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    /// `customer` (with an email address) places order `order`.
    async fn place_order(&self, customer: &str, order: &str) {
        let traits = json!({
            "email": format!("{customer}@example.com"),
            "name": "Ana Lima",
            "first_name": "Ana <3",
        });
        let answer = self
            .api()
            .post_events(&[
                identify(&format!("{customer}-identify-{order}"), customer, traits),
                event_with(
                    &format!("{customer}-{order}"),
                    customer,
                    "order_placed",
                    json!({"order_id": order}),
                ),
            ])
            .await;
        assert_eq!(answer.accepted, 2, "{answer:?}");
    }

    /// The customer's `thank_you` once it satisfies `holds`.
    async fn thank_you_when(
        &self,
        customer: &str,
        what: &str,
        holds: impl Fn(&Message) -> bool,
    ) -> Message {
        let api = self.api();
        wait_for_some(what, || async {
            let customer = api.customer(customer).await?;
            customer
                .messages_with_template("thank_you")
                .first()
                .filter(|m| holds(m))
                .map(|m| (*m).clone())
        })
        .await
    }
}

/// The request body the provider's reference specifies for ana's rendered `thank_you`.
fn expected_body(provider: Provider, message_id: &str) -> Value {
    let subject = "Thanks for order o-1, Ana <3";
    let html = "<p>Hi Ana &lt;3</p>";
    let text = "Hi Ana <3, order o-1 is on its way.";
    match provider {
        Provider::Postmark => json!({
            "From": "Acme Shop <hello@acme.example>",
            "To": "Ana Lima <ana@example.com>",
            "Subject": subject,
            "HtmlBody": html,
            "TextBody": text,
            "ReplyTo": "support@acme.example",
            "Headers": [{"Name": "X-Campaign", "Value": "post-purchase"}],
            "MessageStream": "outbound",
            "Metadata": {"waymark_message_id": message_id},
        }),
        Provider::SendGrid => json!({
            "personalizations": [{
                "to": [{"email": "ana@example.com", "name": "Ana Lima"}],
                "custom_args": {"waymark_message_id": message_id},
            }],
            "from": {"email": "hello@acme.example", "name": "Acme Shop"},
            "reply_to": {"email": "support@acme.example"},
            "subject": subject,
            "content": [
                {"type": "text/plain", "value": text},
                {"type": "text/html", "value": html},
            ],
            "headers": {"X-Campaign": "post-purchase"},
        }),
        // The multipart form's fields, as the stand-in parsed them.
        Provider::Mailgun => json!({
            "from": "Acme Shop <hello@acme.example>",
            "to": "Ana Lima <ana@example.com>",
            "subject": subject,
            "text": text,
            "html": html,
            "h:Reply-To": "support@acme.example",
            "h:X-Campaign": "post-purchase",
            "v:waymark_message_id": message_id,
        }),
    }
}

/// The status of the provider's success.
fn success(provider: Provider) -> u16 {
    match provider {
        Provider::SendGrid => 202,
        Provider::Postmark | Provider::Mailgun => 200,
    }
}

async fn a_templated_send_reaches_the_provider_as_the_rendered_email(provider: Provider) {
    let world = World::start(provider).await;
    world.place_order("ana", "o-1").await;
    let received = world
        .stand_in
        .wait_for("ana's thank-you", |r| !r.is_empty())
        .await;
    let delivered = world
        .thank_you_when("ana", "ana's thank-you delivered", |m| {
            m.status == MessageStatus::Delivered
        })
        .await;

    assert_eq!(received.len(), 1, "{received:#?}");
    let request = &received[0];
    assert_eq!(world.stand_in.violations(), Vec::<String>::new());
    assert_eq!(
        (request.method.as_str(), request.answered),
        ("POST", success(provider))
    );
    let content_type = request.header("content-type").unwrap_or_default();
    match provider {
        Provider::Mailgun => assert!(content_type.starts_with("multipart/form-data; boundary=")),
        _ => assert_eq!(content_type, "application/json"),
    }
    assert_eq!(request.body, expected_body(provider, &delivered.id));
    let provider_id = match provider {
        Provider::Postmark => postmark_message_id(1),
        Provider::SendGrid => sendgrid_message_id(1),
        Provider::Mailgun => mailgun_message_id(1),
    };
    assert_eq!(
        delivered.provider_id,
        Some(provider_id),
        "the receipt is the provider's id"
    );
    assert_eq!(delivered.template_version, Some(1));
    assert_eq!(delivered.attempts, 1);
}

async fn the_providers_refusal_leaves_the_message_dead_with_its_text(provider: Provider) {
    let world = World::start(provider).await;
    let refusal = "You tried to send to recipient(s) that have been marked as inactive.";
    world.stand_in.answer_next(Answer::Refuse(refusal.into()));
    world.place_order("ana", "o-1").await;
    let dead = world
        .thank_you_when("ana", "ana's thank-you dead", |m| {
            m.status == MessageStatus::Dead
        })
        .await;
    assert_eq!(dead.attempts, 1, "a refusal is never retried");
    let reason = dead.last_error.unwrap_or_default();
    let status = match provider {
        Provider::Postmark => "HTTP 422: Postmark error 300: ",
        Provider::SendGrid => "HTTP 400: SendGrid: ",
        Provider::Mailgun => "HTTP 400: Mailgun: ",
    };
    assert!(
        reason.contains(&format!("{status}{refusal}")),
        "the provider's text is kept: {reason}"
    );
    assert_eq!(world.stand_in.requests().len(), 1);
    assert_eq!(world.stand_in.violations(), Vec::<String>::new());
}

async fn throttling_and_server_errors_are_retried_until_delivered(provider: Provider) {
    let world = World::start(provider).await;
    world.stand_in.answer_next(Answer::Throttle);
    world.stand_in.answer_next(Answer::ServerError);
    world.place_order("ana", "o-1").await;
    let delivered = world
        .thank_you_when("ana", "ana's thank-you delivered", |m| {
            m.status == MessageStatus::Delivered
        })
        .await;
    assert_eq!(delivered.attempts, 3);
    let received = world.stand_in.requests();
    let answered: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [429, 500, success(provider)]);
    assert!(
        received.iter().all(|r| r.body == received[0].body),
        "every attempt sends the same email, with the same message id"
    );
    assert_eq!(world.stand_in.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn postmark_receives_the_rendered_email() {
    a_templated_send_reaches_the_provider_as_the_rendered_email(Provider::Postmark).await;
}

#[tokio::test]
async fn sendgrid_receives_the_rendered_email() {
    a_templated_send_reaches_the_provider_as_the_rendered_email(Provider::SendGrid).await;
}

#[tokio::test]
async fn a_postmark_422_leaves_the_message_dead_with_postmarks_text() {
    the_providers_refusal_leaves_the_message_dead_with_its_text(Provider::Postmark).await;
}

#[tokio::test]
async fn a_sendgrid_400_leaves_the_message_dead_with_sendgrids_text() {
    the_providers_refusal_leaves_the_message_dead_with_its_text(Provider::SendGrid).await;
}

#[tokio::test]
async fn postmark_429_and_500_are_retried_then_delivered() {
    throttling_and_server_errors_are_retried_until_delivered(Provider::Postmark).await;
}

#[tokio::test]
async fn sendgrid_429_and_500_are_retried_then_delivered() {
    throttling_and_server_errors_are_retried_until_delivered(Provider::SendGrid).await;
}

#[tokio::test]
async fn mailgun_receives_the_rendered_email() {
    a_templated_send_reaches_the_provider_as_the_rendered_email(Provider::Mailgun).await;
}

#[tokio::test]
async fn a_mailgun_400_leaves_the_message_dead_with_mailguns_text() {
    the_providers_refusal_leaves_the_message_dead_with_its_text(Provider::Mailgun).await;
}

#[tokio::test]
async fn mailgun_429_and_500_are_retried_then_delivered() {
    throttling_and_server_errors_are_retried_until_delivered(Provider::Mailgun).await;
}

#[tokio::test]
async fn a_bad_address_or_a_send_without_subject_is_dead_and_nothing_is_sent() {
    let world = World::start(Provider::Postmark).await;
    let traits = json!({"email": "bo at example dot com", "first_name": "Bo"});
    let answer = world
        .api()
        .post_events(&[
            identify("bo-identify", "bo", traits),
            event_with("bo-o-1", "bo", "order_placed", json!({"order_id": "o-1"})),
        ])
        .await;
    assert_eq!(answer.accepted, 2, "{answer:?}");
    let dead = world
        .thank_you_when("bo", "bo's thank-you dead", |m| {
            m.status == MessageStatus::Dead
        })
        .await;
    let reason = dead.last_error.unwrap_or_default();
    assert!(
        reason.contains("customer.email \"bo at example dot com\" is not a valid email address"),
        "{reason}"
    );

    // Without the stored template, the journey's payload has no subject of its own.
    let (status, _) = world
        .api()
        .request(
            Method::DELETE,
            "/v1/templates/thank_you",
            Some(&world.tenant.api_key),
            Body::Empty,
        )
        .await;
    assert!(status.is_success(), "{status}");
    world.place_order("ana", "o-2").await;
    let dead = world
        .thank_you_when("ana", "ana's thank-you dead", |m| {
            m.status == MessageStatus::Dead
        })
        .await;
    assert_eq!(dead.template_version, None);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("the payload (no stored template was named) has no subject")
    );
    assert_eq!(dead.attempts, 1);
    assert!(
        world.stand_in.requests().is_empty(),
        "nothing reached the provider"
    );
}
