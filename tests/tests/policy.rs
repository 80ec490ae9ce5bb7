//! The sending policy: frequency caps and quiet hours defer sends (status `held`), never drop
//! them, and the held message goes out when its time comes on the journey clock.

use waymark_tests::*;

async fn set_policy(world: &Onboarding, policy: Value) {
    let key = world.tenant.api_key.clone();
    let (status, body) = world
        .api()
        .request(Method::PUT, "/v1/policy", Some(&key), policy)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn message(api: &Api, customer: &str, template: &str) -> Option<Message> {
    let c = api.customer(customer).await?;
    c.messages_with_template(template)
        .first()
        .map(|m| (*m).clone())
}

#[tokio::test]
async fn a_frequency_cap_holds_the_nudge_until_the_window_allows_it() {
    let world = Onboarding::start().await;
    let api = &world.api();
    // One webhook message per customer per four days: the nudge (day 3) waits for day 4.
    set_policy(
        &world,
        json!({"frequency_caps": [{"channel": "webhook", "max": 1, "window_ms": 4 * DAY_MS}]}),
    )
    .await;
    let t0 = world.admin().clock_now().await;
    world.sign_up("ada").await;

    world.admin().advance_clock(3 * DAY_MS + MINUTE_MS).await;
    let held = wait_for_some("the nudge to be held", || async move {
        message(api, "ada", "nudge")
            .await
            .filter(|m| m.status == "held")
    })
    .await;
    assert_eq!(held.release_at, Some(t0 + 4 * DAY_MS), "{held:?}");

    world.admin().advance_clock(DAY_MS).await;
    world.sink.wait_for_delivery("nudge", "ada").await;
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "nudge", "ada"),
        1,
        "{}",
        describe(&received)
    );
}

#[tokio::test]
async fn quiet_hours_in_the_customers_time_zone_defer_the_welcome() {
    let world = Onboarding::start().await;
    let api = &world.api();
    let now = world.admin().clock_now().await;
    let hour = (now / HOUR_MS) % 24;
    // Quiet from the previous hour to two hours from now, in UTC (the customer's zone).
    let start = format!("{:02}:00", (hour + 23) % 24);
    let end = format!("{:02}:00", (hour + 2) % 24);
    set_policy(
        &world,
        json!({"quiet_hours": {"start": start, "end": end, "default_timezone": "UTC"}}),
    )
    .await;
    let identify = json!({"id": "ada-tz", "customer": "ada", "name": "identify",
        "properties": {"traits": {"timezone": "Etc/UTC"}}});
    api.post_events(&[identify]).await;
    world.post("ada-signed-up", "ada", "signed_up").await;

    let held = wait_for_some("the welcome to be held", || async move {
        message(api, "ada", "welcome")
            .await
            .filter(|m| m.status == "held")
    })
    .await;
    let end_of_quiet = (now / HOUR_MS + 2) * HOUR_MS;
    assert_eq!(held.release_at, Some(end_of_quiet), "{held:?}");
    assert_eq!(count(&world.sink.requests(), "welcome", "ada"), 0);

    world.admin().advance_clock(end_of_quiet - now).await;
    world.sink.wait_for_delivery("welcome", "ada").await;
}

#[tokio::test]
async fn an_invalid_policy_is_refused_and_the_old_one_kept() {
    let world = Onboarding::start().await;
    let key = world.tenant.api_key.clone();
    let api = world.api();
    for bad in [
        json!({"quiet_hours": {"start": "25:00", "end": "08:00"}}),
        json!({"quiet_hours": {"start": "21:00", "end": "08:00", "default_timezone": "Mars/Base"}}),
        json!({"frequency_caps": [{"channel": "webhook", "max": 0, "window_ms": 1000}]}),
    ] {
        let answer = api
            .request(Method::PUT, "/v1/policy", Some(&key), bad)
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_policy");
    }
    let answer = api
        .request(Method::PUT, "/v1/policy", Some(&key), json!({"caps": []}))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_json");
    let (status, policy) = api
        .request(Method::GET, "/v1/policy", Some(&key), Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(policy, json!({"frequency_caps": []}));
}
