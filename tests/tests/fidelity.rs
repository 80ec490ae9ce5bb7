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
use waymark_api::tenants::CreatedTenant;
use waymark_tests::month::{self, Deployment, JOURNEYS};
use waymark_tests::*;

fn customers() -> usize {
    std::env::var("WAYMARK_FIDELITY_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

/// One server, killed (`kill -9`) and restarted on day 15 right after its events are
/// acknowledged.
struct Crashing {
    server: Server,
    tenant: CreatedTenant,
    crashed: bool,
}

impl Deployment for Crashing {
    fn clients(&self) -> (Api, Api) {
        (self.server.as_tenant(&self.tenant), self.server.api())
    }

    async fn acknowledged(&mut self, day: u32) {
        if day == 15 {
            // Acknowledged, and being processed: kill -9 now, and start again on the same data.
            self.server.kill();
            self.server.restart().await;
            self.crashed = true;
        }
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
    api.finished_backtest(journey, &started.id).await
}

#[tokio::test]
async fn replaying_a_month_of_three_journeys_across_a_crash_reproduces_every_customer() {
    let n = customers();
    let began = std::time::Instant::now();
    let sink = Sink::start();
    let server = Server::start(ServerOptions::default()).await;
    let tenant = month::install(&server, &sink, "acme").await;
    let start = server.api().clock_now().await;
    let mut live = Crashing {
        server,
        tenant,
        crashed: false,
    };
    let end = month::run(&mut live, n, start).await;
    assert!(live.crashed);
    let (api, _) = live.clients();
    let live_done = began.elapsed();
    let to = end + 1;
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
        // Nothing in this history ties customers together: the replay ran in parts, one per
        // core at once (at most 8), a part for each 2,048 events (`--backtest-part-events`)
        // or more, each checked customer by customer below.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let at_once = cores.min(8);
        let expected = if at_once > 1 {
            done.total.div_ceil(2_048).max(at_once)
        } else {
            1
        };
        assert_eq!(result.replay_parts, expected, "{journey}");
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
