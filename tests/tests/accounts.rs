//! Account journeys (issue 12), end to end on the real server with `examples/account-onboarding`
//! (a journey whose subject is the account): members' events route to one enrollment per
//! account, whose customer is the account and whose events carry the member; milestones are
//! reached from different members; the report counts accounts; a customer without an account
//! enters nothing; a member merged from an anonymous id keeps the account's routing.

use waymark_api::accounts::{Account, AccountQuery};
use waymark_api::customers::{Enrollment, EnrollmentStatus};
use waymark_tests::*;

const JOURNEY: &str = "account-onboarding";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

async fn world() -> Example {
    Example::start(JOURNEY, &["email", "slack"]).await
}

/// `GET /v1/accounts/{id}`.
async fn account(world: &Example, id: &str) -> Option<Account> {
    world
        .api()
        .tenant_client()
        .account(id, &AccountQuery::default())
        .await
        .ok()
}

/// Waits until the account's only enrollment satisfies `holds`; returns it.
async fn wait_for_account(
    world: &Example,
    id: &str,
    what: &str,
    holds: impl Fn(&Enrollment) -> bool,
) -> Enrollment {
    wait_for_some(&format!("account {id}: {what}"), || async {
        let account = account(world, id).await?;
        match &account.enrollments[..] {
            [only] if holds(only) => Some(only.clone()),
            _ => None,
        }
    })
    .await
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
async fn an_account_enrolls_once_for_its_members_and_reaches_milestones_from_different_members() {
    let world = world().await;
    // Three members of acme, with their traits; the account names its CSM.
    world
        .post(&[
            identify(
                "i-ada",
                "ada",
                json!({ "role": "admin", "email": "ada@acme.test" }),
            ),
            identify("i-ben", "ben", json!({ "role": "engineer" })),
            identify("i-eve", "eve", json!({ "role": "executive" })),
            group(
                "g-ada",
                "ada",
                "acme",
                json!({ "name": "Acme", "csm": "zoe" }),
            ),
            group("g-ben", "ben", "acme", json!({})),
            group("g-eve", "eve", "acme", json!({})),
        ])
        .await;
    // All three sign up: one enrollment, under the account's subject key.
    world
        .post(&[
            event("s-ada", "ada", "signed_up"),
            event("s-ben", "ben", "signed_up"),
            event("s-eve", "eve", "signed_up"),
        ])
        .await;
    let entered = wait_for_account(&world, "acme", "entered", |e| {
        e.status == EnrollmentStatus::Active
    })
    .await;
    assert_eq!(entered.id, "account-onboarding/account:acme/1");
    // decide saw the account by its own id and the member who signed up first in the event.
    let welcome = world.delivered("email", "account_welcome", "acme").await;
    let to = welcome.payload()["to"]
        .as_str()
        .expect("a member")
        .to_string();
    assert!(["ada", "ben", "eve"].contains(&to.as_str()), "{to}");
    assert_eq!(welcome.body["customer"]["attributes"]["csm"], "zoe");
    if to == "ada" {
        assert_eq!(welcome.payload()["email"], "ada@acme.test");
    }

    // The executive logs in first (remembered), then the engineer creates a project: first
    // value and, with it, the sponsor engaged — from two different members.
    world.post(&[event("l-eve", "eve", "logged_in")]).await;
    world
        .post(&[event("p-ben", "ben", "project_created")])
        .await;
    let done = wait_for_account(&world, "acme", "completed", |e| {
        e.status == EnrollmentStatus::Completed
    })
    .await;
    let reached: Vec<&str> = done.milestones.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(reached, ["first_value", "sponsor_engaged"]);

    // The report counts one account; the members have no enrollments of their own.
    let report = world.api().report(JOURNEY).await;
    assert_eq!(report["subject"], "account", "{report}");
    let overall = &report["report"]["overall"];
    assert_eq!(overall["entered"], 1, "{overall}");
    assert_eq!(overall["completed"], 1, "{overall}");
    assert_eq!(overall["milestones"][1]["reached"], 1, "{overall}");
    for member in ["ada", "ben", "eve"] {
        let profile = world.api().customer(member).await.expect("a member");
        assert!(profile.enrollments.is_empty(), "{member}: {profile:?}");
        assert_eq!(profile.account.as_deref(), Some("acme"));
    }
    assert_eq!(count(&world.sink.requests(), "account_welcome", "acme"), 1);
}

#[tokio::test]
async fn a_members_event_after_another_entered_reaches_the_same_enrollment_and_stalls_go_to_the_csm(
) {
    let world = world().await;
    world
        .post(&[
            group("g-ann", "ann", "globex", json!({ "csm": "sam" })),
            group("g-bo", "bo", "globex", json!({})),
            event("s-ann", "ann", "signed_up"),
        ])
        .await;
    wait_for_account(&world, "globex", "entered", |e| {
        e.status == EnrollmentStatus::Active
    })
    .await;
    // bo's project, after ann entered the account: the same enrollment reaches first value.
    world.post(&[event("p-bo", "bo", "project_created")]).await;
    let first = wait_for_account(&world, "globex", "first value", |e| {
        e.milestone("first_value").is_some()
    })
    .await;
    assert_eq!(first.run, 1);

    // Nobody executive logs in for 14 days: the account stalls and goes to its CSM, once.
    world.admin().advance_clock(15 * DAY_MS).await;
    let post = world.delivered("slack", "csm_handoff", "globex").await;
    assert_eq!(post.payload()["csm"], "sam");
    assert_eq!(
        post.payload()["text"],
        "Account onboarding: account globex stuck before sponsor_engaged; over to sam"
    );
    let tasks = wait_for_some("the CSM's task", || async {
        let tasks = world
            .api()
            .tasks(waymark_api::tasks::TaskQuery {
                queue: Some("csm".into()),
                ..Default::default()
            })
            .await;
        (!tasks.is_empty()).then_some(tasks)
    })
    .await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].customer, "account:globex");
    let stalled = wait_for_account(&world, "globex", "stalled", |e| {
        e.stalled_on.as_deref() == Some("sponsor_engaged")
    })
    .await;
    assert_eq!(stalled.status, EnrollmentStatus::Active);
    let report = world.api().report(JOURNEY).await;
    assert_eq!(report["report"]["overall"]["stalled_now"], 1, "{report}");
}

