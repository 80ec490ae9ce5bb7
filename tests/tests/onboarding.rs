//! The onboarding journey end to end: signups are welcomed through the webhook channel, customers
//! who stall are nudged three days later, and reaching first value completes the journey.

use waymark_tests::*;

#[tokio::test]
async fn signup_is_welcomed_through_the_webhook_with_an_idempotency_key() {
    let world = Onboarding::start().await;
    world.post("ada-signed-up", "ada", "signed_up").await;

    let welcome = world.sink.wait_for_delivery("welcome", "ada").await;
    assert_eq!(welcome.method, "POST");
    assert_eq!(welcome.path, "/webhook");
    assert!(
        welcome
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "content type: {welcome:?}"
    );
    let key = welcome
        .idempotency_key()
        .expect("an Idempotency-Key header");
    assert!(!key.is_empty());
    assert_eq!(
        welcome.body["message_id"], key,
        "the key is the message id: {welcome:?}"
    );

    // The API shows the same message, delivered, and the customer still on the journey.
    let api = world.api();
    let ada = wait_for_some("ada's welcome to be marked delivered", || async {
        api.customer("ada").await.filter(|c| {
            c.messages_with_template("welcome")
                .iter()
                .any(|m| m.status == "delivered")
        })
    })
    .await;
    let message = ada.messages_with_template("welcome")[0];
    assert_eq!(message.id, key);
    assert_eq!(message.channel, WEBHOOK);
    let enrollment = ada.enrollment(ONBOARDING).expect("ada is enrolled");
    assert_eq!(enrollment.status, EnrollmentStatus::Active);
    assert_eq!(enrollment.version, world.journey.version);
}

#[tokio::test]
async fn customer_without_first_value_is_nudged_three_days_after_signing_up() {
    let world = Onboarding::start().await;
    let (api, admin) = (world.api(), world.admin());
    let welcome = world.sign_up("ada").await;

    let enrollment = api
        .wait_for_enrollment("ada", ONBOARDING, "a pending nudge timer", |e| {
            e.timer("nudge").is_some()
        })
        .await;
    let due = enrollment.timer("nudge").expect("nudge timer").due;
    assert_eq!(
        due - enrollment.entered_at,
        3 * DAY_MS,
        "nudge is due three days after entry"
    );

    // An hour short of three days nothing is sent. Bob's welcome shows the server has processed
    // what came before it; this check can only miss a bug, never fail a correct server.
    admin.advance_clock(3 * DAY_MS - HOUR_MS).await;
    world.sign_up("bob").await;
    let early = world.sink.requests();
    assert_eq!(
        count(&early, "nudge", "ada"),
        0,
        "nudged early:\n{}",
        describe(&early)
    );

    admin.advance_clock(HOUR_MS).await;
    let nudge = world.sink.wait_for_delivery("nudge", "ada").await;
    let key = nudge.idempotency_key().expect("an Idempotency-Key header");
    assert_ne!(
        Some(key),
        welcome.idempotency_key(),
        "each message has its own key"
    );
}

#[tokio::test]
async fn first_value_before_the_nudge_completes_the_journey_and_no_nudge_is_sent() {
    let world = Onboarding::start().await;
    let (api, admin) = (world.api(), world.admin());
    world.sign_up("ada").await;
    world.post("ada-first-value", "ada", "first_value").await;
    api.wait_for_enrollment("ada", ONBOARDING, "completed", |e| {
        e.status == EnrollmentStatus::Completed
    })
    .await;

    // Bob signs up after ada completed, so his nudge is due no earlier than ada's would have been:
    // once his has arrived, the scheduler has been past ada's due time.
    world.sign_up("bob").await;
    admin.advance_clock(3 * DAY_MS + MINUTE_MS).await;
    world.sink.wait_for_delivery("nudge", "bob").await;

    let ada = api
        .wait_for_enrollment("ada", ONBOARDING, "completed without pending timers", |e| {
            e.status == EnrollmentStatus::Completed && e.timer("nudge").is_none()
        })
        .await;
    assert!(ada.milestone("first_value").is_some(), "{ada:?}");
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "nudge", "ada"),
        0,
        "ada was nudged:\n{}",
        describe(&received)
    );
    let messages = api.customer("ada").await.expect("ada").messages;
    assert!(
        messages.iter().all(|m| m.template != "nudge"),
        "a nudge was decided for ada: {messages:#?}"
    );
}

#[tokio::test]
async fn completed_enrollment_records_when_first_value_was_reached() {
    let world = Onboarding::start().await;
    let (api, admin) = (world.api(), world.admin());
    let signed_up_at = admin.clock_now().await;
    world.sign_up("ada").await;

    let reached_at = admin.advance_clock(2 * HOUR_MS).await;
    world.post("ada-first-value", "ada", "first_value").await;
    let ada = api
        .wait_for_enrollment("ada", ONBOARDING, "completed", |e| {
            e.status == EnrollmentStatus::Completed
        })
        .await;

    assert_eq!(ada.entered_at, signed_up_at);
    assert_eq!(
        ada.milestone("first_value").map(|m| m.at),
        Some(reached_at),
        "{ada:?}"
    );
    assert_eq!(ada.ended_at, Some(reached_at), "{ada:?}");
}

#[tokio::test]
async fn retried_event_is_a_duplicate_and_welcomes_only_once() {
    let world = Onboarding::start().await;
    let api = world.api();
    let signup = event("ada-signed-up", "ada", "signed_up");

    let first = api.post_events(std::slice::from_ref(&signup)).await;
    assert_eq!((first.accepted, first.duplicates), (1, 0), "{first:?}");
    world.sink.wait_for_delivery("welcome", "ada").await;

    let retry = api.post_events(&[signup]).await;
    assert_eq!((retry.accepted, retry.duplicates), (0, 1), "{retry:?}");
    assert_eq!(retry.results.len(), 1, "{retry:?}");
    assert_eq!(retry.results[0].id, "ada-signed-up");
    assert_eq!(retry.results[0].status, "duplicate");

    // Bob's welcome arrives after anything the retry could have caused for ada.
    world.sign_up("bob").await;
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "welcome", "ada"),
        1,
        "{}",
        describe(&received)
    );
}
