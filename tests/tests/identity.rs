//! Identity merge (issue 12), end to end on the real server: an anonymous id's events build a
//! profile and enrollments under that id; an `identify` carrying both ids, or an `alias`,
//! merges them into the known customer (traits merged, running enrollments carried over, the
//! known customer's own enrollment winning), and later events of the anonymous id reach the
//! known customer. A merge racing with queued anonymous events processes each exactly once.

use waymark_api::customers::EnrollmentStatus;
use waymark_tests::*;

/// A new write key for the world's tenant.
async fn write_key(world: &Onboarding) -> String {
    let (status, body) = world
        .api()
        .request(
            Method::POST,
            "/v1/keys",
            Some(&world.tenant.api_key),
            json!({ "scope": "write" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().expect("the new key").to_string()
}

/// POSTs `body` to a Segment route with the write key as Segment's libraries send it.
async fn segment(world: &Onboarding, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", world.server.url()))
        .basic_auth(key, None::<&str>)
        .json(&body)
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    let text = response.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The onboarding report's overall funnel.
async fn overall(world: &Onboarding) -> Value {
    world.api().report(ONBOARDING).await["report"]["overall"].clone()
}

#[tokio::test]
async fn anonymous_events_then_identify_keep_one_enrollment_under_the_known_id() {
    let world = Onboarding::start().await;
    let key = write_key(&world).await;
    // An anonymous visitor with a trait, who signs up anonymously.
    for (path, body) in [
        (
            "/v1/identify",
            json!({ "anonymousId": "anon-1", "traits": { "utm": "ad", "plan": "free" }, "messageId": "i0" }),
        ),
        (
            "/v1/track",
            json!({ "anonymousId": "anon-1", "event": "signed_up", "messageId": "t1" }),
        ),
    ] {
        let answer = segment(&world, &key, path, body).await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    }
    world.sink.wait_for_delivery("welcome", "anon-1").await;

    // Identified: both ids in one identify.
    let identify = json!({ "userId": "ada", "anonymousId": "anon-1", "messageId": "i1",
                           "traits": { "plan": "pro", "email": "ada@example.com" } });
    let answer = segment(&world, &key, "/v1/identify", identify).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let ada = world
        .api()
        .wait_for_enrollment("ada", ONBOARDING, "carried over from anon-1", |e| {
            e.status == EnrollmentStatus::Active
        })
        .await;
    assert_eq!(ada.id, "onboarding/ada/1");
    let profile = world.api().customer("ada").await.expect("ada");
    // The identify's traits (newest) win; the anonymous profile fills the gaps.
    assert_eq!(profile.attributes["plan"], "pro");
    assert_eq!(profile.attributes["utm"], "ad");
    assert_eq!(profile.attributes["email"], "ada@example.com");
    assert_eq!(profile.enrollments.len(), 1);
    assert!(
        world.api().customer("anon-1").await.is_none(),
        "the anonymous profile is merged away"
    );

    // Later events of the anonymous id reach the known customer.
    let answer = segment(
        &world,
        &key,
        "/v1/track",
        json!({ "anonymousId": "anon-1", "event": "first_value", "messageId": "t2" }),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    world
        .api()
        .wait_for_enrollment("ada", ONBOARDING, "completed", |e| {
            e.status == EnrollmentStatus::Completed
        })
        .await;
    let report = overall(&world).await;
    assert_eq!(report["entered"], 1, "{report}");
    assert_eq!(report["completed"], 1, "{report}");
    assert_eq!(count(&world.sink.requests(), "welcome", "anon-1"), 1);
    assert_eq!(count(&world.sink.requests(), "welcome", "ada"), 0);
}

#[tokio::test]
async fn alias_merges_the_previous_id_as_identify_does() {
    let world = Onboarding::start().await;
    let key = write_key(&world).await;
    world.post("b1", "anon-2", "signed_up").await;
    world.sink.wait_for_delivery("welcome", "anon-2").await;
    let alias = json!({ "userId": "bob", "previousId": "anon-2", "messageId": "a1",
                        "timestamp": "2026-03-01T10:00:00.000Z" });
    let answer = segment(&world, &key, "/v1/alias", alias.clone()).await;
    assert_eq!(
        answer,
        (
            StatusCode::OK,
            json!({ "success": true, "accepted": 1, "duplicates": 0 })
        )
    );
    let again = segment(&world, &key, "/v1/alias", alias).await;
    assert_eq!(again.1["duplicates"], 1, "messageId dedups an alias");
    world
        .api()
        .wait_for_enrollment("bob", ONBOARDING, "carried over from anon-2", |e| {
            e.status == EnrollmentStatus::Active
        })
        .await;

    // `POST /v1/events` merges with an `alias` event naming `previous_id` (or an `identify`
    // naming `anonymous_id`).
    world.post("c1", "anon-3", "signed_up").await;
    world.sink.wait_for_delivery("welcome", "anon-3").await;
    let answer = world
        .api()
        .post_events(&[event_with(
            "c2",
            "cy",
            "identify",
            json!({ "anonymous_id": "anon-3", "traits": { "name": "Cy" } }),
        )])
        .await;
    assert_eq!(answer.accepted, 1);
    world
        .api()
        .wait_for_enrollment("cy", ONBOARDING, "carried over from anon-3", |e| {
            e.status == EnrollmentStatus::Active
        })
        .await;
    let report = overall(&world).await;
    assert_eq!(report["entered"], 2, "{report}");
    assert_eq!(report["active"], 2, "{report}");

    // Bad input: a merged id that is no id, an alias without its ids.
    let answer = world
        .api()
        .request(
            Method::POST,
            "/v1/events",
            Some(&world.tenant.api_key),
            json!({ "id": "c3", "customer": "cy", "name": "alias",
                    "properties": { "previous_id": "a\u{1}b" } }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_event");
    let answer = segment(&world, &key, "/v1/alias", json!({ "userId": "cy" })).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_event");
}

#[tokio::test]
async fn a_known_customer_who_already_has_an_enrollment_keeps_it() {
    let world = Onboarding::start().await;
    world.sign_up("dee").await;
    world.sign_up("anon-4").await;
    let answer = world
        .api()
        .post_events(&[event_with(
            "d1",
            "dee",
            "alias",
            json!({ "previous_id": "anon-4" }),
        )])
        .await;
    assert_eq!(answer.accepted, 1);
    // The anonymous run ends, `merged`; the known customer's run is untouched.
    let report = wait_for_some("the anonymous run ended as merged", || async {
        let report = overall(&world).await;
        (report["exited_by_reason"]["merged"] == 1).then_some(report)
    })
    .await;
    assert_eq!(report["entered"], 2, "{report}");
    assert_eq!(report["active"], 1, "{report}");
    let dee = world.api().customer("dee").await.expect("dee");
    assert_eq!(dee.enrollments.len(), 1);
    assert_eq!(dee.enrollments[0].id, "onboarding/dee/1");
    assert_eq!(dee.enrollments[0].status, EnrollmentStatus::Active);
    // anon-4's later events reach dee, once.
    world.post("d2", "anon-4", "first_value").await;
    world
        .api()
        .wait_for_enrollment("dee", ONBOARDING, "completed", |e| {
            e.status == EnrollmentStatus::Completed
        })
        .await;
    let report = overall(&world).await;
    assert_eq!(report["completed"], 1, "{report}");
    assert_eq!(report["entered"], 2, "{report}");
}

#[tokio::test]
async fn a_merge_racing_with_queued_anonymous_events_processes_each_exactly_once() {
    let world = Onboarding::start().await;
    const N: usize = 24;
    // Every anonymous id signs up.
    let signups: Vec<Value> = (0..N)
        .map(|i| event(&format!("s{i}"), &format!("anon-r{i}"), "signed_up"))
        .collect();
    assert_eq!(world.api().post_events(&signups).await.accepted, N as u64);
    // Then, racing in two requests: the merges (with events of the known ids among them) and
    // the anonymous ids' first value, which may be processed before the merge (on the
    // anonymous id, whose run then moves), or after (passed on to the known id).
    let merges: Vec<Value> = (0..N)
        .flat_map(|i| {
            [
                event(&format!("p{i}"), &format!("user-r{i}"), "page"),
                event_with(
                    &format!("m{i}"),
                    &format!("user-r{i}"),
                    "identify",
                    json!({ "anonymous_id": format!("anon-r{i}"), "traits": { "n": i } }),
                ),
                event(&format!("q{i}"), &format!("user-r{i}"), "page"),
            ]
        })
        .collect();
    let values: Vec<Value> = (0..N)
        .map(|i| event(&format!("v{i}"), &format!("anon-r{i}"), "first_value"))
        .collect();
    let (api_a, api_b) = (world.api(), world.api());
    let (a, b) = tokio::join!(api_a.post_events(&merges), api_b.post_events(&values));
    assert_eq!(a.accepted, 3 * N as u64);
    assert_eq!(b.accepted, N as u64);

    for i in 0..N {
        let user = format!("user-r{i}");
        let done = world
            .api()
            .wait_for_enrollment(&user, ONBOARDING, "completed", |e| {
                e.status == EnrollmentStatus::Completed
            })
            .await;
        assert_eq!(done.milestones.len(), 1, "{done:?}");
        let profile = world.api().customer(&user).await.expect("the known id");
        assert_eq!(profile.enrollments.len(), 1, "{:?}", profile.enrollments);
        assert_eq!(profile.attributes["n"], i);
    }
    let report = overall(&world).await;
    assert_eq!(report["entered"], N, "{report}");
    assert_eq!(report["completed"], N, "{report}");
    assert_eq!(report["active"], 0, "{report}");
    let received = world.sink.requests();
    for i in 0..N {
        assert_eq!(count(&received, "welcome", &format!("anon-r{i}")), 1);
        assert!(world.api().customer(&format!("anon-r{i}")).await.is_none());
    }
}

#[tokio::test]
async fn group_for_three_members_sets_the_account_traits_and_members() {
    let world = Onboarding::start().await;
    let key = write_key(&world).await;
    for (i, (member, traits)) in [
        ("ann", json!({ "name": "Acme", "plan": "trial" })),
        ("ben", json!({ "plan": "enterprise", "csm": "zoe" })),
        ("cat", json!({})),
    ]
    .into_iter()
    .enumerate()
    {
        let group = json!({ "userId": member, "groupId": "acme-co", "traits": traits,
                            "messageId": format!("g{i}") });
        let answer = segment(&world, &key, "/v1/group", group).await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    }
    // `POST /v1/events` takes the same as an event named `group`.
    let answer = world
        .api()
        .post_events(&[event_with(
            "g3",
            "dan",
            "group",
            json!({ "group_id": "other-co", "traits": { "name": "Other" } }),
        )])
        .await;
    assert_eq!(answer.accepted, 1);

    let client = world.api().tenant_client().clone();
    let query = |after: Option<&str>, limit| waymark_api::accounts::AccountQuery {
        after: after.map(str::to_string),
        limit: Some(limit),
    };
    let acme = client
        .account("acme-co", &query(None, 2))
        .await
        .expect("the account");
    assert_eq!(acme.traits["name"], "Acme");
    assert_eq!(
        acme.traits["plan"], "enterprise",
        "a later call's trait wins"
    );
    assert_eq!(acme.traits["csm"], "zoe");
    assert_eq!(acme.members, ["ann", "ben"]);
    assert_eq!(acme.next_after.as_deref(), Some("ben"));
    let rest = client
        .account("acme-co", &query(acme.next_after.as_deref(), 2))
        .await
        .expect("the next page");
    assert_eq!(rest.members, ["cat"]);
    assert_eq!(rest.next_after, None);
    // The group event reached the journeys as an event: each member has a profile, which
    // shows the account.
    let ben = wait_for_some("ben's profile", || async {
        world.api().customer("ben").await
    })
    .await;
    assert_eq!(ben.account.as_deref(), Some("acme-co"));

    // Unknown accounts and bad group calls: the API's errors.
    let missing = client.account("nobody", &Default::default()).await;
    assert_eq!(
        missing.expect_err("no such account").status(),
        Some(StatusCode::NOT_FOUND)
    );
    let answer = segment(&world, &key, "/v1/group", json!({ "userId": "ann" })).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_event");
    let answer = world
        .api()
        .request(
            Method::GET,
            "/v1/accounts/acme-co?limit=0",
            Some(&world.tenant.api_key),
            Body::Empty,
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_input");
}

#[tokio::test]
async fn cors_preflights_are_answered_on_ingest_routes_and_absent_on_others() {
    let world = Onboarding::start().await;
    let key = write_key(&world).await;
    let http = reqwest::Client::new();
    let origin = "https://shop.example";
    let preflight = |path: &str| {
        http.request(Method::OPTIONS, format!("{}{path}", world.server.url()))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,content-encoding",
            )
            .send()
    };
    for path in [
        "/v1/batch",
        "/v1/track",
        "/v1/identify",
        "/v1/alias",
        "/v1/group",
        "/v1/events",
    ] {
        let answer = preflight(path).await.expect("an answer");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        assert_eq!(header("access-control-allow-origin"), "*", "{path}");
        assert!(
            header("access-control-allow-methods").contains("post"),
            "{path}"
        );
        let allowed = header("access-control-allow-headers");
        for name in ["authorization", "content-type", "content-encoding"] {
            assert!(allowed.contains(name), "{path}: {allowed}");
        }
    }
    // The answer itself carries it, also for analytics.js's `text/plain` simple request.
    let answer = http
        .post(format!("{}/v1/track", world.server.url()))
        .header("Origin", origin)
        .header("Content-Type", "text/plain")
        .basic_auth(&key, None::<&str>)
        .body(json!({ "userId": "eve", "event": "signed_up" }).to_string())
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"*"[..])
    );
    // Refusals too, so a page can read why.
    let refused = http
        .post(format!("{}/v1/track", world.server.url()))
        .header("Origin", origin)
        .basic_auth("wmk_not_a_key", None::<&str>)
        .json(&json!({ "userId": "eve", "event": "signed_up" }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused
        .headers()
        .contains_key("access-control-allow-origin"));
    // No other route is open to browsers.
    for path in [
        "/v1/customers/eve",
        "/v1/keys",
        "/v1/journeys",
        "/v1/accounts/acme",
    ] {
        let answer = preflight(path).await.expect("an answer");
        assert!(
            !answer.headers().contains_key("access-control-allow-origin"),
            "{path}"
        );
        let read = http
            .get(format!("{}{path}", world.server.url()))
            .header("Origin", origin)
            .bearer_auth(&world.tenant.api_key)
            .send()
            .await
            .expect("an answer");
        assert!(
            !read.headers().contains_key("access-control-allow-origin"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn pending_timers_move_with_a_carried_over_run_and_are_cancelled_with_an_ended_one() {
    let world = Onboarding::start().await;
    // anon-6's run moves to fay (who has none); anon-7's ends, since gus has his own.
    world.sign_up("anon-6").await;
    world.sign_up("anon-7").await;
    world.sign_up("gus").await;
    let merges = [
        event_with("f1", "fay", "alias", json!({ "previous_id": "anon-6" })),
        event_with("g1", "gus", "alias", json!({ "previous_id": "anon-7" })),
    ];
    assert_eq!(world.api().post_events(&merges).await.accepted, 2);
    world
        .api()
        .wait_for_enrollment("fay", ONBOARDING, "carried over with its nudge", |e| {
            e.timer("nudge").is_some()
        })
        .await;
    wait_until("anon-7's run ended as merged", || async {
        overall(&world).await["exited_by_reason"]["merged"] == 1
    })
    .await;

    // Three days on: the moved nudge fires once, for fay; anon-7's was cancelled; gus's own
    // fires. Gus's nudge shows the timers due have been processed.
    world.admin().advance_clock(3 * 24 * 3600 * 1000 + 1).await;
    world.sink.wait_for_delivery("nudge", "fay").await;
    world.sink.wait_for_delivery("nudge", "gus").await;
    // A later customer's welcome shows the server has processed what came before it; the
    // checks below can only miss a bug, never fail a correct server.
    world.sign_up("hal").await;
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "nudge", "fay"),
        1,
        "{}",
        describe(&received)
    );
    assert_eq!(
        count(&received, "nudge", "gus"),
        1,
        "{}",
        describe(&received)
    );
    assert_eq!(
        count(&received, "nudge", "anon-6"),
        0,
        "{}",
        describe(&received)
    );
    assert_eq!(
        count(&received, "nudge", "anon-7"),
        0,
        "{}",
        describe(&received)
    );
}
