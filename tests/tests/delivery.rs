//! Delivery: retryable failures are retried with the same idempotency key until they succeed;
//! permanent ones become dead letters, listed through the API and requeued on request. A slow
//! delivery holds back nothing due after it, and deliveries to one destination share
//! kept-alive connections.

use waymark_tests::*;

/// A server that retries quickly, so that backoff does not slow the test down.
fn quick_retries() -> ServerOptions {
    ServerOptions {
        args: vec!["--retry-base-ms".into(), "20".into()],
        ..ServerOptions::default()
    }
}

/// The customer's welcome message, once their sign-up has been processed.
async fn welcome_of(api: &Api, customer: &str) -> Option<Message> {
    let customer = api.customer(customer).await?;
    customer
        .messages_with_template("welcome")
        .first()
        .map(|m| (*m).clone())
}

#[tokio::test]
async fn a_5xx_is_retried_with_the_same_idempotency_key_until_delivered() {
    let world = Onboarding::start_with(quick_retries(), "acme").await;
    world.sink.respond_next(2, StatusCode::SERVICE_UNAVAILABLE);
    world.post("ada-signed-up", "ada", "signed_up").await;

    let received = world
        .sink
        .wait_for("three attempts at ada's welcome", |r| {
            count(r, "welcome", "ada") >= 3
        })
        .await;
    let keys: Vec<_> = received
        .iter()
        .filter(|r| r.is("welcome", "ada"))
        .map(|r| r.idempotency_key().expect("an Idempotency-Key").to_string())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "every attempt carries the same key: {keys:?}"
    );

    let api = &world.api();
    let delivered = wait_for_some("ada's welcome to be delivered", || async move {
        welcome_of(api, "ada")
            .await
            .filter(|m| m.status == "delivered")
    })
    .await;
    assert_eq!(delivered.attempts, 3);
    assert_eq!(delivered.id, keys[0], "the key is the message id");
}

