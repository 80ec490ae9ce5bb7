//! The fidelity test (issue 13): a month of the renewal, win-back and guided-onboarding
//! journeys for 5,000 customers (`WAYMARK_FIDELITY_CUSTOMERS` to change it) run live on the
//! manual clock, with a `kill -9` and a restart in the middle of it, then the live version of
//! each journey replayed over the recorded history (a backtest with `fidelity: true`): every
//! customer's enrollments (status, milestones, stalls, timers, state, variants) and messages
//! (channel, template, payload, time, idempotency key) must be reproduced exactly — 100 %,
//! asserted per customer.
//!
//! The live month moves the clock a day at a time and lets each day's work finish before the
//! next thing happens (the replay moves its clock through the same stops), except on day 15,
//! when the server is killed right after a batch of events is acknowledged, mid-processing.

use std::collections::BTreeSet;
use waymark_api::backtests::{Backtest, BacktestRequest, BacktestStatus, Candidate};
use waymark_tests::*;

const EMAIL: &str = "email";
const SMS: &str = "sms";
const JOURNEYS: [&str; 3] = ["renewal", "win-back", "guided-onboarding"];

fn customers() -> usize {
    std::env::var("WAYMARK_FIDELITY_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

fn customer(c: usize) -> String {
    format!("c{c:05}")
}

/// Events of the customers `c` for which `pick(c)` holds, named `name`, ids `{customer}-{name}`.
fn events_for(n: usize, name: &str, pick: impl Fn(usize) -> bool) -> Vec<Value> {
    (0..n)
        .filter(|c| pick(*c))
        .map(|c| event(&format!("{}-{name}", customer(c)), &customer(c), name))
        .collect()
}

/// Posts events in batches of 5,000.
async fn post(api: &Api, events: &[Value]) {
    for batch in events.chunks(5_000) {
        let answer = api.post_events(batch).await;
        assert_eq!(answer.accepted + answer.duplicates, batch.len() as u64);
    }
}

/// A fingerprint of everything the server is doing: triggers processed, deliveries, and the
/// reports' sends against their outcomes.
async fn activity(api: &Api) -> (u64, u64, u64) {
    let metrics = api.metrics().await;
    let total = |metric: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(metric))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let triggers = total("waymark_triggers_total");
    let deliveries = total("waymark_deliveries_total");
    let mut unsettled = 0;
    for journey in JOURNEYS {
        let report = api.report(journey).await;
        if let Some(channels) = report["report"]["overall"]["channels"].as_object() {
            for c in channels.values() {
                let n = |k: &str| c[k].as_u64().unwrap_or(0);
                unsettled +=
                    n("sent").saturating_sub(n("delivered") + n("failed") + n("suppressed"));
            }
        }
    }
    (triggers as u64, deliveries as u64, unsettled)
}

/// Waits until the server is idle: no send without its outcome, and nothing processed or
/// delivered across three looks in a row (the worker never pauses while its queue holds work).
async fn settled(api: &Api) {
    let deadline = std::time::Instant::now() + patience();
    let (mut last, mut same) = (None, 0);
    loop {
        let now = activity(api).await;
        if now.2 == 0 && Some(now) == last {
            same += 1;
            if same >= 3 {
                return;
            }
        } else {
            same = 0;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not settle: {now:?}"
        );
        last = Some(now);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

async fn fidelity_of(api: &Api, journey: &str, from: i64, to: i64) -> Backtest {
    let request = BacktestRequest {
        candidate: Candidate::stored(1),
        from,
        to,
        customers: None,
        sample_fraction: None,
        fidelity: true,
    };
    let started = api
        .tenant_client()
        .start_backtest(journey, &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_some("the fidelity check to finish", || async {
        let b = api
            .tenant_client()
            .backtest(journey, &started.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (!matches!(b.status, BacktestStatus::Queued | BacktestStatus::Running)).then_some(b)
    })
    .await
}

#[tokio::test]
async fn replaying_a_month_of_three_journeys_across_a_crash_reproduces_every_customer() {
    let n = customers();
    let began = std::time::Instant::now();
    let sink = Sink::start();
    let mut server = Server::start(ServerOptions::default()).await;
    let (tenant, _) = tenant_with_journey(
        &server,
        "acme",
        Some((&sink, &[EMAIL, SMS])),
        "renewal",
        artifacts().component(&example_crate("renewal")),
    )
    .await;
    let mut api = server.as_tenant(&tenant);
    for journey in ["win-back", "guided-onboarding"] {
        api.upload_journey(journey, artifacts().component(&example_crate(journey)))
            .await;
    }
    let mut admin = server.api();
    let start = admin.clock_now().await;

    // Day 0: every customer's renewal date (20 to 49 days out) and signup; a third lapse.
    let mut opening = Vec::new();
    for c in 0..n {
        let id = customer(c);
        let renewal = utc_date_string(start + (20 + (c % 30) as i64) * DAY_MS);
        opening.push(identify(
            &format!("{id}-traits"),
            &id,
            json!({ "renewal_date": renewal }),
        ));
        opening.push(event(
            &format!("{id}-renewal_scheduled"),
            &id,
            "renewal_scheduled",
        ));
        opening.push(event(&format!("{id}-signed_up"), &id, "signed_up"));
    }
    // Win-back enters by the host's inactivity trigger (issue 12): customers with no event for
    // 30 days enter it at the end of the month, live and in the replay alike.
    post(&api, &opening).await;
    settled(&api).await;

    // The month, a day at a time; the product's events on some days.
    let mut crashed = false;
    for day in 1..=30 {
        admin.advance_clock(DAY_MS).await;
        settled(&api).await;
        let events = match day {
            1 => events_for(n, "logged_in", |c| c % 2 == 0),
            4 => events_for(n, "first_value", |c| c % 3 == 0),
            9 => events_for(n, "second_use_case", |c| c % 5 == 0),
            15 => events_for(n, "renewed", |c| c % 4 == 1),
            22 => events_for(n, "purchased", |c| c % 7 == 0),
            _ => Vec::new(),
        };
        if events.is_empty() {
            continue;
        }
        post(&api, &events).await;
        if day == 15 {
            // Acknowledged, and being processed: kill -9 now, and start again on the same data.
            server.kill();
            server.restart().await;
            (api, admin) = (server.as_tenant(&tenant), server.api());
            crashed = true;
        }
        settled(&api).await;
    }
    assert!(crashed);
    let live_done = began.elapsed();
    let to = admin.clock_now().await + 1;
    let sink_before = sink.requests().len();

    for journey in JOURNEYS {
        let replay_began = std::time::Instant::now();
        let done = fidelity_of(&api, journey, start, to).await;
        assert_eq!(
            done.status,
            BacktestStatus::Done,
            "{journey}: {:?}",
            done.error
        );
        let result = done.result.expect("a done backtest has its result");
        // Nothing in this history ties customers together: the replay ran in one part per
        // core (at most 8), each checked customer by customer below.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        assert_eq!(result.replay_parts, cores.min(8), "{journey}");
        let fidelity = result.fidelity.expect("asked for");
        let diverging: BTreeSet<&str> = fidelity
            .divergences
            .iter()
            .map(|d| d.customer.as_str())
            .collect();
        assert!(
            fidelity.divergences.is_empty(),
            "{journey}: {} of {} customers diverge, e.g. {:?}",
            fidelity.customers - fidelity.identical,
            fidelity.customers,
            fidelity.divergences.first()
        );
        // Every customer who entered is checked, and each one is identical.
        let entered = api.report(journey).await["report"]["overall"]["entered"]
            .as_u64()
            .unwrap_or(0);
        assert!(fidelity.customers > 0 && fidelity.customers <= n as u64);
        assert!(
            entered >= fidelity.customers,
            "{journey}: {entered} entered"
        );
        assert_eq!(fidelity.identical, fidelity.customers, "{diverging:?}");
        eprintln!(
            "fidelity {journey}: {} customers identical, {} events replayed in {} parts in {:?}",
            fidelity.identical,
            done.total,
            result.replay_parts,
            replay_began.elapsed()
        );
    }
    assert_eq!(sink.requests().len(), sink_before, "replays send nothing");
    eprintln!(
        "fidelity: {n} customers, live month in {live_done:?}, everything in {:?}",
        began.elapsed()
    );
}
