//! Customer profiles and engagement: `identify` traits reach `decide`, tracking events that
//! name a message count on the enrollment that sent it, and an unsubscribed customer's sends
//! are recorded as suppressed and never delivered.

use waymark_tests::*;

fn identify(id: &str, customer: &str, traits: Value) -> Value {
    json!({ "id": id, "customer": customer, "name": "identify", "properties": { "traits": traits } })
}

#[tokio::test]
async fn identify_traits_are_attributes_that_decide_sees() {
    let world = Onboarding::start().await;
    let api = world.api();
    let answer = api
        .post_events(&[identify(
            "ada-identify",
            "ada",
            json!({ "email": "ada@example.com", "plan": "pro" }),
        )])
        .await;
    assert_eq!(answer.accepted, 1);
    let welcome = world.sign_up("ada").await;
    assert_eq!(
        welcome.body["payload"]["email"], "ada@example.com",
        "the journey read the trait: {:?}",
        welcome.body
    );

    // `null` removes a trait; other traits stay.
    api.post_events(&[identify("ada-identify-2", "ada", json!({ "plan": null }))])
        .await;
    let ada = wait_for_some("ada's plan to be removed", || async {
        let ada = api.customer("ada").await?;
        ada.attributes.get("plan").is_none().then_some(ada)
    })
    .await;
    assert_eq!(ada.attributes["email"], "ada@example.com");
}

#[tokio::test]
async fn engagement_with_a_message_counts_on_the_enrollment_that_sent_it() {
    let world = Onboarding::start().await;
    let api = world.api();
    let welcome = world.sign_up("ada").await;
    let message_id = welcome.idempotency_key().expect("a message id").to_string();
    for (i, kind) in ["opened", "clicked", "opened"].iter().enumerate() {
        let event = json!({
            "id": format!("ada-{kind}-{i}"),
            "customer": "ada",
            "name": kind,
            "properties": { "message_id": message_id },
        });
        assert_eq!(api.post_events(&[event]).await.accepted, 1);
    }
    let enrollment = api
        .wait_for_enrollment("ada", ONBOARDING, "two opens and a click", |e| {
            e.channels
                .get(WEBHOOK)
                .is_some_and(|s| s.opened == 2 && s.clicked == 1)
        })
        .await;
    assert_eq!(enrollment.channels[WEBHOOK].sent, 1);
}

#[tokio::test]
async fn an_unsubscribed_customer_gets_no_sends_and_they_are_recorded_as_suppressed() {
    let world = Onboarding::start().await;
    let api = world.api();
    let unsubscribe = json!({ "id": "bob-unsub", "customer": "bob", "name": "unsubscribed" });
    assert_eq!(api.post_events(&[unsubscribe]).await.accepted, 1);
    world.post("bob-signed-up", "bob", "signed_up").await;
    // Ada is the checkpoint: signed up after bob, welcomed, so bob's trigger is done.
    world.sign_up("ada").await;

    let bob = wait_for_some("bob's suppressed welcome", || async {
        let bob = api.customer("bob").await?;
        (!bob.messages.is_empty()).then_some(bob)
    })
    .await;
    assert_eq!(bob.attributes["unsubscribed"], true);
    let statuses: Vec<&str> = bob.messages.iter().map(|m| m.status.as_str()).collect();
    assert_eq!(statuses, ["suppressed"]);
    let summary = &bob.enrollment(ONBOARDING).expect("bob enrolled").channels[WEBHOOK];
    assert_eq!((summary.sent, summary.suppressed), (0, 1));
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "welcome", "bob"),
        0,
        "{}",
        describe(&received)
    );
}
