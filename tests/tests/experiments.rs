//! Adaptive experiments (issue 13): a journey reads its arms' conversion through the `stats`
//! import (`by-arm`, contract 0.1.2) and allocates entrants by Thompson sampling
//! (`tests/guests/adaptive`, the SDK's `thompson_arm`). Once one arm's customers buy and the
//! next stats period (an hour of journey time) begins, later entrants go mostly to it; the
//! report shows the experiment's allocation as `thompson`; and a replay of the history (the
//! backtest's fidelity check) reproduces every customer's arm, since it reads the same arm
//! statistics from the enrollments it rebuilds.

use waymark_api::backtests::{BacktestRequest, BacktestStatus, Candidate};
use waymark_tests::*;

const JOURNEY: &str = "adaptive";
const EXPERIMENT: &str = "offer";
const WAVE: usize = 30;

/// Signs up `prefix0..prefixN` and returns each one's arm, in order.
async fn wave(api: &Api, prefix: &str) -> Vec<(String, String)> {
    let signups: Vec<Value> = (0..WAVE)
        .map(|i| {
            let who = format!("{prefix}{i}");
            event(&format!("{who}-signup"), &who, "signed_up")
        })
        .collect();
    assert_eq!(api.post_events(&signups).await.accepted, WAVE as u64);
    let mut arms = Vec::new();
    for i in 0..WAVE {
        let who = format!("{prefix}{i}");
        let enrollment = api
            .wait_for_enrollment(&who, JOURNEY, "an arm assigned", |e| !e.variants.is_empty())
            .await;
        arms.push((who, enrollment.variants[0].arm.clone()));
    }
    arms
}

#[tokio::test]
async fn later_entrants_go_mostly_to_the_arm_that_converts_and_a_replay_agrees() {
    let server = Server::start(ServerOptions::default()).await;
    let (tenant, uploaded) = tenant_with_journey(
        &server,
        "lab",
        None,
        JOURNEY,
        artifacts().component(ADAPTIVE_CRATE),
    )
    .await;
    // The upload's spec shows the declared allocation (the `allocation` export).
    let offer = &uploaded.spec.experiments[0];
    let allocation = offer.allocation.as_ref().expect("declared adaptive");
    assert_eq!(
        (allocation.mode.as_str(), allocation.goal.as_deref()),
        ("thompson", Some("bought"))
    );
    let api = server.as_tenant(&tenant);
    let admin = server.api();
    let start = admin.clock_now().await;

    // Without evidence, Thompson sampling splits the first wave between both arms.
    let first = wave(&api, "p").await;
    let first_discount: Vec<&str> = first
        .iter()
        .filter(|(_, arm)| arm == "discount")
        .map(|(who, _)| who.as_str())
        .collect();
    assert!(
        !first_discount.is_empty() && first_discount.len() < WAVE,
        "both arms get customers without evidence: {first:?}"
    );
    // Everyone on `discount` buys; no one on `plain` does.
    let bought: Vec<Value> = first_discount
        .iter()
        .map(|who| event(&format!("{who}-bought"), who, "bought"))
        .collect();
    api.post_events(&bought).await;
    for who in &first_discount {
        api.wait_for_enrollment(who, JOURNEY, "completed", |e| {
            e.status == EnrollmentStatus::Completed
        })
        .await;
    }

    // An hour on, the arm statistics count those purchases: the second wave follows them.
    admin.advance_clock(HOUR_MS).await;
    let second = wave(&api, "q").await;
    let to_discount = second.iter().filter(|(_, arm)| arm == "discount").count();
    assert!(
        to_discount >= WAVE - 1,
        "{to_discount} of {WAVE} later entrants went to the arm that converts: {second:?}"
    );

    // The report says how the experiment allocates, and compares on its goal.
    let report = api.report(JOURNEY).await;
    let offer = &report["report"]["experiments"][EXPERIMENT];
    assert_eq!(offer["allocation"], "thompson", "{report:#}");
    assert_eq!(offer["metric"], "bought");
    assert_eq!(
        offer["arms"]["discount"]["converted"],
        first_discount.len() as u64
    );
    assert_eq!(offer["arms"]["plain"]["converted"], 0);

    // Replayed, the history reproduces every customer's arm (and all the rest) exactly.
    let request = BacktestRequest {
        candidate: Candidate::stored(1),
        from: start,
        to: start + 2 * HOUR_MS,
        customers: None,
        sample_fraction: None,
        fidelity: true,
    };
    let client = api.tenant_client();
    let started = client
        .start_backtest(JOURNEY, &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = wait_for_some("the backtest to finish", || async {
        let backtest = client
            .backtest(JOURNEY, &started.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match backtest.status {
            BacktestStatus::Queued | BacktestStatus::Running => None,
            _ => Some(backtest),
        }
    })
    .await;
    assert_eq!(done.status, BacktestStatus::Done, "{:?}", done.error);
    let fidelity = done
        .result
        .and_then(|r| r.fidelity)
        .expect("fidelity asked for");
    assert_eq!(fidelity.divergences, []);
    assert_eq!(fidelity.customers, 2 * WAVE as u64);
    assert_eq!(fidelity.identical, 2 * WAVE as u64);
}
