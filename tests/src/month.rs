//! A month of three example journeys — renewal, win-back and guided onboarding — for many
//! customers on the manual clock, a day at a time, each day's work finished before the next
//! thing happens. The fidelity test (issue 13) runs it live and replays it; the cluster test
//! (issue 16) runs it on a cluster that loses nodes and on one node, and compares the reports.
//!
//! Where it runs is a [`Deployment`]: how events are posted, and what happens once a day's
//! events are acknowledged (a crash, a node lost). Every customer's events of one day go in one
//! batch, in order, so however batches are spread over clients and nodes, each customer sees
//! the same history.

use crate::api::{event, identify, Api};
use crate::artifacts::{artifacts, example_crate};
use crate::calendar::utc_date_string;
use crate::server::Server;
use crate::sink::Sink;
use crate::wait::patience;
use crate::worlds::tenant_with_journey;
use crate::DAY_MS;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use waymark_api::tenants::CreatedTenant;

/// The channels the journeys send through: the webhook adapter under each name.
pub const CHANNELS: [&str; 2] = ["email", "sms"];
/// The journeys, all of one tenant.
pub const JOURNEYS: [&str; 3] = ["renewal", "win-back", "guided-onboarding"];
/// The days after day 0.
pub const DAYS: u32 = 30;
/// Events of day 0 per customer ([`opening`]).
pub const OPENING_PER_CUSTOMER: usize = 3;

/// Customer `c`'s id.
pub fn customer(c: usize) -> String {
    format!("c{c:05}")
}

/// Events of the customers `c < n` for which `pick(c)` holds, named `name`, ids
/// `{customer}-{name}`.
fn events_for(n: usize, name: &str, pick: impl Fn(usize) -> bool) -> Vec<Value> {
    (0..n)
        .filter(|c| pick(*c))
        .map(|c| event(&format!("{}-{name}", customer(c)), &customer(c), name))
        .collect()
}

/// Day 0, the clock at `start`: every customer's renewal date (20 to 49 days out), the renewal
/// scheduled, the signup — [`OPENING_PER_CUSTOMER`] events each, together and in that order.
pub fn opening(n: usize, start: i64) -> Vec<Value> {
    let mut events = Vec::with_capacity(n * OPENING_PER_CUSTOMER);
    for c in 0..n {
        let id = customer(c);
        let renewal = utc_date_string(start + (20 + (c % 30) as i64) * DAY_MS);
        events.push(identify(
            &format!("{id}-traits"),
            &id,
            json!({ "renewal_date": renewal }),
        ));
        events.push(event(
            &format!("{id}-renewal_scheduled"),
            &id,
            "renewal_scheduled",
        ));
        events.push(event(&format!("{id}-signed_up"), &id, "signed_up"));
    }
    events
}

/// The product's events of day `day` (one per customer at most; most days have none). Win-back
/// has none: customers enter it by the host's inactivity trigger (issue 12), those with no
/// event for 30 days at the end of the month.
pub fn events_of_day(n: usize, day: u32) -> Vec<Value> {
    match day {
        1 => events_for(n, "logged_in", |c| c % 2 == 0),
        4 => events_for(n, "first_value", |c| c % 3 == 0),
        9 => events_for(n, "second_use_case", |c| c % 5 == 0),
        15 => events_for(n, "renewed", |c| c % 4 == 1),
        22 => events_for(n, "purchased", |c| c % 7 == 0),
        _ => Vec::new(),
    }
}

/// Tenant `tenant` set up through `server`: the webhook adapter as each of [`CHANNELS`],
/// delivering into `sink`, and the three journeys.
pub async fn install(server: &Server, sink: &Sink, tenant: &str) -> CreatedTenant {
    let (tenant, _) = tenant_with_journey(
        server,
        tenant,
        Some((sink, &CHANNELS)),
        JOURNEYS[0],
        artifacts().component(&example_crate(JOURNEYS[0])),
    )
    .await;
    let api = server.as_tenant(&tenant);
    for journey in &JOURNEYS[1..] {
        api.upload_journey(journey, artifacts().component(&example_crate(journey)))
            .await;
    }
    tenant
}

