//! Journey versions (issue 13, "Versions"): a version uploaded as a draft is entered by no one
//! until promoted; a promotion with a share rolls it out to that share of new entrants (stable
//! per customer), without one it goes live for all; a rollback stops a rollout or returns to
//! the version live before; enrollments stay on the version they entered throughout.

use waymark_api::journeys::{JourneyRollout, Promote, RolloutCandidate};
use waymark_tests::*;

/// Signs `customers` up and returns the journey version each entered.
async fn versions_entered(world: &Onboarding, prefix: &str, customers: usize) -> Vec<u32> {
    let events: Vec<_> = (0..customers)
        .map(|i| {
            event(
                &format!("{prefix}-e{i}"),
                &format!("{prefix}-{i}"),
                "signed_up",
            )
        })
        .collect();
    let answer = world.api().post_events(&events).await;
    assert_eq!(answer.accepted as usize, customers, "{answer:?}");
    let mut versions = Vec::new();
    for i in 0..customers {
        let enrollment = world
            .api()
            .wait_for_enrollment(&format!("{prefix}-{i}"), ONBOARDING, "entered", |_| true)
            .await;
        versions.push(enrollment.version);
    }
    versions
}

fn count(versions: &[u32], version: u32) -> usize {
    versions.iter().filter(|&&v| v == version).count()
}

async fn promote(world: &Onboarding, version: u32, share_percent: Option<u8>) -> JourneyRollout {
    world
        .api()
        .tenant_client()
        .promote_journey(
            ONBOARDING,
            &Promote {
                version,
                share_percent,
            },
        )
        .await
        .expect("promoted")
}

#[tokio::test]
async fn drafts_rollouts_promotions_and_rollbacks_steer_only_new_entrants() {
    let world = Onboarding::start().await;
    let client = world.api().tenant_client().clone();
    let component = artifacts().component(ONBOARDING_CRATE);

    // A draft: stored as version 2, live stays 1, and new customers enter 1.
    let draft = client
        .upload_journey_draft(ONBOARDING, component.clone())
        .await
        .unwrap();
    assert_eq!(draft.version, 2);
    assert_eq!(draft.rollout.live_version, Some(1));
    assert_eq!(draft.rollout.latest_version, 2);
    let before = versions_entered(&world, "before", 10).await;
    assert_eq!(count(&before, 1), 10, "{before:?}");

    // A rollout to 50%: both versions take new entrants, each customer by a stable hash.
    let rolling = promote(&world, 2, Some(50)).await;
    assert_eq!(rolling.live_version, Some(1));
    assert_eq!(
        rolling.candidate,
        Some(RolloutCandidate {
            version: 2,
            share_percent: 50
        })
    );
    let during = versions_entered(&world, "during", 40).await;
    assert!(
        count(&during, 1) > 0 && count(&during, 2) > 0,
        "both versions take entrants: {during:?}"
    );
    let listed = client.journeys().await.unwrap();
    let summary = listed
        .journeys
        .iter()
        .find(|j| j.name == ONBOARDING)
        .unwrap();
    assert_eq!(summary.candidate, rolling.candidate);

    // Promoted fully: every new entrant runs 2; earlier enrollments stay on theirs.
    let live = promote(&world, 2, None).await;
    assert_eq!((live.live_version, live.candidate), (Some(2), None));
    assert_eq!(live.previous_live_versions, [1]);
    let after = versions_entered(&world, "after", 10).await;
    assert_eq!(count(&after, 2), 10, "{after:?}");
    let first = world.api().customer("before-0").await.unwrap();
    assert_eq!(first.enrollment(ONBOARDING).unwrap().version, 1);

    // Rolled back: 1 is live again.
    let back = client.rollback_journey(ONBOARDING).await.unwrap();
    assert_eq!(back.live_version, Some(1));
    let rolled_back = versions_entered(&world, "back", 10).await;
    assert_eq!(count(&rolled_back, 1), 10, "{rolled_back:?}");

    // The journey's page shows the pointers beside its versions.
    let shown = client.journey(ONBOARDING).await.unwrap();
    assert_eq!(shown.versions.len(), 2);
    assert_eq!(shown.rollout, back);
}

#[tokio::test]
async fn a_journey_with_only_a_draft_enrolls_no_one_and_bad_changes_are_refused() {
    let world = Onboarding::start().await;
    let api = world.api();
    let key = world.tenant.api_key.as_str();
    let client = api.tenant_client().clone();
    let component = artifacts().component(ONBOARDING_CRATE);

    // A second journey, only drafted: its entry event enrolls no one in it.
    let drafted = client
        .upload_journey_draft("drafted", component.clone())
        .await
        .unwrap();
    assert_eq!(drafted.rollout.live_version, None);
    let entered = versions_entered(&world, "only", 3).await;
    assert_eq!(count(&entered, 1), 3);
    for i in 0..3 {
        let customer = api.customer(&format!("only-{i}")).await.unwrap();
        assert!(
            customer.enrollment("drafted").is_none(),
            "a draft is entered by no one: {customer:?}"
        );
    }
    let listed = client.journeys().await.unwrap();
    let summary = listed
        .journeys
        .iter()
        .find(|j| j.name == "drafted")
        .unwrap();
    assert_eq!((summary.latest_version, summary.live_version), (1, None));

    let post = |path: &'static str, body: Value| {
        let api = api.clone();
        async move { api.request(Method::POST, path, Some(key), body).await }
    };
    let path = "/v1/journeys/onboarding/promote";
    assert_error(
        &post(path, json!({ "version": 9 })).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    for share in [0, 101] {
        assert_error(
            &post(path, json!({ "version": 1, "share_percent": share })).await,
            StatusCode::BAD_REQUEST,
            "invalid_input",
        );
    }
    assert_error(
        &post(path, json!({ "version": 1 })).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_error(
        &post(path, json!({ "version": 1, "extra": true })).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    assert_error(
        &post("/v1/journeys/onboarding/rollback", Value::Null).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_error(
        &post("/v1/journeys/nowhere/rollback", Value::Null).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.request(
            Method::PUT,
            "/v1/journeys/onboarding?stage=later",
            Some(key),
            Body::Raw {
                content_type: "application/wasm",
                bytes: component,
            },
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
}
