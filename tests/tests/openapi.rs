//! The OpenAPI document (issue 12): `GET /openapi.json` describes exactly the routes the server
//! has, and real answers of every route — successes and errors — validate against the schemas
//! it gives for their status.

use waymark_tests::openapi::OpenApi;
use waymark_tests::*;

#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_server_declares() {
    let server = Server::start(ServerOptions::default()).await;
    let doc = OpenApi::fetch(server.url()).await;
    assert_eq!(doc.document["openapi"], "3.1.0");
    let described = doc.operations();
    let declared = waymark_tests::routes::declared();
    let missing: Vec<_> = declared.difference(&described).collect();
    let extra: Vec<_> = described.difference(&declared).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not in the document: {missing:?}; operations with no route: {extra:?}"
    );
}

#[tokio::test]
async fn real_answers_of_every_route_validate_against_the_documents_schemas() {
    let world = Onboarding::start().await;
    let url = world.server.url().to_string();
    let doc = OpenApi::fetch(&url).await;
    let tenant = world.api();
    let admin = world.admin();
    let key = world.tenant.api_key.clone();
    let token = Some(key.as_str());
    let mut checked = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let mut check = |method: Method, path: &str, answer: (StatusCode, Value)| {
        let (status, body) = answer;
        if let Err(e) = doc.check(&method, path, status.as_u16(), &body) {
            failures.push(e);
        }
        checked.insert((
            method.to_string(),
            doc.template(path).unwrap_or_default(),
            status.as_u16(),
        ));
        body
    };

    // Operator routes.
    let r = admin
        .request(Method::GET, "/healthz", None, Body::Empty)
        .await;
    check(Method::GET, "/healthz", r);
    for (method, path, body) in [
        (Method::GET, "/v1/admin/clock", Value::Null),
        (Method::POST, "/v1/admin/clock/advance", json!({"by_ms": 1})),
        (
            Method::POST,
            "/v1/admin/clock/advance",
            json!({"by_ms": -1}),
        ),
        (Method::POST, "/v1/admin/tenants", json!({"name": "other"})),
        (Method::POST, "/v1/admin/tenants", json!({"name": "other"})),
        (Method::GET, "/v1/admin/tenants/acme/limits", Value::Null),
        (
            Method::PUT,
            "/v1/admin/tenants/acme/limits",
            json!({"decide_deadline_ms": 500}),
        ),
        (Method::GET, "/v1/admin/tenants/nobody/limits", Value::Null),
        (
            Method::POST,
            "/v1/admin/tenants/acme/keys",
            json!({"scope": "read"}),
        ),
    ] {
        let body = if body.is_null() {
            Body::Empty
        } else {
            Body::Json(body)
        };
        let r = admin.request(method.clone(), path, None, body).await;
        check(method, path, r);
    }

    // A customer's journey, so the reads below have something to show.
    let welcome = world.sign_up("ada").await;
    assert_eq!(welcome.body["customer"]["id"], "ada");

    let template = json!({
        "channel": "email",
        "default_locale": "en",
        "locales": {"en": {"subject": "Hi {{ customer.id }}", "text": "Welcome"}}
    });
    let event = json!([{"id": "e-open", "customer": "bob", "name": "signed_up"}]);
    let segment = json!({"userId": "cy", "event": "signed_up", "messageId": "m1"});
    let batch =
        json!({"batch": [{"type": "track", "userId": "di", "event": "x", "messageId": "m2"}]});
    for (method, path, body) in [
        (Method::GET, "/v1/journeys", Value::Null),
        (Method::GET, "/v1/journeys/onboarding", Value::Null),
        (Method::GET, "/v1/journeys/nowhere", Value::Null),
        (Method::GET, "/v1/journeys/onboarding/report", Value::Null),
        (Method::GET, "/v1/journeys/onboarding/breaker", Value::Null),
        (
            Method::POST,
            "/v1/journeys/onboarding/promote",
            json!({"version": 1}),
        ),
        (
            Method::POST,
            "/v1/journeys/onboarding/promote",
            json!({"version": 7}),
        ),
        (
            Method::POST,
            "/v1/journeys/onboarding/rollback",
            Value::Null,
        ),
        (Method::GET, "/v1/channels", Value::Null),
        (Method::PUT, "/v1/templates/welcome", template.clone()),
        (
            Method::PUT,
            "/v1/templates/broken",
            json!({"channel": "sms", "default_locale": "en", "locales": {"en": {"text": "{{ x"}}}),
        ),
        (Method::GET, "/v1/templates", Value::Null),
        (Method::GET, "/v1/templates/welcome", Value::Null),
        (
            Method::POST,
            "/v1/templates/welcome/preview",
            json!({"customer": "ada"}),
        ),
        (Method::DELETE, "/v1/templates/welcome", Value::Null),
        (Method::GET, "/v1/templates/welcome", Value::Null),
        (Method::POST, "/v1/events", event.clone()),
        (Method::POST, "/v1/events", event),
        (
            Method::POST,
            "/v1/events",
            json!([{"id": "", "customer": "x", "name": "y"}]),
        ),
        (Method::POST, "/v1/track", segment),
        (Method::POST, "/v1/batch", batch),
        (
            Method::POST,
            "/v1/group",
            json!({"userId": "cy", "groupId": "g", "messageId": "g-1"}),
        ),
        // Issue 12: identity merge and accounts.
        (
            Method::POST,
            "/v1/alias",
            json!({"userId": "cy", "previousId": "anon-cy"}),
        ),
        (Method::GET, "/v1/accounts/g", Value::Null),
        (Method::GET, "/v1/accounts/nobody", Value::Null),
        (Method::GET, "/v1/customers/ada", Value::Null),
        (Method::GET, "/v1/customers/nobody", Value::Null),
        (
            Method::POST,
            "/v1/customers/ada/enrollments/onboarding/resume",
            Value::Null,
        ),
        (Method::GET, "/v1/policy", Value::Null),
        (
            Method::PUT,
            "/v1/policy",
            json!({"frequency_caps": [], "quiet_hours": null}),
        ),
        (Method::GET, "/v1/tasks", Value::Null),
        (
            Method::GET,
            "/v1/tasks/task_00000000000000000000000000000000",
            Value::Null,
        ),
        (Method::GET, "/v1/dead-letters", Value::Null),
        (
            Method::POST,
            "/v1/dead-letters/retry",
            json!({"ids": ["nope"]}),
        ),
        (
            Method::POST,
            "/v1/keys",
            json!({"scope": "write", "name": "site"}),
        ),
        (Method::GET, "/v1/keys", Value::Null),
        (Method::DELETE, "/v1/keys/wmk_00000000", Value::Null),
    ] {
        let body = if body.is_null() {
            Body::Empty
        } else {
            Body::Json(body)
        };
        let r = tenant.request(method.clone(), path, token, body).await;
        check(method, path, r);
    }
    // Backtests (issue 13): start one, read it, cancel it; and one that does not exist.
    let started = check(
        Method::POST,
        "/v1/journeys/onboarding/backtests",
        tenant
            .request(
                Method::POST,
                "/v1/journeys/onboarding/backtests",
                token,
                Body::Json(json!({"candidate": {"version": 1}, "from": 0, "to": 1})),
            )
            .await,
    );
    let id = started["id"].as_str().unwrap_or("bt_missing").to_string();
    for (method, path) in [
        (
            Method::GET,
            format!("/v1/journeys/onboarding/backtests/{id}"),
        ),
        (
            Method::POST,
            format!("/v1/journeys/onboarding/backtests/{id}/cancel"),
        ),
        (
            Method::GET,
            "/v1/journeys/onboarding/backtests/bt_0000000000000000".to_string(),
        ),
    ] {
        let r = tenant
            .request(method.clone(), &path, token, Body::Empty)
            .await;
        check(method, &path, r);
    }
    // Refused before any handler: no key, a wrong content type.
    let r = tenant
        .request(Method::GET, "/v1/journeys", None, Body::Empty)
        .await;
    check(Method::GET, "/v1/journeys", r);
    let r = tenant
        .request(
            Method::PUT,
            "/v1/journeys/onboarding",
            token,
            Body::Raw {
                content_type: "text/csv",
                bytes: b"a,b".to_vec(),
            },
        )
        .await;
    check(Method::PUT, "/v1/journeys/onboarding", r);

    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The checker does refuse what the schemas do not allow.
    let wrong = json!({"journeys": [{"name": 1}]});
    assert!(doc
        .check(&Method::GET, "/v1/journeys", 200, &wrong)
        .is_err());
    assert!(doc
        .check(&Method::GET, "/v1/journeys", 200, &json!({}))
        .is_err());
    let error = json!({"error": {"code": "x"}});
    assert!(doc
        .check(&Method::GET, "/v1/journeys", 404, &error)
        .is_err());
    assert!(doc
        .check(&Method::GET, "/v1/journeys", 418, &json!({}))
        .is_err());
    // Successes and errors were both seen, over most of the API.
    let statuses: std::collections::BTreeSet<u16> = checked.iter().map(|c| c.2).collect();
    for status in [200, 201, 202, 204, 400, 401, 404, 409, 415] {
        assert!(
            statuses.contains(&status),
            "no {status} checked: {checked:?}"
        );
    }
    let operations: std::collections::BTreeSet<_> = checked
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert!(operations.len() >= 30, "{operations:?}");
}
