//! Templates (issue 11), end to end on the real server: a tenant uploads message templates, a
//! journey's send that names one reaches the channel adapter with the parts rendered for the
//! customer (their locale, their time zone) under `content`, beside the journey's payload; a
//! send naming no stored template is delivered as before; a message pins the version it was
//! decided with; a render error leaves the message dead with the reason; a syntax error is
//! refused at upload with its line and column; templates are listed, shown by version,
//! previewed and deleted.

use waymark_tests::*;

/// `PUT /v1/templates/{name}` with `body`: the status and answer.
async fn put_template(world: &Onboarding, name: &str, body: Value) -> (StatusCode, Value) {
    let key = world.tenant.api_key.clone();
    world
        .api()
        .request(
            Method::PUT,
            &format!("/v1/templates/{name}"),
            Some(&key),
            body,
        )
        .await
}

/// A request of the tenant's: the status and answer.
async fn tenant_request(
    world: &Onboarding,
    method: Method,
    path: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let key = world.tenant.api_key.clone();
    world.api().request(method, path, Some(&key), body).await
}

/// The onboarding journey's welcome as an email template in English and Brazilian Portuguese.
fn welcome_email() -> Value {
    json!({
        "channel": "email",
        "default_locale": "en",
        "locales": {
            "en": {
                "subject": "Welcome, {{ customer.first_name }}",
                "text": "Your trial ends on {{ customer.trial_ends_at | date(\"%d %B %Y\") }}.",
                "html": "<p>Hi {{ customer.first_name }}</p>"
            },
            "pt-BR": {
                "subject": "Bem-vinda, {{ customer.first_name }}",
                "text": "Seu teste termina em {{ customer.trial_ends_at | date(\"%d/%m/%Y %H:%M\") }} ({{ message.channel }}, {{ payload.customer_id }}).",
                "html": "<p>Oi {{ customer.first_name }}</p>"
            }
        }
    })
}

/// The customer's welcome message once it satisfies `holds`.
async fn welcome_when(
    api: &Api,
    customer: &str,
    what: &str,
    holds: impl Fn(&Message) -> bool,
) -> Message {
    wait_for_some(what, || async {
        let customer = api.customer(customer).await?;
        customer
            .messages_with_template("welcome")
            .first()
            .filter(|m| holds(m))
            .map(|m| (*m).clone())
    })
    .await
}

#[tokio::test]
async fn a_templated_send_reaches_the_adapter_rendered_for_the_customer() {
    let world = Onboarding::start().await;
    // Before any template is stored, the send is delivered exactly as today.
    let before = world.sign_up("bob").await;
    assert!(
        before.payload().get("content").is_none(),
        "no stored template, no content: {}",
        before.body
    );
    assert_eq!(before.payload()["customer_id"], "bob");

    let (status, stored) = put_template(&world, "welcome", welcome_email()).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["version"], 1);

    let traits = json!({
        "first_name": "Ana <3",
        "locale": "pt-BR",
        "timezone": "America/Sao_Paulo",
        // 02:30 UTC on 1 December is 23:30 on 30 November in São Paulo.
        "trial_ends_at": "2026-12-01T02:30:00Z",
    });
    world
        .api()
        .post_events(&[
            identify("ana-identify", "ana", traits),
            event("ana-signed-up", "ana", "signed_up"),
        ])
        .await;
    let received = world.sink.wait_for_delivery("welcome", "ana").await;
    let payload = received.payload();
    assert_eq!(payload["customer_id"], "ana", "the journey's fields stay");
    assert_eq!(
        payload["content"],
        json!({
            "template": "welcome",
            "version": 1,
            "locale": "pt-BR",
            "subject": "Bem-vinda, Ana <3",
            "text": "Seu teste termina em 30/11/2026 23:30 (webhook, ana).",
            "html": "<p>Oi Ana &lt;3</p>",
        })
    );
    let api = world.api();
    let delivered = welcome_when(&api, "ana", "ana's welcome delivered", |m| {
        m.status == MessageStatus::Delivered
    })
    .await;
    assert_eq!(delivered.template_version, Some(1));
    let bob = welcome_when(&api, "bob", "bob's welcome delivered", |m| {
        m.status == MessageStatus::Delivered
    })
    .await;
    assert_eq!(bob.template_version, None);
}

