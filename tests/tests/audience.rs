//! Audience triggers evaluated by the host (issue 12), end to end on the real server with the
//! manual clock: an inactivity trigger enters the customers quiet for its period and pushes
//! back those who were active; a condition on traits enters a customer when it starts to hold
//! and exits them (`unmatched:<name>`) when it stops; a date trigger enters at the right local
//! time; a condition that does not parse refuses the upload, naming the column.
//!
//! The journey is `tests/guests/audience`: it reaches the milestone named as the trigger that
//! entered it and keeps the synthetic event's properties as its state.

use waymark_api::customers::{Enrollment, EnrollmentStatus};
use waymark_tests::*;

const JOURNEY: &str = "audience";

struct World {
    server: Server,
    tenant: CreatedTenant,
}

impl World {
    async fn start() -> World {
        let server = Server::start(ServerOptions::default()).await;
        let component = artifacts().component(AUDIENCE_CRATE);
        let (tenant, _) = tenant_with_journey(&server, "acme", None, JOURNEY, component).await;
        World { server, tenant }
    }

    fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    async fn post(&self, events: &[Value]) {
        let accepted = self.api().post_events(events).await;
        assert_eq!(accepted.accepted as usize, events.len(), "{accepted:?}");
    }

    /// Waits until the customer's attribute `step` reads `step`: every earlier event of theirs
    /// has been processed (a customer's events are processed in order).
    async fn processed(&self, customer: &str, step: i64) {
        let started = std::time::Instant::now();
        loop {
            let seen = self.api().customer(customer).await;
            if seen
                .as_ref()
                .is_some_and(|c| c.attributes.get("step") == Some(&json!(step)))
            {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "{customer} never reached step {step}: {seen:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn entered(
        &self,
        customer: &str,
        what: &str,
        holds: impl Fn(&Enrollment) -> bool,
    ) -> Enrollment {
        self.api()
            .wait_for_enrollment(customer, JOURNEY, what, holds)
            .await
    }

    async fn enrollments(&self, customer: &str) -> Vec<Enrollment> {
        self.api()
            .customer(customer)
            .await
            .map(|c| c.enrollments_in(JOURNEY).into_iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The synthetic entry event's properties, which the journey kept as its state.
fn entry_properties(e: &Enrollment) -> Value {
    serde_json::from_slice(&e.state).expect("the journey keeps JSON")
}

#[tokio::test]
async fn an_inactivity_trigger_enters_only_customers_quiet_for_its_period() {
    let world = World::start().await;
    let admin = world.server.api();
    let t0 = admin.clock_now().await;
    // Ada is seen once (any event starts the watch); bob and cyd log in.
    world
        .post(&[
            identify("a1", "ada", json!({ "step": 1 })),
            event("b1", "bob", "logged_in"),
            identify("b2", "bob", json!({ "step": 1 })),
            event("c1", "cyd", "logged_in"),
            identify("c2", "cyd", json!({ "step": 1 })),
        ])
        .await;
    for customer in ["ada", "bob", "cyd"] {
        world.processed(customer, 1).await;
    }
    // Five days on, bob logs in again; cyd only browses (not in the trigger's set).
    admin.advance_clock(5 * DAY_MS).await;
    world
        .post(&[
            event("b3", "bob", "logged_in"),
            identify("b4", "bob", json!({ "step": 2 })),
            event("c3", "cyd", "page_viewed"),
            identify("c4", "cyd", json!({ "step": 2 })),
        ])
        .await;
    world.processed("bob", 2).await;
    world.processed("cyd", 2).await;

    // Seven days after t0: ada and cyd have been quiet for seven days, bob for two.
    admin.advance_clock(2 * DAY_MS).await;
    for customer in ["ada", "cyd"] {
        let e = world
            .entered(customer, "entered by quiet_7d", |e| {
                e.milestone("quiet_7d").is_some()
            })
            .await;
        assert_eq!(e.entered_at, t0 + 7 * DAY_MS);
        let properties = entry_properties(&e);
        assert_eq!(properties["audience"], "inactive");
        assert_eq!(properties["last_seen_at"], t0, "{properties}");
        assert_eq!(properties["quiet_for_ms"], 7 * DAY_MS);
    }
    // Bob's deadline was pushed back by his login: he enters seven days after it, not before.
    admin.advance_clock(5 * DAY_MS).await;
    let bob = world
        .entered("bob", "entered by quiet_7d", |e| {
            e.milestone("quiet_7d").is_some()
        })
        .await;
    assert_eq!(bob.entered_at, t0 + 12 * DAY_MS, "{bob:?}");
    assert_eq!(entry_properties(&bob)["last_seen_at"], t0 + 5 * DAY_MS);
    // Ada and cyd entered once: their watches rest until they are active again.
    for customer in ["ada", "cyd"] {
        assert_eq!(world.enrollments(customer).await.len(), 1, "{customer}");
    }
}

#[tokio::test]
async fn a_condition_enters_when_a_trait_starts_to_hold_and_exits_when_it_stops() {
    let world = World::start().await;
    world
        .post(&[identify("d1", "dan", json!({ "plan": "free", "step": 1 }))])
        .await;
    world.processed("dan", 1).await;
    assert!(world.enrollments("dan").await.is_empty());

    // Upgraded: he starts to match and enters.
    world
        .post(&[identify("d2", "dan", json!({ "plan": "pro", "step": 2 }))])
        .await;
    let first = world
        .entered("dan", "entered by pro_plan", |e| {
            e.milestone("pro_plan").is_some()
        })
        .await;
    assert_eq!(first.status, EnrollmentStatus::Active);
    assert_eq!(entry_properties(&first)["expression"], r#"plan == "pro""#);
    // Still matching: no second entry (an edge, not a level).
    world
        .post(&[identify("d3", "dan", json!({ "seats": 3, "step": 3 }))])
        .await;
    world.processed("dan", 3).await;
    assert_eq!(world.enrollments("dan").await.len(), 1);

    // Downgraded: he stops matching and the enrollment exits.
    world
        .post(&[identify("d4", "dan", json!({ "plan": "free", "step": 4 }))])
        .await;
    let exited = world
        .entered("dan", "exited", |e| e.status == EnrollmentStatus::Exited)
        .await;
    assert_eq!(exited.exit_reason.as_deref(), Some("unmatched:pro_plan"));

    // Upgraded again: a new run (re-entry after exit).
    world
        .post(&[identify("d5", "dan", json!({ "plan": "pro", "step": 5 }))])
        .await;
    world.processed("dan", 5).await;
    let started = std::time::Instant::now();
    while world.enrollments("dan").await.len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no second run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let runs = world.enrollments("dan").await;
    assert!(
        runs.iter()
            .any(|e| e.run == 2 && e.status == EnrollmentStatus::Active),
        "{runs:?}"
    );
}

/// A `group` event putting `member` in `account` with `traits`.
fn group(id: &str, member: &str, account: &str, traits: Value) -> Value {
    event_with(
        id,
        member,
        "group",
        json!({ "group_id": account, "traits": traits }),
    )
}

#[tokio::test]
async fn a_group_call_changing_the_account_enters_every_member_whose_condition_reads_it() {
    let world = World::start().await;
    // Ann and bea join acme on the free plan: neither matches `account.plan == "enterprise"`.
    world
        .post(&[
            group("g1", "ann", "acme", json!({ "plan": "free" })),
            identify("a1", "ann", json!({ "step": 1 })),
            group("g2", "bea", "acme", json!({})),
            identify("b1", "bea", json!({ "step": 1 })),
        ])
        .await;
    world.processed("ann", 1).await;
    world.processed("bea", 1).await;
    assert!(world.enrollments("ann").await.is_empty());
    assert!(world.enrollments("bea").await.is_empty());

    // Ann's group call upgrades the account: both members enter, though bea sent nothing.
    world
        .post(&[group("g3", "ann", "acme", json!({ "plan": "enterprise" }))])
        .await;
    for member in ["ann", "bea"] {
        let e = world
            .entered(member, "entered by enterprise_account", |e| {
                e.milestone("enterprise_account").is_some()
            })
            .await;
        assert_eq!(e.status, EnrollmentStatus::Active, "{member}: {e:?}");
        assert_eq!(
            entry_properties(&e)["expression"],
            r#"account.plan == "enterprise""#
        );
    }
    // Cyd, in another account, is not touched.
    world
        .post(&[
            group("g4", "cyd", "globex", json!({ "plan": "free" })),
            identify("c1", "cyd", json!({ "step": 1 })),
        ])
        .await;
    world.processed("cyd", 1).await;
    assert!(world.enrollments("cyd").await.is_empty());
    // Each member entered once.
    for member in ["ann", "bea"] {
        assert_eq!(world.enrollments(member).await.len(), 1, "{member}");
    }
}

#[tokio::test]
async fn an_anonymous_ids_inactivity_watch_moves_to_the_known_customer_on_identify() {
    let world = World::start().await;
    let admin = world.server.api();
    let t0 = admin.clock_now().await;
    // Kim logs in: her quiet period starts at t0.
    world
        .post(&[
            event("k1", "kim", "logged_in"),
            identify("k2", "kim", json!({ "step": 1 })),
        ])
        .await;
    world.processed("kim", 1).await;
    // Three days on she logs in again, signed out (an anonymous id), then signs in.
    admin.advance_clock(3 * DAY_MS).await;
    world
        .post(&[
            event("n1", "anon-7", "logged_in"),
            identify("n2", "anon-7", json!({ "step": 1 })),
        ])
        .await;
    world.processed("anon-7", 1).await;
    world
        .post(&[event_with(
            "k3",
            "kim",
            "identify",
            json!({ "anonymous_id": "anon-7", "traits": { "step": 2 } }),
        )])
        .await;
    world.processed("kim", 2).await;
    let started = std::time::Instant::now();
    while world.api().customer("anon-7").await.is_some() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "anon-7 never merged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Seven days after t0 she has been quiet for four: the anonymous login counts as hers.
    admin.advance_clock(4 * DAY_MS).await;
    // Seven days after that login she enters, once, under her own id.
    admin.advance_clock(3 * DAY_MS).await;
    let kim = world
        .entered("kim", "entered by quiet_7d", |e| {
            e.milestone("quiet_7d").is_some()
        })
        .await;
    assert_eq!(kim.entered_at, t0 + 10 * DAY_MS, "{kim:?}");
    assert_eq!(entry_properties(&kim)["last_seen_at"], t0 + 3 * DAY_MS);
    assert_eq!(world.enrollments("kim").await.len(), 1);
}

#[tokio::test]
async fn a_date_trigger_enters_seven_days_before_the_date_at_nine_local_time() {
    let world = World::start().await;
    let admin = world.server.api();
    let now = admin.clock_now().await;
    // Renewal 12 days from today (UTC), so the entry comes before her seven quiet days would
    // enter her by `quiet_7d`; Tokyo has no daylight saving: 09:00 JST is 00:00 UTC.
    let (y, m, d) = utc_date(now + 12 * DAY_MS);
    let renews_at = format!("{y:04}-{m:02}-{d:02}");
    let expected = utc_midnight(y, m, d) - 7 * DAY_MS;
    world
        .post(&[identify(
            "e1",
            "eve",
            json!({ "renews_at": renews_at, "timezone": "Asia/Tokyo", "step": 1 }),
        )])
        .await;
    world.processed("eve", 1).await;
    // A minute before: nothing yet. Then the minute.
    admin.advance_clock(expected - MINUTE_MS - now).await;
    admin.advance_clock(MINUTE_MS).await;
    let e = world
        .entered("eve", "entered by renewal_week", |e| {
            e.milestone("renewal_week").is_some()
        })
        .await;
    assert_eq!(
        e.entered_at, expected,
        "09:00 in Tokyo, seven days before {renews_at}"
    );
    let properties = entry_properties(&e);
    assert_eq!(properties["audience"], "date");
    assert_eq!(properties["date"], renews_at.as_str());
    assert_eq!(properties["offset_days"], -7);
}

#[tokio::test]
async fn a_condition_that_does_not_parse_refuses_the_upload_naming_the_column() {
    let server = Server::start(ServerOptions::default()).await;
    let tenant = server.api().create_tenant("acme").await;
    let answer = server
        .as_tenant(&tenant)
        .tenant_client()
        .upload_journey("bad", artifacts().component(AUDIENCE_BAD_CRATE))
        .await;
    match answer {
        Err(ClientError::Api { status, error, .. }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(error.code, "invalid_spec");
            assert!(error.message.contains("pro_plan"), "{}", error.message);
            assert!(error.message.contains("column 6"), "{}", error.message);
            assert!(error.message.contains("`==`"), "{}", error.message);
        }
        other => panic!("the upload must be refused: {other:?}"),
    }
}
