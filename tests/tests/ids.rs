//! Identifiers that cannot collide: idempotency keys are unambiguous in their parts, bounded and
//! header-safe whatever customers, events and journeys name, and a journey's command that
//! carries a name no id, key or header should hold is refused as `invalid_commands`.

use waymark_tests::*;

/// The longest `k1` key: `k1-`, 32 hex digits, `-`, a command index of up to 20 digits.
const MAX_KEY: usize = 56;

/// Whether `key` is a `k1` key an HTTP header carries as a token.
fn is_k1_token(key: &str) -> bool {
    key.len() <= MAX_KEY
        && key.starts_with("k1-")
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[tokio::test]
async fn customers_whose_keys_used_to_collide_both_get_their_welcome_under_distinct_keys() {
    let world = Onboarding::start().await;
    // Keys used to be `{tenant}/{journey}/{version}/{customer}/{run}/e-{event}/{index}`: both
    // of these were `acme/onboarding/1/a/1/e-x/1/e-y/0`, so the second send overwrote the
    // first in the outbox and a receiver honouring the key would drop it anyway.
    let (first, second) = (("a/1/e-x", "y"), ("a", "x/1/e-y"));
    let answer = world
        .api()
        .post_events(&[
            event(first.1, first.0, "signed_up"),
            event(second.1, second.0, "signed_up"),
        ])
        .await;
    assert_eq!(answer.accepted, 2, "{answer:?}");

    let received = world
        .sink
        .wait_for("both customers' welcomes", |r| {
            count(r, "welcome", first.0) > 0 && count(r, "welcome", second.0) > 0
        })
        .await;
    let key_of = |customer: &str| {
        let welcome = received
            .iter()
            .find(|r| r.is("welcome", customer))
            .expect("just seen");
        let key = welcome
            .idempotency_key()
            .expect("an Idempotency-Key header")
            .to_string();
        assert_eq!(welcome.body["message_id"], key.as_str(), "{welcome:?}");
        key
    };
    let (a, b) = (key_of(first.0), key_of(second.0));
    assert_ne!(a, b, "distinct customers, distinct keys");
    for key in [&a, &b] {
        assert!(is_k1_token(key), "{key:?}");
    }
    assert_eq!(
        count(&received, "welcome", first.0),
        1,
        "{}",
        describe(&received)
    );
    assert_eq!(
        count(&received, "welcome", second.0),
        1,
        "{}",
        describe(&received)
    );
}

#[tokio::test]
async fn a_timer_name_no_header_could_carry_fails_the_trigger_once_and_sends_nothing() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let hostile = artifacts().component(HOSTILE_CRATE);
    let (tenant, _) = tenant_with_journey(
        &server,
        "acme",
        Some((&sink, &[WEBHOOK])),
        "hostile",
        hostile,
    )
    .await;
    let api = server.as_tenant(&tenant);

    // `odd_timer` sends `ok`, then schedules a timer named with CR, LF, 0x1f and 1 MiB.
    let answer = api
        .post_events(&[
            event("odd-signed-up", "odd", "signed_up"),
            event("odd-1", "odd", "odd_timer"),
        ])
        .await;
    assert_eq!(answer.accepted, 2, "{answer:?}");
    let enrollment = api
        .wait_for_enrollment("odd", "hostile", "a recorded failure", |e| {
            e.failure.is_some()
        })
        .await;
    let failure = enrollment.failure.clone().expect("just seen");
    assert_eq!(failure.reason, "invalid_commands", "{failure:?}");
    assert!(
        failure
            .message
            .starts_with("command 1: schedule: timer name \"nudge\\r\\nX-Injected: 1\\u{1f}"),
        "the message names the command and the rule: {failure:?}"
    );
    assert!(failure.message.contains("visible ASCII"), "{failure:?}");
    assert!(
        failure.message.len() < 1_000,
        "the message does not carry the megabyte: {} bytes",
        failure.message.len()
    );
    assert_eq!(enrollment.status, EnrollmentStatus::Active);
    assert!(enrollment.timers.is_empty(), "{enrollment:?}");

    // The refused decision sent nothing, and is not retried: the customer's next trigger (a
    // customer's triggers run in order) is the only thing that reaches the sink.
    let answer = api.post_events(&[event("odd-2", "odd", "ok")]).await;
    assert_eq!(answer.accepted, 1, "{answer:?}");
    let received = sink.wait_for_delivery("ok", "odd").await;
    let key = received
        .idempotency_key()
        .expect("an Idempotency-Key header");
    assert!(is_k1_token(key), "{key:?}");
    let all = sink.requests();
    assert_eq!(all.len(), 1, "only the later `ok`: {}", describe(&all));
    let metrics = server.api().metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "waymark_trigger_failures_total",
            ("reason", "invalid_commands")
        ),
        1.0,
        "one failure, no retries\n{metrics}"
    );
    let customer = api.customer("odd").await.expect("odd exists");
    assert_eq!(customer.messages.len(), 1, "{customer:?}");
}
