//! `cargo xtask bench`, the noisy-neighbour part: how much one tenant's abuse and faults cost
//! another tenant on the same server.
//!
//! Two phases on a fresh release server each (system clock, data under
//! `target/bench/neighbours/<phase>`):
//!
//! - **calm** — the *quiet* tenant alone: the onboarding journey, its webhook delivering to a
//!   loopback sink; one sign-up per request at [`QUIET_RATE`] a second for the phase's length.
//! - **bad requests** — the same quiet load while the *noisy* tenant, on the same server, sends
//!   multi-megabyte batches with one malformed event at the end, bodies over the size limit and
//!   mass dead-letter retries (a few hundred thousand ids, and "all"), each keeping one request
//!   in flight (the issue's "flood of oversized/malformed requests and a mass retry");
//! - **faulty tenant** — the noisy tenant's sign-ups (200 a second) have welcomes that go to a
//!   provider that accepts connections and never answers, and its hostile journey spins to the
//!   `decide` deadline on 200 events a second (the issue's "a channel that never answers and a
//!   journey that burns its deadline on every trigger");
//! - **everything** — all of the above at once, the sign-ups and spinning events too as fast
//!   as the server takes them: more valid work than the two cores can do, which no fairness
//!   between tenants can make free.
//!
//! For the quiet tenant it reports the acknowledgement latency of its requests (sent to
//! answered) and the welcome latency (sent to the sink receiving the welcome), p50/p99/max;
//! for the noisy one, how its requests were answered. The load runs in this process, on the
//! same two cores as the server, as in the durability bench.

use anyhow::{ensure, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use waymark_tests::waymark_client::Client as ApiClient;
use waymark_tests::{
    guest_build_args, reqwest, tenant_with_journey, Artifacts, Clock, Server, ServerOptions, Sink,
    HOSTILE_CRATE, ONBOARDING, ONBOARDING_CRATE, WEBHOOK, WEBHOOK_CRATE,
};

/// The noisy-neighbour section of `docs/BENCHMARKS.md` lies between these.
pub const BEGIN: &str = "<!-- neighbours bench: begin (written by `cargo xtask bench`) -->";
pub const END: &str = "<!-- neighbours bench: end -->";

/// The quiet tenant's sign-ups per second, one per request.
const QUIET_RATE: u32 = 50;
/// The hostile journey's name (`tests/guests/hostile`): enters on `signed_up`, spins on `spin`.
const HOSTILE: &str = "hostile";
/// Customers of the noisy tenant that the spinning events are for.
const SPINNERS: usize = 200;
/// A bad batch: this many valid events, then one that is not an event (~6 MB).
const BAD_BATCH_EVENTS: usize = 40_000;
/// Ids in one mass dead-letter retry.
const RETRY_IDS: usize = 200_000;
/// A body over the server's 32 MiB request limit.
const OVERSIZED_BYTES: usize = 40 * 1024 * 1024;

pub fn bench(quick: bool, no_write: bool) -> Result<()> {
    super::ensure_wasm_target()?;
    super::cargo(&guest_build_args(), &[])?;
    super::cargo(super::durability::RELEASE_HOST_BUILD, &[])?;
    let seconds = if quick { 8 } else { 30 };
    let started = Instant::now();
    let report = tokio::runtime::Runtime::new()?.block_on(run(seconds))?;
    eprintln!(
        "noisy-neighbour bench done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    if quick || no_write {
        eprintln!("docs/BENCHMARKS.md left as is");
        return Ok(());
    }
    super::write_section(BEGIN, END, "Noisy neighbour", &report)
}

async fn run(seconds: u32) -> Result<String> {
    let calm = phase("calm", None, seconds).await.context("calm phase")?;
    // Alone, the quiet tenant must be served completely, or the bench itself is broken.
    ensure!(
        calm.refused == 0 && calm.missing == 0,
        "alone, the quiet tenant had {} requests refused and {} welcomes missing",
        calm.refused,
        calm.missing
    );
    let mut floods = Vec::new();
    for flood in [Flood::BadRequests, Flood::Faulty, Flood::Everything] {
        let measured = phase(flood.dir(), Some(flood), seconds)
            .await
            .with_context(|| format!("{} phase", flood.dir()))?;
        floods.push((flood, measured));
    }
    Ok(report(seconds, &calm, &floods))
}

/// What one phase measured.
struct Phase {
    /// The quiet tenant's requests: sent to answered.
    acks: Vec<Duration>,
    /// Quiet requests not answered 202.
    refused: usize,
    /// The quiet tenant's welcomes: request sent to the sink receiving it.
    welcomes: Vec<Duration>,
    /// Quiet sign-ups whose welcome never arrived (within the wait after the load).
    missing: usize,
    /// The noisy tenant's requests by flood task and answer (status, or `error`).
    noisy: BTreeMap<(&'static str, String), u64>,
}

/// What the noisy tenant does in a phase.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flood {
    BadRequests,
    Faulty,
    Everything,
}

impl Flood {
    fn dir(self) -> &'static str {
        match self {
            Flood::BadRequests => "bad-requests",
            Flood::Faulty => "faulty",
            Flood::Everything => "everything",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Flood::BadRequests => "beside bad requests and mass retries",
            Flood::Faulty => "beside a stuck channel and a deadline burner (200 + 200 events/s)",
            Flood::Everything => "beside everything at once, as fast as taken",
        }
    }
}