#[tokio::test]
async fn a_4xx_is_a_dead_letter_that_can_be_listed_and_retried() {
    let world = Onboarding::start_with(quick_retries(), "acme").await;
    let api = &world.api();
    world.sink.respond_next(1, StatusCode::BAD_REQUEST);
    world.post("ada-signed-up", "ada", "signed_up").await;

    let dead = wait_for_some("ada's welcome to be a dead letter", || async move {
        welcome_of(api, "ada").await.filter(|m| m.status == "dead")
    })
    .await;
    assert_eq!(dead.attempts, 1, "a permanent failure is not retried");
    assert!(
        dead.last_error.as_deref().unwrap_or("").contains("400"),
        "the error says what the provider answered: {:?}",
        dead.last_error
    );

    let key = world.tenant.api_key.clone();
    let (status, listed) = api
        .request(Method::GET, "/v1/dead-letters", Some(&key), Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let ids: Vec<&str> = listed["dead_letters"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, [dead.id.as_str()]);

    // The provider is fixed; the tenant requeues the dead letter.
    let (status, answer) = api
        .request(
            Method::POST,
            "/v1/dead-letters/retry",
            Some(&key),
            json!({ "ids": [dead.id] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["requeued"], 1);

    let delivered = wait_for_some("the requeued welcome to be delivered", || async move {
        welcome_of(api, "ada")
            .await
            .filter(|m| m.status == "delivered")
    })
    .await;
    assert_eq!(delivered.id, dead.id);
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "welcome", "ada"),
        2,
        "{}",
        describe(&received)
    );
    assert!(received
        .iter()
        .filter(|r| r.is("welcome", "ada"))
        .all(|r| r.idempotency_key() == Some(dead.id.as_str())));

    let (_, listed) = api
        .request(Method::GET, "/v1/dead-letters", Some(&key), Body::Empty)
        .await;
    assert_eq!(listed["dead_letters"], json!([]), "no dead letters remain");
}

#[tokio::test]
async fn retrying_without_dead_letters_requeues_nothing_and_bad_input_is_refused() {
    let world = Onboarding::start().await;
    let api = world.api();
    let key = world.tenant.api_key.clone();
    let (status, answer) = api
        .request(
            Method::POST,
            "/v1/dead-letters/retry",
            Some(&key),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["requeued"], 0);

    let answer = api
        .request(
            Method::POST,
            "/v1/dead-letters/retry",
            Some(&key),
            json!({ "ids": "not-a-list" }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_json");
    let answer = api
        .request(Method::GET, "/v1/dead-letters", None, Body::Empty)
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_slow_delivery_does_not_hold_back_the_messages_due_after_it() {
    let world = Onboarding::start().await;
    world.sink.hold("slow");
    world.post("slow-signed-up", "slow", "signed_up").await;
    world.sink.wait_for_delivery("welcome", "slow").await;

    // While slow's welcome waits for its answer, later sign-ups are welcomed.
    for customer in ["ada", "bob", "cy"] {
        world.sign_up(customer).await;
    }
    let api = &world.api();
    let slow = welcome_of(api, "slow").await.expect("slow's welcome");
    assert_eq!(slow.status, "pending", "still in flight: {slow:?}");

    world.sink.release();
    let delivered = wait_for_some("slow's welcome to be delivered", || async move {
        welcome_of(api, "slow")
            .await
            .filter(|m| m.status == "delivered")
    })
    .await;
    assert_eq!(delivered.attempts, 1, "the held attempt delivered it");
    assert_eq!(count(&world.sink.requests(), "welcome", "slow"), 1);
}

#[tokio::test]
async fn deliveries_to_one_destination_share_kept_alive_connections() {
    let world = Onboarding::start().await;
    let api = &world.api();
    const ONE_BY_ONE: usize = 10;
    for i in 0..ONE_BY_ONE {
        let customer = format!("one-{i}");
        world.sign_up(&customer).await;
        let customer = &customer;
        wait_for_some("the welcome to be delivered", || async move {
            welcome_of(api, customer)
                .await
                .filter(|m| m.status == "delivered")
        })
        .await;
    }
    let one_by_one = world.sink.connections();
    assert!(
        one_by_one <= 2,
        "{ONE_BY_ONE} welcomes, one after another, opened {one_by_one} connections"
    );

    // A burst: many deliveries at once, still far fewer connections than messages.
    const BURST: usize = 200;
    let events: Vec<_> = (0..BURST)
        .map(|i| {
            event(
                &format!("burst-{i}-signed-up"),
                &format!("burst-{i}"),
                "signed_up",
            )
        })
        .collect();
    let answer = api.post_events(&events).await;
    assert_eq!(answer.accepted, BURST as u64, "{answer:?}");
    world
        .sink
        .wait_for("every burst welcome", |r| {
            (0..BURST).all(|i| count(r, "welcome", &format!("burst-{i}")) > 0)
        })
        .await;
    let burst = world.sink.connections() - one_by_one;
    assert!(
        (burst as usize) < BURST / 2,
        "{BURST} welcomes at once opened {burst} connections"
    );
}

/// Contract 0.1.1's `delivery-hints`: the webhook adapter passes a 429's `Retry-After` on to
/// the host (through the SDK's classification), and the host's next attempt waits at least that
/// long although its own backoff here is 20 ms. (A lower bound on a wait the host must keep,
/// not a measure of speed.)
#[tokio::test]
async fn a_429_with_retry_after_is_attempted_again_no_sooner_than_it_says() {
    let world = Onboarding::start_with(quick_retries(), "acme").await;
    world
        .sink
        .respond_next_retry_after(StatusCode::TOO_MANY_REQUESTS, "2");
    world.post("ada-signed-up", "ada", "signed_up").await;

    let received = world
        .sink
        .wait_for("two attempts at ada's welcome", |r| {
            count(r, "welcome", "ada") >= 2
        })
        .await;
    let attempts: Vec<_> = received.iter().filter(|r| r.is("welcome", "ada")).collect();
    assert_eq!(attempts[0].answered, 429);
    assert_eq!(attempts[1].answered, 200);
    let waited = attempts[1].at - attempts[0].at;
    assert!(
        waited >= std::time::Duration::from_secs(2),
        "the second attempt came {waited:?} after the 429 that asked for 2 s"
    );
    let api = &world.api();
    let delivered = wait_for_some("ada's welcome to be delivered", || async move {
        welcome_of(api, "ada")
            .await
            .filter(|m| m.status == "delivered")
    })
    .await;
    assert_eq!(delivered.attempts, 2);
    assert!(
        delivered.last_error.is_none(),
        "a delivered message keeps no error"
    );
}
