//! The crash test: 20,000 events for 2,000 customers, posted while the server is SIGKILLed at
//! random moments and restarted on the same data directory. Afterwards:
//!
//! - every event (each one acknowledged in the end, as accepted or as a duplicate of an
//!   earlier, unacknowledged attempt) is in its customer's ledger exactly once;
//! - every decided send is in the outbox exactly once;
//! - the sink received every idempotency key, and as many distinct keys as there are outbox
//!   entries;
//! - every timer fired exactly once into the ledger.
//!
//! The journey is `tests/guests/ledger`, which writes everything it sees into the state. The
//! kill schedule is random; `WAYMARK_CRASH_SEED` replays one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio::sync::watch;
use waymark_tests::ledger::{all_events, post_all, verify_exactly_once, Target, JOURNEY};
use waymark_tests::*;

const CUSTOMERS: usize = 2_000;
const EVENTS_PER_CUSTOMER: usize = 10;
const BATCH: usize = 250;
const KILLS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_and_no_effect_applied_twice_across_kills() {
    let seed = std::env::var("WAYMARK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("crash schedule seed: {seed} (WAYMARK_CRASH_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);

    let sink = Sink::start();
    let mut server = Server::start(ServerOptions {
        args: vec!["--retry-base-ms".into(), "50".into()],
        ..ServerOptions::default()
    })
    .await;
    let journey = artifacts().component(LEDGER_CRATE);
    let (tenant, _) = tenant_with_journey(
        &server,
        "crash",
        Some((&sink, &[WEBHOOK])),
        JOURNEY,
        journey,
    )
    .await;

    let events = all_events(CUSTOMERS, EVENTS_PER_CUSTOMER);
    let batches: Vec<Vec<EventInput>> = events.chunks(BATCH).map(<[EventInput]>::to_vec).collect();
    let (publish, target) = watch::channel(Target {
        url: server.url().to_string(),
        key: tenant.api_key.clone(),
    });
    let poster = tokio::spawn(post_all(batches, target));

    // Kill at random moments while events flow in (and, if posting is done first, while they
    // are being processed and delivered).
    for kill in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2_500))).await;
        server.kill();
        eprintln!("kill {kill}/{KILLS}");
        server.restart().await;
        // The poster may be done already (every batch acknowledged before this kill).
        let _ = publish.send(Target {
            url: server.url().to_string(),
            key: tenant.api_key.clone(),
        });
    }
    let (accepted, duplicates, retried) = poster.await.expect("the poster finished");
    assert_eq!(
        accepted + duplicates,
        events.len(),
        "every event was acknowledged once it was posted to a live server"
    );
    assert!(
        duplicates <= retried,
        "only retries of a batch whose answer was lost are duplicates ({duplicates} > {retried})"
    );
    eprintln!(
        "{accepted} events accepted, {duplicates} recognised as duplicates of {retried} resent"
    );

    let api = server.as_tenant(&tenant);
    verify_exactly_once(&api, &server.api(), &sink, CUSTOMERS, EVENTS_PER_CUSTOMER).await;
}
