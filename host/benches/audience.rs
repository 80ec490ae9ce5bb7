//! Audience triggers (issue 12): the scheduler's work per tick with 100,000 watched customers
//! is proportional to the watches due, not to the population. Sets up watches with deadlines
//! spread over time (written through the same commit path the worker uses), then times
//! `Store::fire_due_audience` — what the scheduler calls each tick — for ticks with 0, 100 and
//! 1,000 watches due, and counts the index entries each tick read. A second population of
//! 10,000 shows the same ticks cost the same with ten times fewer customers.
//!
//! `cargo bench -p waymark-host --bench audience [-- CUSTOMERS]` (default 100,000), or
//! `cargo xtask bench --only audience`. No guests needed.

use std::time::Instant;
use waymark_host::audience::Watch;
use waymark_host::store::{AudienceWrite, Store, TriggerCommit};

/// Deadlines one second apart: customer `i` is due at `i` seconds.
const SPACING: i64 = 1_000;
/// Ticks measured per due count (each consumes its own due watches).
const REPEAT: usize = 5;

fn watched(customers: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(dir.path(), 4, 64 << 20).expect("a store");
    for chunk in (0..customers).collect::<Vec<_>>().chunks(1_000) {
        let commit = TriggerCommit {
            tenant: "acme".into(),
            // No queued trigger: removing an absent queue key is a no-op.
            queue_key: b"\xff\xffbench".to_vec(),
            audience: chunk
                .iter()
                .map(|i| AudienceWrite {
                    customer: format!("c{i:06}"),
                    journey: "win-back".into(),
                    trigger: "inactive_30d".into(),
                    old_due: None,
                    watch: Some(Watch {
                        due: Some(*i as i64 * SPACING),
                        last_seen: Some(0),
                        ..Watch::default()
                    }),
                })
                .collect(),
            ..TriggerCommit::default()
        };
        store.commit_triggers(&[commit]).expect("committed");
    }
    (dir, store)
}

/// One row: due count, entries read per tick, mean time per tick.
fn measure(store: &Store, next: &mut i64, due: usize) -> (usize, f64) {
    let mut read = 0;
    let mut total = std::time::Duration::ZERO;
    for _ in 0..REPEAT {
        // Exactly `due` deadlines fall at or before `now`.
        let now = *next + due as i64 * SPACING - 1;
        let started = Instant::now();
        let n = store.fire_due_audience(now, 1_000_000).expect("fired");
        total += started.elapsed();
        assert_eq!(n, due, "a tick at {now} reads exactly the due watches");
        read += n;
        *next += due as i64 * SPACING;
    }
    (read / REPEAT, total.as_secs_f64() * 1e3 / REPEAT as f64)
}

fn main() {
    let customers: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    println!("| population | due per tick | index entries read per tick | ms per tick |");
    println!("| ---: | ---: | ---: | ---: |");
    for population in [customers, customers / 10] {
        let started = Instant::now();
        let (_dir, store) = watched(population);
        eprintln!("{population} watches written in {:.1?}", started.elapsed());
        let mut next = 0;
        for due in [0, 100, 1_000] {
            let (read, ms) = measure(&store, &mut next, due);
            println!("| {population} | {due} | {read} | {ms:.2} |");
        }
    }
}