#[tokio::test]
async fn a_customer_without_an_account_enters_no_account_journey() {
    let world = world().await;
    // dan belongs to no account; his identify, posted last, tells when his events are done.
    world
        .post(&[
            event("s-dan", "dan", "signed_up"),
            event("p-dan", "dan", "project_created"),
            identify("i-dan", "dan", json!({ "done": true })),
        ])
        .await;
    wait_for_some("dan's events processed", || async {
        let dan = world.api().customer("dan").await?;
        (dan.attributes.get("done") == Some(&json!(true))).then_some(())
    })
    .await;
    let dan = world.api().customer("dan").await.expect("dan");
    assert!(dan.enrollments.is_empty(), "{dan:?}");
    assert_eq!(dan.account, None);
    let report = world.api().report(JOURNEY).await;
    assert_eq!(report["report"]["overall"]["entered"], 0, "{report}");

    // A customer id that would read as an account's subject key is refused.
    let answer = world
        .api()
        .request(
            Method::POST,
            "/v1/events",
            Some(&world.tenant.api_key),
            json!({ "id": "x1", "customer": "account:acme", "name": "signed_up" }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_event");
}

#[tokio::test]
async fn a_merged_anonymous_member_keeps_routing_to_the_account_once() {
    let world = world().await;
    // An anonymous visitor joins initech and signs up: the account enters.
    world
        .post(&[
            group("g-anon", "anon-9", "initech", json!({ "csm": "kim" })),
            event("s-anon", "anon-9", "signed_up"),
        ])
        .await;
    wait_for_account(&world, "initech", "entered", |e| {
        e.status == EnrollmentStatus::Active
    })
    .await;
    // Identified as fay (executive): the membership passes to fay.
    world
        .post(&[event_with(
            "m-fay",
            "fay",
            "identify",
            json!({ "anonymous_id": "anon-9", "traits": { "role": "executive" } }),
        )])
        .await;
    let members = wait_for_some("fay is initech's member", || async {
        let account = account(&world, "initech").await?;
        (account.members == ["fay"]).then_some(account.members)
    })
    .await;
    assert_eq!(members, ["fay"]);
    // The anonymous id's later event and fay's own reach the account once each: first value,
    // then the executive's login engages the sponsor.
    world
        .post(&[event("p-anon", "anon-9", "project_created")])
        .await;
    wait_for_account(&world, "initech", "first value", |e| {
        e.milestone("first_value").is_some()
    })
    .await;
    world.post(&[event("l-fay", "fay", "logged_in")]).await;
    let done = wait_for_account(&world, "initech", "completed", |e| {
        e.status == EnrollmentStatus::Completed
    })
    .await;
    assert_eq!(done.milestones.len(), 2);
    let report = world.api().report(JOURNEY).await;
    assert_eq!(report["report"]["overall"]["entered"], 1, "{report}");
    assert_eq!(report["report"]["overall"]["completed"], 1, "{report}");
    assert_eq!(
        count(&world.sink.requests(), "account_welcome", "initech"),
        1
    );
}

// Engagement with an account journey's messages (issue 12, polish).
#[tokio::test]
async fn a_members_engagement_with_the_accounts_message_counts_on_the_accounts_enrollment() {
    let world = world().await;
    world
        .post(&[
            identify("i-ada", "ada", json!({ "email": "ada@initech.test" })),
            group("g-ada", "ada", "initech", json!({ "csm": "kim" })),
            event("s-ada", "ada", "signed_up"),
        ])
        .await;
    let welcome = world.delivered("email", "account_welcome", "initech").await;
    let message_id = welcome.idempotency_key().expect("a message id");
    // Ada opens and clicks the account's welcome: the account's enrollment counts both.
    world
        .post(&[
            event_with(
                "o-ada",
                "ada",
                "opened",
                json!({ "message_id": message_id }),
            ),
            event_with(
                "c-ada",
                "ada",
                "clicked",
                json!({ "message_id": message_id, "url": "https://initech.test/start" }),
            ),
        ])
        .await;
    let engaged = wait_for_account(&world, "initech", "engagement counted", |e| {
        e.channels
            .get("email")
            .is_some_and(|c| c.opened == 1 && c.clicked == 1)
    })
    .await;
    assert_eq!(engaged.status, EnrollmentStatus::Active, "{engaged:?}");
    assert_eq!(engaged.channels["email"].sent, 1);
    // The member has no enrollment of her own.
    let ada = world.api().customer("ada").await.expect("a member");
    assert!(ada.enrollments.is_empty(), "{ada:?}");
}
