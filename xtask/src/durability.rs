//! `cargo xtask bench`, the durability part: the real server (the release `waymark` binary) on
//! loopback, driven over HTTP the way a tenant drives it, measuring what the issue "Durability
//! under load" asks for:
//!
//! 1. **ingest** — events acknowledged per second (a 2xx means flushed to disk), for a few batch
//!    sizes and numbers of concurrent clients;
//! 2. **enrollments** — signups posted for distinct customers until every one is enrolled in the
//!    onboarding journey (event in, `decide`, state committed), and until every welcome is
//!    delivered;
//! 3. **timer lag** — ledger enrollments whose timers come due in steps of a manual clock at a
//!    set rate; lag is the time from a timer's coming due to its trigger being processed;
//! 4. **recovery** — `kill -9` with 0, 100k and 1M dormant enrollments (birthday customers
//!    waiting on a yearly timer) in the database, then the time to `/healthz` and to the first
//!    new event processed;
//! 5. **memory** — `VmRSS` of the server at the same checkpoints.
//!
//! Completion is observed through `GET /metrics` counters, never one `GET` per customer. Each
//! phase runs a fresh server with its data under `target/bench/durability/<phase>`; the data is
//! removed afterwards (the logs stay). The load generator runs in this process, on the same
//! machine as the server: what it costs is not the server's, so the server's own CPU time (from
//! `/proc/<pid>/stat`) is reported beside each rate.
//!
//! Results go between [`BEGIN`] and [`END`] in `docs/BENCHMARKS.md`; the sandbox bench writes
//! its own section, so neither clobbers the other.

use anyhow::{bail, ensure, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use waymark_tests::waymark_client::Client as ApiClient;
use waymark_tests::{
    example_crate, guest_build_args, metric_sum, tenant_with_journey, Artifacts, Clock,
    CreatedTenant, Server, ServerOptions, Sink, StatusCode, HOUR_MS, LEDGER_CRATE, ONBOARDING,
    ONBOARDING_CRATE, WEBHOOK,
};

/// The durability section of `docs/BENCHMARKS.md` lies between these.
pub const BEGIN: &str = "<!-- durability bench: begin (written by `cargo xtask bench`) -->";
pub const END: &str = "<!-- durability bench: end -->";

/// `cargo` arguments that build the host binary the bench runs (release profile).
pub(crate) const RELEASE_HOST_BUILD: &[&str] = &[
    "build",
    "--release",
    "-p",
    "waymark-host",
    "--bin",
    "waymark",
];

/// The ledger journey (`tests/guests/ledger`): enters on `tick`, schedules `t:<event id>` one
/// hour after each.
const LEDGER: &str = "ledger";

/// The birthday journey (`examples/birthday`): enters on `identify`, arms a yearly timer.
const BIRTHDAY: &str = "birthday";

/// How much of everything to do.
struct Plan {
    quick: bool,
    /// Events posted per ingest configuration.
    ingest_events: usize,
    /// (batch size, concurrent clients).
    ingest_configs: &'static [(usize, usize)],
    /// Signups for the enrollment rate.
    enrollments: usize,
    /// The rates at which timers come due, one run each (the aim's rate first, a capacity run
    /// faster than the aim's processing rate last).
    timer_runs: &'static [TimerPlan],
    /// Dormant enrollments at which recovery and memory are measured (ascending; 0 first).
    checkpoints: &'static [usize],
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                ingest_events: 10_000,
                ingest_configs: &[(100, 1), (1000, 4)],
                enrollments: 5_000,
                timer_runs: &[
                    TimerPlan {
                        rate: 10_000.0,
                        step: 100,
                        steps: 100,
                    },
                    TimerPlan {
                        rate: 3_000.0,
                        step: 30,
                        steps: 100,
                    },
                    TimerPlan {
                        rate: 1_000.0,
                        step: 10,
                        steps: 100,
                    },
                    TimerPlan {
                        rate: 50_000.0,
                        step: 500,
                        steps: 20,
                    },
                ],
                checkpoints: &[0, 10_000, 50_000],
            }
        } else {
            Plan {
                quick,
                ingest_events: 100_000,
                ingest_configs: &[(100, 1), (100, 4), (1000, 1), (1000, 4)],
                enrollments: 50_000,
                timer_runs: &[
                    TimerPlan {
                        rate: 10_000.0,
                        step: 100,
                        steps: 500,
                    },
                    TimerPlan {
                        rate: 3_000.0,
                        step: 30,
                        steps: 300,
                    },
                    TimerPlan {
                        rate: 1_000.0,
                        step: 10,
                        steps: 500,
                    },
                    // Capacity: due faster than the aim asks to process them (≥ 20,000/s),
                    // so the processed rate is the server's, not the load's.
                    TimerPlan {
                        rate: 50_000.0,
                        step: 1_000,
                        steps: 50,
                    },
                ],
                checkpoints: &[0, 100_000, 1_000_000],
            }
        }
    }
}