/// Where a month runs.
#[allow(async_fn_in_trait)] // Only these tests implement it, awaited where they run.
pub trait Deployment {
    /// The tenant's client and the admin client to use now.
    fn clients(&self) -> (Api, Api);

    /// The admin clients whose `/metrics` together show what the deployment is doing (each node
    /// of a cluster answers for itself).
    fn metrics_from(&self) -> Vec<Api> {
        vec![self.clients().1]
    }

    /// Posts `events`, every one acknowledged (accepted, or a duplicate of one resent).
    async fn post(&self, events: &[Value]) {
        let (api, _) = self.clients();
        for batch in events.chunks(OPENING_PER_CUSTOMER * 1_000) {
            let answer = api.post_events(batch).await;
            assert_eq!(answer.accepted + answer.duplicates, batch.len() as u64);
        }
    }

    /// What happens once day `day`'s events are acknowledged, while they are processed.
    async fn acknowledged(&mut self, _day: u32) {}
}

/// Runs the month for `n` customers from `start`, where the clock must stand: day 0's opening,
/// then [`DAYS`] days, the clock moved a day at a time. Answers the clock at the end.
pub async fn run(at: &mut impl Deployment, n: usize, start: i64) -> i64 {
    at.post(&opening(n, start)).await;
    at.acknowledged(0).await;
    idle(at).await;
    let mut now = start;
    for day in 1..=DAYS {
        now += DAY_MS;
        advance_to(&at.clients().1, now).await;
        idle(at).await;
        let events = events_of_day(n, day);
        if events.is_empty() {
            continue;
        }
        at.post(&events).await;
        at.acknowledged(day).await;
        idle(at).await;
    }
    now
}

/// Moves the manual clock on to `at` through `admin`, as often as it takes: a request that
/// fails (a cluster changing owners) is asked again from where the clock stands, so the clock
/// is never moved twice.
pub async fn advance_to(admin: &Api, at: i64) {
    let deadline = Instant::now() + patience();
    loop {
        let client = admin.admin_client();
        let moved = match client.clock().await {
            Ok(clock) if clock.now >= at => return,
            Ok(clock) => client.advance_clock(at - clock.now).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match moved {
            Ok(()) => {}
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the clock did not move to {at}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A fingerprint of everything the deployment is doing: triggers processed, deliveries, the
/// reports' sends without their outcome, and the work the servers hold that nothing has taken
/// up yet (shards with queued triggers, timers and messages due, forwards not yet taken in);
/// `None` when a request failed (a cluster changing owners answers 503 for a moment).
async fn activity(at: &impl Deployment) -> Option<(u64, u64, u64, u64)> {
    let mut metrics = String::new();
    for admin in at.metrics_from() {
        metrics.push_str(&admin.admin_client().metrics().await.ok()?);
    }
    let total = |metric: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(metric))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let triggers = total("waymark_triggers_total");
    let deliveries = total("waymark_deliveries_total");
    let waiting = crate::api::waiting_work(&metrics);
    let (api, _) = at.clients();
    let mut unsettled = 0;
    for journey in JOURNEYS {
        let report = api.tenant_client().report(journey).await.ok()?;
        for c in report.report.overall.channels.values() {
            unsettled += c.sent.saturating_sub(c.delivered + c.failed + c.suppressed);
        }
    }
    Some((triggers as u64, deliveries as u64, unsettled, waiting))
}

/// Waits until the deployment is idle: no send without its outcome, no work waiting, and
/// nothing processed or delivered across three looks in a row. Counters that stopped moving
/// alone are not enough: a worker compiling a component for its first trigger (each partition
/// of a cluster compiles its own) moves none for seconds on a loaded machine.
pub async fn idle(at: &impl Deployment) {
    let deadline = Instant::now() + patience();
    let (mut last, mut same) = (None, 0);
    loop {
        let now = activity(at).await;
        if now.is_some_and(|n| n.2 == 0 && n.3 == 0) && now == last {
            same += 1;
            if same >= 3 {
                return;
            }
        } else {
            same = 0;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not settle: {now:?}"
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
