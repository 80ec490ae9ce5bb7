//! Bad input is refused with the documented status and a JSON error body, and nothing of a
//! refused request is stored.

use waymark_tests::*;

async fn server_with_tenant() -> (Server, CreatedTenant) {
    let server = Server::start(ServerOptions::default()).await;
    let tenant = server.api().create_tenant("acme").await;
    (server, tenant)
}

#[tokio::test]
async fn requests_without_or_with_a_wrong_key_are_unauthorized() {
    let (server, tenant) = server_with_tenant().await;
    let api = server.api();
    let unauthorized = |answer| assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");

    unauthorized(
        api.request(Method::GET, "/v1/journeys", None, Body::Empty)
            .await,
    );
    unauthorized(
        api.request(
            Method::GET,
            "/v1/journeys",
            Some("wm_not_a_key"),
            Body::Empty,
        )
        .await,
    );
    unauthorized(
        api.request(
            Method::POST,
            "/v1/events",
            Some("wm_not_a_key"),
            event("e1", "ada", "signed_up"),
        )
        .await,
    );
    unauthorized(
        api.request(
            Method::POST,
            "/v1/admin/tenants",
            None,
            json!({ "name": "other" }),
        )
        .await,
    );
    unauthorized(
        api.request(
            Method::POST,
            "/v1/admin/tenants",
            Some(&tenant.api_key),
            json!({ "name": "other" }),
        )
        .await,
    );

    // The refused event was not stored.
    assert!(server.as_tenant(&tenant).customer("ada").await.is_none());
}