#[tokio::test]
async fn a_message_renders_the_version_it_was_decided_with_on_every_attempt() {
    let world = Onboarding::start().await;
    let sms = |text: &str| json!({"channel": "sms", "default_locale": "en", "locales": {"en": {"text": text}}});
    let (status, _) = put_template(&world, "welcome", sms("first {{ customer.id }}")).await;
    assert_eq!(status, StatusCode::CREATED);
    world.sink.respond_next(1, StatusCode::SERVICE_UNAVAILABLE);
    world.post("ada-signed-up", "ada", "signed_up").await;
    let first = world
        .sink
        .wait_for("ada's first attempt", |r| count(r, "welcome", "ada") >= 1)
        .await;
    assert_eq!(first[0].payload()["content"]["text"], "first ada");

    // A new version while the message waits for its retry: the retry still renders v1.
    let (status, stored) = put_template(&world, "welcome", sms("second {{ customer.id }}")).await;
    assert_eq!(
        (status, stored["version"].clone()),
        (StatusCode::CREATED, json!(2))
    );
    let both = world
        .sink
        .wait_for("ada's retry", |r| count(r, "welcome", "ada") >= 2)
        .await;
    let texts: Vec<&Value> = both
        .iter()
        .filter(|r| r.is("welcome", "ada"))
        .map(|r| &r.payload()["content"]["text"])
        .collect();
    assert_eq!(texts, [&json!("first ada"), &json!("first ada")]);

    // The next customer's message is decided after v2: it renders v2.
    let bea = world.sign_up("bea").await;
    assert_eq!(bea.payload()["content"]["text"], "second bea");
    assert_eq!(bea.payload()["content"]["version"], 2);
}

#[tokio::test]
async fn a_template_with_a_missing_variable_leaves_the_message_dead_with_the_reason() {
    let world = Onboarding::start().await;
    let template = json!({
        "channel": "sms",
        "default_locale": "en",
        "locales": {"en": {"text": "Hi {{ customer.nickname }}"}}
    });
    let (status, _) = put_template(&world, "welcome", template).await;
    assert_eq!(status, StatusCode::CREATED);
    world.post("ada-signed-up", "ada", "signed_up").await;

    let api = world.api();
    let dead = welcome_when(&api, "ada", "ada's welcome to be dead", |m| {
        m.status == MessageStatus::Dead
    })
    .await;
    assert_eq!(dead.attempts, 1, "a render error is never retried");
    let reason = dead.last_error.clone().unwrap_or_default();
    assert!(
        reason.starts_with("template_error:") && reason.contains("undefined"),
        "the reason is on the message: {reason}"
    );
    assert!(reason.contains("part \"text\""), "{reason}");
    assert_eq!(count(&world.sink.requests(), "welcome", "ada"), 0);
    let (status, listed) =
        tenant_request(&world, Method::GET, "/v1/dead-letters", Body::Empty).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["dead_letters"][0]["id"], json!(dead.id));
}

#[tokio::test]
async fn a_syntax_error_is_refused_at_upload_with_line_and_column() {
    let world = Onboarding::start().await;
    let broken = json!({
        "channel": "email",
        "default_locale": "en",
        "locales": {"en": {"subject": "Hi", "text": "Hello\n  {{ customer.name }\n"}}
    });
    let answer = put_template(&world, "welcome", broken).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_template");
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("line 2, column"), "{message}");
    assert!(message.contains("part \"text\""), "{message}");

    // Nothing was stored.
    let answer = tenant_request(&world, Method::GET, "/v1/templates/welcome", Body::Empty).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");

    // Parts a channel does not take, and unknown fields, are refused too.
    let wrong = json!({"channel": "sms", "default_locale": "en", "locales": {"en": {"subject": "x", "text": "y"}}});
    let answer = put_template(&world, "welcome", wrong).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_template");
    let extra =
        json!({"channel": "sms", "default_locale": "en", "locales": {"en": {"text": "y"}}, "x": 1});
    let answer = put_template(&world, "welcome", extra).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_json");
}

