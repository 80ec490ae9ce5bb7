//! Backtest throughput (issue 13): recorded events replayed per second through the isolated
//! engine, the whole path a backtest takes (`backtest::run::backtest`: history read from the
//! log, each event through the shard worker's own code on a scratch store, timers fired,
//! deliveries taken as delivered, the report and the sends read back), for the renewal
//! example — a candidate that is the live version, so one replay runs; with `early`, a changed
//! renewal version (the tests' `renewal-early` guest) as a draft candidate, so the live and
//! candidate replays run side by side, as a real backtest's do.
//!
//! `cargo bench -p waymark-host --bench backtest [-- EVENTS] [early]` (default 1,000,000 recorded
//! events: 500,000 customers with an `identify` and a `renewal_scheduled` each), or
//! `cargo xtask bench --only backtest`. Needs the guests built (`cargo xtask test` or
//! `cargo build --profile guest --target wasm32-wasip2 -p waymark-example-renewal`, and
//! `-p waymark-test-renewal-early` for `early`). The aim
//! (docs/BENCHMARKS.md): 1,000,000 events in 20 s or less on 2 cores.
//!
//! Under `valgrind --tool=callgrind` (instruction counts, which this machine's noise does not
//! move), set `WAYMARK_BENCH_INSTANCES=2`: the sandbox's instance pool is then sized for two
//! instances with 64 MiB memories, a reservation valgrind can map.

/// The server's allocator (`host/src/main.rs`): a backtest runs inside the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use waymark_host::backtest::run::{backtest, Plan, Progress, Sample};
use waymark_host::clock::Clock;
use waymark_host::host::{Host, HostConfig};
use waymark_host::model::rollout::Stage;
use waymark_host::model::Event;
use waymark_host::registry::Registry;
use waymark_host::sandbox::{Sandbox, SandboxConfig};
use waymark_host::store::{Store, Tenant};

const DAY: i64 = 86_400_000;
/// 2026-05-01T00:00:00Z.
const START: i64 = 1_777_593_600_000;

fn guest(file: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/guest")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the guests first (cargo xtask test)",
            path.display()
        )
    })
}

