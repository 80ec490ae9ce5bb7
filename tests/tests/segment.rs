//! Segment-compatible ingest (issue 12): Segment's HTTP Tracking API bodies, sent as Segment's
//! libraries send them (gzip, the write key as the HTTP Basic user name with an empty
//! password, ISO-8601 times, `messageId`, `context`), enroll customers in a journey; the same
//! batch again is all duplicates; Segment's size limits and a gzip bomb are refused with 413;
//! and Segment's official Python library, pointed at the server with `host=`, is taken
//! (its `group` and `alias` calls too).

use flate2::write::GzEncoder;
use std::io::Write;
use waymark_tests::python::segment_python;
use waymark_tests::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// `at` as Segment's libraries write times: ISO-8601 with milliseconds and an offset.
fn iso(at: Millis) -> String {
    let day = at.rem_euclid(DAY_MS);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}+00:00",
        utc_date_string(at),
        day / HOUR_MS,
        day % HOUR_MS / MINUTE_MS,
        day % MINUTE_MS / 1000,
        day % 1000
    )
}

/// A new key of `scope` for the world's tenant, made with its first (admin) key.
async fn new_key(world: &Onboarding, scope: &str) -> String {
    let (status, body) = world
        .api()
        .request(
            Method::POST,
            "/v1/keys",
            Some(&world.tenant.api_key),
            json!({ "scope": scope }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().expect("the new key").to_string()
}

/// How a request to a Segment route is sent.
enum Auth<'a> {
    Basic(&'a str),
    Bearer(&'a str),
}

/// POSTs `body` (already encoded; gzipped when `gzipped`) to `path` as Segment's libraries do.
async fn send(
    world: &Onboarding,
    path: &str,
    auth: Auth<'_>,
    body: Vec<u8>,
    gzipped: bool,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", world.server.url()))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    request = match auth {
        // `user:` base64-encoded: the write key and an empty password.
        Auth::Basic(key) => request.basic_auth(key, None::<&str>),
        Auth::Bearer(key) => request.bearer_auth(key),
    };
    if gzipped {
        request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
    }
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let text = response.text().await.expect("a body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A batch as analytics-python sends one: `None` fields left out, an empty `integrations`, its
/// library in `context`, a UUID `messageId`, the time of the call in `timestamp`, the batch's
/// `sentAt` and the write key beside it.
fn python_shaped_batch(now: Millis, key: &str) -> Value {
    let library = json!({ "library": { "name": "analytics-python", "version": "2.4.0" } });
    json!({
        "batch": [
            { "integrations": {}, "timestamp": iso(now - 3_000), "context": library,
              "type": "identify", "userId": "ada",
              "traits": { "email": "ada@example.com", "plan": "pro" },
              "messageId": "6c1b5c0e-2d54-4c6e-9a57-0b1f4f7f2a01" },
            { "integrations": {}, "properties": { "source": "ads" },
              "timestamp": iso(now - 2_000), "context": library, "userId": "ada",
              "type": "track", "event": "signed_up",
              "messageId": "6c1b5c0e-2d54-4c6e-9a57-0b1f4f7f2a02" },
            { "integrations": {}, "properties": {}, "timestamp": iso(now - 1_000),
              "context": library, "anonymousId": "anon-bob", "type": "track",
              "event": "signed_up", "messageId": "6c1b5c0e-2d54-4c6e-9a57-0b1f4f7f2a03" },
            { "integrations": {}, "properties": { "path": "/pricing" },
              "timestamp": iso(now), "category": "Docs", "context": library,
              "userId": "ada", "type": "page", "name": "Pricing",
              "messageId": "6c1b5c0e-2d54-4c6e-9a57-0b1f4f7f2a04" },
        ],
        "sentAt": iso(now),
        "writeKey": key,
    })
}

#[tokio::test]
async fn a_gzipped_segment_batch_with_the_write_key_enrolls_customers_and_again_is_all_duplicates()
{
    let world = Onboarding::start().await;
    let key = new_key(&world, "write").await;
    let now = world.admin().clock_now().await;
    let body = gzip(python_shaped_batch(now, &key).to_string().as_bytes());

    let first = send(&world, "/v1/batch", Auth::Basic(&key), body.clone(), true).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(
        first.1,
        json!({ "success": true, "accepted": 4, "duplicates": 0 })
    );

    // Ada was identified before she signed up: her welcome reads the trait.
    let welcome = world.sink.wait_for_delivery("welcome", "ada").await;
    assert_eq!(welcome.body["payload"]["email"], "ada@example.com");
    // An anonymous id is the customer id.
    world.sink.wait_for_delivery("welcome", "anon-bob").await;
    let ada = world.api().customer("ada").await.expect("ada");
    assert_eq!(ada.attributes["plan"], "pro");

    let again = send(&world, "/v1/batch", Auth::Basic(&key), body, true).await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    assert_eq!(
        again.1,
        json!({ "success": true, "accepted": 0, "duplicates": 4 })
    );
    let ada = world.api().customer("ada").await.expect("ada");
    assert_eq!(ada.enrollments.len(), 1, "{:?}", ada.enrollments);
}

#[tokio::test]
async fn single_calls_take_a_bearer_or_basic_key_and_answer_as_segment_does() {
    let world = Onboarding::start().await;
    let key = new_key(&world, "write").await;
    let track = json!({ "userId": "cy", "event": "signed_up", "messageId": "cy-1",
                        "timestamp": "2026-03-01T10:00:00.000Z", "context": { "ip": "10.0.0.1" } });
    let answer = send(
        &world,
        "/v1/track",
        Auth::Bearer(&key),
        track.to_string().into_bytes(),
        false,
    )
    .await;
    assert_eq!(
        answer,
        (
            StatusCode::OK,
            json!({ "success": true, "accepted": 1, "duplicates": 0 })
        )
    );
    world.sink.wait_for_delivery("welcome", "cy").await;

    let identify = json!({ "userId": "cy", "traits": { "name": "Cy" } });
    let answer = send(
        &world,
        "/v1/identify",
        Auth::Basic(&key),
        gzip(identify.to_string().as_bytes()),
        true,
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    for (path, body) in [
        ("/v1/page", json!({ "anonymousId": "a-1", "name": "Home" })),
        ("/v1/screen", json!({ "userId": "cy", "name": "Settings" })),
    ] {
        let answer = send(
            &world,
            path,
            Auth::Basic(&key),
            body.to_string().into_bytes(),
            false,
        )
        .await;
        assert_eq!(answer.0, StatusCode::OK, "{path}: {}", answer.1);
    }
    let cy = wait_for_some("cy's name from identify", || async {
        let cy = world.api().customer("cy").await?;
        (cy.attributes.get("name") == Some(&json!("Cy"))).then_some(cy)
    })
    .await;
    assert_eq!(cy.attributes["name"], "Cy");

    // Group and alias are taken (accounts and identity merge: tests/tests/identity.rs); a
    // bad message in a batch refuses the whole batch, naming its index.
    for (path, body) in [
        (
            "/v1/group",
            json!({ "userId": "cy", "groupId": "g1", "traits": {} }),
        ),
        ("/v1/alias", json!({ "userId": "cy", "previousId": "a-1" })),
    ] {
        let answer = send(
            &world,
            path,
            Auth::Basic(&key),
            body.to_string().into_bytes(),
            false,
        )
        .await;
        assert_eq!(answer.0, StatusCode::OK, "{path}: {}", answer.1);
    }
    let with_bad_group = json!({ "batch": [
        { "type": "track", "userId": "dee", "event": "signed_up", "messageId": "dee-1" },
        { "type": "group", "userId": "dee" },
    ]});
    let answer = send(
        &world,
        "/v1/batch",
        Auth::Basic(&key),
        with_bad_group.to_string().into_bytes(),
        false,
    )
    .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_event");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("event 1:")),
        "{}",
        answer.1
    );
    assert!(
        world.api().customer("dee").await.is_none(),
        "a refused batch stores nothing"
    );

    // Bad input: Waymark's error shape.
    let answer = send(
        &world,
        "/v1/track",
        Auth::Basic(&key),
        json!({ "event": "x" }).to_string().into_bytes(),
        false,
    )
    .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_event");
    let answer = send(
        &world,
        "/v1/track",
        Auth::Basic("wmk_not_a_key"),
        track.to_string().into_bytes(),
        false,
    )
    .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    let read = new_key(&world, "read").await;
    let answer = send(
        &world,
        "/v1/track",
        Auth::Basic(&read),
        track.to_string().into_bytes(),
        false,
    )
    .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn segments_size_limits_and_a_gzip_bomb_are_refused_with_413() {
    let world = Onboarding::start().await;
    let key = new_key(&world, "write").await;
    let big = "x".repeat(33 * 1024);
    // A call over 32 KB.
    let call = json!({ "userId": "u", "event": "e", "properties": { "big": big } });
    let answer = send(
        &world,
        "/v1/track",
        Auth::Basic(&key),
        call.to_string().into_bytes(),
        false,
    )
    .await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // A message over 32 KB in a batch under 500 KB.
    let batch = json!({ "batch": [{ "type": "track", "userId": "u", "event": "e", "properties": { "big": big } }] });
    let answer = send(
        &world,
        "/v1/batch",
        Auth::Basic(&key),
        batch.to_string().into_bytes(),
        false,
    )
    .await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // A batch over 500 KB of messages each under 32 KB: refused by its length, plain or
    // once inflated.
    let small = "x".repeat(20 * 1024);
    let messages: Vec<Value> = (0..30)
        .map(|i| json!({ "type": "track", "userId": "u", "event": "e", "messageId": format!("m{i}"), "properties": { "p": small } }))
        .collect();
    let batch = json!({ "batch": messages }).to_string().into_bytes();
    assert!(batch.len() > 500 * 1024);
    let answer = send(&world, "/v1/batch", Auth::Basic(&key), batch.clone(), false).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let answer = send(&world, "/v1/batch", Auth::Basic(&key), gzip(&batch), true).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // A gzip bomb: 64 MiB of spaces inside valid JSON, about 64 KiB gzipped.
    let mut bomb = b"{\"batch\": [".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 << 20));
    bomb.extend(b"]}");
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 500 * 1024);
    let answer = send(&world, "/v1/batch", Auth::Basic(&key), bomb, true).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert!(
        world.api().customer("u").await.is_none(),
        "nothing refused was stored"
    );
    // The server is still there.
    let ok = json!({ "batch": [{ "type": "track", "userId": "u", "event": "e" }] });
    let answer = send(
        &world,
        "/v1/batch",
        Auth::Basic(&key),
        ok.to_string().into_bytes(),
        false,
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
}

/// The script: Segment's library as its README shows it, pointed at the server with `host=`,
/// gzip on, flushed; any error the library reports fails the script.
const PYTHON_CLIENT: &str = r#"
import os, sys
import segment.analytics as analytics

errors = []
analytics.write_key = os.environ["WRITE_KEY"]
analytics.host = os.environ["HOST"]
analytics.gzip = True
analytics.max_retries = 1
analytics.on_error = lambda error, batch: errors.append(repr(error))

analytics.identify("py-ada", {"email": "py-ada@example.com", "plan": "trial"})
analytics.track("py-ada", "signed_up", {"source": "python"})
analytics.page("py-ada", "Docs", "Pricing", {"path": "/pricing"})
analytics.track(anonymous_id="py-anon", event="viewed_pricing")
analytics.group("py-ada", "py-acme", {"name": "Acme", "plan": "enterprise"})
analytics.alias("py-anon", "py-ada")
analytics.flush()
analytics.shutdown()
if errors:
    print("errors:", errors)
    sys.exit(1)
print("flushed")
"#;

#[tokio::test]
async fn segments_official_python_library_is_taken_unchanged() {
    let python = match segment_python() {
        Ok(python) => python,
        Err(why) => {
            eprintln!("SKIPPED: no Python environment with segment-analytics-python: {why}");
            return;
        }
    };
    let world = Onboarding::start().await;
    let key = new_key(&world, "write").await;
    let script = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(script.path(), PYTHON_CLIENT).expect("the script");
    let out = tokio::process::Command::new(&python)
        .arg(script.path())
        .env("WRITE_KEY", &key)
        .env("HOST", world.server.url())
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "the library failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let welcome = world.sink.wait_for_delivery("welcome", "py-ada").await;
    assert_eq!(welcome.body["payload"]["email"], "py-ada@example.com");
    let ada = world.api().customer("py-ada").await.expect("py-ada");
    assert_eq!(ada.attributes["plan"], "trial");
    // `group` set py-ada's account and its traits.
    assert_eq!(ada.account.as_deref(), Some("py-acme"));
    let acme = world
        .api()
        .tenant_client()
        .account("py-acme", &Default::default())
        .await
        .expect("the account");
    assert_eq!(acme.traits["plan"], "enterprise");
    assert_eq!(acme.members, ["py-ada"]);
    // `alias` merged the anonymous visitor into py-ada: the profile is gone once merged.
    wait_until("py-anon merged into py-ada", || async {
        world.api().customer("py-anon").await.is_none()
    })
    .await;
    // All six messages arrived, once each.
    let metrics = world.api().metrics().await;
    let accepted = metrics
        .lines()
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            series.ends_with("events_accepted_total").then_some(value)
        })
        .unwrap_or_default();
    assert_eq!(accepted, "6", "{metrics}");
}

#[tokio::test]
async fn the_edge_resolves_a_basic_write_key_for_its_tenants_rate_limits() {
    let world = Onboarding::start().await;
    let key = new_key(&world, "write").await;
    let (status, body) = world
        .admin()
        .request(
            Method::PUT,
            "/v1/admin/tenants/acme/limits",
            Some(world.server.admin_token()),
            json!({ "requests_per_second": 1, "request_burst": 2 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let http = reqwest::Client::new();
    let mut limited = None;
    for i in 0..10 {
        let track = json!({ "userId": "rae", "event": "viewed", "messageId": format!("rae-{i}") });
        let response = http
            .post(format!("{}/v1/track", world.server.url()))
            .basic_auth(&key, None::<&str>)
            .json(&track)
            .send()
            .await
            .expect("an answer");
        // The tenant's rate headers: the edge knew the tenant from the Basic credentials.
        assert!(
            response.headers().contains_key("ratelimit-policy"),
            "{:?}",
            response.headers()
        );
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    let limited = limited.expect("ten requests at once exceed a burst of 2");
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = limited.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
}