#[tokio::test]
async fn unknown_journey_and_customer_are_not_found() {
    let (server, tenant) = server_with_tenant().await;
    let api = server.api();
    let key = Some(tenant.api_key.as_str());

    let journey = api
        .request(
            Method::GET,
            "/v1/journeys/no-such-journey",
            key,
            Body::Empty,
        )
        .await;
    assert_error(&journey, StatusCode::NOT_FOUND, "not_found");
    let customer = api
        .request(Method::GET, "/v1/customers/nobody", key, Body::Empty)
        .await;
    assert_error(&customer, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn malformed_json_and_invalid_events_are_bad_requests() {
    let (server, tenant) = server_with_tenant().await;
    let api = server.api();
    let key = Some(tenant.api_key.as_str());

    let truncated = Body::json_text(r#"{"id": "e1", "customer": "ada", "#);
    assert_error(
        &api.request(Method::POST, "/v1/events", key, truncated)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    let admin = Some(server.admin_token());
    assert_error(
        &api.request(
            Method::POST,
            "/v1/admin/tenants",
            admin,
            Body::json_text("{name:"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    assert_error(
        &api.request(
            Method::PUT,
            "/v1/channels/webhook",
            key,
            Body::json_text("[1, 2"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );

    let without_customer = json!({ "id": "e1", "name": "signed_up" });
    assert_error(
        &api.request(Method::POST, "/v1/events", key, without_customer)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_event",
    );
    assert!(server.as_tenant(&tenant).customer("ada").await.is_none());
}

#[tokio::test]
async fn upload_that_is_not_a_component_is_refused_and_stores_no_version() {
    let (server, tenant) = server_with_tenant().await;
    let api = server.api();
    let key = Some(tenant.api_key.as_str());
    // Text, and a valid but empty core module: neither is a component.
    let not_components = [b"definitely not wasm".to_vec(), b"\0asm\x01\0\0\0".to_vec()];

    for bytes in &not_components {
        let answer = api
            .request(
                Method::PUT,
                "/v1/journeys/onboarding",
                key,
                Body::wasm(bytes.clone()),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_component");
    }
    let (status, journeys) = api
        .request(Method::GET, "/v1/journeys", key, Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK, "{journeys}");
    assert_eq!(
        journeys["journeys"],
        json!([]),
        "nothing stored: {journeys}"
    );
    let journey = api
        .request(Method::GET, "/v1/journeys/onboarding", key, Body::Empty)
        .await;
    assert_error(&journey, StatusCode::NOT_FOUND, "not_found");

    // After a good version, a bad upload adds no second one.
    let tenant_api = server.as_tenant(&tenant);
    let v1 = tenant_api
        .upload_journey(ONBOARDING, artifacts().component(ONBOARDING_CRATE))
        .await;
    let answer = api
        .request(
            Method::PUT,
            "/v1/journeys/onboarding",
            key,
            Body::wasm(not_components[0].clone()),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_component");
    let (status, journey) = api
        .request(Method::GET, "/v1/journeys/onboarding", key, Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK, "{journey}");
    let versions = journey["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1, "only the good version: {journey}");
    assert_eq!(versions[0]["version"], v1.version);

    // The same holds for channels.
    let channel = json!({
        "component": waymark_client::component_base64(&not_components[1]),
        "settings": { "url": "http://127.0.0.1:9/webhook" },
        "secrets": {},
        "allowed_hosts": ["127.0.0.1:9"],
    });
    let answer = api
        .request(Method::PUT, "/v1/channels/webhook", key, channel)
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_component");
    let (status, channels) = api
        .request(Method::GET, "/v1/channels", key, Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK, "{channels}");
    assert_eq!(
        channels["channels"],
        json!([]),
        "nothing stored: {channels}"
    );
}

#[tokio::test]
async fn batch_with_one_invalid_event_is_refused_whole() {
    let world = Onboarding::start().await;
    let api = world.api();
    let key = Some(world.tenant.api_key.as_str());
    let batch = json!([
        event("ada-signed-up", "ada", "signed_up"),
        { "id": "bob-signed-up", "customer": "bob" },
    ]);

    let answer = api.request(Method::POST, "/v1/events", key, batch).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_event");
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains('1'),
        "the message names the index of the bad event: {message}"
    );
    assert!(
        api.customer("ada").await.is_none(),
        "ada's valid event was stored"
    );
    assert!(
        api.customer("bob").await.is_none(),
        "bob's invalid event was stored"
    );

    // The valid event alone is new to the server, not a duplicate, and has its usual effect.
    let alone = api
        .post_events(&[event("ada-signed-up", "ada", "signed_up")])
        .await;
    assert_eq!((alone.accepted, alone.duplicates), (1, 0), "{alone:?}");
    world.sink.wait_for_delivery("welcome", "ada").await;
    assert!(api.customer("ada").await.is_some());
}

#[tokio::test]
async fn creating_a_tenant_twice_conflicts() {
    let (server, _tenant) = server_with_tenant().await;
    let answer = server
        .api()
        .request(
            Method::POST,
            "/v1/admin/tenants",
            Some(server.admin_token()),
            json!({ "name": "acme" }),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "tenant_exists");
}

#[tokio::test]
async fn the_system_clock_cannot_be_advanced() {
    let server = Server::start(ServerOptions {
        clock: Clock::System,
        ..ServerOptions::default()
    })
    .await;
    let answer = server
        .api()
        .request(
            Method::POST,
            "/v1/admin/clock/advance",
            Some(server.admin_token()),
            json!({ "by_ms": 1000 }),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "clock_not_manual");
}

#[tokio::test]
async fn a_channel_that_its_manifest_refuses_is_not_registered_and_the_error_names_the_key() {
    let (server, tenant) = server_with_tenant().await;
    let api = server.api();
    let key = Some(tenant.api_key.as_str());
    let webhook = waymark_client::component_base64(&artifacts().component(WEBHOOK_CRATE));
    let register = |settings: Value, secrets: Value| {
        json!({
            "component": webhook,
            "settings": settings,
            "secrets": secrets,
            "allowed_hosts": ["127.0.0.1:9"],
        })
    };
    let refusals = [
        // `url` is required by plugins/webhook/channel.toml.
        (register(json!({}), json!({})), "url"),
        // `bearer_token` is a secret: as a setting the API would show it back.
        (
            register(
                json!({ "url": "http://127.0.0.1:9/", "bearer_token": "s3cret" }),
                json!({}),
            ),
            "bearer_token",
        ),
        // Nothing declares `colour`.
        (
            register(
                json!({ "url": "http://127.0.0.1:9/", "colour": "red" }),
                json!({}),
            ),
            "colour",
        ),
    ];
    for (body, named) in refusals {
        let answer = api
            .request(Method::PUT, "/v1/channels/webhook", key, body)
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_config");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{named} named in {message:?}");
    }
    let (_, channels) = api
        .request(Method::GET, "/v1/channels", key, Body::Empty)
        .await;
    assert_eq!(
        channels["channels"],
        json!([]),
        "nothing stored: {channels}"
    );

    // What the manifest declares registers.
    let (status, _) = api
        .request(
            Method::PUT,
            "/v1/channels/webhook",
            key,
            register(
                json!({ "url": "http://127.0.0.1:9/" }),
                json!({ "bearer_token": "s3cret" }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
