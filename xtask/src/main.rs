//! Project chores, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `test` — ensures the `wasm32-wasip2` target, builds the guest components and the host
//!   once, then runs every test of the workspace (cargo-nextest when installed, else
//!   `cargo test`) with `WAYMARK_PREBUILT=1` so the end-to-end harness does not build again.
//! - `demo [--once]` — the same build, then the onboarding journey on a real server with a
//!   manual clock and a loopback sink: sample signups, three days later the nudges, and a
//!   printout of what the sink received and where every customer stands. Without `--once` it
//!   keeps serving (and printing new deliveries) until Ctrl-C.
//! - `bench [--quick] [--no-write]` — ensures the target and builds the guests as `test` does,
//!   runs the sandbox bench (`host/benches/sandbox`) in release, prints its tables and writes
//!   them, with the machine and the date, into the results section of `docs/BENCHMARKS.md`.
//!   Then the durability bench ([`durability`]): the release server end to end — ingest,
//!   enrollments, timer lag, restart and memory with a million dormant enrollments — into its
//!   own section. Then the noisy-neighbour bench ([`neighbours`]): a quiet tenant's latency
//!   alone and while another tenant floods the same server. Then the fuzz targets,
//!   [`fuzz::BENCH_SECONDS`] each (`--fuzz-seconds`). `--only
//!   sandbox|durability|neighbours|fuzz` runs one of them.
//! - `fuzz [--seconds N] [target]` — builds the libFuzzer targets of `fuzz/` with coverage
//!   instrumentation (stable toolchain) and fuzzes each, or `target`, for N seconds ([`fuzz`]).
//!   `test` ends with a [`fuzz::SMOKE_SECONDS`] smoke run of each unless `--no-fuzz`.
//!   `test` also makes (once) `target/segment-venv`, a Python environment with Segment's
//!   official library from PyPI, for the Segment-compatible ingest test (issue 12), and
//!   installs with apt, when missing ([`debian`]), Debian's `chromium` and `chromium-driver`
//!   for the dashboard's browser test (issue 14) and `nats-server` for the JetStream cluster
//!   tests (issue 16).

mod debian; // Dashboard (issue 14), JetStream cluster (issue 16)
mod durability;
mod fuzz;
mod neighbours;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use waymark_tests::{
    count, guest_build_args, EnrollmentStatus, Onboarding, Received, ServerOptions, DAY_MS,
    HOST_BUILD, MINUTE_MS, ONBOARDING,
};

