//! Backtests (issue 13) end to end: a month of the renewal example's recorded history replayed
//! through a changed renewal version (reminders 21, 7 and 1 days before the renewal date
//! instead of 30, 14 and 3: `tests/guests/renewal-early`) and through the live version, in the
//! server's isolated engine. The result reports the same customers with the new send times,
//! its diff says so customer by customer, nothing reaches the sink while it runs, and the
//! live store's customers, enrollments, messages, tasks and report are as they were.

use std::collections::BTreeMap;
use waymark_api::backtests::{BacktestRequest, BacktestResult, BacktestStatus, Candidate};
use waymark_tests::*;

const EMAIL: &str = "email";
const CUSTOMERS: i64 = 40;

/// Moves the manual clock to `at` (which must not be in the past).
async fn advance_to(admin: &Api, at: i64) {
    let now = admin.clock_now().await;
    assert!(at >= now, "cannot move the clock back from {now} to {at}");
    admin.advance_clock(at - now).await;
}

/// Customer `i`'s renewal date: 35 to 44 days after `start`, at midnight UTC.
fn renewal_midnight(start: i64, i: i64) -> i64 {
    let (y, m, d) = utc_date(start + (35 + i % 10) * DAY_MS);
    utc_midnight(y, m, d)
}

/// Customers `c0`.. `c{n-1}`'s opening events at `start`: their renewal date (35 to 44 days
/// out), then `renewal_scheduled`.
fn opening(start: i64, n: i64) -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..n {
        let (y, m, d) = utc_date(renewal_midnight(start, i));
        let date = format!("{y:04}-{m:02}-{d:02}");
        events.push(identify(
            &format!("c{i}-traits"),
            &format!("c{i}"),
            json!({ "renewal_date": date }),
        ));
        events.push(event(
            &format!("c{i}-scheduled"),
            &format!("c{i}"),
            "renewal_scheduled",
        ));
    }
    events
}

/// The reminders a version sends customer `i` by `to`: due at 09:00 UTC (no zone) on each of
/// `days` before the renewal date, unless already past at entry (`start`). The manual clock
/// moves a day at a time from `start`, and a timer fires where the clock stops at or after
/// its due time — live, and in a replay, which moves its clock through the same stops.
fn expected(start: i64, to: i64, i: i64, days: &[i64], renewed_at: Option<i64>) -> Vec<i64> {
    let midnight = renewal_midnight(start, i);
    let stop = |due: i64| start + (due - start + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
    let mut at: Vec<i64> = days
        .iter()
        .map(|n| midnight - n * DAY_MS + 9 * HOUR_MS)
        .filter(|due| *due > start)
        .map(stop)
        .filter(|t| *t <= to && renewed_at.is_none_or(|r| *t <= r))
        .collect();
    at.sort();
    at
}

/// Every customer's state and messages, and the journey's report, as the API shows them.
async fn live_state(api: &Api) -> (Vec<Value>, Value, usize) {
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        let customer = api.customer(&format!("c{i}")).await;
        customers.push(serde_json::to_value(customer).unwrap());
    }
    let tasks = api.tasks(TaskQuery::default()).await.len();
    (customers, api.report("renewal").await, tasks)
}

/// A month of the renewal example run live on the manual clock: every customer's renewal
/// date and entry at the start, the customers `renews` picks renewing on day `renew_day`, the
/// clock moved a day at a time with each day's reminders at the sink before it moves on.
struct Month {
    start: i64,
    to: i64,
    renewed_at: i64,
    renews: fn(i64) -> bool,
}

