//! The HTTP edge holds under abuse (issue 15): every error in the documented JSON shape, time
//! arithmetic checked, sizes refused early, slow and half-open connections timed out, tenants'
//! rates and expensive requests bounded, a full shard answered 503 until it drains, and one
//! tenant's flood leaving another's ingest fast.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waymark_tests::raw::{authority, raw_request};
use waymark_tests::*;

async fn server_with_tenant(args: &[&str]) -> (Server, CreatedTenant) {
    let server = Server::start(ServerOptions {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..ServerOptions::default()
    })
    .await;
    let tenant = server.api().create_tenant("acme").await;
    (server, tenant)
}

/// A raw answer as `assert_error` reads it.
fn answer(status: u16, body: Value) -> (StatusCode, Value) {
    (StatusCode::from_u16(status).unwrap(), body)
}

#[tokio::test]
async fn every_error_has_the_documented_json_shape() {
    let (server, tenant) = server_with_tenant(&[]).await;
    let api = server.api();
    let key = tenant.api_key.as_str();
    let url = server.url();

    // 404: no such route.
    assert_error(
        &api.request(Method::GET, "/v1/nowhere", Some(key), Body::Empty)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // 405: a route that does not take the method (axum's answer has no body).
    assert_error(
        &api.request(Method::DELETE, "/v1/events", Some(key), Body::Empty)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // 400: a path that is not UTF-8 (axum's rejection is text/plain).
    let (status, body) = api
        .request(Method::GET, "/v1/customers/%FF", Some(key), Body::Empty)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    // 400: malformed JSON.
    assert_error(
        &api.request(
            Method::POST,
            "/v1/events",
            Some(key),
            Body::json_text("{\"id\": "),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    // 415: a JSON route given another type.
    assert_error(
        &api.request(
            Method::POST,
            "/v1/events",
            Some(key),
            Body::Raw {
                content_type: "text/plain",
                bytes: br#"{"id":"1","customer":"c","name":"x"}"#.to_vec(),
            },
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // ... and a component upload given JSON.
    assert_error(
        &api.request(
            Method::PUT,
            "/v1/journeys/j",
            Some(key),
            Body::Raw {
                content_type: "application/json",
                bytes: b"{}".to_vec(),
            },
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // A JSON type with parameters is JSON; no type at all is taken as the route's own.
    let (status, body) = raw_request(
        url,
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json; charset=utf-8\r\nContent-Length: 36\r\n\
             Connection: close\r\n\r\n{{\"id\":\"1\",\"customer\":\"c\",\"name\":\"x\"}}"
        )
        .as_bytes(),
    )
    .await
    .into_parts();
    assert_eq!(status, 202, "{body}");
    let (status, body) = raw_request(
        url,
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: 36\r\nConnection: close\r\n\r\n\
             {{\"id\":\"2\",\"customer\":\"c\",\"name\":\"x\"}}"
        )
        .as_bytes(),
    )
    .await
    .into_parts();
    assert_eq!(status, 202, "{body}");

    // 414: a request target past the limit, answered by the router in JSON, not by hyper.
    let long = format!(
        "GET /v1/customers/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    let (status, body, _) = raw_request(url, long.as_bytes()).await;
    assert_error(
        &answer(status, body),
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
    );
    // 431: headers past the limit.
    let fat = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fat: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(20_000)
    );
    let (status, body, _) = raw_request(url, fat.as_bytes()).await;
    assert_error(
        &answer(status, body),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );

    // Lists in a body have a maximum.
    let caps: Vec<Value> = (0..101)
        .map(|i| json!({ "channel": format!("c{i}"), "max": 1, "window_ms": 1000 }))
        .collect();
    assert_error(
        &api.request(
            Method::PUT,
            "/v1/policy",
            Some(key),
            json!({ "frequency_caps": caps }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );

    // The bearer scheme is case-insensitive (RFC 7235); another scheme is not a key.
    for scheme in ["bearer", "BEARER", "Basic"] {
        let (status, body, _) = raw_request(
            url,
            format!(
                "GET /v1/journeys HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme} {key}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        if scheme == "Basic" {
            assert_error(
                &answer(status, body),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            );
        } else {
            assert_eq!(status, 200, "{scheme}: {body}");
        }
    }
}

/// Reads one answer of a kept-alive connection: its head, then `Content-Length` bytes of body.
async fn read_one_answer(stream: &mut TcpStream) -> (u16, Value) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                let (status, body, _) = waymark_tests::raw::parse_answer(&bytes);
                return (status, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(n > 0, "closed before the answer ended: {text:?}");
        bytes.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn heads_past_hypers_own_limits_or_malformed_are_refused_in_json_too() {
    let (server, tenant) = server_with_tenant(&[]).await;
    let key = tenant.api_key.as_str();
    let url = server.url();

    // A head of 200 KiB: past the 64 KiB bound of a whole head (and past hyper's buffer).
    let fat = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fat: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(200 * 1024)
    );
    let (status, body, _) = raw_request(url, fat.as_bytes()).await;
    assert_error(
        &answer(status, body),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
    // 150 small header fields: past the 100 allowed (hyper's own count would answer bare).
    let many: String = (0..150).map(|i| format!("X-F{i}: v\r\n")).collect();
    let (status, body, _) = raw_request(
        url,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap_or("").to_string();
    assert_error(
        &answer(status, body),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
    assert!(message.contains("100 header fields"), "{message}");
    // A request line of 100 KiB: 414, not 431, since no header was reached.
    let (status, body, _) = raw_request(
        url,
        format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(100 * 1024)
        )
        .as_bytes(),
    )
    .await;
    assert_error(
        &answer(status, body),
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
    );

    // Heads hyper cannot parse at all (a malformed request line, a header name with a space):
    // 400 in JSON too, not hyper's bare one.
    for malformed in [
        "GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "\u{1}\u{2}\u{3}\r\n\r\n",
    ] {
        let (status, body, _) = raw_request(url, malformed.as_bytes()).await;
        assert_error(
            &answer(status, body),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        );
    }

    // On a kept-alive connection, after a request with a body and one without, an oversized
    // head is still refused in JSON: the guard finds each new head.
    let mut stream = TcpStream::connect(authority(url)).await.unwrap();
    let batch = json!([{ "id": "e1", "customer": "c1", "name": "signed_up" }]).to_string();
    stream
        .write_all(
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{batch}",
                batch.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (status, body) = read_one_answer(&mut stream).await;
    assert_eq!(status, 202, "{body}");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_one_answer(&mut stream).await;
    assert_eq!(status, 200, "{body}");
    let _ = stream
        .write_all(
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fat: {}\r\n\r\n",
                "c".repeat(200 * 1024)
            )
            .as_bytes(),
        )
        .await;
    let (status, body) = read_one_answer(&mut stream).await;
    assert_error(
        &answer(status, body),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
    // The connection ends after the refusal; the server serves the next one.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "nothing after the refusal: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let (status, body, _) = raw_request(
        url,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// `(status, body)` of a raw answer.
trait IntoParts {
    fn into_parts(self) -> (u16, Value);
}

impl IntoParts for (u16, Value, String) {
    fn into_parts(self) -> (u16, Value) {
        (self.0, self.1)
    }
}

#[tokio::test]
async fn a_clock_advance_that_would_overflow_is_refused_and_the_clock_stays() {
    let (server, tenant) = server_with_tenant(&[]).await;
    let api = server.api();
    let before = api.clock_now().await;
    for by in [i64::MAX, i64::MAX - before + 1, 300_000_000_000_000] {
        let refused = api
            .request(
                Method::POST,
                "/v1/admin/clock/advance",
                None,
                json!({ "by_ms": by }),
            )
            .await;
        assert_error(
            &api.request(
                Method::POST,
                "/v1/admin/clock/advance",
                Some(server.admin_token()),
                json!({ "by_ms": by }),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_input",
        );
        assert_eq!(refused.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        api.clock_now().await,
        before,
        "a refused advance moves nothing"
    );
    assert_eq!(api.advance_clock(1_000).await, before + 1_000);

    // Event timestamps are bounded too.
    let tenant_api = server.as_tenant(&tenant);
    let (status, body) = tenant_api
        .request(
            Method::POST,
            "/v1/events",
            Some(&tenant.api_key),
            json!({"id": "t", "customer": "c", "name": "x", "timestamp": i64::MAX}),
        )
        .await;
    assert_error(&(status, body), StatusCode::BAD_REQUEST, "invalid_event");
    assert!(tenant_api.customer("c").await.is_none());
}

/// Posts `batch` and checks it is refused whole as too large, naming its second event.
async fn refused_as_too_large_at_event_1(api: &Api, key: &str, batch: Value, why: &str) {
    let (status, body) = api
        .request(Method::POST, "/v1/events", Some(key), batch)
        .await;
    assert_error(
        &(status, body.clone()),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("event 1"), "{why}: {body}");
}

#[tokio::test]
async fn oversized_bodies_and_events_are_refused_early_and_nothing_is_stored() {
    let (server, tenant) = server_with_tenant(&[]).await;
    let api = server.as_tenant(&tenant);
    let key = tenant.api_key.as_str();

    // A declared length past the route's limit is refused before the body is read: the
    // answer comes while the client has sent no byte of it.
    let started = Instant::now();
    let mut stream = TcpStream::connect(authority(server.url())).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut head))
        .await
        .expect("the 413 comes without the body")
        .unwrap();
    let (status, body, _) = waymark_tests::raw::parse_answer(&head[..n]);
    assert_error(
        &answer(status, body),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // So is a small route's body past its 1 MiB.
    assert_error(
        &api.request(
            Method::PUT,
            "/v1/policy",
            Some(key),
            Body::json_text(&format!("{{\"x\": \"{}\"}}", "y".repeat(2 << 20))),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );

    // An event's properties past 64 KiB: 413 naming its index, and nothing of the batch stored.
    let batch = json!([
        event("ok-1", "ada", "signed_up"),
        event_with(
            "big",
            "bob",
            "clicked",
            json!({ "blob": "z".repeat(70_000) })
        ),
    ]);
    refused_as_too_large_at_event_1(&api, key, batch, "the properties pass 64 KiB").await;
    // Traits past 16 KiB.
    let (status, body) = api
        .request(
            Method::POST,
            "/v1/events",
            Some(key),
            json!([identify("t1", "cy", json!({ "bio": "w".repeat(20_000) }))]),
        )
        .await;
    assert_error(&(status, body), StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // A customer's attributes grown past 64 KiB by identifies, each within its own limit.
    for i in 0..3 {
        api.post_events(&[identify(
            &format!("grow-{i}"),
            "dee",
            json!({ format!("field{i}"): "v".repeat(15_000) }),
        )])
        .await;
    }
    wait_until("dee's attributes to be stored", || async {
        api.customer("dee")
            .await
            .is_some_and(|c| c.attributes.len() == 3)
    })
    .await;
    let batch: Vec<Value> = (3..6)
        .map(|i| {
            identify(
                &format!("grow-{i}"),
                "dee",
                json!({ format!("field{i}"): "v".repeat(15_000) }),
            )
        })
        .collect();
    refused_as_too_large_at_event_1(
        &api,
        key,
        json!(batch),
        "the fifth field (the batch's second) passes 64 KiB",
    )
    .await;
    // Ids and names past their lengths are 400.
    let (status, body) = api
        .request(
            Method::POST,
            "/v1/events",
            Some(key),
            json!([event(&"i".repeat(300), "eve", "x")]),
        )
        .await;
    assert_error(&(status, body), StatusCode::BAD_REQUEST, "invalid_event");

    for customer in ["ada", "bob", "cy", "eve"] {
        assert!(
            api.customer(customer).await.is_none(),
            "nothing of a refused batch is stored ({customer})"
        );
    }
    assert_eq!(api.customer("dee").await.unwrap().attributes.len(), 3);
}

#[tokio::test]
async fn half_open_connections_are_closed_and_never_block_a_new_client() {
    let server = Server::start(ServerOptions {
        args: vec!["--header-timeout-ms".into(), "2000".into()],
        ..ServerOptions::default()
    })
    .await;
    let addr = authority(server.url()).to_string();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
            .await
            .unwrap();
        idle.push(stream);
    }
    let opened = Instant::now();
    // A new client is served while the thousand hang.
    let started = Instant::now();
    assert!(server.api().healthy().await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "healthz took {:?} beside 1,000 half-open connections",
        started.elapsed()
    );
    // Each is closed by the server once the header timeout passes (2 s; generous slack for
    // a loaded machine), without an answer the client could mistake for success.
    let deadline = Duration::from_secs(20);
    let mut closed = 0;
    for mut stream in idle {
        let left = deadline.saturating_sub(opened.elapsed());
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        let outcome = tokio::time::timeout(left, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(
            outcome.is_ok(),
            "a half-open connection was still open {:?} after it started",
            opened.elapsed()
        );
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains(" 200 "), "a half request got 200: {text}");
        closed += 1;
    }
    assert_eq!(closed, 1000);
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "closed before the timeout: {:?}",
        opened.elapsed()
    );
    // An idle kept-alive connection is closed too, after one answered request.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    let eof = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "an idle kept-alive connection stayed open");
    assert!(idle_since.elapsed() >= Duration::from_millis(1500));
    assert!(server.api().healthy().await);
}

#[tokio::test]
async fn a_tenant_over_its_rates_gets_429_with_retry_after_and_ratelimit_fields() {
    let (server, tenant) = server_with_tenant(&[]).await;
    let other = server.api().create_tenant("quiet").await;
    let admin = server.api();
    let (status, body) = admin
        .request(
            Method::PUT,
            "/v1/admin/tenants/acme/limits",
            Some(server.admin_token()),
            json!({ "requests_per_second": 1, "request_burst": 3, "events_per_second": 5, "event_burst": 5 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"]["requests_per_second"], 1, "{body}");
    assert_eq!(body["effective"]["request_burst"], 3, "{body}");
    assert!(body["defaults"]["requests_per_second"].as_u64().unwrap() > 1);

    let http = reqwest::Client::new();
    let get = |key: String| {
        let http = http.clone();
        let url = format!("{}/v1/journeys", server.url());
        async move { http.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let mut limited = None;
    for _ in 0..10 {
        let response = get(tenant.api_key.clone()).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
        assert!(response.headers().contains_key("ratelimit-policy"));
    }
    let limited = limited.expect("ten requests at once exceed a burst of 3");
    let header = |name: &str| {
        limited
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let retry_after: u64 = header("retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header("ratelimit-policy"), "\"requests\";q=1;w=1");
    assert!(header("ratelimit").starts_with("\"requests\";r=0;t="));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");

    // Another tenant is not affected.
    for _ in 0..10 {
        assert_eq!(get(other.api_key.clone()).await.status(), StatusCode::OK);
    }

    // After the advertised wait, the tenant is served again; its events have their own rate.
    tokio::time::sleep(Duration::from_secs(retry_after + 1)).await;
    let api = server.as_tenant(&tenant);
    let batch: Vec<Value> = (0..5)
        .map(|i| event(&format!("e{i}"), &format!("c{i}"), "x"))
        .collect();
    let (status, body) = api
        .request(
            Method::POST,
            "/v1/events",
            Some(&tenant.api_key),
            json!(batch),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = api
        .request(
            Method::POST,
            "/v1/events",
            Some(&tenant.api_key),
            json!([event("e5", "c5", "x")]),
        )
        .await;
    assert_error(
        &(status, body.clone()),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("events"));
    // Back to the defaults (which also resets the buckets) to look.
    let (status, _) = admin
        .request(
            Method::PUT,
            "/v1/admin/tenants/acme/limits",
            Some(server.admin_token()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_until("the accepted events to be processed", || async {
        api.customer("c4").await.is_some()
    })
    .await;
    assert!(
        api.customer("c5").await.is_none(),
        "a refused event is not stored"
    );
}

#[tokio::test]
async fn a_tenant_has_a_bounded_number_of_expensive_requests_in_flight() {
    let (server, tenant) = server_with_tenant(&["--body-timeout-ms", "3000"]).await;
    let (status, body) = server
        .api()
        .request(
            Method::PUT,
            "/v1/admin/tenants/acme/limits",
            Some(server.admin_token()),
            json!({ "max_expensive_requests": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = tenant.api_key.as_str();
    // An upload whose body is slow to come holds the tenant's one slot.
    let mut slow = TcpStream::connect(authority(server.url())).await.unwrap();
    slow.write_all(
        format!(
            "PUT /v1/journeys/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/wasm\r\nContent-Length: 1000\r\n\r\n\0asm"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let sent = Instant::now();
    let api = server.as_tenant(&tenant);
    // Let the server take it up (a retry sent at the same moment could take the slot first,
    // and then the upload would be the one refused); it must not be answered yet.
    let mut peek = [0u8; 2048];
    if let Ok(read) = tokio::time::timeout(Duration::from_secs(1), slow.read(&mut peek)).await {
        let n = read.unwrap_or(0);
        panic!(
            "the slow upload was answered at once: {:?}",
            String::from_utf8_lossy(&peek[..n])
        );
    }
    let refused = api
        .request(Method::POST, "/v1/dead-letters/retry", Some(key), json!({}))
        .await;
    assert_error(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_concurrent",
    );
    // Cheap requests still pass.
    let (status, _) = api
        .request(Method::GET, "/v1/journeys", Some(key), Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK);
    // The body timeout (3 s here) ends the slow upload with 408 in the documented shape...
    let mut ended = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut ended))
        .await
        .expect("the slow upload is ended by the body timeout")
        .ok();
    assert!(
        sent.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        sent.elapsed()
    );
    let (status, body, _) = waymark_tests::raw::parse_answer(&ended);
    assert_error(
        &answer(status, body),
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
    );
    // ... and frees the slot.
    let (status, body) = api
        .request(Method::POST, "/v1/dead-letters/retry", Some(key), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn dead_letter_retries_are_bounded_and_a_mass_retry_requeues_every_one() {
    let world = Onboarding::start_with(ServerOptions::default(), "acme").await;
    let api = world.api();
    let key = world.tenant.api_key.clone();

    let too_many: Vec<String> = (0..1001).map(|i| format!("m{i}")).collect();
    assert_error(
        &api.request(
            Method::POST,
            "/v1/dead-letters/retry",
            Some(&key),
            json!({ "ids": too_many }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    let unknown: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let (status, body) = api
        .request(
            Method::POST,
            "/v1/dead-letters/retry",
            Some(&key),
            json!({ "ids": unknown }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requeued"], 0);

    // 300 welcomes refused for good by the provider: 300 dead letters, more than one pass.
    world.sink.respond_by_default(StatusCode::BAD_REQUEST);
    let customers = 300;
    let batch: Vec<Value> = (0..customers)
        .map(|i| event(&format!("s{i}"), &format!("cust{i}"), "signed_up"))
        .collect();
    api.post_events(&batch).await;
    let dead = wait_for_some("every welcome to be a dead letter", || async {
        let (_, listed) = api
            .request(
                Method::GET,
                "/v1/dead-letters?limit=1000",
                Some(&key),
                Body::Empty,
            )
            .await;
        let n = listed["dead_letters"].as_array().map_or(0, Vec::len);
        (n == customers).then_some(n)
    })
    .await;
    assert_eq!(dead, customers);
    // Paged through, 128 at a time: every one once, in id order, the last page naming no next.
    let (mut paged, mut after) = (Vec::new(), None::<String>);
    loop {
        let path = match &after {
            Some(id) => format!("/v1/dead-letters?limit=128&after={id}"),
            None => "/v1/dead-letters?limit=128".to_string(),
        };
        let (status, page) = api
            .request(Method::GET, &path, Some(&key), Body::Empty)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids = page["dead_letters"].as_array().expect("a list");
        assert!(ids.len() <= 128);
        paged.extend(ids.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let mut sorted = paged.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(paged, sorted, "in id order, each once");
    assert_eq!(paged.len(), customers);
    world.sink.respond_by_default(StatusCode::OK);
    let (status, body) = api
        .request(
            Method::POST,
            "/v1/dead-letters/retry",
            Some(&key),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requeued"], customers as u64, "{body}");
    // Each was attempted once (refused for good); the retry delivers each a second time.
    world
        .sink
        .wait_for("every requeued welcome to be delivered", |received| {
            (0..customers).all(|i| count(received, "welcome", &format!("cust{i}")) >= 2)
        })
        .await;
    let (_, listed) = api
        .request(Method::GET, "/v1/dead-letters", Some(&key), Body::Empty)
        .await;
    assert_eq!(listed["dead_letters"], json!([]));
}

#[tokio::test]
async fn a_full_shard_answers_503_then_recovers_with_nothing_acknowledged_lost() {
    let server = Server::start(ServerOptions {
        args: ["--shards", "1", "--shard-queue-bound", "4"]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        ..ServerOptions::default()
    })
    .await;
    let sink = Sink::start();
    let hostile = artifacts().component(HOSTILE_CRATE);
    let (tenant, _) = tenant_with_journey(
        &server,
        "acme",
        Some((&sink, &[WEBHOOK])),
        "hostile",
        hostile,
    )
    .await;
    server
        .api()
        .request(
            Method::PUT,
            "/v1/admin/tenants/acme/limits",
            Some(server.admin_token()),
            json!({ "decide_deadline_ms": 300 }),
        )
        .await;
    let api = server.as_tenant(&tenant);
    let key = tenant.api_key.as_str();
    // Twelve triggers that each burn the 300 ms deadline: the shard's queue fills.
    let burn: Vec<Value> = (0..6)
        .flat_map(|i| {
            let c = format!("burner{i}");
            [
                event(&format!("{c}-in"), &c, "signed_up"),
                event(&format!("{c}-spin"), &c, "spin"),
            ]
        })
        .collect();
    api.post_events(&burn).await;
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    let mut saw_503 = false;
    let mut recovered = false;
    let started = Instant::now();
    let mut i = 0;
    while !(saw_503 && recovered) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no 503 then recovery within a minute (503 seen: {saw_503})"
        );
        let customer = format!("probe{i}");
        i += 1;
        let (status, body) = api
            .request(
                Method::POST,
                "/v1/events",
                Some(key),
                json!([event(&format!("{customer}-in"), &customer, "signed_up")]),
            )
            .await;
        match status {
            StatusCode::ACCEPTED => {
                acknowledged.push(customer);
                recovered = saw_503;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_error(
                    &(status, body),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                );
                saw_503 = true;
                refused.push(customer);
            }
            other => panic!("unexpected {other}: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!refused.is_empty());
    // Every acknowledged event is processed; no refused one is.
    for customer in &acknowledged {
        api.wait_for_enrollment(customer, "hostile", "entered", |_| true)
            .await;
    }
    for customer in &refused {
        assert!(
            api.customer(customer).await.is_none(),
            "{customer} was refused"
        );
    }
}

/// The `p`-th percentile (0-100) of `samples`, nearest rank.
fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Posts one sign-up per request for `customers`, 40 ms apart; each request's latency.
async fn quiet_ingest(api: &Api, prefix: &str, customers: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(customers);
    for i in 0..customers {
        let customer = format!("{prefix}{i}");
        let started = Instant::now();
        let answer = api
            .post_events(&[event(&format!("{customer}-in"), &customer, "signed_up")])
            .await;
        latencies.push(started.elapsed());
        assert_eq!(answer.accepted, 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    latencies
}

#[tokio::test]
async fn a_flood_and_a_mass_retry_from_one_tenant_leave_another_tenants_ingest_fast() {
    let quiet = Onboarding::start_with(ServerOptions::default(), "quiet").await;
    let server = &quiet.server;
    // The loud tenant's provider refuses everything: its welcomes become dead letters.
    let refusing = Sink::start();
    refusing.respond_by_default(StatusCode::BAD_REQUEST);
    let onboarding = artifacts().component(ONBOARDING_CRATE);
    let (loud, _) = tenant_with_journey(
        server,
        "loud",
        Some((&refusing, &[WEBHOOK])),
        ONBOARDING,
        onboarding,
    )
    .await;
    let loud_api = server.as_tenant(&loud);
    let dead = 300;
    let signups: Vec<Value> = (0..dead)
        .map(|i| event(&format!("l{i}"), &format!("loud{i}"), "signed_up"))
        .collect();
    loud_api.post_events(&signups).await;
    wait_until("the loud tenant's welcomes to be dead letters", || async {
        let (_, listed) = loud_api
            .request(
                Method::GET,
                "/v1/dead-letters?limit=1000",
                Some(&loud.api_key),
                Body::Empty,
            )
            .await;
        listed["dead_letters"].as_array().map_or(0, Vec::len) == dead
    })
    .await;

    let quiet_api = quiet.api();
    let baseline = quiet_ingest(&quiet_api, "calm", 60).await;

    // The flood, until the quiet tenant is done: batches over the events limit and ~4 MB
    // batches with one bad event at the end, back to back; a mass retry of every dead letter,
    // and retries naming 1,000 ids.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = tokio::task::JoinSet::new();
    let url = server.url().to_string();
    let key = loud.api_key.clone();
    let bad_batch = {
        let mut events: Vec<Value> = (0..2000)
            .map(|i| {
                event_with(
                    &format!("f{i}"),
                    &format!("flood{i}"),
                    "clicked",
                    json!({ "pad": "p".repeat(2000) }),
                )
            })
            .collect();
        events.push(json!({ "id": "bad", "customer": "", "name": "x" }));
        serde_json::to_vec(&events).unwrap()
    };
    let oversized = vec![b' '; 17 << 20];
    let counts = std::sync::Arc::new(std::sync::Mutex::new([0u64; 3]));
    for task in 0..3 {
        let (stop, url, key) = (stop.clone(), url.clone(), key.clone());
        let (bad_batch, oversized, counts) = (bad_batch.clone(), oversized.clone(), counts.clone());
        flood.spawn(async move {
            let http = reqwest::Client::new();
            if task == 2 {
                // One mass retry of every dead letter, a second into the quiet tenant's run
                // (they are delivered, fail and die again), then retries naming 1,000 ids.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let answer = http
                    .post(format!("{url}/v1/dead-letters/retry"))
                    .bearer_auth(&key)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), StatusCode::OK);
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["requeued"], dead as u64, "{body}");
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let request = match task {
                    0 => http
                        .post(format!("{url}/v1/events"))
                        .header("content-type", "application/json")
                        .body(bad_batch.clone()),
                    1 => http
                        .post(format!("{url}/v1/events"))
                        .header("content-type", "application/json")
                        .body(oversized.clone()),
                    _ => {
                        let ids: Vec<String> = (0..1000).map(|i| format!("nope{i}")).collect();
                        http.post(format!("{url}/v1/dead-letters/retry"))
                            .json(&json!({ "ids": ids }))
                    }
                };
                let status = request
                    .bearer_auth(&key)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                let expected = match task {
                    0 => status == 400,
                    1 => status == 413 || status == 0,
                    _ => status == 200 || status == 429,
                };
                assert!(expected, "flood task {task} got {status}");
                counts.lock().unwrap()[task] += 1;
            }
        });
    }
    // Let the flood get going.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let noisy = quiet_ingest(&quiet_api, "busy", 200).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(done) = flood.join_next().await {
        done.expect("a flood task failed");
    }
    let counts = *counts.lock().unwrap();
    eprintln!(
        "quiet tenant ingest: alone p50 {:?} p99 {:?}; beside the flood p50 {:?} p99 {:?} \
         (flood: {} bad batches, {} oversized, {} retries of 1,000 ids)",
        percentile(&baseline, 50),
        percentile(&baseline, 99),
        percentile(&noisy, 50),
        percentile(&noisy, 99),
        counts[0],
        counts[1],
        counts[2],
    );
    assert!(counts.iter().all(|&c| c >= 2), "the flood ran: {counts:?}");
    assert!(
        percentile(&noisy, 99) < Duration::from_millis(200),
        "the quiet tenant's ingest p99 beside the flood is {:?}",
        percentile(&noisy, 99)
    );
    // Every quiet event was processed: each customer got their welcome.
    quiet
        .sink
        .wait_for("every quiet customer's welcome", |received| {
            (0..200).all(|i| count(received, "welcome", &format!("busy{i}")) >= 1)
        })
        .await;
    // Nothing of the loud tenant's refused batches was stored.
    assert!(loud_api.customer("flood0").await.is_none());
}