/// The demo's sample events (also readable on their own by a person trying the API).
const DEMO_EVENTS: &str = include_str!("../../tests/data/onboarding-events.json");

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Waymark's project chores"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the guests and the host, then run every test in the workspace.
    Test {
        /// Use `cargo test` even when cargo-nextest is installed.
        #[arg(long)]
        no_nextest: bool,
        /// Skip the fuzzing smoke run after the tests (it is skipped too when a filter is given).
        #[arg(long)]
        no_fuzz: bool,
        /// Seconds per fuzz target of the smoke run.
        #[arg(long, default_value_t = fuzz::SMOKE_SECONDS)]
        fuzz_seconds: u64,
        /// Passed on to the test runner as they are: `cargo xtask test onboarding` filters by
        /// name; under `cargo test` (`--no-nextest`) libtest flags follow a second `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the onboarding journey on a real server against a loopback sink and show the result.
    Demo {
        /// Exit after printing instead of serving until Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Measure the sandbox (`decide` per second: native, warm, fresh) and record the results
    /// in docs/BENCHMARKS.md.
    Bench {
        /// Shorter runs to try the bench out; docs/BENCHMARKS.md is left alone.
        #[arg(long)]
        quick: bool,
        /// Print the results without rewriting docs/BENCHMARKS.md.
        #[arg(long)]
        no_write: bool,
        /// Run only one part: `sandbox`, `durability` (the real server end to end),
        /// `neighbours` (one tenant's flood against another's latency), `fuzz`, `backtest`
        /// (recorded events replayed per second, issue 13), `audience` (the scheduler's work
        /// per tick with 100,000 watched customers, issue 12) or `cluster` (an acknowledgement
        /// through NATS JetStream's replicated log, and failover time, issue 16).
        #[arg(long, value_enum)]
        only: Option<BenchPart>,
        /// Seconds per fuzz target (0: no fuzzing).
        #[arg(long, default_value_t = fuzz::BENCH_SECONDS)]
        fuzz_seconds: u64,
    },
    /// Fuzz the parsers, the engine's apply, the WIT conversions and the store's keys with
    /// libFuzzer (coverage-guided; stable toolchain).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// One target: events, apply, convert or keys (default: all).
        target: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchPart {
    Sandbox,
    Durability,
    Neighbours,
    Fuzz,
    // Backtests (issue 13): recorded events replayed per second.
    Backtest,
    // Audience triggers (issue 12): the scheduler's work per tick with 100,000 watches.
    Audience,
    // Cluster building blocks (issue 16): acknowledgements through the log, failover.
    Cluster,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Test {
            no_nextest,
            no_fuzz,
            fuzz_seconds,
            args,
        } => {
            // The smoke run follows the whole suite only, and only if it passed.
            test(no_nextest, &args)?;
            if !no_fuzz && args.is_empty() && fuzz_seconds > 0 {
                fuzz::run(fuzz_seconds, None)?;
            }
            Ok(())
        }
        Task::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
        Task::Demo { once } => demo(once),
        Task::Bench {
            quick,
            no_write,
            only,
            fuzz_seconds,
        } => {
            let run = |part| only.is_none_or(|only| only == part);
            if run(BenchPart::Sandbox) {
                bench(quick, no_write)?;
            }
            if run(BenchPart::Durability) {
                durability::bench(quick, no_write)?;
            }
            if run(BenchPart::Neighbours) {
                neighbours::bench(quick, no_write)?;
            }
            if run(BenchPart::Fuzz) && fuzz_seconds > 0 {
                fuzz::run(fuzz_seconds, None)?;
            }
            // Backtests (issue 13): a quick run replays 100,000 events instead of 1,000,000;
            // once with the live version as the candidate (one replay), once with a changed
            // version (two replays, side by side).
            if run(BenchPart::Backtest) {
                ensure_wasm_target()?;
                cargo(&guest_build_args(), &[])?;
                let events = if quick { "100000" } else { "1000000" };
                for candidate in ["live", "early"] {
                    cargo(
                        &[
                            "bench",
                            "-p",
                            "waymark-host",
                            "--bench",
                            "backtest",
                            "--",
                            events,
                            candidate,
                        ],
                        &[],
                    )?;
                }
            }
            // Audience triggers (issue 12): ticks with 0, 100 and 1,000 of the watches due.
            if run(BenchPart::Audience) {
                let customers = if quick { "10000" } else { "100000" };
                cargo(
                    &[
                        "bench",
                        "-p",
                        "waymark-host",
                        "--bench",
                        "audience",
                        "--",
                        customers,
                    ],
                    &[],
                )?;
            }
            // Cluster building blocks (issue 16): real nats-server clusters on loopback.
            if run(BenchPart::Cluster) {
                debian::nats_server()?;
                let (appends, trials) = if quick { ("500", "2") } else { ("2000", "5") };
                cargo(
                    &[
                        "bench",
                        "-p",
                        "waymark-host",
                        "--bench",
                        "cluster",
                        "--",
                        appends,
                        trials,
                    ],
                    &[],
                )?;
            }
            Ok(())
        }
    }
}

fn root() -> PathBuf {
    waymark_tests::workspace_root()
}

/// Runs `cargo <args>` at the workspace root, echoing the command.
fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(waymark_tests::cargo())
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The target, then the guests, then the host.
fn build() -> Result<()> {
    ensure_wasm_target()?;
    cargo(&guest_build_args(), &[])?;
    cargo(HOST_BUILD, &[])?;
    Ok(())
}

/// `rustup target add wasm32-wasip2` (a no-op once installed). Without rustup, or when rustup
/// cannot reach its server, the target's standard library may still be installed some other
/// way: then carry on; otherwise stop with the fix.
fn ensure_wasm_target() -> Result<()> {
    const TARGET: &str = "wasm32-wasip2";
    let rustup = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdin(Stdio::null())
        .status();
    match rustup {
        Ok(status) if status.success() => return Ok(()),
        Ok(status) => eprintln!("warning: `rustup target add {TARGET}` failed ({status})"),
        Err(e) => eprintln!("note: rustup is not available ({e})"),
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match libdir {
        Some(dir) if has_std(&dir) => {
            eprintln!(
                "note: the {TARGET} standard library is installed at {}",
                dir.display()
            );
            Ok(())
        }
        _ => bail!(
            "the {TARGET} target is missing: install rustup and run `rustup target add {TARGET}`"
        ),
    }
}

fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}

// ---------------------------------------------------------------------------------------------
// test
// ---------------------------------------------------------------------------------------------

fn test(no_nextest: bool, extra: &[String]) -> Result<()> {
    build()?;
    // Issue 12: Segment's official Python library for `tests/tests/segment.rs`, in a venv
    // under `target/` (kept when it already imports the library).
    match waymark_tests::python::segment_python() {
        Ok(python) => eprintln!("segment-analytics-python ready at {}", python.display()),
        Err(why) => eprintln!("warning: no Python environment for Segment's library: {why}"),
    }
    // Issue 14: headless Chromium and chromedriver for `tests/tests/dashboard.rs`.
    match debian::chromium() {
        Ok(driver) => eprintln!("chromedriver ready at {}", driver.display()),
        Err(why) => eprintln!("warning: no Chromium for the dashboard test: {why}"),
    }
    // Issue 16: real NATS servers for the JetStream cluster tests (`waymark_tests::nats`).
    match debian::nats_server() {
        Ok(server) => eprintln!("nats-server ready at {}", server.display()),
        Err(why) => eprintln!("warning: no nats-server for the cluster tests: {why}"),
    }
    let prebuilt = [("WAYMARK_PREBUILT", "1")];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    if !no_nextest && nextest_available() {
        // nextest runs no doctests: run them first, so nextest's summary closes the output.
        if extra.is_empty() {
            cargo(&["test", "--workspace", "--doc"], &prebuilt)?;
        }
        let mut args = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
        args.extend(extra);
        cargo(&args, &prebuilt)
    } else {
        let mut args = vec!["test", "--workspace", "--no-fail-fast"];
        args.extend(extra);
        cargo(&args, &prebuilt)
    }
}

fn nextest_available() -> bool {
    Command::new(waymark_tests::cargo())
        .args(["nextest", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------------------------
// demo
// ---------------------------------------------------------------------------------------------

fn demo(once: bool) -> Result<()> {
    build()?;
    // Set before any thread exists; the harness must not build again.
    std::env::set_var("WAYMARK_PREBUILT", "1");
    let events: Vec<Value> =
        serde_json::from_str(DEMO_EVENTS).context("tests/data/onboarding-events.json")?;
    let dir = root().join("target").join("demo-data");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot wipe {}", dir.display()))?;
    }
    tokio::runtime::Runtime::new()?.block_on(run_demo(&dir, events, once))
}

fn names<'a>(events: &'a [Value], name: &str) -> BTreeSet<&'a str> {
    events
        .iter()
        .filter(|e| e["name"] == name)
        .filter_map(|e| e["customer"].as_str())
        .collect()
}

async fn run_demo(dir: &Path, events: Vec<Value>, once: bool) -> Result<()> {
    let world = Onboarding::start_with(ServerOptions::in_dir(dir), "demo").await;
    let (api, admin, sink) = (world.api(), world.admin(), &world.sink);
    let t0 = admin.clock_now().await;
    println!(
        "waymark serving at {} (manual clock, data in {})",
        world.server.url(),
        world.server.data_dir().display()
    );
    println!(
        "journey `{ONBOARDING}` v{} uploaded; channel `webhook` delivers to {}/webhook",
        world.journey.version,
        sink.url()
    );

    let signed_up = names(&events, "signed_up");
    let reached_value = names(&events, "first_value");
    let answer = api.post_events(&events).await;
    println!(
        "\nposted {} sample events: {} accepted, {} duplicates",
        events.len(),
        answer.accepted,
        answer.duplicates
    );

    sink.wait_for("a welcome for every signup", |r| {
        signed_up.iter().all(|c| count(r, "welcome", c) > 0)
    })
    .await;
    for customer in &reached_value {
        api.wait_for_enrollment(customer, ONBOARDING, "completed", |e| {
            e.status == EnrollmentStatus::Completed
        })
        .await;
    }
    println!("welcomes delivered to {}", join(&signed_up));

    let now = admin.advance_clock(3 * DAY_MS + MINUTE_MS).await;
    println!(
        "advanced the clock by 3 days and a minute (now t0{})",
        offset(now - t0)
    );
    let stalled: Vec<&str> = signed_up.difference(&reached_value).copied().collect();
    sink.wait_for("a nudge for every customer without first value", |r| {
        stalled.iter().all(|c| count(r, "nudge", c) > 0)
    })
    .await;
    println!("nudges delivered to {}", stalled.join(", "));

    println!("\nThe sink received:");
    println!(
        "  {:<3} {:<10} {:<8} {:<6} idempotency key",
        "#", "template", "customer", "answer"
    );
    let received = sink.requests();
    for (i, r) in received.iter().enumerate() {
        print_delivery(i, r);
    }

    println!("\nEnrollments:");
    println!(
        "  {:<8} {:<14} {:<10} {:<26} pending timers",
        "customer", "journey", "status", "milestones"
    );
    for customer in &signed_up {
        let Some(view) = api.customer(customer).await else {
            println!("  {customer:<8} (unknown to the server)");
            continue;
        };
        for e in &view.enrollments {
            let milestones: Vec<String> = e
                .milestones
                .iter()
                .map(|m| format!("{}@t0{}", m.name, offset(m.at - t0)))
                .collect();
            let timers: Vec<String> = e
                .timers
                .iter()
                .map(|t| format!("{}@t0{}", t.name, offset(t.due - t0)))
                .collect();
            println!(
                "  {:<8} {:<14} {:<10} {:<26} {}",
                customer,
                format!("{} v{}", e.journey, e.version),
                format!("{:?}", e.status).to_lowercase(),
                dash(&milestones),
                dash(&timers),
            );
        }
    }

    if once {
        return Ok(());
    }
    let url = world.server.url();
    println!(
        "\nStill serving; Ctrl-C stops it.\n\
         \n  export WAYMARK_URL={url}\
         \n  export WAYMARK_ADMIN_TOKEN={admin_token}\
         \n  export WAYMARK_API_KEY={api_key}   # tenant `demo`\
         \n\n  curl -s -H \"Authorization: Bearer $WAYMARK_API_KEY\" $WAYMARK_URL/v1/customers/ada\
         \n  curl -s -H \"Authorization: Bearer $WAYMARK_API_KEY\" -H 'Content-Type: application/json' \\\
         \n       -d '{{\"id\":\"try-1\",\"customer\":\"zoe\",\"name\":\"signed_up\"}}' $WAYMARK_URL/v1/events\
         \n  curl -s -H \"Authorization: Bearer $WAYMARK_ADMIN_TOKEN\" -H 'Content-Type: application/json' \\\
         \n       -d '{{\"by_ms\":259200000}}' $WAYMARK_URL/v1/admin/clock/advance\
         \n\nServer log: {log}\nNew deliveries show up below.",
        admin_token = world.server.admin_token(),
        api_key = world.tenant.api_key,
        log = world.server.log_path().display(),
    );
    let mut shown = received.len();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {
                let received = sink.requests();
                for (i, r) in received.iter().enumerate().skip(shown) {
                    print_delivery(i, r);
                }
                shown = received.len();
            }
        }
    }
    println!("\nstopping");
    Ok(())
}

