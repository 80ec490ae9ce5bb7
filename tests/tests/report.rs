//! The journey report: outcomes (milestones) rather than messages, per version.

use waymark_tests::*;

#[tokio::test]
async fn the_report_counts_entries_completions_milestones_and_sends() {
    let world = Onboarding::start().await;
    let api = world.api();
    world.sign_up("ada").await;
    world.sign_up("bob").await;
    world.admin().advance_clock(HOUR_MS).await;
    world.post("ada-first-value", "ada", "first_value").await;
    api.wait_for_enrollment("ada", ONBOARDING, "completed", |e| {
        e.status == EnrollmentStatus::Completed
    })
    .await;

    let key = world.tenant.api_key.clone();
    let (status, body) = api
        .request(
            Method::GET,
            &format!("/v1/journeys/{ONBOARDING}/report"),
            Some(&key),
            Body::Empty,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let overall = &body["report"]["overall"];
    assert_eq!(overall["entered"], 2, "{body}");
    assert_eq!(overall["active"], 1);
    assert_eq!(overall["completed"], 1);
    let first_value = &overall["milestones"][0];
    assert_eq!(first_value["name"], "first_value");
    assert_eq!(first_value["reached"], 1);
    assert_eq!(first_value["conversion"], 0.5);
    assert_eq!(first_value["median_time_to_reach_ms"], HOUR_MS);
    assert_eq!(overall["channels"][WEBHOOK]["sent"], 2);
    let paths = overall["paths"].as_array().expect("paths");
    assert!(
        paths.contains(&json!({"path": ["first_value"], "customers": 1})),
        "{body}"
    );
    assert!(
        paths.contains(&json!({"path": [], "customers": 1})),
        "{body}"
    );
    assert_eq!(body["report"]["by_version"]["1"]["entered"], 2);

    let answer = api
        .request(
            Method::GET,
            "/v1/journeys/nope/report",
            Some(&key),
            Body::Empty,
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
}
