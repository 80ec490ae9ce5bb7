//! The contract evolves by addition (`wit/waymark.wit`): a component built against an older
//! 0.1.x keeps working on a newer host, its imports resolved to the host's newer versions.

use waymark_api::messages::Message;
use waymark_api::tenants::CreatedTenant;
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

// Provider feedback (issue 11): channels built before contract 0.1.2 have no `feedback` export.

/// A channel adapter built from contract 0.1.1's frozen WIT (`tests/guests/channel-0-1-1`: only
/// `deliver`) registers and delivers on this host, and its webhook route answers 422 with a
/// clear error instead of failing: it has no `receive` to hand the request to.
#[tokio::test]
async fn a_channel_built_for_contract_0_1_1_delivers_and_its_hook_answers_422() {
    let server = Server::start(ServerOptions::default()).await;
    let (tenant, api, welcome) =
        ada_welcomed_through_the_0_1_1_adapter(&server, json!({}), &[]).await;
    assert_eq!(welcome.provider_id.as_deref(), Some("legacy-welcome"));

    let (status, body) = api
        .request(
            Method::POST,
            &format!("/v1/hooks/{}/webhook", tenant.id),
            None,
            Body::Json(json!({"type": "delivered"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "feedback_unsupported", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not export `feedback`")),
        "{body}"
    );
}

/// The same 0.1.1 adapter, given a `url`, POSTs through `wasi:http/outgoing-handler`'s
/// resources and streams — as every adapter did before the channel SDK moved to contract
/// 0.1.3's one-call `outbound` import — and this host still carries it, under the same policy,
/// to the sink.
#[tokio::test]
async fn a_channel_built_for_contract_0_1_1_still_sends_through_wasi_http() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let (_, _, welcome) = ada_welcomed_through_the_0_1_1_adapter(
        &server,
        json!({"url": format!("{}/legacy", sink.url())}),
        &[sink.authority()],
    )
    .await;
    let received = sink.requests();
    assert_eq!(received.len(), 1, "{received:?}");
    let request = &received[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/legacy")
    );
    assert_eq!(request.idempotency_key(), Some(welcome.id.as_str()));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.body["built_for"], "0.1.0", "{:?}", request.body);
}

/// A tenant whose `webhook` channel is the 0.1.1 adapter (with `config`, allowed `hosts`) and
/// whose `legacy` journey is the 0.1.0 one; ada signs up, and her welcome is awaited until
/// delivered. Returns the tenant, its client and the welcome.
async fn ada_welcomed_through_the_0_1_1_adapter(
    server: &Server,
    config: serde_json::Value,
    hosts: &[String],
) -> (CreatedTenant, Api, Message) {
    let tenant = server.api().create_tenant("acme").await;
    let api = server.as_tenant(&tenant);
    // The 0.1.0 journey sends its welcome through `webhook`: here, the 0.1.1 channel.
    api.register_channel(
        "webhook",
        &artifacts().component(CHANNEL_0_1_1_CRATE),
        config,
        json!({}),
        hosts,
    )
    .await;
    api.upload_journey("legacy", artifacts().component(CONTRACT_0_1_0_CRATE))
        .await;

    let answer = api
        .post_events(&[event("ada-signed-up", "ada", "signed_up")])
        .await;
    assert_eq!(answer.accepted, 1);
    let welcome = wait_for_some("ada's welcome to be delivered", || {
        let api = api.clone();
        async move {
            let customer = api.customer("ada").await?;
            customer
                .messages
                .into_iter()
                .find(|m| m.template == "welcome" && m.status == MessageStatus::Delivered)
        }
    })
    .await;
    (tenant, api, welcome)
}