fn print_delivery(i: usize, r: &Received) {
    println!(
        "  {:<3} {:<10} {:<8} {:<6} {}",
        i + 1,
        r.template().unwrap_or("-"),
        r.customer().unwrap_or("-"),
        r.answered,
        r.idempotency_key().unwrap_or("(none)")
    );
}

/// `+3d00h01m` for a span of milliseconds.
fn offset(ms: i64) -> String {
    let minutes = ms / MINUTE_MS;
    format!(
        "+{}d{:02}h{:02}m",
        minutes / (24 * 60),
        minutes / 60 % 24,
        minutes % 60
    )
}

fn join(set: &BTreeSet<&str>) -> String {
    set.iter().copied().collect::<Vec<_>>().join(", ")
}

fn dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// bench
// ---------------------------------------------------------------------------------------------

/// The results section of `docs/BENCHMARKS.md` lies between these; the rest is written by hand.
const RESULTS_BEGIN: &str = "<!-- bench results: begin (written by `cargo xtask bench`) -->";
const RESULTS_END: &str = "<!-- bench results: end -->";

fn bench(quick: bool, no_write: bool) -> Result<()> {
    ensure_wasm_target()?;
    cargo(&guest_build_args(), &[])?;
    let dir = root().join("target").join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let report = dir.join("sandbox.md");
    // A stale report must not pass for this run's if the bench fails before writing.
    let _ = std::fs::remove_file(&report);
    let report_arg = report.to_string_lossy();
    let mut args = vec![
        "bench",
        "-p",
        "waymark-host",
        "--bench",
        "sandbox",
        "--",
        "--markdown",
        &report_arg,
    ];
    if quick {
        args.push("--quick");
    }
    cargo(&args, &[])?;
    let results = std::fs::read_to_string(&report)
        .with_context(|| format!("the bench wrote no report at {}", report.display()))?;
    if quick || no_write {
        eprintln!("docs/BENCHMARKS.md left as is");
        return Ok(());
    }

    let section = format!(
        "{RESULTS_BEGIN}\n\n{}\n{}{RESULTS_END}",
        machine_and_date(),
        results
    );
    let doc_path = root().join("docs").join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let doc = match (doc.find(RESULTS_BEGIN), doc.find(RESULTS_END)) {
        (Some(begin), Some(end)) if begin < end => format!(
            "{}{section}{}",
            &doc[..begin],
            &doc[end + RESULTS_END.len()..]
        ),
        _ => format!("{}\n## Results\n\n{section}\n", doc.trim_end()),
    };
    std::fs::write(&doc_path, doc)
        .with_context(|| format!("cannot write {}", doc_path.display()))?;
    eprintln!("results recorded in {}", doc_path.display());
    Ok(())
}