/// Builds the guests and the release host, runs every phase, prints the report and (unless
/// `quick` or `no_write`) records it in `docs/BENCHMARKS.md`.
pub fn bench(quick: bool, no_write: bool) -> Result<()> {
    // `WAYMARK_BENCH_BINARY` runs a server built earlier, as it is, over the guests built
    // earlier: two builds compared side by side.
    if prebuilt_binary().is_none() {
        super::ensure_wasm_target()?;
        super::cargo(&guest_build_args(), &[])?;
        super::cargo(RELEASE_HOST_BUILD, &[])?;
    }
    // Set before any thread exists. Starting on a million enrollments, or one request posting
    // thousands of events behind a backlog, may take longer than a test's patience.
    if std::env::var_os("WAYMARK_TEST_PATIENCE_SECS").is_none() {
        std::env::set_var("WAYMARK_TEST_PATIENCE_SECS", "900");
    }
    let plan = Plan::new(quick);
    let started = Instant::now();
    let report = tokio::runtime::Runtime::new()?.block_on(run(&plan))?;
    eprintln!(
        "durability bench done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    if quick
        || no_write
        || enrollments_only()?.is_some()
        || std::env::var_os("WAYMARK_BENCH_INGEST_ONLY").is_some()
        || std::env::var_os("WAYMARK_BENCH_TIMERS_ONLY").is_some()
        || dormant_only()?.is_some()
        || prebuilt_binary().is_some()
    {
        eprintln!("docs/BENCHMARKS.md left as is");
        return Ok(());
    }
    super::write_section(BEGIN, END, "Durability under load", &report)
}

async fn run(plan: &Plan) -> Result<String> {
    let base = super::root()
        .join("target")
        .join("bench")
        .join("durability");
    let binary = prebuilt_binary().unwrap_or_else(|| {
        waymark_tests::target_dir()
            .join("release")
            .join(format!("waymark{}", std::env::consts::EXE_SUFFIX))
    });
    let bench = Bench { base, binary };

    // Issue 10 (enrollment CPU): `WAYMARK_BENCH_ENROLLMENTS_ONLY=<n>` runs the enrollment
    // phase alone with `n` signups and prints its figures (nothing is written), so the server
    // can be profiled (`perf record -p`) through that phase without waiting for the others.
    if let Some(n) = enrollments_only()? {
        let plan = Plan {
            enrollments: n,
            ..Plan::new(true)
        };
        let before = Usage::now()?;
        let run = bench.enrollments(&plan).await.context("enrollment phase")?;
        let others = Usage::now()?.others_since(&before);
        return Ok(format!(
            "enrollments only: {n} signups; acknowledged in {:.2} s; enrolled in {:.2} s ({:.0}/s); \
             settled in {:.2} s ({:.2} s after the last ack); {} delivered when enrolled; \
             server CPU {:.2} s, {:.0} µs per enrollment; failures {}; others {:.0}%",
            run.ingested,
            run.enrolled,
            n as f64 / run.enrolled,
            run.settled,
            run.settled - run.ingested,
            run.delivered_when_enrolled,
            run.server_cpu,
            run.server_cpu * 1e6 / n as f64,
            run.failures,
            others * 100.0,
        ));
    }

    // Issue 10 (ingest): `WAYMARK_BENCH_INGEST_ONLY=1` runs the ingest phase alone, with the
    // full plan's configurations, and prints its rows (nothing is written): two builds'
    // acknowledgement rates compared side by side in a few minutes.
    if std::env::var_os("WAYMARK_BENCH_INGEST_ONLY").is_some() {
        let before = Usage::now()?;
        let rows = bench
            .ingest(&Plan::new(false))
            .await
            .context("ingest phase")?;
        let others = Usage::now()?.others_since(&before);
        return Ok(rows
            .iter()
            .map(|r| {
                format!(
                    "ingest only: batch {} x {} clients: {:.0} events/s; p50 {:.1} ms, p99 {:.1} ms; \
                     server CPU {:.0} µs per event; others {:.0}%\n",
                    r.batch,
                    r.clients,
                    r.events as f64 / r.seconds,
                    r.latency_p50.as_secs_f64() * 1e3,
                    r.latency_p99.as_secs_f64() * 1e3,
                    r.server_cpu * 1e6 / r.events as f64,
                    others * 100.0,
                )
            })
            .collect());
    }

    // Issue 10 (timers): `WAYMARK_BENCH_TIMERS_ONLY=1` runs the timer phase alone, with the
    // full plan's rates, and prints its rows (nothing is written): the timer aims compared
    // between two builds without the other phases.
    if std::env::var_os("WAYMARK_BENCH_TIMERS_ONLY").is_some() {
        let before = Usage::now()?;
        let runs = bench
            .timers(&Plan::new(false))
            .await
            .context("timer phase")?;
        let others = Usage::now()?.others_since(&before);
        return Ok(runs
            .iter()
            .map(|r| {
                format!(
                    "timers only: {:.0}/s due, {:.0}/s processed; lag p50 {:.1} ms, p90 {:.1} ms, \
                     p99 {:.1} ms, max {:.1} ms; poll {:.1} ms; server CPU {:.0} µs per timer; \
                     others {:.0}%\n",
                    r.due_rate,
                    r.processed_rate,
                    r.lag_p50.as_secs_f64() * 1e3,
                    r.lag_p90.as_secs_f64() * 1e3,
                    r.lag_p99.as_secs_f64() * 1e3,
                    r.lag_max.as_secs_f64() * 1e3,
                    r.poll.as_secs_f64() * 1e3,
                    r.server_cpu * 1e6 / r.plan.timers() as f64,
                    others * 100.0,
                )
            })
            .collect());
    }

    // Issue 10 (memory): `WAYMARK_BENCH_DORMANT_ONLY=<n>` builds `n` dormant enrollments alone
    // (checkpoints 0 and `n`) and prints each checkpoint's memory and restart times (nothing is
    // written), so the resident memory after a restart can be compared between builds quickly.
    if let Some(n) = dormant_only()? {
        let checkpoints: &'static [usize] = Box::leak(vec![0, n].into_boxed_slice());
        let plan = Plan {
            checkpoints,
            ..Plan::new(true)
        };
        let run = bench.dormant(&plan).await.context("dormant phase")?;
        return Ok(run
            .iter()
            .map(|c| {
                format!(
                    "dormant only: {} enrollments; RSS building process {:.0} MiB (peak {:.0}); \
                     db {:.0} MiB; first event after restart {:.2} s; RSS after restart {:.0} MiB; \
                     first event restarting again {:.2} s\n",
                    c.enrollments,
                    c.rss_live,
                    c.hwm_live,
                    c.disk as f64 / (1 << 20) as f64,
                    c.first_event,
                    c.rss_restarted,
                    c.first_event_again,
                )
            })
            .collect());
    }

    let mut others = Vec::new();
    let before = Usage::now()?;
    let ingest = bench.ingest(plan).await.context("ingest phase")?;
    let after = Usage::now()?;
    others.push(("ingest", after.others_since(&before)));
    let enroll = bench.enrollments(plan).await.context("enrollment phase")?;
    let before = Usage::now()?;
    others.push(("enrollments", before.others_since(&after)));
    let timers = bench.timers(plan).await.context("timer phase")?;
    let after = Usage::now()?;
    others.push(("timers", after.others_since(&before)));
    let dormant = bench.dormant(plan).await.context("dormant phase")?;
    others.push(("dormant", Usage::now()?.others_since(&after)));
    let results = Results {
        ingest,
        enroll,
        timers,
        dormant,
        others,
    };
    Ok(report(plan, &results))
}

/// The signups of an enrollment-only run (`WAYMARK_BENCH_ENROLLMENTS_ONLY`), if one is asked.
fn enrollments_only() -> Result<Option<usize>> {
    count_from_env("WAYMARK_BENCH_ENROLLMENTS_ONLY", "signups")
}

/// The dormant enrollments of a dormant-only run (`WAYMARK_BENCH_DORMANT_ONLY`), if one is asked.
fn dormant_only() -> Result<Option<usize>> {
    count_from_env("WAYMARK_BENCH_DORMANT_ONLY", "enrollments")
}

/// The number in environment variable `name`, if it is set; `what` names it in the error.
fn count_from_env(name: &str, what: &str) -> Result<Option<usize>> {
    match std::env::var(name) {
        Ok(n) => Ok(Some(n.trim().parse().with_context(|| {
            format!("{name}={n:?} is not a number of {what}")
        })?)),
        Err(_) => Ok(None),
    }
}

/// A server binary to run as it is (`WAYMARK_BENCH_BINARY`), to compare two builds side by
/// side; its figures are printed, never recorded.
fn prebuilt_binary() -> Option<PathBuf> {
    std::env::var_os("WAYMARK_BENCH_BINARY").map(PathBuf::from)
}

/// Everything measured, for the report.
struct Results {
    ingest: Vec<IngestRow>,
    enroll: EnrollRun,
    timers: Vec<TimerRun>,
    dormant: Vec<Checkpoint>,
    /// Per phase, the share of the machine's CPU that other processes used.
    others: Vec<(&'static str, f64)>,
}

/// CPU time used on the whole machine and by this process and its reaped children (the
/// servers, once killed and waited for), to tell whether anything else ran during a phase.
struct Usage {
    at: Instant,
    machine: f64,
    family: f64,
}

impl Usage {
    /// Taken between phases, when no server runs.
    fn now() -> Result<Usage> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu: Vec<f64> = stat
            .lines()
            .next()
            .context("/proc/stat")?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal. Interrupts are left out: the
        // server's own disk and loopback traffic is served there, charged to no process.
        ensure!(cpu.len() >= 8, "/proc/stat has too few cpu fields");
        let busy = cpu[0] + cpu[1] + cpu[2] + cpu[7];
        let own = std::fs::read_to_string("/proc/self/stat")?;
        let fields: Vec<f64> = own
            .rsplit_once(')')
            .context("/proc/self/stat")?
            .1
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse().ok())
            .collect();
        Ok(Usage {
            at: Instant::now(),
            machine: busy / clock_ticks(),
            family: fields.iter().sum::<f64>() / clock_ticks(),
        })
    }

    /// Other processes' CPU since `earlier`, as a share of all the machine's CPUs.
    fn others_since(&self, earlier: &Usage) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let wall = (self.at - earlier.at).as_secs_f64() * cores;
        ((self.machine - earlier.machine) - (self.family - earlier.family)).max(0.0) / wall
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and clients
// ---------------------------------------------------------------------------------------------

struct Bench {
    /// `target/bench/durability`.
    base: PathBuf,
    /// The release `waymark`.
    binary: PathBuf,
}

impl Bench {
    /// A fresh server in `<base>/<phase>` (wiped first), with the default serve flags.
    async fn server(&self, phase: &str, clock: Clock) -> Result<Server> {
        let dir = self.base.join(phase);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot wipe {}", dir.display()))?;
        }
        // Issue 16: `WAYMARK_BENCH_SERVER_ARGS` adds arguments to every server the bench
        // starts (`--cluster nats://… --node-id b1`: the phases through a cluster node, with
        // other nodes started beside it sharing `WAYMARK_BENCH_ADMIN_TOKEN`).
        let args: Vec<String> = std::env::var("WAYMARK_BENCH_SERVER_ARGS")
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let cluster = args.iter().any(|a| a == "--cluster");
        let server = Server::start(ServerOptions {
            dir: Some(dir),
            clock,
            binary: Some(self.binary.clone()),
            // The cluster's nodes share one (`WAYMARK_BENCH_ADMIN_TOKEN`).
            admin_token: std::env::var("WAYMARK_BENCH_ADMIN_TOKEN").ok(),
            args,
            ..ServerOptions::default()
        })
        .await;
        if cluster {
            placed(&server).await?;
        }
        Ok(server)
    }
}