#[tokio::test]
async fn templates_are_versioned_listed_previewed_and_deleted() {
    let world = Onboarding::start().await;
    let (status, _) = put_template(&world, "welcome", welcome_email()).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut second = welcome_email();
    second["locales"]["en"]["subject"] = json!("Hello again, {{ customer.first_name }}");
    let (status, stored) = put_template(&world, "welcome", second).await;
    assert_eq!(
        (status, stored["version"].clone()),
        (StatusCode::CREATED, json!(2))
    );

    let (status, latest) =
        tenant_request(&world, Method::GET, "/v1/templates/welcome", Body::Empty).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["version"], 2);
    let (status, first) = tenant_request(
        &world,
        Method::GET,
        "/v1/templates/welcome?version=1",
        Body::Empty,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        first["locales"]["en"]["subject"],
        "Welcome, {{ customer.first_name }}"
    );
    let answer = tenant_request(
        &world,
        Method::GET,
        "/v1/templates/welcome?version=3",
        Body::Empty,
    )
    .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");

    let (status, list) = tenant_request(&world, Method::GET, "/v1/templates", Body::Empty).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["templates"],
        json!([{
            "name": "welcome", "version": 2, "channel": "email", "default_locale": "en",
            "locales": ["en", "pt-BR"], "created_at": latest["created_at"],
        }])
    );

    // Preview with sample data.
    let (status, preview) = tenant_request(
        &world,
        Method::POST,
        "/v1/templates/welcome/preview",
        json!({"attributes": {"first_name": "Ada", "trial_ends_at": 1_796_083_200_000i64}, "version": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        preview,
        json!({"name": "welcome", "version": 1, "locale": "en", "parts": {
            "subject": "Welcome, Ada",
            "text": "Your trial ends on 01 December 2026.",
            "html": "<p>Hi Ada</p>",
        }})
    );

    // Preview for a stored customer: their attributes, their locale.
    world
        .api()
        .post_events(&[identify(
            "ana-identify",
            "ana",
            json!({"first_name": "Ana", "locale": "pt-BR", "trial_ends_at": "2026-12-01T12:00:00Z"}),
        )])
        .await;
    let api = world.api();
    wait_for_some("ana's profile", || async { api.customer("ana").await }).await;
    let (status, preview) = tenant_request(
        &world,
        Method::POST,
        "/v1/templates/welcome/preview",
        json!({"customer": "ana", "payload": {"customer_id": "ana"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["locale"], "pt-BR");
    assert_eq!(preview["version"], 2);
    assert_eq!(
        preview["parts"]["text"],
        "Seu teste termina em 01/12/2026 12:00 (email, ana)."
    );

    // A render error is answered, not stored: 422 with the reason.
    let answer = tenant_request(
        &world,
        Method::POST,
        "/v1/templates/welcome/preview",
        json!({"attributes": {}}),
    )
    .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "render_failed");
    let answer = tenant_request(
        &world,
        Method::POST,
        "/v1/templates/welcome/preview",
        json!({"customer": "nobody"}),
    )
    .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");

    let (status, _) =
        tenant_request(&world, Method::DELETE, "/v1/templates/welcome", Body::Empty).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = tenant_request(&world, Method::GET, "/v1/templates/welcome", Body::Empty).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
    let answer = tenant_request(&world, Method::DELETE, "/v1/templates/welcome", Body::Empty).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
    // The typed client sees the same.
    let client = api.tenant_client();
    let listed = client.templates().await.expect("a list");
    assert!(listed.templates.is_empty(), "{listed:?}");
    let version_one = client.template("welcome", Some(1)).await;
    assert_eq!(
        version_one.err().and_then(|e| e.status()),
        Some(StatusCode::NOT_FOUND)
    );
    let upload: waymark_api::templates::TemplateUpload =
        serde_json::from_value(welcome_email()).expect("a template upload");
    let again = client
        .put_template("welcome", &upload)
        .await
        .expect("stored");
    assert_eq!(again.version, 3, "numbering goes on after a deletion");
    let preview = client
        .preview_template(
            "welcome",
            &waymark_api::templates::PreviewRequest {
                customer: Some("ana".into()),
                payload: Some(json!({"customer_id": "ana"})),
                ..Default::default()
            },
        )
        .await
        .expect("a preview");
    assert_eq!(preview.parts["subject"], "Bem-vinda, Ana");
    client.delete_template("welcome").await.expect("deleted");
    // Once deleted, sends naming it go out as they did before templates.
    let ada = world.sign_up("ada").await;
    assert!(ada.payload().get("content").is_none(), "{}", ada.body);
}