/// Replaces the section of `docs/BENCHMARKS.md` between `begin` and `end`, or appends one
/// under `## {heading}` (creating the file).
fn write_section(begin: &str, end: &str, heading: &str, report: &str) -> Result<()> {
    let section = format!("{begin}\n\n{report}\n{end}");
    let path = root().join("docs").join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let doc = match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &doc[..b], &doc[e + end.len()..])
        }
        _ if doc.trim().is_empty() => format!("# Benchmarks\n\n## {heading}\n\n{section}\n"),
        _ => format!("{}\n\n## {heading}\n\n{section}\n", doc.trim_end()),
    };
    std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("{heading}: results recorded in {}", path.display());
    Ok(())
}

/// Where and when the figures were measured, as a Markdown list.
fn machine_and_date() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string());
    let rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let wasmtime = std::fs::read_to_string(root().join("Cargo.lock"))
        .ok()
        .and_then(|lock| {
            let at = lock.find("name = \"wasmtime\"\nversion = \"")?;
            let rest = &lock[at + "name = \"wasmtime\"\nversion = \"".len()..];
            rest.split('"').next().map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    format!(
        "- Measured: {} (UTC), `cargo xtask bench`\n\
         - Machine: {cpu}, {cores} logical CPUs, {kernel} ({})\n\
         - Toolchain: {rustc}; wasmtime {wasmtime}; host: release profile, guests: guest profile\n",
        today_utc(),
        std::env::consts::ARCH,
    )
}

/// Today's date in UTC, `YYYY-MM-DD` (the civil-from-days algorithm; no date crate needed).
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0) + 719_468;
    let (era, doe) = (days.div_euclid(146_097), days.rem_euclid(146_097));
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