impl Month {
    async fn live(world: &Example, renews: fn(i64) -> bool, renew_day: i64) -> Month {
        let admin = world.admin();
        let start = admin.clock_now().await;
        let month = Month {
            start,
            to: start + 31 * DAY_MS,
            renewed_at: start + renew_day * DAY_MS,
            renews,
        };
        let opening = opening(start, CUSTOMERS);
        world.post(&opening).await;
        // Every customer entered before the clock moves: live processes them at `start`, the
        // time they were recorded at, as the replay does.
        for i in 0..CUSTOMERS {
            world
                .wait_for(&format!("c{i}"), "entered", |e| e.timer("lapsed").is_some())
                .await;
        }
        // Each day's reminders arrive before anything else happens, so live order is the
        // recorded order.
        for day in 1..=31 {
            let now = start + day * DAY_MS;
            advance_to(&admin, now).await;
            wait_until("the day's live reminders reach the sink", || async {
                world.sink.requests().len() == month.live_due(now)
            })
            .await;
            if day == renew_day {
                let renewed: Vec<Value> = (0..CUSTOMERS)
                    .filter(|i| renews(*i))
                    .map(|i| event(&format!("c{i}-renewed"), &format!("c{i}"), "renewed"))
                    .collect();
                world.post(&renewed).await;
                for i in (0..CUSTOMERS).filter(|i| renews(*i)) {
                    world
                        .wait_for(&format!("c{i}"), "renewed", |e| {
                            e.status == EnrollmentStatus::Exited
                        })
                        .await;
                }
            }
        }
        month
    }

    /// When customer `i` renewed, if they did.
    fn renewed(&self, i: i64) -> Option<i64> {
        (self.renews)(i).then_some(self.renewed_at)
    }

    /// The reminders live sent by `now`.
    fn live_due(&self, now: i64) -> usize {
        (0..CUSTOMERS)
            .map(|i| {
                expected(self.start, self.to, i, &[30, 14, 3], self.renewed(i))
                    .into_iter()
                    .filter(|t| *t <= now)
                    .count()
            })
            .sum()
    }
}