#[tokio::main]
async fn main() {
    let events: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(dir.path(), 4, 256 << 20).expect("a store");
    let tenant = Tenant {
        id: "bench".into(),
        created_at: START,
        limits: Default::default(),
        policy: Default::default(),
    };
    store
        .create_tenant(&tenant, "bench")
        .await
        .expect("a tenant");
    // Compiled code cached on disk, as the server keeps it (`<data-dir>/compiled`): an upload
    // writes it, and each engine of a backtest loads it instead of compiling again.
    let cache_dir = Some(dir.path().join("compiled"));
    let sandbox = Sandbox::new(match std::env::var("WAYMARK_BENCH_INSTANCES") {
        Ok(n) => SandboxConfig {
            max_concurrent_instances: n.parse().expect("a number"),
            max_idle_instances: 4,
            memory_ceiling_bytes: 64 << 20,
            cache_dir,
            ..SandboxConfig::default()
        },
        Err(_) => SandboxConfig {
            cache_dir,
            ..SandboxConfig::default()
        },
    })
    .expect("a sandbox");
    let registry = Registry::new(sandbox, store.clone());
    // `early` on the command line: the candidate is a changed renewal version (reminders at
    // 21/7/1 days, the tests' `renewal-early` guest), so both replays run, side by side;
    // otherwise the candidate is the live version and one replay runs.
    let early = std::env::args().any(|a| a == "early");
    let versions = [
        ("waymark_example_renewal.wasm", Stage::Live),
        ("waymark_test_renewal_early.wasm", Stage::Draft),
    ];
    for (file, stage) in &versions[..if early { 2 } else { 1 }] {
        let bytes = guest(file);
        let component = registry
            .compile_journey(bytes.clone().into())
            .await
            .expect("compiles");
        let spec = component
            .describe(&SandboxConfig::default().defaults)
            .await
            .expect("describes");
        let digest = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(&bytes))
        };
        store
            .add_journey_version("bench", "renewal", &digest, &bytes, &spec, *stage, START)
            .await
            .expect("stored");
        // As the upload route does: its compiled code is kept (written to the cache).
        registry.insert_journey(&digest, component);
    }
    // The recorded history: written straight to the log, as ingest would have — customer `c`
    // at minute `c % 1440` of the first day, so about `customers / 1440` customers share each
    // minute — in time order, as ingest writes it; nothing is processed live (a backtest reads
    // only the log).
    let customers = events / 2;
    let written = Instant::now();
    let mut in_time_order: Vec<u64> = (0..customers).collect();
    in_time_order.sort_by_key(|c| c % 1_440);
    for chunk in in_time_order.chunks(5_000) {
        let mut batch = Vec::with_capacity(chunk.len() * 2);
        for c in chunk {
            let id = format!("c{c}");
            let at = START + (*c as i64 % 1_440) * 60_000;
            let renewal = START + (20 + (*c as i64 % 30)) * DAY;
            let mut traits = serde_json::Map::new();
            traits.insert("renewal_date".into(), serde_json::json!(renewal));
            let mut properties = serde_json::Map::new();
            properties.insert("traits".into(), serde_json::Value::Object(traits));
            batch.push((
                Event {
                    id: format!("{id}-traits"),
                    customer: id.clone(),
                    name: "identify".into(),
                    properties,
                    timestamp: at,
                },
                at,
            ));
            batch.push((
                Event {
                    id: format!("{id}-scheduled"),
                    customer: id,
                    name: "renewal_scheduled".into(),
                    properties: Default::default(),
                    timestamp: at,
                },
                at,
            ));
        }
        for (event, at) in &batch {
            store
                .append_replayed("bench", event, *at, None)
                .expect("logged");
        }
    }
    store.clear_queue_for_bench().expect("queue cleared");
    // Written to disk before the replay starts, as a month's history is on a live server: sled
    // otherwise writes its log out on its own threads during the replay, on the same two cores.
    store.flush().await.expect("history flushed");
    eprintln!("{events} events recorded in {:?}", written.elapsed());
    // `WAYMARK_BACKTEST_PARTS` as the server reads it (`--backtest-parts`; unset: one per core),
    // and `WAYMARK_BACKTEST_PART_EVENTS` to try other sizes of part.
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
    };
    let config = HostConfig {
        backtest_parts: env("WAYMARK_BACKTEST_PARTS"),
        backtest_part_events: env("WAYMARK_BACKTEST_PART_EVENTS")
            .unwrap_or(HostConfig::default().backtest_part_events),
        ..HostConfig::default()
    };
    // The live host runs on the system clock, as a production server does, so the replay's
    // clock moves continuously: each timer fires at its own due time.
    let host = Host::new(store, registry, Clock::system(), config);
    let plan = Plan {
        tenant: "bench".into(),
        journey: "renewal".into(),
        candidate: waymark_host::backtest::candidate::Candidate::Stored(if early { 2 } else { 1 }),
        from: START,
        to: START + 60 * DAY,
        sample: Sample::default(),
        fidelity: false,
        migrate: None,
    };
    let progress = Arc::new(Progress::default());
    let (began, cpu_before) = (Instant::now(), cpu_seconds());
    let outcome = backtest(&Arc::new(host), &plan, &progress, &CancellationToken::new())
        .await
        .expect("the backtest runs");
    let took = began.elapsed();
    let (user, sys) = cpu_seconds();
    let (user, sys) = (user - cpu_before.0, sys - cpu_before.1);
    println!(
        "backtest: {events} recorded events ({customers} customers, {} sends live, {} sends \
         candidate{}) replayed in {:.1} s: {:.0} events/s; CPU during the replay {:.1} s user + {:.1} s sys",
        outcome.live.sends.len(),
        outcome.candidate.sends.len(),
        if early {
            ", two replays".to_string()
        } else {
            format!(", one replay in {} parts", outcome.parts)
        },
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        user,
        sys
    );
}

/// This process's CPU time so far, user and system, in seconds (`/proc/self/stat`, in clock
/// ticks of 1/100 s on Linux).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of proc_pid_stat(5); the list starts at field 3.
    (ticks(11) / 100.0, ticks(12) / 100.0)
}