async fn phase(name: &str, flood: Option<Flood>, seconds: u32) -> Result<Phase> {
    let dir = super::root()
        .join("target")
        .join("bench")
        .join("neighbours")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot wipe {}", dir.display()))?;
    }
    let binary = waymark_tests::target_dir()
        .join("release")
        .join(format!("waymark{}", std::env::consts::EXE_SUFFIX));
    let mut server = Server::start(ServerOptions {
        dir: Some(dir),
        clock: Clock::System,
        binary: Some(binary),
        ..ServerOptions::default()
    })
    .await;
    let sink = Sink::start();
    let (quiet, _) = tenant_with_journey(
        &server,
        "quiet",
        Some((&sink, &[WEBHOOK][..])),
        ONBOARDING,
        component(ONBOARDING_CRATE)?,
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let noisy = Arc::new(Mutex::new(BTreeMap::new()));
    let mut flooders = JoinSet::new();
    if let Some(flood) = flood {
        start_flood(&server, flood, &mut flooders, &stop, &noisy).await?;
        // Let the flood build up before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let arrivals = Arc::new(Mutex::new(HashMap::<String, Instant>::new()));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = tokio::spawn(watch_sink(sink, arrivals.clone(), watching.clone()));

    let client = ApiClient::new(server.url(), Some(&quiet.api_key), Duration::from_secs(120))?;
    let total = (seconds * QUIET_RATE) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / QUIET_RATE);
    let mut posts = JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let client = client.clone();
        posts.spawn(async move {
            let customer = format!("q{i}");
            let body = format!(
                r#"[{{"id":"{customer}","customer":"{customer}","name":"signed_up","properties":{{}}}}]"#
            );
            let sent = Instant::now();
            let ok = client.post_events_json(body.into_bytes()).await.is_ok();
            (customer, sent, sent.elapsed(), ok)
        });
    }
    let mut sent = Vec::with_capacity(total);
    let mut acks = Vec::with_capacity(total);
    let mut refused = 0;
    while let Some(done) = posts.join_next().await {
        let (customer, at, ack, ok) = done?;
        acks.push(ack);
        if ok {
            sent.push((customer, at));
        } else {
            refused += 1;
        }
    }
    // Every welcome of an accepted sign-up, or a minute past the load.
    let waited = Instant::now();
    while lock(&arrivals).len() < sent.len() && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    watching.store(false, Ordering::Relaxed);
    watcher.await?;
    server.kill();
    flooders.abort_all();
    while flooders.join_next().await.is_some() {}
    let _ = std::fs::remove_dir_all(server.data_dir());

    let arrivals = lock(&arrivals);
    let mut welcomes = Vec::with_capacity(sent.len());
    let mut missing = 0;
    for (customer, at) in &sent {
        match arrivals.get(customer) {
            Some(arrived) => welcomes.push(arrived.saturating_duration_since(*at)),
            None => missing += 1,
        }
    }
    acks.sort();
    welcomes.sort();
    let noisy = lock(&noisy).clone();
    Ok(Phase {
        acks,
        refused,
        welcomes,
        missing,
        noisy,
    })
}

