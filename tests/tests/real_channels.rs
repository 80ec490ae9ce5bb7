//! Examples on real channels (issue 11, crm slice): the example journeys with the channel
//! plugins registered under the channel names they send through, each against a loopback
//! stand-in of its provider that checks every request as the provider's reference gives it,
//! and the copy in stored templates. Win-back's email goes out through Postmark
//! (`plugins/email`), its SMS fallback through Twilio (`plugins/sms`). Guided onboarding's
//! handoff to Slack and HubSpot is in `crm.rs`.

use waymark_tests::mail_providers::MailProvider;
use waymark_tests::*;

const POSTMARK_TOKEN: &str = "postmark-server-token";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token";

#[tokio::test]
async fn win_back_sends_a_templated_email_through_postmark_then_a_templated_sms_through_twilio() {
    let postmark = MailProvider::postmark(POSTMARK_TOKEN);
    let twilio = StandIn::start(Provider::Twilio {
        account_sid: ACCOUNT_SID.into(),
        auth_token: AUTH_TOKEN.into(),
    });
    let server = Server::start(ServerOptions::default()).await;
    let (tenant, _) = tenant_with_journey(
        &server,
        "acme",
        None,
        "win-back",
        artifacts().component(&example_crate("win-back")),
    )
    .await;
    let api = server.as_tenant(&tenant);
    api.register_channel(
        "email",
        &artifacts().component(EMAIL_CRATE),
        json!({"provider": "postmark", "from": "hello@acme.example", "base_url": postmark.url()}),
        json!({"server_token": POSTMARK_TOKEN}),
        &[postmark.authority()],
    )
    .await;
    api.register_channel(
        "sms",
        &artifacts().component(SMS_CRATE),
        json!({"provider": "twilio", "account_sid": ACCOUNT_SID, "from": "+15005550006",
               "base_url": twilio.url()}),
        json!({"auth_token": AUTH_TOKEN}),
        &[twilio.authority()],
    )
    .await;
    let key = tenant.api_key.clone();
    for (name, template) in [
        (
            "win_back",
            json!({"channel": "email", "default_locale": "en", "locales": {"en": {
                "subject": "We miss you, {{ customer.first_name }}",
                "text": "Hi {{ customer.first_name }}, come back: your projects are waiting.",
                "html": "<p>Hi {{ customer.first_name }}, come back: your projects are waiting.</p>",
            }}}),
        ),
        (
            "win_back_sms",
            json!({"channel": "sms", "default_locale": "en", "locales": {"en": {
                "text": "{{ customer.first_name }}, your projects miss you. Reply STOP to opt out.",
            }}}),
        ),
    ] {
        let (status, stored) = api
            .request(
                Method::PUT,
                &format!("/v1/templates/{name}"),
                Some(&key),
                template,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
    }

    let answer = api
        .post_events(&[identify(
            "ana-identify",
            "ana",
            json!({"first_name": "Ana", "email": "ana@example.com", "phone": "+447700900123"}),
        )])
        .await;
    assert_eq!(answer.accepted, 1, "{answer:?}");
    // Audience triggers (issue 12): once the identify is processed (it starts her inactivity
    // watch), thirty quiet days enter her.
    let started = std::time::Instant::now();
    while api.customer("ana").await.is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "ana never processed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.api().advance_clock(30 * DAY_MS).await;
    let emails = postmark
        .wait_for("ana's win-back email", |r| !r.is_empty())
        .await;
    assert_eq!(postmark.violations(), Vec::<String>::new());
    let email = &emails[0].body;
    assert_eq!(email["To"], "ana@example.com");
    assert_eq!(email["Subject"], "We miss you, Ana");
    assert_eq!(
        email["TextBody"],
        "Hi Ana, come back: your projects are waiting."
    );
    assert_eq!(
        email["HtmlBody"],
        "<p>Hi Ana, come back: your projects are waiting.</p>"
    );
    assert!(
        twilio.calls().is_empty(),
        "no SMS while the email may be opened"
    );

    // Three days without opening it: the SMS fallback, templated, through Twilio.
    server.api().advance_clock(3 * DAY_MS).await;
    let texts = twilio.wait_for_calls(1).await;
    assert_eq!(texts[0].problems, Vec::<String>::new());
    assert_eq!(texts[0].field("To").as_deref(), Some("+447700900123"));
    assert_eq!(
        texts[0].field("Body").as_deref(),
        Some("Ana, your projects miss you. Reply STOP to opt out.")
    );
}

#[tokio::test]
async fn renewal_sends_its_reminders_through_postmark_in_each_customers_locale() {
    let postmark = MailProvider::postmark(POSTMARK_TOKEN);
    let server = Server::start(ServerOptions::default()).await;
    let (tenant, _) = tenant_with_journey(
        &server,
        "acme",
        None,
        "renewal",
        artifacts().component(&example_crate("renewal")),
    )
    .await;
    let api = server.as_tenant(&tenant);
    api.register_channel(
        "email",
        &artifacts().component(EMAIL_CRATE),
        json!({"provider": "postmark", "from": "billing@acme.example", "base_url": postmark.url()}),
        json!({"server_token": POSTMARK_TOKEN}),
        &[postmark.authority()],
    )
    .await;
    let key = tenant.api_key.clone();
    let template = json!({"channel": "email", "default_locale": "en", "locales": {
        "en": {"subject": "Your plan renews in {{ payload.days_before }} days",
               "text": "It renews on {{ payload.renewal_date }}."},
        "de": {"subject": "Ihr Tarif verlängert sich in {{ payload.days_before }} Tagen",
               "text": "Er verlängert sich am {{ payload.renewal_date }}."},
    }});
    let (status, stored) = api
        .request(
            Method::PUT,
            "/v1/templates/renewal_reminder",
            Some(&key),
            template,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");

    let admin = server.api();
    let start = admin.clock_now().await;
    let renewal_date = utc_date_string(start + 40 * DAY_MS);
    let (y, m, d) = utc_date(start + 40 * DAY_MS);
    let first_reminder = utc_midnight(y, m, d) - 30 * DAY_MS + 9 * HOUR_MS;
    // Ada reads German (`de-AT` falls back to `de`); bob has no locale: the default, English.
    let answer = api
        .post_events(&[
            identify(
                "ada-traits",
                "ada",
                json!({"renewal_date": renewal_date, "locale": "de-AT", "email": "ada@example.com"}),
            ),
            event("ada-scheduled", "ada", "renewal_scheduled"),
            identify(
                "bob-traits",
                "bob",
                json!({"renewal_date": renewal_date, "email": "bob@example.com"}),
            ),
            event("bob-scheduled", "bob", "renewal_scheduled"),
        ])
        .await;
    assert_eq!(answer.accepted, 4, "{answer:?}");
    for customer in ["ada", "bob"] {
        api.wait_for_enrollment(customer, "renewal", "reminders planned", |e| {
            e.timer("lapsed").is_some()
        })
        .await;
    }
    admin.advance_clock(first_reminder - start).await;
    let emails = postmark
        .wait_for("both 30-day reminders", |r| r.len() >= 2)
        .await;
    assert_eq!(postmark.violations(), Vec::<String>::new());
    let to = |address: &str| {
        emails
            .iter()
            .find(|r| r.body["To"] == address)
            .unwrap_or_else(|| panic!("no email to {address}: {emails:#?}"))
            .body
            .clone()
    };
    let ada = to("ada@example.com");
    assert_eq!(ada["Subject"], "Ihr Tarif verlängert sich in 30 Tagen");
    assert_eq!(
        ada["TextBody"],
        format!("Er verlängert sich am {renewal_date}.")
    );
    let bob = to("bob@example.com");
    assert_eq!(bob["Subject"], "Your plan renews in 30 days");
    assert_eq!(bob["TextBody"], format!("It renews on {renewal_date}."));
}
