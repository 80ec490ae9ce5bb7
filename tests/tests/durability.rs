//! Durability: `kill -9` and a restart on the same data directory lose no enrollment, no pending
//! timer and no clock time, and a timer fires exactly once however often the server restarts.

use waymark_tests::*;

/// What must be identical before and after a crash (delivery counters may still move).
fn durable_part(e: &Enrollment) -> impl PartialEq + std::fmt::Debug {
    (
        e.id.clone(),
        e.version,
        e.status,
        e.entered_at,
        e.ended_at,
        e.milestones.clone(),
        e.timers.clone(),
    )
}

#[tokio::test]
async fn enrollments_pending_timers_and_the_clock_survive_kill_and_restart() {
    let mut world = Onboarding::start().await;
    let api = world.api();
    world.sign_up("ada").await;
    world.sign_up("bob").await;
    world.post("ada-first-value", "ada", "first_value").await;
    let ada = api
        .wait_for_enrollment("ada", ONBOARDING, "completed", |e| {
            e.status == EnrollmentStatus::Completed
        })
        .await;
    let bob = api
        .wait_for_enrollment("bob", ONBOARDING, "a pending nudge timer", |e| {
            e.timer("nudge").is_some()
        })
        .await;
    let now = world.admin().clock_now().await;

    world.server.kill();
    world.server.restart().await;

    let api = world.api();
    assert_eq!(
        world.admin().clock_now().await,
        now,
        "the manual clock persists"
    );
    let ada_after = api.customer("ada").await.expect("ada survives");
    let bob_after = api.customer("bob").await.expect("bob survives");
    assert_eq!(
        durable_part(ada_after.enrollment(ONBOARDING).expect("ada's enrollment")),
        durable_part(&ada)
    );
    assert_eq!(
        durable_part(bob_after.enrollment(ONBOARDING).expect("bob's enrollment")),
        durable_part(&bob)
    );

    // The surviving timer still fires.
    world.admin().advance_clock(3 * DAY_MS + MINUTE_MS).await;
    world.sink.wait_for_delivery("nudge", "bob").await;
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "nudge", "ada"),
        0,
        "completed ada was nudged:\n{}",
        describe(&received)
    );
}

/// The value of an unlabelled counter on `/metrics` (`name` without the `_total` suffix).
async fn counter(server: &Server, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    let series = format!("waymark_{name}_total ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

#[tokio::test]
async fn a_restart_loads_compiled_journeys_and_channels_from_the_cache() {
    let mut world = Onboarding::start().await;
    world.sign_up("ada").await;
    world.sink.wait_for_delivery("welcome", "ada").await;
    assert!(
        counter(&world.server, "components_compiled").await >= 2,
        "the journey and the channel are compiled at upload"
    );

    world.server.kill();
    world.server.restart().await;
    world.sign_up("bob").await;
    world.sink.wait_for_delivery("welcome", "bob").await;
    assert_eq!(
        counter(&world.server, "components_compiled").await,
        0,
        "nothing is recompiled after a restart"
    );
    assert_eq!(
        counter(&world.server, "component_cache_hits").await,
        2,
        "the journey and the channel come from the cache"
    );
}

#[tokio::test]
async fn pending_timer_fires_exactly_once_across_restarts() {
    let mut world = Onboarding::start().await;
    for customer in ["ada", "bob"] {
        world.sign_up(customer).await;
        world
            .api()
            .wait_for_enrollment(customer, ONBOARDING, "a pending nudge timer", |e| {
                e.timer("nudge").is_some()
            })
            .await;
    }

    // Crash with the timers pending, then let them fall due.
    world.server.kill();
    world.server.restart().await;
    world.admin().advance_clock(3 * DAY_MS + MINUTE_MS).await;
    world
        .sink
        .wait_for("a nudge for ada and for bob", |r| {
            count(r, "nudge", "ada") > 0 && count(r, "nudge", "bob") > 0
        })
        .await;

    // Once the server has recorded the nudges as delivered, nothing may send them again.
    let api = world.api();
    for customer in ["ada", "bob"] {
        wait_until(
            &format!("{customer}'s nudge to be marked delivered"),
            || async {
                api.customer(customer).await.is_some_and(|c| {
                    c.messages_with_template("nudge")
                        .iter()
                        .any(|m| m.status == "delivered")
                })
            },
        )
        .await;
    }

    // Crash again, move well past the due time, and wait for carol's nudge: by then the
    // scheduler has run past ada's and bob's due times since the restart.
    world.server.kill();
    world.server.restart().await;
    world.sign_up("carol").await;
    world.admin().advance_clock(3 * DAY_MS + MINUTE_MS).await;
    world.sink.wait_for_delivery("nudge", "carol").await;

    let received = world.sink.requests();
    for customer in ["ada", "bob", "carol"] {
        assert_eq!(
            count(&received, "nudge", customer),
            1,
            "{customer} must be nudged exactly once; the sink received:\n{}",
            describe(&received)
        );
    }
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_a_restart_carries_on() {
    let mut world = Onboarding::start().await;
    world.sign_up("ada").await;
    world.post("bob-signed-up", "bob", "signed_up").await;

    // A clean shutdown is exit status 0; that nothing acknowledged was lost shows after the
    // restart.
    let status = world.server.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");

    world.server.restart().await;
    // Bob's event was acknowledged before the shutdown: he is welcomed, once.
    world.sink.wait_for_delivery("welcome", "bob").await;
    let received = world.sink.requests();
    assert_eq!(
        count(&received, "welcome", "ada"),
        1,
        "{}",
        describe(&received)
    );
    let bob = world.api().customer("bob").await.expect("bob exists");
    assert!(bob.enrollment(ONBOARDING).is_some());
}

#[tokio::test]
async fn an_event_id_is_a_duplicate_for_the_dedup_window_and_then_forgotten() {
    let mut world = Onboarding::start().await;
    let view = || [event("ada-view-1", "ada", "page_viewed")];
    let first = world.api().post_events(&view()).await;
    assert_eq!((first.accepted, first.duplicates), (1, 0), "{first:?}");

    // A retry is a duplicate, also after a crash: the ids are durable with the events.
    world.server.kill();
    world.server.restart().await;
    let retry = world.api().post_events(&view()).await;
    assert_eq!((retry.accepted, retry.duplicates), (0, 1), "{retry:?}");
    assert_eq!(retry.results[0].status, "duplicate");

    // Still one within the default window of 168 hours of journey time...
    world.admin().advance_clock(7 * DAY_MS - MINUTE_MS).await;
    let late = world.api().post_events(&view()).await;
    assert_eq!((late.accepted, late.duplicates), (0, 1), "{late:?}");
    assert_eq!(counter(&world.server, "event_ids_expired").await, 0);

    // ... and forgotten after it: the scheduler drops the id, the same id is a new event.
    world.admin().advance_clock(2 * MINUTE_MS).await;
    let server = &world.server;
    wait_until("the id forgotten", || async {
        counter(server, "event_ids_expired").await >= 1
    })
    .await;
    let after = world.api().post_events(&view()).await;
    assert_eq!((after.accepted, after.duplicates), (1, 0), "{after:?}");
    let again = world.api().post_events(&view()).await;
    assert_eq!((again.accepted, again.duplicates), (0, 1), "{again:?}");
}