#[tokio::test]
async fn a_changed_renewal_schedule_is_backtested_over_a_month_with_the_new_send_times() {
    let mut world = Example::start("renewal", &[EMAIL]).await;
    let api = world.api();
    let draft = api
        .tenant_client()
        .upload_journey_draft("renewal", artifacts().component(RENEWAL_EARLY_CRATE))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A month of history: a quarter of the customers renew on day 20.
    let month = Month::live(&world, |i| i % 4 == 0, 20).await;
    let (start, to) = (month.start, month.to);
    let renewed = |i: i64| month.renewed(i);
    let live_total = month.live_due(to);

    // The backtest, with nothing reaching the sink and the live store as it was.
    let before = live_state(&api).await;
    let sink_before = world.sink.requests().len();
    let request = BacktestRequest {
        candidate: Candidate::stored(draft.version),
        from: start,
        to,
        customers: None,
        sample_fraction: None,
        fidelity: true,
    };
    let started = api
        .tenant_client()
        .start_backtest("renewal", &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(started.id.starts_with("bt_"), "{started:?}");
    let done = api.finished_backtest("renewal", &started.id).await;
    assert_eq!(done.status, BacktestStatus::Done, "{:?}", done.error);
    assert_eq!(done.replayed, done.total);
    assert_eq!(done.total, 2 * (2 * CUSTOMERS + CUSTOMERS / 4) as u64);
    assert_eq!(
        world.sink.requests().len(),
        sink_before,
        "a backtest sends nothing"
    );
    assert_eq!(
        live_state(&api).await,
        before,
        "a backtest writes nothing live"
    );

    let result = done.result.expect("a done backtest has its result");
    // The live version's replay reproduced what ran live, customer by customer.
    let fidelity = result.fidelity.as_ref().expect("asked for");
    assert_eq!(fidelity.divergences, []);
    assert_eq!(fidelity.customers, CUSTOMERS as u64);
    assert_eq!(fidelity.identical, CUSTOMERS as u64);
    assert_eq!(result.candidate_version, draft.version);
    assert_eq!(result.live_version, 1);
    // Both replays saw the same customers enter and renew.
    for report in [&result.candidate, &result.live] {
        assert_eq!(report.overall.entered, CUSTOMERS as u64);
        assert_eq!(
            report.overall.exited_by_reason.get("exit_event:renewed"),
            Some(&((CUSTOMERS / 4) as u64))
        );
    }
    // The live replay sent what live sent; the candidate sends at 21/7/1 days before.
    let mut changed = BTreeMap::new();
    for i in 0..CUSTOMERS {
        let customer = format!("c{i}");
        let live_times = expected(start, to, i, &[30, 14, 3], renewed(i));
        let candidate_times = expected(start, to, i, &[21, 7, 1], renewed(i));
        if live_times != candidate_times {
            changed.insert(customer, (live_times, candidate_times));
        }
    }
    let diff = &result.diff;
    assert_eq!(diff.customers_changed, changed.len() as u64);
    assert_eq!(diff.customers.len(), changed.len());
    for shown in &diff.customers {
        let (live_times, candidate_times) = &changed[&shown.customer];
        let times = |sends: &[waymark_api::backtests::SentMessage]| -> Vec<i64> {
            sends.iter().map(|m| m.decided_at).collect()
        };
        assert_eq!(&times(&shown.live), live_times, "{}", shown.customer);
        assert_eq!(
            &times(&shown.candidate),
            candidate_times,
            "{}",
            shown.customer
        );
        for m in shown.live.iter().chain(&shown.candidate) {
            assert_eq!(
                (m.channel.as_str(), m.template.as_str()),
                (EMAIL, "renewal_reminder")
            );
            assert_eq!(
                m.sent_at,
                Some(m.decided_at),
                "taken as delivered when decided"
            );
        }
    }
    let live_sends = diff.sends_by_channel[EMAIL].live;
    assert_eq!(
        live_sends, live_total as u64,
        "the live replay sends what live sent"
    );
    let candidate_total: usize = (0..CUSTOMERS)
        .map(|i| expected(start, to, i, &[21, 7, 1], renewed(i)).len())
        .sum();
    assert_eq!(
        diff.sends_by_channel[EMAIL].candidate,
        candidate_total as u64
    );

    // Both replays split into parts of about 40 events, two parts at once, or each whole:
    // the same result.
    let mut results = Vec::new();
    let runs: [&[&str]; 2] = [
        &["--backtest-parts", "2", "--backtest-part-events", "40"],
        &["--backtest-parts", "1"],
    ];
    for args in runs {
        world.server.restart_with_args(args).await;
        let again = world.api().backtested("renewal", &request).await;
        assert_eq!(again.status, BacktestStatus::Done, "{:?}", again.error);
        assert_eq!(again.replayed, again.total);
        results.push(again.result.expect("a done backtest has its result"));
    }
    let (small, whole) = (&results[0], &results[1]);
    assert_eq!(small.replay_parts, (done.total / 2).div_ceil(40));
    assert_eq!(whole.replay_parts, 1);
    for split in [&result, small] {
        assert_eq!(
            BacktestResult {
                replay_parts: 1,
                ..split.clone()
            },
            *whole,
            "split or not, the same result"
        );
    }
}

#[tokio::test]
async fn a_backtest_of_a_version_that_is_not_stored_or_a_range_backwards_is_refused() {
    let world = Example::start("renewal", &[EMAIL]).await;
    let api = world.api();
    let path = "/v1/journeys/renewal/backtests";
    let key = Some(world.tenant.api_key.as_str());
    let post = |body: Value| api.request(Method::POST, path, key, Body::Json(body));
    let unknown_version = post(json!({"candidate": {"version": 9}, "from": 0, "to": 10})).await;
    assert_error(&unknown_version, StatusCode::NOT_FOUND, "not_found");
    let empty_range = post(json!({"candidate": {"version": 1}, "from": 10, "to": 10})).await;
    assert_error(&empty_range, StatusCode::BAD_REQUEST, "invalid_input");
    let bad_share =
        json!({"candidate": {"version": 1}, "from": 0, "to": 10, "sample_fraction": 2.0});
    assert_error(
        &post(bad_share).await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    let misspelt = post(json!({"candidate": {"version": 1}, "from": 0, "too": 10})).await;
    assert_error(&misspelt, StatusCode::BAD_REQUEST, "invalid_json");
    let unknown_job = api
        .request(
            Method::GET,
            "/v1/journeys/renewal/backtests/bt_0000000000000000",
            key,
            Body::Empty,
        )
        .await;
    assert_error(&unknown_job, StatusCode::NOT_FOUND, "not_found");
}

/// Issue 13, experiments slice: the candidate sent as a component's bytes rather than a stored
/// draft. It is validated as an upload is (clear 400s), compiled in the backtest's own sandbox,
/// replayed like a stored candidate, and never becomes a version of the journey.
#[tokio::test]
async fn a_candidate_sent_as_component_bytes_is_backtested_and_never_stored() {
    const FEW: i64 = 8;
    let world = Example::start("renewal", &[EMAIL]).await;
    let (api, admin) = (world.api(), world.admin());
    let path = "/v1/journeys/renewal/backtests";
    let key = Some(world.tenant.api_key.as_str());
    let post = |body: Value| api.request(Method::POST, path, key, Body::Json(body));
    let base64 = |bytes: &[u8]| waymark_client::component_base64(bytes);

    // Refused as an upload would be, before any job starts.
    let not_base64 = post(json!({"candidate": {"component": "%%%"}, "from": 0, "to": 10})).await;
    assert_error(&not_base64, StatusCode::BAD_REQUEST, "invalid_input");
    let not_a_component =
        json!({"candidate": {"component": base64(b"\0asm not really")}, "from": 0, "to": 10});
    assert_error(
        &post(not_a_component).await,
        StatusCode::BAD_REQUEST,
        "invalid_component",
    );
    let sockets = artifacts().component(SOCKETS_CRATE);
    let forbidden = json!({"candidate": {"component": base64(&sockets)}, "from": 0, "to": 10});
    assert_error(
        &post(forbidden).await,
        StatusCode::BAD_REQUEST,
        "forbidden_import",
    );
    // A channel adapter is no journey: it imports HTTP, which journeys are not granted.
    let channel = artifacts().component(WEBHOOK_CRATE);
    let wrong_world = json!({"candidate": {"component": base64(&channel)}, "from": 0, "to": 10});
    assert_error(
        &post(wrong_world).await,
        StatusCode::BAD_REQUEST,
        "forbidden_import",
    );
    let both =
        json!({"candidate": {"version": 1, "component": base64(&sockets)}, "from": 0, "to": 10});
    assert_error(&post(both).await, StatusCode::BAD_REQUEST, "invalid_input");
    let neither = json!({"candidate": {}, "from": 0, "to": 10});
    assert_error(
        &post(neither).await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );

    // A little history: every customer enters at the start; the clock moves a day at a time.
    let start = admin.clock_now().await;
    let opening = opening(start, FEW);
    world.post(&opening).await;
    for i in 0..FEW {
        world
            .wait_for(&format!("c{i}"), "entered", |e| e.timer("lapsed").is_some())
            .await;
    }
    let to = start + 31 * DAY_MS;
    let live_due = |now: i64| -> usize {
        (0..FEW)
            .map(|i| {
                expected(start, to, i, &[30, 14, 3], None)
                    .into_iter()
                    .filter(|t| *t <= now)
                    .count()
            })
            .sum()
    };
    for day in 1..=31 {
        let now = start + day * DAY_MS;
        advance_to(&admin, now).await;
        wait_until("the day's live reminders reach the sink", || async {
            world.sink.requests().len() == live_due(now)
        })
        .await;
    }

    let early = artifacts().component(RENEWAL_EARLY_CRATE);
    let versions_before = api.tenant_client().journey("renewal").await.unwrap();
    let sink_before = world.sink.requests().len();
    let request = BacktestRequest {
        candidate: Candidate::component_base64(base64(&early)),
        from: start,
        to,
        customers: None,
        sample_fraction: None,
        fidelity: false,
    };
    let done = api.backtested("renewal", &request).await;
    assert_eq!(done.status, BacktestStatus::Done, "{:?}", done.error);
    assert_eq!(
        world.sink.requests().len(),
        sink_before,
        "a backtest sends nothing"
    );
    assert_eq!(
        api.tenant_client().journey("renewal").await.unwrap(),
        versions_before,
        "the candidate never becomes a version"
    );

    let result = done.result.expect("a done backtest has its result");
    assert_eq!(result.live_version, 1);
    assert_eq!(
        result.candidate_version, 2,
        "the journey's next number, in the scratch store only"
    );
    let digest = result.candidate_digest.as_deref().expect("sent as bytes");
    assert_eq!(digest, sha256_hex(&early));
    // The candidate reminds at 21/7/1 days before; the live replay as live did.
    let mut changed = 0;
    for i in 0..FEW {
        let customer = format!("c{i}");
        let live_times = expected(start, to, i, &[30, 14, 3], None);
        let candidate_times = expected(start, to, i, &[21, 7, 1], None);
        let shown = result
            .diff
            .customers
            .iter()
            .find(|c| c.customer == customer);
        if live_times == candidate_times {
            assert!(shown.is_none(), "{customer} did not change");
            continue;
        }
        changed += 1;
        let shown = shown.unwrap_or_else(|| panic!("{customer} changed"));
        let times = |sends: &[waymark_api::backtests::SentMessage]| -> Vec<i64> {
            sends.iter().map(|m| m.decided_at).collect()
        };
        assert_eq!(times(&shown.live), live_times, "{customer}");
        assert_eq!(times(&shown.candidate), candidate_times, "{customer}");
    }
    assert!(changed > 0, "the early schedule changes someone's sends");
    assert_eq!(result.diff.customers_changed, changed);
    assert_eq!(
        result.diff.sends_by_channel[EMAIL].live,
        live_due(to) as u64
    );
}

/// SHA-256 of `bytes`, hex: the digest a component is named by.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Issue 13, experiments slice: a backtest that includes the migration. The candidate (the
/// onboarding journey's version 2, `tests/guests/migrating`: nudges a day after entry, adapts
/// moved enrollments, refuses a legacy plan, traps on cue) takes over an hour into the window,
/// and the enrollments on version 1 move to it through its `migrate` export in the candidate's
/// replay: the result reports the move (one moved, one refused, one trapped), the diff shows the
/// moved customer's nudge two days earlier, and nothing live moved.
#[tokio::test]
async fn a_backtest_can_include_the_migration_of_running_enrollments() {
    let world = Onboarding::start().await;
    let api = world.api();
    let admin = world.server.api();
    let start = admin.clock_now().await;
    let people = [
        ("ada", json!({"plan": "pro"})),
        ("bob", json!({"plan": "legacy"})),
        ("cy", json!({"crash": true})),
    ];
    for (who, traits) in &people {
        api.post_events(&[identify(&format!("{who}-id"), who, traits.clone())])
            .await;
        world.sign_up(who).await;
    }
    // Four days, a day at a time: version 1 nudges everyone on day 3.
    for day in 1..=4 {
        advance_to(&admin, start + day * DAY_MS).await;
    }
    for (who, _) in &people {
        world.sink.wait_for_delivery("nudge", who).await;
    }
    let v2 = api
        .tenant_client()
        .upload_journey_draft(ONBOARDING, artifacts().component(MIGRATING_CRATE))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let path = format!("/v1/journeys/{ONBOARDING}/backtests");
    let key = Some(world.tenant.api_key.as_str());
    let outside = json!({"candidate": {"version": v2.version, "migrate": {"from": 1, "at": start - 1}},
                         "from": start, "to": start + 5 * DAY_MS});
    assert_error(
        &api.request(Method::POST, &path, key, Body::Json(outside))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );

    let mut candidate = Candidate::stored(v2.version);
    candidate.migrate = Some(waymark_api::backtests::CandidateMigration {
        from: 1,
        at: start + HOUR_MS,
    });
    let request = BacktestRequest {
        candidate,
        from: start,
        to: start + 4 * DAY_MS + 1,
        customers: None,
        sample_fraction: None,
        fidelity: false,
    };
    let client = api.tenant_client();
    let started = client
        .start_backtest(ONBOARDING, &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = wait_for_some("the backtest to finish", || async {
        let backtest = client
            .backtest(ONBOARDING, &started.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match backtest.status {
            BacktestStatus::Queued | BacktestStatus::Running => None,
            _ => Some(backtest),
        }
    })
    .await;
    assert_eq!(done.status, BacktestStatus::Done, "{:?}", done.error);
    let result = done.result.expect("a done backtest has its result");

    let migration = result.migration.as_ref().expect("the migration's report");
    assert_eq!((migration.from, migration.to), (1, v2.version));
    assert_eq!(
        (
            migration.queued,
            migration.moved,
            migration.refused,
            migration.skipped
        ),
        (3, 1, 2, 0),
        "{migration:?}"
    );
    let refusals: Vec<_> = migration
        .refusals
        .iter()
        .map(|r| (r.customer.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(refusals, [("bob", "guest_error"), ("cy", "trap")]);

    // Only ada's sends changed: version 2 nudged her a day after entry, not three.
    let customers: Vec<&str> = result
        .diff
        .customers
        .iter()
        .map(|c| c.customer.as_str())
        .collect();
    assert_eq!(customers, ["ada"]);
    let ada = &result.diff.customers[0];
    let nudge_at = |sends: &[waymark_api::backtests::SentMessage]| {
        sends
            .iter()
            .find(|m| m.template == "nudge")
            .map(|m| m.decided_at)
    };
    assert_eq!(nudge_at(&ada.live), Some(start + 3 * DAY_MS));
    assert_eq!(nudge_at(&ada.candidate), Some(start + DAY_MS));

    // Nothing moved live.
    let live_ada = api
        .customer("ada")
        .await
        .and_then(|c| c.enrollment(ONBOARDING).cloned())
        .expect("ada's enrollment");
    assert_eq!(live_ada.version, 1);
}

/// Issue 13, backtest jobs slice: jobs are kept in the store. A backtest running when the
/// server is killed (`kill -9`) is started over at the next start — its candidate sent as
/// component bytes, kept with the job — and finishes with the result an uninterrupted run of
/// the same request has (a replay is deterministic); a finished job reads the same after
/// another restart, and a cancelled one stays cancelled.
#[tokio::test]
async fn backtest_jobs_survive_kill_9_and_restart_with_the_same_result() {
    // Enough recorded history that a replay is still running when the test looks.
    const MANY: i64 = 2500;
    let mut world = Example::start("renewal", &[EMAIL]).await;
    let start = world.admin().clock_now().await;
    let history = opening(start, MANY);
    for batch in history.chunks(1000) {
        world.post(batch).await;
    }
    let early = artifacts().component(RENEWAL_EARLY_CRATE);
    let request = BacktestRequest {
        candidate: Candidate::component_base64(waymark_client::component_base64(&early)),
        from: start,
        to: start + DAY_MS,
        customers: None,
        sample_fraction: None,
        fidelity: false,
    };
    let started = world
        .api()
        .tenant_client()
        .start_backtest("renewal", &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Killed while it runs: partway through its events.
    let api = world.api();
    let seen = wait_for_some("the backtest to be running", || async {
        let b = api
            .tenant_client()
            .backtest("renewal", &started.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (b.status != BacktestStatus::Queued && b.replayed > 0).then_some(b)
    })
    .await;
    assert_eq!(seen.status, BacktestStatus::Running, "{seen:?}");
    assert!(seen.replayed < seen.total, "{seen:?}");
    world.server.restart().await;

    // Started over, and done.
    let api = world.api();
    let resumed = api.finished_backtest("renewal", &started.id).await;
    assert_eq!(resumed.status, BacktestStatus::Done, "{:?}", resumed.error);
    assert_eq!(resumed.restarts, 1, "started over once");
    assert_eq!(resumed.replayed, resumed.total);
    assert_eq!(
        resumed.total,
        2 * 2 * MANY as u64,
        "both replays, every event"
    );

    // The same request, never interrupted, finds the same.
    let client = api.tenant_client();
    let again = client
        .start_backtest("renewal", &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = api.finished_backtest("renewal", &again.id).await;
    assert_eq!(again.restarts, 0);
    let (resumed_result, again_result) = (resumed.result.clone(), again.result.clone());
    assert!(resumed_result.is_some(), "a done backtest has its result");
    assert_eq!(resumed_result, again_result, "a replay is deterministic");

    // A queued backtest cancelled (the host runs one at a time: the second waits), and a
    // running one. The running one replays two months (every reminder and lapse), so that it
    // is still running once it has been seen running: both replays run side by side and
    // finish a day's history in a moment.
    let longer = BacktestRequest {
        to: start + 60 * DAY_MS,
        ..request.clone()
    };
    let first = client
        .start_backtest("renewal", &longer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = client
        .start_backtest("renewal", &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cancelled = client
        .cancel_backtest("renewal", &second.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cancelled.status, BacktestStatus::Cancelled, "{cancelled:?}");
    wait_for_some("the first backtest to be running", || async {
        let b = client
            .backtest("renewal", &first.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (b.status == BacktestStatus::Running && b.replayed > 0).then_some(())
    })
    .await;
    let first = client
        .cancel_backtest("renewal", &first.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = api.finished_backtest("renewal", &first.id).await;
    assert_eq!(first.status, BacktestStatus::Cancelled, "{first:?}");
    // Stopped where it was (in its events, or in the timers after the last one): no result.
    assert!(first.result.is_none(), "{first:?}");

    // Another kill -9: what finished reads as it was, and nothing runs again.
    world.server.restart().await;
    let api = world.api();
    let client = api.tenant_client();
    for before in [&resumed, &again, &cancelled, &first] {
        let after = client
            .backtest("renewal", &before.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&after, before, "{} after a restart", before.id);
    }
}

/// Issue 13: a backtest's scratch store lives in the server's memory, so the operator caps it
/// (`--backtest-memory-mib`). A replay that would hold more fails with an error that says what
/// to do, and the live server goes on as before.
#[tokio::test]
async fn a_backtest_past_its_memory_limit_fails_saying_so_and_the_server_goes_on() {
    let sink = Sink::start();
    let server = Server::start(ServerOptions {
        args: vec!["--backtest-memory-mib".into(), "1".into()],
        ..ServerOptions::default()
    })
    .await;
    // The renewal component alone (over a MiB) is more than the limit once copied in.
    let component = artifacts().component(&example_crate("renewal"));
    let (tenant, _) = tenant_with_journey(
        &server,
        "acme",
        Some((&sink, &[EMAIL])),
        "renewal",
        component,
    )
    .await;
    let api = server.as_tenant(&tenant);
    let start = server.api().clock_now().await;
    let (y, m, d) = utc_date(renewal_midnight(start, 0));
    let opening = [
        identify(
            "c0-traits",
            "c0",
            json!({ "renewal_date": format!("{y:04}-{m:02}-{d:02}") }),
        ),
        event("c0-scheduled", "c0", "renewal_scheduled"),
    ];
    assert_eq!(api.post_events(&opening).await.accepted, 2);
    api.wait_for_enrollment("c0", "renewal", "entered", |e| e.timer("lapsed").is_some())
        .await;
    let request = BacktestRequest {
        candidate: Candidate::stored(1),
        from: start,
        to: start + DAY_MS,
        customers: None,
        sample_fraction: None,
        fidelity: false,
    };
    let done = api.backtested("renewal", &request).await;
    assert_eq!(done.status, BacktestStatus::Failed, "{done:?}");
    let error = done.error.unwrap_or_default();
    assert!(
        error.contains("1 MiB")
            && error.contains("--backtest-memory-mib")
            && error.contains("sample"),
        "{error}"
    );
    assert!(done.result.is_none());
    // The live side is untouched and still serving.
    let enrollment = api
        .wait_for_enrollment("c0", "renewal", "still entered", |e| {
            e.timer("lapsed").is_some()
        })
        .await;
    assert_eq!(enrollment.version, 1);
}

/// A replay of the live version alone is split into parts, one per core at once
/// (`--backtest-parts` bounds them) and more when the history is longer than a part's share
/// (`--backtest-part-events`), each on a scratch store of its own, when no customer's replay
/// depends on another's: the parts' results combined are what one replay of everyone gives —
/// the same report, sends, diff and fidelity, every customer identical to what ran live.
#[tokio::test]
async fn a_replay_split_into_parts_gives_what_one_replay_gives() {
    let mut world = Example::start("renewal", &[EMAIL]).await;
    // A third of the customers renew on day 12.
    let month = Month::live(&world, |i| i % 3 == 0, 12).await;
    let (start, to) = (month.start, month.to);

    // The live version as the candidate: one replay, checked against what ran live.
    let request = BacktestRequest {
        candidate: Candidate::stored(1),
        from: start,
        to,
        customers: None,
        sample_fraction: None,
        fidelity: true,
    };
    let mut results = Vec::new();
    // Three parts at once; two at once of parts of about 40 events; one part.
    let runs: [&[&str]; 3] = [
        &["--backtest-parts", "3"],
        &["--backtest-parts", "2", "--backtest-part-events", "40"],
        &["--backtest-parts", "1"],
    ];
    let mut events = 0;
    for args in runs {
        world.server.restart_with_args(args).await;
        let done = world.api().backtested("renewal", &request).await;
        assert_eq!(done.status, BacktestStatus::Done, "{:?}", done.error);
        assert_eq!(
            done.replayed, done.total,
            "every part's events counted once"
        );
        events = done.total;
        results.push(done.result.expect("a done backtest has its result"));
    }
    let (split, small, whole) = (&results[0], &results[1], &results[2]);
    assert_eq!((split.replay_parts, whole.replay_parts), (3, 1));
    assert!(events > 80, "{events} events: more parts than run at once");
    assert_eq!(small.replay_parts, events.div_ceil(40));
    assert_eq!(
        BacktestResult {
            replay_parts: 1,
            ..small.clone()
        },
        *whole,
        "in small parts or not, the same result"
    );
    let fidelity = split.fidelity.as_ref().expect("asked for");
    assert_eq!(fidelity.divergences, []);
    assert_eq!(
        (fidelity.customers, fidelity.identical),
        (CUSTOMERS as u64, CUSTOMERS as u64)
    );
    assert_eq!(split.live.overall.entered, CUSTOMERS as u64);
    assert_eq!(
        split.diff.sends_by_channel[EMAIL].live,
        month.live_due(to) as u64,
        "the split replay sends what live sent"
    );
    assert_eq!(
        BacktestResult {
            replay_parts: 1,
            ..split.clone()
        },
        *whole,
        "split or not, the same result"
    );
}
