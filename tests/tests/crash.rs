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
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;
use tokio::sync::watch;
use waymark_tests::*;

const CUSTOMERS: usize = 2_000;
const EVENTS_PER_CUSTOMER: usize = 10;
const BATCH: usize = 250;
const KILLS: usize = 4;
const JOURNEY: &str = "ledger";

fn customer(c: usize) -> String {
    format!("c{c:04}")
}

fn event_id(c: usize, round: usize) -> String {
    format!("{}-{round}", customer(c))
}

/// Every event, in rounds: each customer's events are spread over many batches, so that kills
/// land between one customer's events as well as within them.
fn all_events() -> Vec<EventInput> {
    (0..EVENTS_PER_CUSTOMER)
        .flat_map(|round| {
            (0..CUSTOMERS).map(move |c| EventInput {
                id: event_id(c, round),
                customer: customer(c),
                name: "tick".into(),
                properties: None,
                timestamp: None,
            })
        })
        .collect()
}

/// Where to post: the current server process and the tenant's key.
#[derive(Clone)]
struct Target {
    url: String,
    key: String,
}

/// Posts every batch until it is acknowledged, following the server across restarts the way
/// a real client retries: a request that fails (the server died under it) is sent again,
/// whole, to the next process.
async fn post_all(
    batches: Vec<Vec<EventInput>>,
    mut target: watch::Receiver<Target>,
) -> (usize, usize, usize) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let (mut accepted, mut duplicates, mut retried) = (0, 0, 0);
    for batch in batches {
        for attempt in 0.. {
            if attempt > 0 {
                retried += batch.len();
            }
            let Target { url, key } = target.borrow_and_update().clone();
            let client = Client::with_http(http.clone(), &url, Some(&key));
            match client.post_events(&batch).await {
                Ok(answer) => {
                    accepted += answer.accepted as usize;
                    duplicates += answer.duplicates as usize;
                    break;
                }
                // Accepted, but the connection broke while reading the answer: send it again.
                Err(e) if e.status().is_some_and(|s| s.is_success()) => continue,
                Err(e) => {
                    if let Some(status) = e.status() {
                        assert!(status.is_server_error(), "a valid batch was refused: {e}");
                    }
                }
            }
            // The server is down or restarting: wait for the next one, or retry shortly.
            let _ = tokio::time::timeout(Duration::from_millis(200), target.changed()).await;
        }
    }
    (accepted, duplicates, retried)
}

/// The ledger lines of every customer (one GET each), and their messages.
async fn snapshot(api: &Api, customers: &[String]) -> BTreeMap<String, Customer> {
    let mut out = BTreeMap::new();
    for id in customers {
        if let Some(c) = api.customer(id).await {
            out.insert(id.clone(), c);
        }
    }
    out
}

fn ledger(c: &Customer) -> Vec<String> {
    c.enrollment(JOURNEY)
        .map(|e| {
            String::from_utf8(e.state.clone())
                .expect("utf-8 ledger")
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `done` holds for every customer, re-reading only those not yet done.
async fn wait_for_all(api: &Api, what: &str, done: impl Fn(&Customer) -> bool) {
    let mut pending: Vec<String> = (0..CUSTOMERS).map(customer).collect();
    let start = std::time::Instant::now();
    // Draining 60,000 triggers on a debug build takes a while: allow more than one patience.
    let timeout = patience() * 5;
    while !pending.is_empty() {
        let seen = snapshot(api, &pending).await;
        pending.retain(|id| !seen.get(id).is_some_and(&done));
        if pending.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < timeout,
            "waited {timeout:?} for {what}; {} customers are not there yet, e.g. {:?}",
            pending.len(),
            seen.get(&pending[0])
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

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

    let events = all_events();
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
        publish
            .send(Target {
                url: server.url().to_string(),
                key: tenant.api_key.clone(),
            })
            .expect("the poster listens");
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
    wait_for_all(&api, "every event in the ledger", |c| {
        ledger(c).iter().filter(|l| l.starts_with("e:")).count() >= EVENTS_PER_CUSTOMER
    })
    .await;

    // Every timer is due an hour after its event: move past them all.
    server.api().advance_clock(2 * HOUR_MS).await;
    wait_for_all(&api, "every timer in the ledger", |c| {
        ledger(c).iter().filter(|l| l.starts_with("t:")).count() >= EVENTS_PER_CUSTOMER
    })
    .await;
    wait_for_all(&api, "every ack delivered", |c| {
        c.messages.len() >= EVENTS_PER_CUSTOMER
            && c.messages.iter().all(|m| m.status == "delivered")
    })
    .await;

    let all: Vec<String> = (0..CUSTOMERS).map(customer).collect();
    let customers = snapshot(&api, &all).await;
    let mut outbox_ids = HashSet::new();
    for c in 0..CUSTOMERS {
        let id = customer(c);
        let record = &customers[&id];
        let mut lines = ledger(record);
        lines.sort();
        let mut expected: Vec<String> = (0..EVENTS_PER_CUSTOMER)
            .flat_map(|r| {
                [
                    format!("e:{}", event_id(c, r)),
                    format!("t:{}", event_id(c, r)),
                ]
            })
            .collect();
        expected.sort();
        assert_eq!(
            lines, expected,
            "{id}'s ledger holds each event and each timer exactly once"
        );

        let acks: Vec<&Message> = record.messages_with_template("ack");
        let acked: BTreeSet<&str> = acks
            .iter()
            .filter_map(|m| m.payload["event"].as_str())
            .collect();
        assert_eq!(acks.len(), EVENTS_PER_CUSTOMER, "{id}: one ack per event");
        assert_eq!(
            acked.len(),
            EVENTS_PER_CUSTOMER,
            "{id}: acks name distinct events"
        );
        for m in &acks {
            assert!(outbox_ids.insert(m.id.clone()), "message id {} twice", m.id);
        }
    }
    assert_eq!(outbox_ids.len(), events.len());

    let received = sink.requests();
    let keys: HashSet<&str> = received
        .iter()
        .filter_map(Received::idempotency_key)
        .collect();
    let missing: Vec<&String> = outbox_ids
        .iter()
        .filter(|id| !keys.contains(id.as_str()))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(
        keys.len(),
        outbox_ids.len(),
        "as many distinct keys at the sink as outbox entries"
    );
    eprintln!(
        "{} deliveries received for {} messages ({} redelivered after crashes)",
        received.len(),
        keys.len(),
        received.len() - keys.len()
    );
}
