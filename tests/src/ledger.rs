//! The ledger workload (`tests/guests/ledger`, which writes everything it sees into its
//! enrollment's state): events for many customers, posted by clients that follow servers
//! across kills, and the check that every acknowledged event, every timer and every send
//! happened exactly once. Shared by the crash test (one server killed and restarted) and the
//! cluster test (issue 16: nodes and NATS servers killed).

use crate::sink::{Received, Sink};
use crate::wait::patience;
use crate::{Api, Client, HOUR_MS};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;
use tokio::sync::watch;
use waymark_api::customers::Customer;
use waymark_api::events::EventInput;
use waymark_api::messages::Message;

/// The journey's name in the tests.
pub const JOURNEY: &str = "ledger";

/// Customer `c`'s id.
pub fn customer(c: usize) -> String {
    format!("c{c:04}")
}

/// The id of customer `c`'s event of round `round`.
pub fn event_id(c: usize, round: usize) -> String {
    format!("{}-{round}", customer(c))
}

/// `per_customer` events for each of `customers` customers, in rounds: each customer's events
/// are spread over many batches, so that kills land between one customer's events as well as
/// within them.
pub fn all_events(customers: usize, per_customer: usize) -> Vec<EventInput> {
    (0..per_customer)
        .flat_map(|round| {
            (0..customers).map(move |c| EventInput {
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
pub struct Target {
    pub url: String,
    pub key: String,
}

/// Posts every batch until it is acknowledged, following the server across restarts the way
/// a real client retries: a request that fails (the server died under it) is sent again,
/// whole, to the next process.
pub async fn post_all(
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
pub async fn snapshot(api: &Api, customers: &[String]) -> BTreeMap<String, Customer> {
    let mut out = BTreeMap::new();
    for id in customers {
        if let Some(c) = api.customer(id).await {
            out.insert(id.clone(), c);
        }
    }
    out
}

pub fn ledger(c: &Customer) -> Vec<String> {
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

/// Waits until `done` holds for each of the first `customers` customers, re-reading only
/// those not yet done.
pub async fn wait_for_all(
    api: &Api,
    customers: usize,
    what: &str,
    done: impl Fn(&Customer) -> bool,
) {
    let mut pending: Vec<String> = (0..customers).map(customer).collect();
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

/// Once every event is posted: waits for every event in the ledgers, moves the clock (through
/// `admin`) past every timer (each due an hour after its event), waits for the timers and the
/// acks, then checks that each ledger holds each event and each timer exactly once, each ack
/// is in the outbox once, and the sink received every ack's idempotency key.
pub async fn verify_exactly_once(
    api: &Api,
    admin: &Api,
    sink: &Sink,
    customers: usize,
    per_customer: usize,
) {
    wait_for_all(api, customers, "every event in the ledger", |c| {
        ledger(c).iter().filter(|l| l.starts_with("e:")).count() >= per_customer
    })
    .await;

    // Every timer is due an hour after its event: move past them all.
    admin.advance_clock(2 * HOUR_MS).await;
    wait_for_all(api, customers, "every timer in the ledger", |c| {
        ledger(c).iter().filter(|l| l.starts_with("t:")).count() >= per_customer
    })
    .await;
    wait_for_all(api, customers, "every ack delivered", |c| {
        c.messages.len() >= per_customer && c.messages.iter().all(|m| m.status == "delivered")
    })
    .await;

    let all: Vec<String> = (0..customers).map(customer).collect();
    let records = snapshot(api, &all).await;
    let mut outbox_ids = HashSet::new();
    for c in 0..customers {
        let id = customer(c);
        let record = &records[&id];
        let mut lines = ledger(record);
        lines.sort();
        let mut expected: Vec<String> = (0..per_customer)
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
        assert_eq!(acks.len(), per_customer, "{id}: one ack per event");
        assert_eq!(acked.len(), per_customer, "{id}: acks name distinct events");
        for m in &acks {
            assert!(outbox_ids.insert(m.id.clone()), "message id {} twice", m.id);
        }
    }
    assert_eq!(outbox_ids.len(), customers * per_customer);

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
