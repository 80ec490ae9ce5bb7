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
    signup_wave(api, |_| api.clone(), JOURNEY, prefix, WAVE).await
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
    // Everyone on `discount` buys; no one on `plain` does.
    let first_discount = arm_converts(&api, |_| api.clone(), JOURNEY, &first, "discount").await;

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

/// A dry-run `decide` of the adaptive journey's entry at `now` with `seed`, and the arms
/// given (`None`: the live ones); the arm it assigns, or the error answer.
async fn dry_run_arm(
    api: &Api,
    key: &str,
    now: i64,
    seed: u64,
    arm_stats: Option<Value>,
) -> Result<String, (StatusCode, Value)> {
    let signup = json!({"id": "dry-signup", "customer": "dry", "name": "signed_up",
                        "properties": {}, "timestamp": now});
    let mut body = json!({
        "context": {
            "trigger": {"kind": "entered", "event": signup},
            "customer": {"id": "dry", "attributes": {}},
            "enrollment": {"id": "adaptive/dry/1", "journey": JOURNEY, "version": 1,
                           "customer": "dry", "run": 1, "status": "active", "entered_at": now,
                           "milestones": [], "stalls": [], "state": [], "timers": [],
                           "variants": [], "channels": {}},
            "now": now,
            "seed": seed
        }
    });
    if let Some(arms) = arm_stats {
        body["arm_stats"] = arms;
    }
    let path = format!("/v1/journeys/{JOURNEY}/decide");
    let (status, decided) = api
        .request(Method::POST, &path, Some(key), Body::Json(body))
        .await;
    if status != StatusCode::OK {
        return Err((status, decided));
    }
    let commands = decided["commands"].as_array().cloned().unwrap_or_default();
    match commands.as_slice() {
        [c] if c["command"] == "assign" && c["experiment"] == EXPERIMENT => {
            Ok(c["arm"].as_str().unwrap_or_default().to_string())
        }
        other => panic!("the entry assigns one arm: {other:?}"),
    }
}

/// Lopsided numbers for the two arms: `winner` converts 190 of 200, the other 2 of 200.
fn lopsided(winner: &str) -> Value {
    let loser = if winner == "plain" {
        "discount"
    } else {
        "plain"
    };
    json!([
        {"experiment": EXPERIMENT, "arm": winner, "entered": 200, "converted": 190},
        {"experiment": EXPERIMENT, "arm": loser, "entered": 200, "converted": 2}
    ])
}

/// Issue 13, backtest jobs slice: a dry-run `decide` reads `stats.by-arm` — the journey's live
/// arm statistics as a live trigger at that moment would (as of the start of its hour), or
/// numbers the request gives, validated.
#[tokio::test]
async fn a_dry_run_decide_reads_the_live_arm_stats_or_the_ones_given() {
    let server = Server::start(ServerOptions::default()).await;
    let (tenant, _) = tenant_with_journey(
        &server,
        "lab",
        None,
        JOURNEY,
        artifacts().component(ADAPTIVE_CRATE),
    )
    .await;
    let api = server.as_tenant(&tenant);
    let key = tenant.api_key.as_str();
    let admin = server.api();
    let start = admin.clock_now().await;
    let seeds = 1..=12u64;

    // With no customer yet the live arms are there, all zero: Thompson sampling still picks.
    for seed in seeds.clone() {
        let arm = dry_run_arm(&api, key, start, seed, None).await;
        assert!(arm.is_ok(), "the journey reads its arms: {arm:?}");
    }
    // Given lopsided numbers, the arm that converts wins, for every seed.
    for winner in ["plain", "discount"] {
        for seed in seeds.clone() {
            let arm = dry_run_arm(&api, key, start, seed, Some(lopsided(winner))).await;
            assert_eq!(arm.as_deref(), Ok(winner), "seed {seed}");
        }
    }
    // Given none (`[]`), the journey sees no arm and says so.
    let none = dry_run_arm(&api, key, start, 1, Some(json!([]))).await;
    let (status, body) = none.expect_err("no arms, no pick");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "decide_failed");

    // Live: everyone of the first wave on `discount` buys, no one on `plain`. In the next hour
    // a dry run reads those purchases as a live entrant does, and follows them.
    let first = wave(&api, "p").await;
    let buyers: Vec<&str> = first
        .iter()
        .filter(|(_, arm)| arm == "discount")
        .map(|(who, _)| who.as_str())
        .collect();
    assert!(!buyers.is_empty() && buyers.len() < WAVE, "{first:?}");
    let bought: Vec<Value> = buyers
        .iter()
        .map(|who| event(&format!("{who}-bought"), who, "bought"))
        .collect();
    api.post_events(&bought).await;
    for who in &buyers {
        api.wait_for_enrollment(who, JOURNEY, "completed", |e| {
            e.status == EnrollmentStatus::Completed
        })
        .await;
    }
    let next_hour = start + HOUR_MS;
    let mut to_discount = 0;
    for seed in seeds.clone() {
        let arm = dry_run_arm(&api, key, next_hour, seed, None).await;
        to_discount += usize::from(arm.as_deref() == Ok("discount"));
    }
    assert!(
        to_discount >= seeds.clone().count() - 1,
        "{to_discount} of {} dry runs follow the live purchases",
        seeds.count()
    );
    // The request's numbers win over live ones.
    for seed in 1..=4 {
        let arm = dry_run_arm(&api, key, next_hour, seed, Some(lopsided("plain"))).await;
        assert_eq!(arm.as_deref(), Ok("plain"), "seed {seed}");
    }

    // Bad numbers are refused with a clear error.
    let bad = [
        json!([{"experiment": "nope", "arm": "plain", "entered": 1, "converted": 0}]),
        json!([{"experiment": EXPERIMENT, "arm": "nope", "entered": 1, "converted": 0}]),
        json!([{"experiment": EXPERIMENT, "arm": "plain", "entered": 1, "converted": 2}]),
        json!([{"experiment": EXPERIMENT, "arm": "plain", "entered": 1, "converted": 0},
               {"experiment": EXPERIMENT, "arm": "plain", "entered": 2, "converted": 0}]),
    ];
    for arms in bad {
        let (status, body) = dry_run_arm(&api, key, next_hour, 1, Some(arms.clone()))
            .await
            .expect_err("refused");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{arms}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{arms}: {body}");
    }
    let misspelt = json!([{"experiment": EXPERIMENT, "arm": "plain", "entred": 1, "converted": 0}]);
    let (status, body) = dry_run_arm(&api, key, next_hour, 1, Some(misspelt))
        .await
        .expect_err("refused");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_json");
}