/// Waits until the cluster the bench's node joined has every partition run where the placement
/// puts it (its joining moves some to it): a phase measures a settled cluster, not a
/// rebalancing one.
async fn placed(server: &Server) -> Result<()> {
    let admin = ApiClient::new(
        server.url(),
        Some(server.admin_token()),
        Duration::from_secs(30),
    )?;
    let start = Instant::now();
    loop {
        let (status, body) = admin
            .request(
                waymark_tests::waymark_client::Method::GET,
                "/v1/admin/cluster",
                waymark_tests::waymark_client::Body::Empty,
            )
            .await?;
        let partitions = body["partitions"].as_array();
        let settled = status.is_success()
            && partitions.is_some_and(|ps| {
                !ps.is_empty()
                    && ps
                        .iter()
                        .all(|p| !p["owner"].is_null() && p["owner"] == p["preferred_owner"])
            });
        if settled {
            // The owners' hosts start just after the lease moved.
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(120),
            "the cluster's partitions did not settle: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops the server and removes its data (a million enrollments take gigabytes); the log stays.
fn discard(mut server: Server) {
    server.kill();
    let data = server.data_dir();
    drop(server);
    let _ = std::fs::remove_dir_all(data);
}

/// A tenant with `journey` uploaded and, given a sink, the webhook channel delivering to it.
async fn tenant(
    server: &Server,
    sink: Option<&Sink>,
    name: &str,
    journey: &str,
) -> Result<CreatedTenant> {
    let krate = match journey {
        ONBOARDING => ONBOARDING_CRATE.to_string(),
        LEDGER => LEDGER_CRATE.to_string(),
        BIRTHDAY => example_crate(BIRTHDAY),
        other => bail!("no component for journey {other}"),
    };
    let path = Artifacts::locate().path(&krate);
    let component =
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let webhooks = sink.map(|sink| (sink, &[WEBHOOK][..]));
    let (tenant, _) = tenant_with_journey(server, name, webhooks, journey, component).await;
    Ok(tenant)
}

/// A lean client for the load, over the one API client: request bodies are built before they
/// are timed.
#[derive(Clone)]
struct Client {
    /// Acting as the tenant.
    tenant: ApiClient,
    /// Acting as the operator.
    admin: ApiClient,
}

impl Client {
    fn new(server: &Server, tenant: &CreatedTenant) -> Result<Client> {
        let tenant = ApiClient::new(
            server.url(),
            Some(&tenant.api_key),
            Duration::from_secs(900),
        )?;
        let admin = tenant.with_token(Some(server.admin_token()));
        Ok(Client { tenant, admin })
    }

    /// After a restart the server listens on another port.
    fn follow(&mut self, server: &Server) {
        self.tenant = self.tenant.with_base_url(server.url());
        self.admin = self.admin.with_base_url(server.url());
    }

    /// `POST /v1/events` with a prepared JSON array; fails unless 202. Backpressure (`503`,
    /// a shard's queue full) and a rate limit (`429`) are waited out and the batch posted
    /// again, as a well-behaved client does: nothing of a refused batch was stored.
    async fn post(&self, body: Vec<u8>) -> Result<()> {
        loop {
            match self.tenant.post_events_json(body.clone()).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.status(),
                        Some(StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS)
                    ) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn counters(&self) -> Result<Counters> {
        let mut text = self.admin.metrics().await?;
        // Issue 16: in a cluster of several partitions each node exports its own partitions'
        // counters; `WAYMARK_BENCH_METRICS_FROM` names the other nodes (comma-separated base
        // URLs), whose counters are added.
        if let Ok(others) = std::env::var("WAYMARK_BENCH_METRICS_FROM") {
            for url in others.split(',').filter(|u| !u.is_empty()) {
                text.push_str(&self.admin.with_base_url(url).metrics().await?);
            }
        }
        let triggers = |kind| metric_sum(&text, "waymark_triggers_total", ("kind", kind)) as u64;
        Ok(Counters {
            entered: triggers("entered"),
            timer: triggers("timer"),
            delivery: triggers("delivery"),
            delivered: metric_sum(&text, "waymark_deliveries_total", ("outcome", "delivered"))
                as u64,
            failures: text
                .lines()
                .filter(|l| l.starts_with("waymark_trigger_failures_total"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>() as u64,
        })
    }

    async fn healthy(&self) -> bool {
        self.admin.health().await.is_ok()
    }

    /// Whether `customer` has an enrollment (committed: the customer view reads the store).
    async fn enrolled(&self, customer: &str) -> Result<bool> {
        match self.tenant.customer(customer).await {
            Ok(view) => Ok(!view.enrollments.is_empty()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// When `customer`'s birthday timer is due, if they have one.
    async fn birthday_due(&self, customer: &str) -> Result<Option<i64>> {
        let view = self.tenant.customer(customer).await?;
        Ok(view
            .enrollments
            .first()
            .and_then(|e| e.timer("birthday"))
            .map(|t| t.due))
    }

    /// Moves the manual clock; returns when the server answered.
    async fn advance(&self, by_ms: i64) -> Result<()> {
        self.admin.advance_clock(by_ms).await?;
        Ok(())
    }

    /// Polls the counters every `period` until `done`; fails after `timeout`.
    async fn wait_for(
        &self,
        what: &str,
        period: Duration,
        timeout: Duration,
        done: impl Fn(&Counters) -> bool,
    ) -> Result<(Instant, Counters)> {
        let start = Instant::now();
        loop {
            let counters = self.counters().await?;
            if done(&counters) {
                return Ok((Instant::now(), counters));
            }
            if start.elapsed() > timeout {
                bail!("waited {timeout:?} for {what}; the counters say {counters:?}");
            }
            tokio::time::sleep(period).await;
        }
    }
}

/// The `/metrics` counters the bench watches (they restart from 0 with the process).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// Decisions on `entered` triggers: enrollments.
    entered: u64,
    timer: u64,
    /// Delivery reports decided.
    delivery: u64,
    /// Deliveries the sink acknowledged.
    delivered: u64,
    failures: u64,
}

/// Which events a batch holds: customers `<prefix><i>`, one event each (its id the customer's),
/// for `i` in a range.
#[derive(Clone, Copy)]
enum Kind {
    /// `signed_up`: the onboarding journey's entry.
    Signup,
    /// `identify` with a `birthday` (spread over February to October, months away from any date
    /// the bench runs in November) and a `timezone`: the birthday journey's entry.
    Identify,
}

/// A JSON array of events, as `POST /v1/events` takes it.
fn batch(name: &str, events: impl Iterator<Item = (String, String, String)>) -> Vec<u8> {
    let mut body = String::from("[");
    for (i, (id, customer, properties)) in events.enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"id":"{id}","customer":"{customer}","name":"{name}","properties":{properties}}}"#
        );
    }
    body.push(']');
    body.into_bytes()
}

/// The events of `kind` for customers `<prefix><i>`, `i` in `range`.
fn customers(kind: Kind, prefix: &str, range: std::ops::Range<usize>) -> Vec<u8> {
    let ids = range.map(|i| (i, format!("{prefix}{i}")));
    match kind {
        Kind::Signup => batch(
            "signed_up",
            ids.map(|(_, c)| (c.clone(), c, r#"{"plan":"trial","source":"bench"}"#.into())),
        ),
        Kind::Identify => batch(
            "identify",
            ids.map(|(i, c)| {
                let traits = format!(
                    r#"{{"birthday":"{:02}-{:02}","timezone":"{}","email":"{c}@example.com"}}"#,
                    2 + i % 9,
                    1 + i / 9 % 28,
                    ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"][i % 4]
                );
                (c.clone(), c, traits)
            }),
        ),
    }
}

/// Posts `bodies` from `clients` concurrent clients (client `c` posts bodies `c`, `c +
/// clients`, ...); returns each request's latency.
async fn post_all(client: &Client, bodies: Vec<Vec<u8>>, clients: usize) -> Result<Vec<Duration>> {
    let mut lanes: Vec<Vec<Vec<u8>>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, body) in bodies.into_iter().enumerate() {
        lanes[i % clients].push(body);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for lane in lanes {
        let client = client.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(lane.len());
            for body in lane {
                let sent = Instant::now();
                client.post(body).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(lane) = tasks.join_next().await {
        latencies.extend(lane??);
    }
    Ok(latencies)
}

/// Posts the events of `kind` for customers `<prefix><i>`, `i` in `range`, in batches of
/// `batch_size` from `clients` concurrent clients, building each body just before it is sent (a
/// million events would not fit in memory as bodies at once).
async fn post_customers(
    client: &Client,
    kind: Kind,
    prefix: &str,
    range: std::ops::Range<usize>,
    batch_size: usize,
    clients: usize,
) -> Result<()> {
    let batches: Vec<std::ops::Range<usize>> = range
        .clone()
        .step_by(batch_size)
        .map(|start| start..(start + batch_size).min(range.end))
        .collect();
    let batches = Arc::new(batches);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..clients {
        let (client, batches, prefix) = (client.clone(), batches.clone(), prefix.to_string());
        tasks.spawn(async move {
            for b in batches.iter().skip(lane).step_by(clients) {
                client.post(customers(kind, &prefix, b.clone())).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(lane) = tasks.join_next().await {
        lane??;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The server process, seen from /proc
// ---------------------------------------------------------------------------------------------

/// User plus system CPU time the process has used, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it start with the state (field 3).
    let rest = stat.rsplit_once(')').context("/proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `VmRSS` and `VmHWM` (peak) of the process, in MiB.
fn memory_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("VmRSS value")?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn server_pid(server: &Server) -> Result<u32> {
    server.pid().context("the server is not running")
}

/// Waits until the server has been (nearly) idle for half a second: under 5% of a CPU. This is
/// how the bench knows background work (draining the inbox, deliveries) is over when no counter
/// says so.
async fn wait_idle(pid: u32, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let window = Duration::from_millis(500);
    loop {
        let before = cpu_seconds(pid)?;
        tokio::time::sleep(window).await;
        let used = cpu_seconds(pid)? - before;
        if used < 0.05 * window.as_secs_f64() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("the server was still busy after {timeout:?}");
        }
    }
}

/// Bytes under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// 1. Ingest
// ---------------------------------------------------------------------------------------------

struct IngestRow {
    batch: usize,
    clients: usize,
    events: usize,
    seconds: f64,
    /// Mean JSON bytes per event in the request bodies.
    event_bytes: f64,
    latency_p50: Duration,
    latency_p99: Duration,
    /// Server CPU seconds while posting.
    server_cpu: f64,
}

impl Bench {
    /// A tenant with no journey: every event is still made durable (log, id index, inbox) and
    /// then drained by the shard workers (a customer record each), but nothing decides.
    async fn ingest(&self, plan: &Plan) -> Result<Vec<IngestRow>> {
        eprintln!("== ingest");
        let server = self.server("ingest", Clock::System).await?;
        let tenant = server.api().create_tenant("ingest").await;
        let client = Client::new(&server, &tenant)?;
        let pid = server_pid(&server)?;
        let mut rows = Vec::new();
        for &(batch_size, clients) in plan.ingest_configs {
            let prefix = format!("b{batch_size}c{clients}");
            // Five events per customer: a product reports more than signups.
            let bodies: Vec<Vec<u8>> = (0..plan.ingest_events)
                .step_by(batch_size)
                .map(|start| {
                    batch(
                        "page_viewed",
                        (start..(start + batch_size).min(plan.ingest_events)).map(|i| {
                            (
                                format!("{prefix}-e{i}"),
                                format!("{prefix}-c{}", i / 5),
                                format!(r#"{{"path":"/docs/{}","referrer":"bench"}}"#, i % 97),
                            )
                        }),
                    )
                })
                .collect();
            let event_bytes =
                bodies.iter().map(Vec::len).sum::<usize>() as f64 / plan.ingest_events as f64;
            let cpu = cpu_seconds(pid)?;
            let start = Instant::now();
            let mut latencies = post_all(&client, bodies, clients).await?;
            let seconds = start.elapsed().as_secs_f64();
            let server_cpu = cpu_seconds(pid)? - cpu;
            latencies.sort();
            let row = IngestRow {
                batch: batch_size,
                clients,
                events: plan.ingest_events,
                seconds,
                event_bytes,
                latency_p50: percentile(&latencies, 0.50),
                latency_p99: percentile(&latencies, 0.99),
                server_cpu,
            };
            eprintln!(
                "   batch {batch_size} x {clients} clients: {:.0} events/s (p50 {:?}, p99 {:?})",
                row.events as f64 / seconds,
                row.latency_p50,
                row.latency_p99
            );
            rows.push(row);
            // The next configuration starts once the workers have drained this one.
            wait_idle(pid, Duration::from_secs(600)).await?;
        }
        discard(server);
        Ok(rows)
    }
}

fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------------------------
// 2. Enrollments
// ---------------------------------------------------------------------------------------------

struct EnrollRun {
    n: usize,
    batch: usize,
    clients: usize,
    /// From the first request to the last acknowledgement.
    ingested: f64,
    /// From the first request to `n` entered decisions.
    enrolled: f64,
    /// ... to `n` welcomes delivered and `n` delivery reports decided.
    settled: f64,
    /// Welcomes delivered by the time every signup was enrolled.
    delivered_when_enrolled: u64,
    server_cpu: f64,
    failures: u64,
}

impl Bench {
    /// Signups for distinct customers into the onboarding journey: each one is ingested, routed,
    /// decided (welcome + a 3-day nudge timer) and committed; the welcome is then delivered to
    /// a loopback sink and its report decided too.
    async fn enrollments(&self, plan: &Plan) -> Result<EnrollRun> {
        eprintln!("== enrollments");
        let sink = Sink::quiet();
        let server = self.server("enroll", Clock::System).await?;
        let tenant = tenant(&server, Some(&sink), "enroll", ONBOARDING).await?;
        let client = Client::new(&server, &tenant)?;
        let pid = server_pid(&server)?;
        let (n, batch, clients) = (plan.enrollments, 1000, 4);

        let cpu = cpu_seconds(pid)?;
        let start = Instant::now();
        let poster = {
            let client = client.clone();
            tokio::spawn(async move {
                post_customers(&client, Kind::Signup, "u", 0..n, batch, clients).await?;
                anyhow::Ok(Instant::now())
            })
        };
        let target = n as u64;
        let (enrolled_at, at_enrolled) = client
            .wait_for(
                "every signup enrolled",
                Duration::from_millis(20),
                Duration::from_secs(1800),
                |c| c.entered >= target,
            )
            .await?;
        let ingested = poster.await??;
        let (settled_at, counters) = client
            .wait_for(
                "every welcome delivered and reported",
                Duration::from_millis(20),
                Duration::from_secs(1800),
                |c| c.delivered >= target && c.delivery >= target,
            )
            .await?;
        let server_cpu = cpu_seconds(pid)? - cpu;
        let run = EnrollRun {
            n,
            batch,
            clients,
            ingested: (ingested - start).as_secs_f64(),
            enrolled: (enrolled_at - start).as_secs_f64(),
            settled: (settled_at - start).as_secs_f64(),
            delivered_when_enrolled: at_enrolled.delivered,
            server_cpu,
            failures: counters.failures,
        };
        eprintln!(
            "   {n} enrollments in {:.1} s ({:.0}/s); settled in {:.1} s; server CPU {:.1} s",
            run.enrolled,
            n as f64 / run.enrolled,
            run.settled,
            run.server_cpu
        );
        discard(server);
        Ok(run)
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Timer lag
// ---------------------------------------------------------------------------------------------

/// One rate at which timers come due: `steps` clock steps of `step` timers each.
#[derive(Clone, Copy)]
struct TimerPlan {
    rate: f64,
    step: usize,
    steps: usize,
}

impl TimerPlan {
    fn timers(&self) -> usize {
        self.step * self.steps
    }

    /// Wall time between two steps of the clock.
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.step as f64 / self.rate)
    }
}

struct TimerRun {
    plan: TimerPlan,
    /// Timers that came due per second, as achieved.
    due_rate: f64,
    /// Timers processed per second, from the first coming due to the last processed.
    processed_rate: f64,
    lag_p50: Duration,
    lag_p90: Duration,
    lag_p99: Duration,
    lag_max: Duration,
    /// The mean interval between `/metrics` samples: the resolution of every lag.
    poll: Duration,
    /// Server CPU seconds while the timers fired.
    server_cpu: f64,
}

impl Bench {
    /// Ledger enrollments on a manual clock, entering in groups, one group per clock
    /// millisecond, so that each step of the clock makes one group of timers due. Then, for each
    /// rate, the clock is stepped at the wall-clock intervals that make that many timers due per
    /// second, while `/metrics` is polled for the timer triggers processed.
    async fn timers(&self, plan: &Plan) -> Result<Vec<TimerRun>> {
        eprintln!("== timers");
        let sink = Sink::quiet();
        let server = self.server("timers", Clock::Manual).await?;
        let tenant = tenant(&server, Some(&sink), "timers", LEDGER).await?;
        let client = Client::new(&server, &tenant)?;
        let pid = server_pid(&server)?;
        let groups: Vec<usize> = plan
            .timer_runs
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.step, r.steps))
            .collect();
        let total: u64 = groups.iter().sum::<usize>() as u64;

        // Group k enters at clock T0 + k ms, so its timers are due at T0 + 1 h + k ms.
        let setup = Instant::now();
        let mut entered = 0;
        for (k, &size) in groups.iter().enumerate() {
            let body = batch(
                "tick",
                (0..size).map(|i| (format!("t{k}-{i}"), format!("t{k}-{i}"), "{}".into())),
            );
            client.post(body).await?;
            entered += size as u64;
            client
                .wait_for(
                    "a group of ticks enrolled",
                    Duration::from_millis(2),
                    Duration::from_secs(300),
                    |c| c.entered >= entered,
                )
                .await?;
            client.advance(1).await?;
        }
        // Now at T0 + groups ms: stop 1 ms short of the first timer, and let the acks go out.
        client.advance(HOUR_MS - groups.len() as i64 - 1).await?;
        let (_, before) = client
            .wait_for(
                "every ack delivered and reported",
                Duration::from_millis(50),
                Duration::from_secs(1800),
                |c| c.delivered >= total && c.delivery >= total,
            )
            .await?;
        ensure!(before.timer == 0, "timers fired early: {before:?}");
        wait_idle(pid, Duration::from_secs(600)).await?;
        eprintln!(
            "   {total} timers set up in {:.0} s",
            setup.elapsed().as_secs_f64()
        );

        let mut runs = Vec::new();
        let mut fired = 0;
        for &timer_plan in plan.timer_runs {
            let run = fire_timers(&client, pid, timer_plan, fired).await?;
            fired += timer_plan.timers() as u64;
            eprintln!(
                "   {} timers due at {:.0}/s: processed at {:.0}/s, lag p50 {:?}, p99 {:?}, \
                 max {:?} (poll every {:?})",
                timer_plan.timers(),
                run.due_rate,
                run.processed_rate,
                run.lag_p50,
                run.lag_p99,
                run.lag_max,
                run.poll
            );
            runs.push(run);
            wait_idle(pid, Duration::from_secs(600)).await?;
        }
        discard(server);
        Ok(runs)
    }
}

/// Steps the clock `plan.steps` times, `plan.interval()` apart, and measures each timer's lag;
/// `fired` timers were processed before.
async fn fire_timers(client: &Client, pid: u32, plan: TimerPlan, fired: u64) -> Result<TimerRun> {
    let total = fired + plan.timers() as u64;
    // The poller records (when the answer arrived, timer triggers processed so far).
    let poller = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut samples: Vec<(Instant, u64)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(900);
            loop {
                let counters = client.counters().await?;
                samples.push((Instant::now(), counters.timer));
                if counters.timer >= total {
                    return anyhow::Ok(samples);
                }
                if Instant::now() > deadline {
                    bail!("timers processed: {} of {total}", counters.timer);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let cpu = cpu_seconds(pid)?;
    // Each step is its own request, sent on schedule without waiting for the previous answer
    // (the server persists the clock before answering, which may take longer than a step).
    let start = tokio::time::Instant::now();
    let mut steps = tokio::task::JoinSet::new();
    for k in 0..plan.steps {
        tokio::time::sleep_until(start + plan.interval() * k as u32).await;
        let client = client.clone();
        steps.spawn(async move {
            let sent = Instant::now();
            client.advance(1).await.map(|()| sent)
        });
    }
    let mut due = Vec::with_capacity(plan.steps);
    while let Some(sent) = steps.join_next().await {
        due.push(sent??);
    }
    // Steps add up whatever order they arrive in: the clock reaches the k-th group's due time
    // when k+1 steps have arrived, and the last of those was sent no earlier than the (k+1)-th
    // sending time. Taking that as the due instant can only overstate a lag, by a request's
    // transit: the server moves its clock (and wakes the scheduler) as it reads the request.
    due.sort();
    let samples = poller.await??;
    let server_cpu = cpu_seconds(pid)? - cpu;

    // The j-th timer processed is matched with the j-th timer due. Timers are queued in due
    // order and each shard processes in order, so the match is exact up to reordering across
    // shards; either way at least j+1 timers were due when the j-th was processed, so no lag
    // comes out negative.
    let mut lags = Vec::with_capacity(plan.timers());
    for j in 0..plan.timers() as u64 {
        let at = samples.partition_point(|s| s.1 < fired + j + 1);
        let processed = samples[at].0;
        lags.push(processed.saturating_duration_since(due[j as usize / plan.step]));
    }
    lags.sort();
    let first = due[0];
    let last_due = due[due.len() - 1];
    let last_processed = samples[samples.len() - 1].0;
    let span = (last_due - first) + plan.interval();
    let polls = samples.len().max(2) as u32 - 1;
    Ok(TimerRun {
        plan,
        due_rate: plan.timers() as f64 / span.as_secs_f64(),
        processed_rate: plan.timers() as f64 / (last_processed - first).as_secs_f64(),
        lag_p50: percentile(&lags, 0.50),
        lag_p90: percentile(&lags, 0.90),
        lag_p99: percentile(&lags, 0.99),
        lag_max: percentile(&lags, 1.0),
        poll: (last_processed - samples[0].0) / polls,
        server_cpu,
    })
}

// ---------------------------------------------------------------------------------------------
// 4 and 5. Dormant enrollments: recovery and memory
// ---------------------------------------------------------------------------------------------

struct Checkpoint {
    /// Enrollments built (each restart adds a customer of its own besides).
    enrollments: usize,
    /// Seconds to build this increment (post, enroll, deliver, settle), and how many it added.
    build_seconds: f64,
    added: usize,
    /// Memory of the process that built them, once idle.
    rss_live: f64,
    hwm_live: f64,
    disk: u64,
    /// After `kill -9`: process start to the listening line, to `/healthz`, and to the first
    /// new event's enrollment committed.
    listening: f64,
    healthy: f64,
    first_event: f64,
    /// Memory of the restarted process, once it processed that event and went idle.
    rss_restarted: f64,
    /// The same after a second `kill -9` right then: sled replays its log from the snapshot it
    /// wrote when it last started, so this restart has almost nothing to replay.
    first_event_again: f64,
    /// `GET /v1/journeys/birthday/report`, median of five, after the restarts.
    report: Option<Duration>,
}

impl Bench {
    /// Birthday customers (`examples/birthday`): identified, enrolled, waiting months for their
    /// birthday timer — dormant, and nothing is sent on the way in. Built up to each checkpoint;
    /// at each, the memory of the live process, then `kill -9` and a restart.
    async fn dormant(&self, plan: &Plan) -> Result<Vec<Checkpoint>> {
        eprintln!("== dormant enrollments");
        let mut server = self.server("dormant", Clock::System).await?;
        let tenant = tenant(&server, None, "dormant", BIRTHDAY).await?;
        let mut client = Client::new(&server, &tenant)?;
        let mut checkpoints = Vec::new();
        let mut built = 0;
        let mut probes = 0;
        for &target in plan.checkpoints {
            let pid = server_pid(&server)?;
            let start = Instant::now();
            let added = target.saturating_sub(built);
            if added > 0 {
                let want = client.counters().await?.entered + added as u64;
                let poster = {
                    let client = client.clone();
                    tokio::spawn(async move {
                        post_customers(&client, Kind::Identify, "d", built..target, 1000, 4).await
                    })
                };
                client
                    .wait_for(
                        "the dormant enrollments",
                        Duration::from_millis(500),
                        Duration::from_secs(3600),
                        |c| c.entered >= want,
                    )
                    .await?;
                poster.await??;
                built = target;
                let sample = format!("d{}", target - 1);
                ensure!(
                    client.birthday_due(&sample).await?.is_some(),
                    "{sample} is not waiting on a birthday timer"
                );
            }
            wait_idle(pid, Duration::from_secs(900)).await?;
            let build_seconds = start.elapsed().as_secs_f64();
            let (rss_live, hwm_live) = memory_mib(pid)?;
            let disk = disk_bytes(&server.data_dir().join("db"));
            eprintln!(
                "   {} enrollments (+{added} in {build_seconds:.0} s): RSS {rss_live:.0} MiB \
                 (peak {hwm_live:.0}), db {:.0} MiB",
                built + probes,
                disk as f64 / (1 << 20) as f64
            );

            // kill -9 while idle, then time the restart from the process's start.
            probes += 1;
            let first = crash_and_restart(&mut server, &mut client, probes).await?;
            let pid = server_pid(&server)?;
            wait_idle(pid, Duration::from_secs(120)).await?;
            let (rss_restarted, _) = memory_mib(pid)?;
            probes += 1;
            let again = crash_and_restart(&mut server, &mut client, probes).await?;
            wait_idle(server_pid(&server)?, Duration::from_secs(120)).await?;
            let Restart {
                listening,
                healthy,
                first_event,
            } = first;
            let first_event_again = again.first_event;
            let mut report_times = Vec::new();
            for _ in 0..5 {
                let at = Instant::now();
                let report = client.tenant.report(BIRTHDAY).await?;
                report_times.push(at.elapsed());
                ensure!(
                    report.report.overall.entered as usize >= built,
                    "the report counts {} enrollments, not {built}",
                    report.report.overall.entered
                );
            }
            report_times.sort();
            let report = report_times.get(2).copied();
            eprintln!(
                "   report of {built} enrollments: {}",
                report.map_or("-".into(), ms)
            );
            eprintln!(
                "   restart: listening {listening:.2} s, healthy {healthy:.2} s, first event \
                 {first_event:.2} s; RSS then {rss_restarted:.0} MiB; again: first event \
                 {first_event_again:.2} s"
            );
            checkpoints.push(Checkpoint {
                enrollments: built,
                build_seconds,
                added,
                rss_live,
                hwm_live,
                disk,
                listening,
                healthy,
                first_event,
                rss_restarted,
                first_event_again,
                report,
            });
        }
        discard(server);
        Ok(checkpoints)
    }
}

/// Seconds from a restart's spawn to each step of coming back.
struct Restart {
    listening: f64,
    healthy: f64,
    first_event: f64,
}

/// `kill -9`, a new process on the same data, and a new customer `probe<probe>` posted once it
/// answers `/healthz`, until that customer's enrollment is committed.
async fn crash_and_restart(
    server: &mut Server,
    client: &mut Client,
    probe: usize,
) -> Result<Restart> {
    server.kill();
    let restart = Instant::now();
    server.restart().await;
    let listening = restart.elapsed().as_secs_f64();
    client.follow(server);
    while !client.healthy().await {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let healthy = restart.elapsed().as_secs_f64();
    client
        .post(customers(Kind::Identify, "probe", probe..probe + 1))
        .await?;
    let customer = format!("probe{probe}");
    while !client.enrolled(&customer).await? {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Restart {
        listening,
        healthy,
        first_event: restart.elapsed().as_secs_f64(),
    })
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// `12.3 ms`, or `4.41 s` from a second up.
fn ms(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// `1,000,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn report(plan: &Plan, results: &Results) -> String {
    let Results {
        ingest,
        enroll,
        timers,
        dormant,
        others,
    } = results;
    let mut out = String::new();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB RAM", kib / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "unknown RAM".into());
    let _ = write!(out, "{}", super::machine_and_date());
    let _ = writeln!(
        out,
        "- Memory and disk: {memory}; the data on the root filesystem of the machine (a virtual \
         disk)\n\
         - Server: the release `waymark serve` with its default flags (4 shards, `--cache-mb 128`, \
         `--retry-base-ms 1000`, logging at `info` to a file), `--allow-private-network` for the \
         loopback sink; the load generator (`cargo xtask`, a debug build) and the sink run on the \
         same CPUs\n\
         - CPU taken by anything else on the machine (other processes, the hypervisor's steal), as \
         a share of both CPUs, per phase: {} ({}){}",
        others
            .iter()
            .map(|(phase, share)| format!("{phase} {:.0}%", share * 100.0))
            .collect::<Vec<_>>()
            .join(", "),
        if others.iter().all(|(_, share)| *share < 0.05) {
            "near 0: the bench had the machine to itself"
        } else {
            "**not** near 0: other work shared the CPUs, so rates are lower and latencies higher \
             than this code gives on a quiet machine; CPU per unit of work is the fairer figure"
        },
        if plan.quick {
            "\n- **Quick mode: smaller runs, not for the record**"
        } else {
            ""
        }
    );

    let best_ingest = ingest
        .iter()
        .map(|r| r.events as f64 / r.seconds)
        .fold(0.0, f64::max);
    let enroll_rate = enroll.n as f64 / enroll.enrolled;
    let last = dormant.last();
    let first = dormant.first();
    let yes_no = |met: bool| if met { "met" } else { "**missed**" };
    let _ = writeln!(
        out,
        "\n### Against the aims\n\nThe aims of issue 10 (\"Throughput\"), each beside what this \
         run measured.\n"
    );
    let _ = writeln!(out, "| aim | measured | |\n| --- | --- | --- |");
    let _ = writeln!(
        out,
        "| ≥ 40,000 events/s acknowledged (batches of 1,000, 4 clients), flushed before the \
         answer | {best_ingest:.0} events/s at best (§1) | {} |",
        yes_no(best_ingest >= 40_000.0)
    );
    let _ = writeln!(
        out,
        "| ≥ 20,000 onboarding enrollments/s decided and committed end to end | \
         {enroll_rate:.0}/s (§2) | {} |",
        yes_no(enroll_rate >= 20_000.0)
    );
    let after_ack = enroll.settled - enroll.ingested;
    let _ = writeln!(
        out,
        "| all {} welcomes delivered and their reports decided within 5 s of the last \
         acknowledgement | {after_ack:.1} s after it ({:.0} welcomes/s end to end) (§2) | {} |",
        thousands(enroll.n),
        enroll.n as f64 / enroll.settled,
        yes_no(after_ack <= 5.0)
    );
    let cpu_per = enroll.server_cpu / enroll.n as f64 * 1e6;
    let _ = writeln!(
        out,
        "| ≤ 150 µs server CPU per enrollment, welcome delivered and its report decided \
         included | {cpu_per:.0} µs (§2) | {} |",
        yes_no(cpu_per <= 150.0)
    );
    if let Some(aim) = timers.first() {
        // The capacity: the fastest any run was processed at (the last run offers more than
        // the aim's rate, so its rate is the server's).
        let capacity = timers
            .iter()
            .map(|t| (t.processed_rate, t.due_rate))
            .fold((0.0, 0.0), |best, t| if t.0 > best.0 { t } else { best });
        let others: String = timers[1..]
            .iter()
            .map(|t| format!("; p99 {} at {:.0}/s", ms(t.lag_p99), t.due_rate))
            .collect();
        let _ = writeln!(
            out,
            "| timers: ≥ 20,000/s processed; lag p99 ≤ 20 ms with 10,000/s coming due | \
             processed at up to {:.0}/s (with {:.0}/s due); p99 {} at {:.0}/s due{others} (§3) | {} |",
            capacity.0,
            capacity.1,
            ms(aim.lag_p99),
            aim.due_rate,
            yes_no(
                aim.lag_p99 <= Duration::from_millis(20)
                    && aim.due_rate >= 9_000.0
                    && capacity.0 >= 20_000.0
            )
        );
    }
    if let Some(last) = last {
        let _ = writeln!(
            out,
            "| {} dormant enrollments: RSS after a restart ≤ 100 MiB; restart to the first new \
             event processed ≤ 2 s | {:.0} MiB; {:.2} s (§4, §5) | {} |",
            thousands(last.enrollments),
            last.rss_restarted,
            last.first_event,
            yes_no(last.rss_restarted <= 100.0 && last.first_event <= 2.0)
        );
        if let Some(report) = last.report {
            let _ = writeln!(
                out,
                "| the report of a journey with {} enrollments in ≤ 50 ms | {} (§5) | {} |",
                thousands(last.enrollments),
                ms(report),
                yes_no(report <= Duration::from_millis(50))
            );
        }
    }
    let _ = first;

    // 1. Ingest
    let _ = writeln!(out, "\n### 1. Ingest over loopback HTTP\n");
    let _ = writeln!(
        out,
        "A tenant with no journey posts {} `page_viewed` events (five per customer, {:.0} bytes of \
         JSON each) per configuration, in batches from concurrent clients, each client sending \
         its next batch when the previous one is answered. Rate = events / wall time from the \
         first request to the last `202` — a `202` means the batch is in the event log and the \
         inbox, flushed to disk. The shard workers drain the inbox meanwhile (each event still \
         costs a customer lookup and a commit, but no `decide`); the next configuration starts \
         once the server is idle again. Server CPU is the server process's user + system time \
         during the posting.\n",
        thousands(plan.ingest_events),
        ingest.first().map_or(0.0, |r| r.event_bytes)
    );
    let _ = writeln!(
        out,
        "| batch | clients | events/s acknowledged | batch latency p50 | p99 | server CPU per event |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in ingest {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {:.0} µs |",
            r.batch,
            r.clients,
            r.events as f64 / r.seconds,
            ms(r.latency_p50),
            ms(r.latency_p99),
            r.server_cpu / r.events as f64 * 1e6
        );
    }

    // 2. Enrollments
    let _ = writeln!(out, "\n### 2. Enrollments end to end\n");
    let _ = writeln!(
        out,
        "{} `signed_up` events for as many distinct customers, in batches of {} from {} clients, \
         into the onboarding journey (`examples/onboarding`): each is ingested, routed, decided \
         (a `welcome` send and a 3-day `nudge` timer) and committed; the welcome is then \
         delivered to a loopback sink through the webhook channel and its delivery report \
         decided too. Completion is read from `GET /metrics` every 20 ms: \
         `waymark_triggers_total{{kind=\"entered\"}}` counts an enrollment when its `decide` \
         starts, and its commit follows within the shard's batch.\n",
        thousands(enroll.n),
        enroll.batch,
        enroll.clients
    );
    let _ = writeln!(
        out,
        "| | seconds | per second |\n| --- | ---: | ---: |\n\
         | all signups acknowledged (`202`) | {:.1} | {:.0} |\n\
         | all enrolled (`entered` decided) | {:.1} | **{:.0}** |\n\
         | all welcomes delivered and their reports decided | {:.1} | {:.0} |\n",
        enroll.ingested,
        enroll.n as f64 / enroll.ingested,
        enroll.enrolled,
        enroll_rate,
        enroll.settled,
        enroll.n as f64 / enroll.settled,
    );
    let _ = writeln!(
        out,
        "When the last signup was enrolled, {} of the {} welcomes had been delivered. Server \
         CPU until settled: {:.1} s, {:.0} µs per enrollment (two decisions, one delivery, their \
         commits and flushes); failed triggers: {}.",
        thousands(enroll.delivered_when_enrolled as usize),
        thousands(enroll.n),
        enroll.server_cpu,
        enroll.server_cpu / enroll.n as f64 * 1e6,
        enroll.failures
    );

    // 3. Timers
    let _ = writeln!(out, "\n### 3. Timer firing lag\n");
    let _ = writeln!(
        out,
        "Ledger enrollments (`tests/guests/ledger`), each holding one timer due an hour after its \
         entry, on the manual clock: customers enter in groups, one group per clock millisecond \
         (each group is enrolled before the clock moves on), so each millisecond of the clock \
         holds one group's timers. After the setup the clock is stopped 1 ms short of the first \
         timer, the acks delivered and the server left to go idle. Then, for each rate, the \
         clock is stepped 1 ms at a time by `POST /v1/admin/clock/advance`, each step sent on \
         schedule without waiting for the previous answer, at the interval that makes that many \
         timers due per second. A timer's *due* instant is when the step that reached its due \
         time was sent (the server moves its clock and wakes the scheduler as it reads the \
         request, before it persists the clock and answers). A poller reads \
         `waymark_triggers_total{{kind=\"timer\"}}` from `/metrics` in a loop and timestamps each \
         answer on arrival; the j-th timer processed is matched with the j-th timer due (the \
         scheduler queues timers in due order and shards process in order, so this is exact up \
         to reordering across the 4 shards). *Processed* means its `decide` has started; its \
         commit follows within the shard's batch. Lag = processed − due: the scheduler's \
         wake-up, moving the timer into the inbox, the shard reaching it, deciding — and, \
         whenever timers come due faster than they are processed, the queue ahead of it. Each \
         lag is an upper bound, late by up to one poll interval (shown). With the system clock \
         a timer comes due on the scheduler's sleep instead, spread over each millisecond, \
         rather than a group at once. The last run makes timers due faster than the aim asks \
         them to be processed (50,000/s against ≥ 20,000/s): its processed rate is the server's \
         capacity, and its lag is the queue that builds when timers come due faster than that.\n"
    );
    let _ = writeln!(
        out,
        "| timers | group every | due per second | processed per second | lag p50 | p90 | p99 | max | poll interval | server CPU per timer |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for t in timers {
        let _ = writeln!(
            out,
            "| {} | {} × {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} µs |",
            thousands(t.plan.timers()),
            t.plan.step,
            ms(t.plan.interval()),
            t.due_rate,
            t.processed_rate,
            ms(t.lag_p50),
            ms(t.lag_p90),
            ms(t.lag_p99),
            ms(t.lag_max),
            ms(t.poll),
            t.server_cpu / t.plan.timers() as f64 * 1e6
        );
    }

    // 4 and 5. Dormant enrollments
    let _ = writeln!(
        out,
        "\n### 4. Restart recovery and 5. memory with dormant enrollments\n"
    );
    let _ = writeln!(
        out,
        "Customers of the birthday journey (`examples/birthday`): each posted as one `identify` \
         event with a `birthday` (February to October) and a `timezone`, enrolled, and left \
         waiting months for their `birthday` timer — a customer record, an event, an enrollment \
         and a pending timer each, and nothing sent on the way in. (Onboarding customers waiting \
         on their nudge would do as well, but each costs a welcome delivery first: at §2's \
         settled rate a million take the better part of half an hour here.) Built by posting the \
         events in batches of 1,000 from 4 clients until `waymark_triggers_total{{kind=\"entered\"}}` \
         counts every one (one customer is read back to check their timer is set), then the \
         server is left to go idle; the build rate is events posted to enrollments counted. At \
         each checkpoint: the resident memory (`VmRSS`, and the peak `VmHWM`, from \
         `/proc/<pid>/status`) of the process that built them; then `kill -9`, and a new process \
         on the same data, timed from its spawn to printing its listening line, to `/healthz` \
         answering, and to the first new customer's `identify` posted after that being committed (its \
         enrollment visible in `GET /v1/customers/{{id}}`, polled every 2 ms); then that \
         process's `VmRSS` once idle; then `kill -9` once more and the time to a new customer's \
         enrollment again. sled replays at start the log written since its last start, so the \
         first restart replays everything the building process wrote and the second almost \
         nothing. Each restart's new customer adds one enrollment (not counted in the first \
         column). *Report*: `GET /v1/journeys/birthday/report` over loopback HTTP, the median of \
         five, after the restarts (the report counts every enrollment built).\n"
    );
    let _ = writeln!(
        out,
        "| enrollments | built in | RSS building process (peak) | db on disk | listening | `/healthz` | first event processed | RSS after restart | first event, restarting again | report |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for c in dormant {
        let built = if c.added > 0 {
            format!(
                "{:.0} s ({:.0}/s)",
                c.build_seconds,
                c.added as f64 / c.build_seconds
            )
        } else {
            "–".into()
        };
        let _ = writeln!(
            out,
            "| {} | {built} | {:.0} MiB ({:.0}) | {:.0} MiB | {:.2} s | {:.2} s | {:.2} s | {:.0} MiB | {:.2} s | {} |",
            thousands(c.enrollments),
            c.rss_live,
            c.hwm_live,
            c.disk as f64 / (1 << 20) as f64,
            c.listening,
            c.healthy,
            c.first_event,
            c.rss_restarted,
            c.first_event_again,
            c.report.map_or("–".into(), ms)
        );
    }
    out
}