/// Notes when each customer's first delivery reached the sink, polling every 2 ms.
async fn watch_sink(
    sink: Sink,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    watching: Arc<AtomicBool>,
) {
    let mut seen = 0;
    while watching.load(Ordering::Relaxed) {
        let new = sink.requests_from(seen);
        if !new.is_empty() {
            let now = Instant::now();
            seen += new.len();
            let mut arrivals = lock(&arrivals);
            for request in new {
                if let Some(customer) = request.customer() {
                    arrivals.entry(customer.to_string()).or_insert(now);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sets up the noisy tenant and starts its flood tasks, each keeping one request in flight
/// until `stop`.
async fn start_flood(
    server: &Server,
    flood: Flood,
    flooders: &mut JoinSet<()>,
    stop: &Arc<AtomicBool>,
    outcomes: &Arc<Mutex<BTreeMap<(&'static str, String), u64>>>,
) -> Result<()> {
    // A provider that takes connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hole_addr = hole.local_addr()?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hole.incoming().flatten() {
            held.push(stream);
        }
    });
    let (noisy, _) = tenant_with_journey(
        server,
        "noisy",
        None,
        ONBOARDING,
        component(ONBOARDING_CRATE)?,
    )
    .await;
    let api = server.as_tenant(&noisy);
    api.register_channel(
        WEBHOOK,
        &component(WEBHOOK_CRATE)?,
        serde_json::json!({ "url": format!("http://{hole_addr}/hole") }),
        serde_json::json!({}),
        &[hole_addr.to_string()],
    )
    .await;
    api.upload_journey(HOSTILE, component(HOSTILE_CRATE)?).await;
    let url = server.url().to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let key = noisy.api_key.clone();
    let events = format!("{url}/v1/events");

    // The spinners enroll (their welcomes go to the hole too), then spin on every event.
    let signups = batch((0..SPINNERS).map(|i| (format!("s{i}"), format!("n{i}"), "signed_up")));
    let answer = http
        .post(&events)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(signups)
        .send()
        .await?;
    ensure!(
        answer.status().is_success(),
        "the spinners' sign-ups: {}",
        answer.status()
    );

    let mut bad =
        batch((0..BAD_BATCH_EVENTS).map(|i| (format!("b{i}"), format!("b{i}"), "signed_up")));
    bad.pop();
    bad.extend_from_slice(br#",{"id":"bad","name":"no customer"}]"#);
    let mut oversized = batch((0..10).map(|i| (format!("o{i}"), format!("o{i}"), "signed_up")));
    oversized.pop();
    oversized.push(b',');
    oversized.resize(OVERSIZED_BYTES, b' ');
    oversized.extend_from_slice(br#"{"id":"x","customer":"x","name":"x"}]"#);
    let ids: Vec<String> = (0..RETRY_IDS).map(|i| format!("msg-{i:08}")).collect();
    let retry_many = serde_json::to_vec(&serde_json::json!({ "ids": ids }))?;
    let retry_all = br#"{"ids":[]}"#.to_vec();

    type Body = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;
    // Which flood each task belongs to: the faulty tenant's work, or bad requests.
    let faulty = flood != Flood::BadRequests;
    let bad_requests = flood != Flood::Faulty;
    // The faulty tenant's pace: one batch of 200 a second, or as fast as taken.
    let pace = (flood == Flood::Faulty).then_some(Duration::from_secs(1));
    let tasks: Vec<(bool, Option<Duration>, &'static str, String, Body)> = vec![
        (
            faulty,
            pace,
            "signups to a provider that never answers",
            events.clone(),
            Arc::new(|round| {
                batch((0..200).map(move |i| {
                    let id = format!("w{round}-{i}");
                    (id.clone(), id, "signed_up")
                }))
            }),
        ),
        (
            faulty,
            pace,
            "events that spin to the deadline",
            events.clone(),
            Arc::new(|round| {
                batch(
                    (0..SPINNERS).map(move |i| (format!("p{round}-{i}"), format!("n{i}"), "spin")),
                )
            }),
        ),
        (
            bad_requests,
            None,
            "6 MB batches with one malformed event",
            events.clone(),
            Arc::new(move |_| bad.clone()),
        ),
        (
            bad_requests,
            None,
            "bodies over the size limit",
            events.clone(),
            Arc::new(move |_| oversized.clone()),
        ),
        (
            bad_requests,
            None,
            "dead-letter retry of 200,000 ids",
            format!("{url}/v1/dead-letters/retry"),
            Arc::new(move |_| retry_many.clone()),
        ),
        (
            bad_requests,
            None,
            "dead-letter retry of all",
            format!("{url}/v1/dead-letters/retry"),
            Arc::new(move |_| retry_all.clone()),
        ),
    ];
    for (run, pace, what, target, body) in tasks {
        if !run {
            continue;
        }
        let http = http.clone();
        let key = key.clone();
        let stop = stop.clone();
        let outcomes = outcomes.clone();
        flooders.spawn(async move {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = http
                    .post(&target)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body(round))
                    .send()
                    .await;
                let outcome = match &answer {
                    Ok(response) => response.status().as_u16().to_string(),
                    Err(_) => "error".to_string(),
                };
                *lock(&outcomes).entry((what, outcome)).or_default() += 1;
                if let Ok(response) = answer {
                    // Honour a `Retry-After`, as a well-behaved client would not: only briefly,
                    // so the flood stays a flood.
                    if response.status().as_u16() == 429 || response.status().as_u16() == 503 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                round += 1;
                if let Some(pace) = pace {
                    tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
                }
            }
        });
    }
    Ok(())
}

/// A JSON array of `(event id, customer, name)` events with empty properties.
fn batch(events: impl Iterator<Item = (String, String, &'static str)>) -> Vec<u8> {
    let mut body = String::from("[");
    for (i, (id, customer, name)) in events.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":"{id}","customer":"{customer}","name":"{name}","properties":{{}}}}"#
        ));
    }
    body.push(']');
    body.into_bytes()
}

fn component(krate: &str) -> Result<Vec<u8>> {
    let path: PathBuf = Artifacts::locate().path(krate);
    std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn report(seconds: u32, calm: &Phase, floods: &[(Flood, Phase)]) -> String {
    let mut out = String::new();
    out.push_str(&super::machine_and_date());
    out.push_str(&format!(
        "\nThe quiet tenant posts {QUIET_RATE} sign-ups a second, one per request, for {seconds} s \
         ({} sign-ups); its welcomes go to a loopback sink. Each row is a fresh server; the noisy \
         tenant's load per row is described in `xtask/src/neighbours.rs`.\n\n",
        seconds * QUIET_RATE
    ));
    out.push_str(
        "| quiet tenant | acknowledged p50 | p99 | max | welcome p50 | p99 | max | refused | welcomes missing |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let rows = std::iter::once(("alone", calm))
        .chain(floods.iter().map(|(flood, phase)| (flood.title(), phase)));
    for (name, phase) in rows {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            ms(percentile(&phase.acks, 0.50)),
            ms(percentile(&phase.acks, 0.99)),
            ms(phase.acks.last().copied()),
            ms(percentile(&phase.welcomes, 0.50)),
            ms(percentile(&phase.welcomes, 0.99)),
            ms(phase.welcomes.last().copied()),
            phase.refused,
            phase.missing,
        ));
    }
    for (flood, phase) in floods {
        out.push_str(&format!(
            "\n| noisy tenant, {} | answered | requests |\n| --- | --- | ---: |\n",
            flood.title()
        ));
        for ((what, outcome), n) in &phase.noisy {
            out.push_str(&format!("| {what} | {outcome} | {n} |\n"));
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "–".to_string(),
    }
}
