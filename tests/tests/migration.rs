//! Migrations (issue 13, "Versions"): running enrollments move from one version of a journey to
//! another, each adapted by the new version's `migrate` (contract 0.1.1). One that `migrate`
//! refuses or traps on stays on its version, untouched, and is reported; one that has ended is
//! not moved; the report follows the enrollments to their new version.

use waymark_api::journeys::MigrationStatus;
use waymark_tests::*;

const DAY: i64 = 24 * 60 * 60 * 1000;

async fn migration_done(world: &Onboarding, id: &str) -> MigrationStatus {
    let client = world.api().tenant_client().clone();
    wait_for_some("the migration to finish", || {
        let client = client.clone();
        async move {
            let status = client.migration(ONBOARDING, id).await.expect("a status");
            (status.pending == 0).then_some(status)
        }
    })
    .await
}

#[tokio::test]
async fn enrollments_move_to_a_new_version_adapted_by_it_and_refusals_stay_put() {
    let world = Onboarding::start().await;
    let api = world.api();
    // ada moves; bob is on a plan v2 refuses; cy makes v2's migrate trap; dee has completed.
    let people = [
        ("ada", json!({"plan": "pro"})),
        ("bob", json!({"plan": "legacy"})),
        ("cy", json!({"crash": true})),
        ("dee", json!({})),
    ];
    for (who, traits) in &people {
        let answer = api
            .post_events(&[identify(&format!("{who}-id"), who, traits.clone())])
            .await;
        assert_eq!(answer.accepted, 1);
        world.sign_up(who).await;
    }
    world.post("dee-fv", "dee", "first_value").await;
    api.wait_for_enrollment("dee", ONBOARDING, "completed", |e| {
        e.status == EnrollmentStatus::Completed
    })
    .await;
    let before: Vec<_> = {
        let mut v = Vec::new();
        for who in ["ada", "bob", "cy"] {
            v.push(
                api.wait_for_enrollment(who, ONBOARDING, "nudge pending", |e| {
                    e.version == 1 && e.timers.iter().any(|t| t.name == "nudge")
                })
                .await,
            );
        }
        v
    };

    // Version 2, a draft: no new entrant gets it; only the migration moves anyone to it.
    let v2 = api
        .tenant_client()
        .upload_journey_draft(ONBOARDING, artifacts().component(MIGRATING_CRATE))
        .await
        .expect("v2 uploaded");
    assert_eq!(v2.version, 2);
    let started = api.migrate_all(ONBOARDING, 1, 2).await;
    assert_eq!(started.queued, 3, "dee's enrollment has ended: {started:?}");
    let done = migration_done(&world, &started.id).await;
    assert_eq!(
        (done.moved, done.refused, done.skipped),
        (1, 2, 0),
        "{done:?}"
    );
    let refusals: Vec<_> = done
        .refusals
        .iter()
        .map(|r| (r.customer.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(refusals, [("bob", "guest_error"), ("cy", "trap")]);
    assert!(done.refusals[0].message.contains("legacy plan"), "{done:?}");

    // ada: on version 2, the nudge moved to a day after entry, the state adapted.
    let ada = api
        .wait_for_enrollment("ada", ONBOARDING, "on v2", |e| e.version == 2)
        .await;
    let nudge = ada
        .timers
        .iter()
        .find(|t| t.name == "nudge")
        .expect("a nudge");
    assert_eq!(nudge.due, ada.entered_at + DAY);
    let state: serde_json::Value = serde_json::from_slice(&ada.state).expect("JSON state");
    assert_eq!(state, json!({"migrated_from": 1}));
    // bob and cy: exactly as they were.
    for old in &before[1..] {
        let now = api.customer(&old.customer).await.expect("a customer");
        let now = now.enrollment(ONBOARDING).expect("an enrollment");
        assert_eq!(now.version, 1);
        assert_eq!(now.timers, old.timers);
        assert_eq!(now.state, old.state);
    }

    // A day on, only ada is nudged, by version 2; two more and bob and cy are, by version 1.
    api.advance_clock(DAY + 60_000).await;
    let nudge = world.sink.wait_for_delivery("nudge", "ada").await;
    assert_eq!(nudge.payload()["version"], 2);
    api.advance_clock(2 * DAY).await;
    for who in ["bob", "cy"] {
        let nudge = world.sink.wait_for_delivery("nudge", who).await;
        assert!(nudge.payload().get("version").is_none(), "v1's nudge");
    }
    assert_eq!(count(&world.sink.requests(), "nudge", "ada"), 1);

    // The report counts each enrollment once, under the version it is on now.
    let report = api.report(ONBOARDING).await;
    assert_eq!(report["report"]["overall"]["entered"], 4);
    assert_eq!(report["report"]["by_version"]["1"]["entered"], 3);
    assert_eq!(report["report"]["by_version"]["2"]["entered"], 1);
}

#[tokio::test]
async fn a_migration_is_refused_whole_when_it_cannot_run() {
    let world = Onboarding::start().await;
    let api = world.api();
    let key = world.tenant.api_key.clone();
    let post = |body: serde_json::Value| {
        let api = api.clone();
        let key = key.clone();
        async move {
            api.request(
                Method::POST,
                "/v1/journeys/onboarding/migrate",
                Some(&key),
                body,
            )
            .await
        }
    };
    assert_error(
        &post(json!({"from": 1, "to": 1})).await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    assert_error(
        &post(json!({"from": 1, "to": 9})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &post(json!({"from": 1, "to": 2, "surprise": true})).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    // A version built for contract 0.1.0 has no `migrate`: nothing can move to it.
    api.tenant_client()
        .upload_journey_draft(ONBOARDING, artifacts().component(CONTRACT_0_1_0_CRATE))
        .await
        .expect("v2 uploaded");
    assert_error(
        &post(json!({"from": 1, "to": 2})).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let unknown = api
        .request(
            Method::GET,
            "/v1/journeys/onboarding/migrations/mig_0",
            Some(&key),
            Body::Empty,
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
}
