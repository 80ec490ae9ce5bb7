//! One tenant's faults stay that tenant's (issue 15): a journey version whose triggers keep
//! running to the deadline is held back by its circuit breaker — its triggers deferred, in
//! order, not lost — and probed again; a channel that never answers holds only its own share of
//! the delivery slots; and meanwhile another tenant's welcomes keep their latency. An
//! enrollment keeps its recent failures after a later success.
//!
//! The hostile journey (`tests/guests/hostile`) enrolls customers on `signed_up`, sends `ok`
//! through `webhook` on `ok`, and spins until its deadline on `spin`.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use waymark_api::isolation::{BreakerState, JourneyBreakers};
use waymark_tests::*;

const HOSTILE: &str = "hostile";

/// A tenant `name` with the webhook channel delivering to the sink, the hostile journey
/// uploaded, and `decide` cut off after `deadline_ms`.
async fn hostile_tenant(
    server: &Server,
    sink: &Sink,
    name: &str,
    deadline_ms: u64,
) -> CreatedTenant {
    let hostile = artifacts().component(HOSTILE_CRATE);
    let (tenant, _) =
        tenant_with_journey(server, name, Some((sink, &[WEBHOOK])), HOSTILE, hostile).await;
    let (status, body) = server
        .api()
        .request(
            Method::PUT,
            &format!("/v1/admin/tenants/{name}/limits"),
            Some(server.admin_token()),
            json!({ "decide_deadline_ms": deadline_ms }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tenant
}

/// Signs `customer` up and posts `name` for them, in one batch (processed in order).
fn enroll_and(customer: &str, name: &str) -> Vec<Value> {
    vec![
        event(&format!("{customer}-signed-up"), customer, "signed_up"),
        event(&format!("{customer}-{name}"), customer, name),
    ]
}

/// The value of an unlabelled metric (0 if absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

async fn breakers(api: &Api, key: &str, journey: &str) -> JourneyBreakers {
    let (status, body) = api
        .request(
            Method::GET,
            &format!("/v1/journeys/{journey}/breaker"),
            Some(key),
            Body::Empty,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).expect("a JourneyBreakers")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_keeps_burning_its_deadline_is_held_back_then_probed_losing_nothing() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions {
        args: [
            "--breaker-failures",
            "3",
            "--breaker-window",
            "6",
            "--breaker-cool-down-ms",
            "3000",
        ]
        .map(String::from)
        .to_vec(),
        ..ServerOptions::default()
    })
    .await;
    let tenant = hostile_tenant(&server, &sink, "burner", 200).await;
    let api = server.as_tenant(&tenant);
    let key = tenant.api_key.as_str();

    let spinners = ["s1", "s2", "s3"];
    let burst: Vec<Value> = spinners
        .iter()
        .flat_map(|s| enroll_and(s, "spin"))
        .collect();
    api.post_events(&burst).await;
    wait_until("the hostile version's breaker to open", || async {
        metric(&api.metrics().await, "waymark_breakers_opened_total") >= 1.0
    })
    .await;
    let shown = breakers(&api, key, HOSTILE).await;
    assert_eq!(shown.breakers.len(), 1, "{shown:?}");
    assert_eq!(shown.breakers[0].state, BreakerState::Open, "{shown:?}");
    assert!(shown.breakers[0].open_until.is_some(), "{shown:?}");

    // While it is open, a new customer's triggers wait, in order, neither run nor failed.
    api.post_events(&enroll_and("carol", "ok")).await;
    wait_until("carol's trigger to be deferred", || async {
        metric(&api.metrics().await, "waymark_triggers_deferred_total") >= 1.0
    })
    .await;
    assert!(
        api.customer("carol")
            .await
            .and_then(|c| c.enrollment(HOSTILE).cloned())
            .is_none(),
        "carol's signup is deferred, not processed"
    );
    // After the cool-down her signup is the probe; it succeeds, the breaker closes, and her
    // `ok` follows it: enrolled first, so it sends.
    sink.wait_for_delivery("ok", "carol").await;
    let carol = api
        .wait_for_enrollment("carol", HOSTILE, "enrolled without failure", |e| {
            e.failures.is_empty()
        })
        .await;
    assert_eq!(carol.failure, None);
    let shown = breakers(&api, key, HOSTILE).await;
    assert!(
        shown
            .breakers
            .iter()
            .all(|b| b.state == BreakerState::Closed),
        "{shown:?}"
    );

    // A spinner's failure stays listed after a later success of theirs.
    api.post_events(&[event("s1-ok", "s1", "ok")]).await;
    sink.wait_for_delivery("ok", "s1").await;
    let s1 = api
        .wait_for_enrollment("s1", HOSTILE, "a success after the failure", |e| {
            e.failure.is_none()
        })
        .await;
    assert_eq!(s1.failures.len(), 1, "{s1:?}");
    assert_eq!(s1.failures[0].reason, "deadline");
    assert_eq!(s1.failures[0].trigger, "event");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_channel_and_a_deadline_burner_do_not_slow_another_tenants_welcomes() {
    const QUIET_CUSTOMERS: usize = 120;
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let noisy = hostile_tenant(&server, &sink, "noisy", 250).await;
    let noisy_api = server.as_tenant(&noisy);
    let onboarding = artifacts().component(ONBOARDING_CRATE);
    let (quiet, _) = tenant_with_journey(
        &server,
        "quiet",
        Some((&sink, &[WEBHOOK])),
        ONBOARDING,
        onboarding,
    )
    .await;
    let quiet_api = server.as_tenant(&quiet);

    // More deliveries to a provider that never answers than the loop has slots...
    let stuck: Vec<String> = (0..40).map(|i| format!("stuck-{i}")).collect();
    for customer in &stuck {
        sink.hold(customer);
    }
    let sends: Vec<Value> = stuck.iter().flat_map(|c| enroll_and(c, "ok")).collect();
    noisy_api.post_events(&sends).await;
    // ... and a burst of triggers that each run to the deadline.
    let spins: Vec<Value> = (0..40)
        .flat_map(|i| enroll_and(&format!("spinner-{i}"), "spin"))
        .collect();
    noisy_api.post_events(&spins).await;
    sink.wait_for("the stuck channel's first deliveries", |r| {
        r.iter().filter(|r| r.template() == Some("ok")).count() >= 4
    })
    .await;
    wait_until("the burner's breaker to open", || async {
        metric(&noisy_api.metrics().await, "waymark_breakers_opened_total") >= 1.0
    })
    .await;

    // The quiet tenant's welcomes, from the acknowledgement of each signup to the sink.
    let mut acked: HashMap<String, Instant> = HashMap::new();
    let mut arrived: HashMap<String, Instant> = HashMap::new();
    let post = async {
        for i in 0..QUIET_CUSTOMERS {
            let customer = format!("quiet-{i}");
            quiet_api
                .post_events(&[event(
                    &format!("{customer}-signed-up"),
                    &customer,
                    "signed_up",
                )])
                .await;
            acked.insert(customer, Instant::now());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let watch = async {
        let start = Instant::now();
        while arrived.len() < QUIET_CUSTOMERS && start.elapsed() < patience() {
            let now = Instant::now();
            for r in sink.requests() {
                if let (Some("welcome"), Some(customer)) = (r.template(), r.customer()) {
                    arrived.entry(customer.to_string()).or_insert(now);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::join!(post, watch);
    assert_eq!(
        arrived.len(),
        QUIET_CUSTOMERS,
        "every quiet welcome arrives"
    );

    let mut latencies: Vec<Duration> = acked
        .iter()
        .map(|(customer, at)| arrived[customer].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    println!(
        "quiet welcomes: p50 {p50:?}, p99 {p99:?} over {} customers",
        latencies.len()
    );
    assert!(
        p99 < Duration::from_millis(500),
        "the quiet tenant's p99 was {p99:?} (p50 {p50:?})"
    );

    // The noisy tenant's stuck deliveries are still stuck, within its channel's budget, and
    // its burner is held back.
    let stuck_seen = sink
        .requests()
        .iter()
        .filter(|r| r.template() == Some("ok"))
        .count();
    assert!(
        (1..=8).contains(&stuck_seen),
        "{stuck_seen} stuck deliveries in flight; the channel's budget is 8"
    );
    let shown = breakers(&noisy_api, &noisy.api_key, HOSTILE).await;
    assert!(
        shown
            .breakers
            .iter()
            .any(|b| b.opened >= 1 && b.deferred >= 1),
        "{shown:?}"
    );
    sink.release();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journey_that_sends_on_every_delivery_report_is_paused_and_can_be_resumed() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions {
        args: ["--max-enrollment-sends", "5"].map(String::from).to_vec(),
        ..ServerOptions::default()
    })
    .await;
    let tenant = hostile_tenant(&server, &sink, "echoes", 1_000).await;
    let api = server.as_tenant(&tenant);
    let key = tenant.api_key.as_str();
    let echoes = |r: &[Received]| count(r, "echo", "looper");

    api.post_events(&enroll_and("looper", "echo")).await;
    let paused = api
        .wait_for_enrollment("looper", HOSTILE, "paused by its send budget", |e| {
            e.paused.is_some()
        })
        .await;
    let reason = &paused.paused.as_ref().expect("paused").reason;
    assert!(reason.contains("5 sends"), "{reason}");
    assert_eq!(paused.status, EnrollmentStatus::Active, "paused, not ended");
    sink.wait_for("the five echoes", |r| echoes(r) >= 5).await;
    // The fifth echo's delivery report waits with the enrollment: nothing more is sent.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(echoes(&sink.requests()), 5);

    let resume = "/v1/customers/looper/enrollments/hostile/resume";
    let (status, body) = api
        .request(Method::POST, resume, Some(key), Body::Empty)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("paused").is_none(), "{body}");
    // The waiting report runs, the loop goes on for another budget, and is paused again.
    sink.wait_for("five more echoes", |r| echoes(r) >= 10).await;
    api.wait_for_enrollment("looper", HOSTILE, "paused again", |e| e.paused.is_some())
        .await;

    // Resuming a run that is not paused is a conflict.
    api.post_events(&enroll_and("calm", "ok")).await;
    sink.wait_for_delivery("ok", "calm").await;
    let calm = api
        .request(
            Method::POST,
            "/v1/customers/calm/enrollments/hostile/resume",
            Some(key),
            Body::Empty,
        )
        .await;
    assert_error(&calm, StatusCode::CONFLICT, "not_paused");
    let unknown = api
        .request(
            Method::POST,
            "/v1/customers/looper/enrollments/nothing/resume",
            Some(key),
            Body::Empty,
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    assert!(metric(&api.metrics().await, "waymark_enrollments_paused_total") >= 2.0);

    // The tenant's budget: 11 sends so far (ten echoes and calm's `ok`); at 12 the enrollment
    // that sends the twelfth is paused.
    let (status, body) = server
        .api()
        .request(
            Method::PUT,
            "/v1/admin/tenants/echoes/limits",
            Some(server.admin_token()),
            json!({ "decide_deadline_ms": 1_000, "max_tenant_sends": 12 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.post_events(&enroll_and("crowd", "ok")).await;
    let crowd = api
        .wait_for_enrollment("crowd", HOSTILE, "paused by the tenant's budget", |e| {
            e.paused.is_some()
        })
        .await;
    let reason = &crowd.paused.as_ref().expect("paused").reason;
    assert!(
        reason.contains("12 sends by the tenant's enrollments"),
        "{reason}"
    );
}
