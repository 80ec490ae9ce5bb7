//! The contract evolves by addition (`wit/waymark.wit`): a component built against an older
//! 0.1.x keeps working on a newer host, its imports resolved to the host's newer versions.

use waymark_tests::*;

/// A journey built from contract 0.1.0's frozen WIT (`tests/guests/contract-0-1-0`) uploads,
/// decides, logs, sends through the current webhook adapter and completes on this host.
#[tokio::test]
async fn a_journey_built_for_contract_0_1_0_runs_unchanged() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let component = artifacts().component(CONTRACT_0_1_0_CRATE);
    let (tenant, uploaded) = tenant_with_journey(
        &server,
        "acme",
        Some((&sink, &[WEBHOOK])),
        "legacy",
        component,
    )
    .await;
    assert_eq!(uploaded.version, 1);
    let api = server.as_tenant(&tenant);

    let answer = api
        .post_events(&[event("ada-signed-up", "ada", "signed_up")])
        .await;
    assert_eq!(answer.accepted, 1);
    let welcome = sink.wait_for_delivery("welcome", "ada").await;
    assert_eq!(welcome.payload()["built_for"], "0.1.0");

    let answer = api
        .post_events(&[event("ada-activated", "ada", "activated")])
        .await;
    assert_eq!(answer.accepted, 1);
    let enrollment = wait_for_some("ada's enrollment to complete", || {
        let api = api.clone();
        async move {
            let customer = api.customer("ada").await?;
            customer
                .enrollments
                .into_iter()
                .find(|e| e.journey == "legacy" && e.status == EnrollmentStatus::Completed)
        }
    })
    .await;
    assert_eq!(enrollment.milestones.len(), 1);
    assert_eq!(enrollment.milestones[0].name, "activated");
}
