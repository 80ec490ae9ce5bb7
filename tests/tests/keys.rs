//! Scoped API keys (issue 12): a tenant's keys are created, listed by prefix (never the secret)
//! and revoked; a write key is refused on every route but ingest, a read key on every route
//! that changes something, and a revoked key at once.

use std::collections::BTreeSet;
use waymark_tests::*;

/// A path to request for a route: each `{param}` filled in.
fn concrete(route: &str) -> String {
    route
        .split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Ingest: what a write key is for.
const INGEST: &[&str] = &[
    "/v1/events",
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
];
/// Provider feedback (issue 11): routes a provider calls, authenticated by the provider's own
/// signature (checked by the channel's adapter), never by a key.
const PROVIDER_SIGNED: &[&str] = &["/v1/hooks/{tenant}/{channel}"];

/// Whether a route is anyone's: outside `/v1/` (`/healthz`, `/metrics`, ...) and answered
/// without a key. Every `/v1/` route needs one.
fn public(route: &str, answer_without_key: &(StatusCode, Value)) -> bool {
    if route.starts_with("/v1/") {
        assert_error(answer_without_key, StatusCode::UNAUTHORIZED, "unauthorized");
        return false;
    }
    answer_without_key.0 != StatusCode::UNAUTHORIZED
}

async fn new_key(api: &Api, admin_key: &str, scope: &str) -> Value {
    let (status, body) = api
        .request(
            Method::POST,
            "/v1/keys",
            Some(admin_key),
            json!({ "scope": scope, "name": format!("{scope} key") }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test]
async fn a_write_key_is_refused_on_every_non_ingest_route_and_a_read_key_on_every_change() {
    let world = Onboarding::start().await;
    let api = world.api();
    let admin_key = &world.tenant.api_key;
    let write = new_key(&api, admin_key, "write").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let read = new_key(&api, admin_key, "read").await["key"]
        .as_str()
        .unwrap()
        .to_string();

    let routes = waymark_tests::routes::declared();
    for expected in [
        (Method::POST, "/v1/events"),
        (Method::GET, "/v1/customers/{id}"),
        (Method::DELETE, "/v1/keys/{prefix}"),
        // The second method of a chain (`get(..).put(..)`).
        (Method::PUT, "/v1/admin/tenants/{id}/limits"),
        (Method::GET, "/v1/keys"),
        // A path literal on its own line.
        (
            Method::POST,
            "/v1/customers/{id}/enrollments/{journey}/resume",
        ),
    ] {
        assert!(
            routes.contains(&(expected.0.clone(), expected.1.to_string())),
            "{expected:?} not found in {routes:?}"
        );
    }
    let mut checked = 0;
    for (method, route) in &routes {
        let path = concrete(route);
        let anonymous = api.request(method.clone(), &path, None, Body::Empty).await;
        if PROVIDER_SIGNED.contains(&route.as_str())
            || public(route, &anonymous)
            || INGEST.contains(&route.as_str())
        {
            continue;
        }
        let operator = route.starts_with("/v1/admin/");
        let answer = api
            .request(method.clone(), &path, Some(&write), Body::Empty)
            .await;
        if operator {
            assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
        } else {
            assert_eq!(
                answer.0,
                StatusCode::FORBIDDEN,
                "write key on {method} {route}: {}",
                answer.1
            );
            assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
        }
        if *method != Method::GET && !operator {
            let answer = api
                .request(method.clone(), &path, Some(&read), Body::Empty)
                .await;
            assert_eq!(
                answer.0,
                StatusCode::FORBIDDEN,
                "read key on {method} {route}: {}",
                answer.1
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} routes checked: {routes:?}");

    // What each key is for still works.
    let event = json!({ "id": "w-1", "customer": "wes", "name": "signed_up" });
    let answer = api
        .request(Method::POST, "/v1/events", Some(&write), json!([event]))
        .await;
    assert_eq!(answer.0, StatusCode::ACCEPTED, "{}", answer.1);
    world.sink.wait_for_delivery("welcome", "wes").await;
    let answer = api
        .request(Method::GET, "/v1/customers/wes", Some(&read), Body::Empty)
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let answer = api
        .request(Method::POST, "/v1/events", Some(&read), json!([event]))
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn keys_are_listed_by_prefix_without_their_secret_and_a_revoked_key_is_refused_at_once() {
    let world = Onboarding::start().await;
    let api = world.api();
    let first = world.tenant.api_key.clone();
    let created = new_key(&api, &first, "write").await;
    let write = created["key"].as_str().unwrap().to_string();
    let prefix = created["prefix"].as_str().unwrap().to_string();
    assert!(write.starts_with(&prefix) && prefix.len() < write.len());
    assert_eq!(created["scope"], "write");

    let (status, listed) = api
        .request(Method::GET, "/v1/keys", Some(&first), Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let keys = listed["keys"].as_array().unwrap();
    let scopes: BTreeSet<(&str, &str)> = keys
        .iter()
        .map(|k| (k["prefix"].as_str().unwrap(), k["scope"].as_str().unwrap()))
        .collect();
    assert!(scopes.contains(&(prefix.as_str(), "write")), "{listed}");
    assert!(
        scopes.contains(&(&first[..12], "admin")),
        "the first key is listed: {listed}"
    );
    assert!(
        !listed.to_string().contains(&write) && !listed.to_string().contains(&first),
        "no secret is listed"
    );

    let event = |id: &str| json!([{ "id": id, "customer": "wes", "name": "signed_up" }]);
    let answer = api
        .request(Method::POST, "/v1/events", Some(&write), event("e1"))
        .await;
    assert_eq!(answer.0, StatusCode::ACCEPTED, "{}", answer.1);
    let (status, revoked) = api
        .request(
            Method::DELETE,
            &format!("/v1/keys/{prefix}"),
            Some(&first),
            Body::Empty,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["prefix"], prefix.as_str());
    // At once: the very next request.
    let answer = api
        .request(Method::POST, "/v1/events", Some(&write), event("e2"))
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    let answer = api
        .request(
            Method::DELETE,
            &format!("/v1/keys/{prefix}"),
            Some(&first),
            Body::Empty,
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");

    // Rotation without downtime: a new admin key, then the first one revoked.
    let second = new_key(&api, &first, "admin").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = api
        .request(
            Method::DELETE,
            &format!("/v1/keys/{}", &first[..12]),
            Some(&second),
            Body::Empty,
        )
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let answer = api
        .request(Method::GET, "/v1/keys", Some(&first), Body::Empty)
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    let answer = api
        .request(Method::GET, "/v1/customers/wes", Some(&second), Body::Empty)
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);

    // The operator can always issue a key, so no tenant is locked out.
    let token = world.server.admin_token().to_string();
    let (status, issued) = api
        .request(
            Method::POST,
            "/v1/admin/tenants/acme/keys",
            Some(&token),
            json!({ "scope": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let issued = issued["key"].as_str().unwrap();
    let answer = api
        .request(Method::GET, "/v1/keys", Some(issued), Body::Empty)
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let answer = api
        .request(
            Method::POST,
            "/v1/admin/tenants/nobody/keys",
            Some(&token),
            json!({ "scope": "admin" }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
    let answer = api
        .request(
            Method::POST,
            "/v1/admin/tenants/acme/keys",
            Some(issued),
            json!({ "scope": "admin" }),
        )
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");

    // Bad input, and keys only for admin keys.
    let answer = api
        .request(
            Method::POST,
            "/v1/keys",
            Some(&second),
            json!({ "scope": "root" }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_json");
    // The typed client reads the same answers.
    let typed = api.admin_client().with_token(Some(&second));
    let listed = typed.keys().await.expect("GET /v1/keys");
    assert!(listed
        .keys
        .iter()
        .all(|k| k.scope == waymark_api::keys::KeyScope::Admin));
    let made = typed
        .create_key(&waymark_api::keys::NewKey {
            scope: waymark_api::keys::KeyScope::Write,
            name: None,
        })
        .await
        .expect("POST /v1/keys");
    let gone = typed.revoke_key(&made.listed.prefix).await.expect("DELETE");
    assert_eq!(gone, made.listed);
    let read = new_key(&api, &second, "read").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = api
        .request(Method::GET, "/v1/keys", Some(&read), Body::Empty)
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
}
