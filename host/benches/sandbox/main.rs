//! The sandbox bench: how many `decide` calls per second one core runs for the onboarding
//! journey (`examples/onboarding`), along four paths:
//!
//! - **native** — the journey's `Journey::decide` compiled for the host, on the guest SDK's
//!   plain types: the logic alone, the floor any sandbox is measured against;
//! - **native + SDK glue** — the SDK's export glue natively (JSON text in, WIT-shaped commands
//!   out): everything the guest does inside a component, without wasm;
//! - **wasm, warm** — [`JourneyComponent::decide`] with instances reused
//!   (`SandboxConfig::warm_instances` > 0);
//! - **wasm, fresh** — the same with `warm_instances: 0`, so every call instantiates.
//!
//! Each path runs each fixture (`entered`, `timer`, `event`; see [`fixtures`]) and a `mix`
//! cycling through the three, on one thread (a current-thread runtime for the async paths), for
//! a fixed wall time after a warm-up, several times; the report gives the median and the spread.
//! Then the two wasm paths run on a multi-thread runtime with several tasks per core, and
//! compiling the component is timed.
//!
//! `cargo xtask bench` builds the guest, runs this, and writes the report into
//! `docs/BENCHMARKS.md`; `cargo bench -p waymark-host --bench sandbox -- --markdown FILE` runs it
//! alone. Without `--bench` (as `cargo test --benches` runs it) it only checks that all four
//! paths decide the same, and times nothing: timings belong in the report, never in tests.

mod fixtures;
mod measure;

use fixtures::Fixture;
use measure::{Plan, Rates};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use waymark_example_onboarding::Onboarding;
use waymark_guest::Journey as _;
use waymark_host::model;
use waymark_host::sandbox::{JourneyComponent, Sandbox, SandboxConfig};

type Error = Box<dyn std::error::Error>;

/// The onboarding component, as `cargo xtask bench` (and `cargo xtask test`) build it: the
/// workspace's `guest` profile. `WAYMARK_ONBOARDING_WASM` names another build of it (another
/// profile, to compare).
const ONBOARDING_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/wasm32-wasip2/guest/waymark_example_onboarding.wasm"
);

struct Args {
    /// Measure (cargo bench passes `--bench`); otherwise only check the paths agree.
    bench: bool,
    /// Shorter runs, for trying the bench out; not for recorded figures.
    quick: bool,
    /// Where to write the report as Markdown.
    markdown: Option<PathBuf>,
    /// Measure this path only, on one core (`native`, `glue`, `warm` or `fresh`): for a
    /// profiler, e.g. `perf record -g target/release/deps/sandbox-* --bench --only fresh`.
    only: Option<Path>,
    /// List compiled guest code in `/tmp/perf-<pid>.map` (`SandboxConfig::perf_map`).
    perf_map: bool,
}

impl Args {
    fn parse() -> Result<Args, Error> {
        let mut args = Args {
            bench: false,
            quick: false,
            markdown: None,
            only: None,
            perf_map: false,
        };
        let mut iter = std::env::args().skip(1);
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "--bench" => args.bench = true,
                "--quick" => args.quick = true,
                "--perf-map" => args.perf_map = true,
                "--markdown" => {
                    let path = iter.next().ok_or("--markdown needs a file")?;
                    args.markdown = Some(path.into());
                }
                "--only" => {
                    let name = iter.next().ok_or("--only needs a path")?;
                    let path = Path::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .ok_or_else(|| format!("--only {name}: not native, glue, warm or fresh"))?;
                    args.only = Some(path);
                }
                // What libtest would take (filters, `--nocapture`, ...): nothing to filter here.
                _ => {}
            }
        }
        Ok(args)
    }

    fn plan(&self) -> Plan {
        if self.quick {
            Plan {
                warm_up: Duration::from_millis(100),
                run: Duration::from_millis(150),
                runs: 3,
            }
        } else {
            Plan {
                warm_up: Duration::from_millis(200),
                run: Duration::from_millis(400),
                runs: 7,
            }
        }
    }
}

/// The measured paths, in the report's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Native,
    NativeGlue,
    Warm,
    Fresh,
}

impl Path {
    const ALL: [Path; 4] = [Path::Native, Path::NativeGlue, Path::Warm, Path::Fresh];

    /// As `--only` names it.
    fn name(self) -> &'static str {
        match self {
            Path::Native => "native",
            Path::NativeGlue => "glue",
            Path::Warm => "warm",
            Path::Fresh => "fresh",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Path::Native => "native",
            Path::NativeGlue => "native + SDK glue",
            Path::Warm => "wasm, warm",
            Path::Fresh => "wasm, fresh",
        }
    }
}

/// One path on one fixture (or the mix), on one core.
struct Measurement {
    path: Path,
    fixture: &'static str,
    /// Per second of wall time.
    rates: Rates,
    /// Per second of the measuring thread's CPU time.
    cpu: Rates,
}

/// A wasm path on a multi-thread runtime.
struct Parallel {
    path: Path,
    workers: usize,
    tasks: usize,
    rates: Rates,
}

fn main() -> Result<(), Error> {
    let args = Args::parse()?;
    let wasm = std::env::var_os("WAYMARK_ONBOARDING_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ONBOARDING_WASM));
    let bytes = match std::fs::read(&wasm) {
        Ok(bytes) => bytes,
        Err(e) if !args.bench => {
            eprintln!(
                "sandbox bench skipped: cannot read {} ({e}); `cargo xtask bench` builds it",
                wasm.display()
            );
            return Ok(());
        }
        Err(e) => {
            return Err(format!(
                "cannot read {} ({e}): build the guests first, or run `cargo xtask bench`",
                wasm.display()
            )
            .into())
        }
    };

    let warm_config = SandboxConfig {
        perf_map: args.perf_map,
        ..SandboxConfig::default()
    };
    let fresh_config = SandboxConfig {
        warm_instances: 0,
        ..warm_config.clone()
    };
    if warm_config.warm_instances == 0 {
        return Err("SandboxConfig::default() keeps no warm instances: nothing to compare".into());
    }
    let limits = warm_config.defaults;
    let warm = Sandbox::new(warm_config.clone())?.compile_journey(&bytes)?;
    let fresh = Sandbox::new(fresh_config)?.compile_journey(&bytes)?;
    let fixtures = fixtures::fixtures();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(check_paths_agree(&fixtures, &warm, &fresh, &limits))?;
    if !args.bench {
        println!(
            "sandbox bench: native, native + SDK glue, wasm warm and wasm fresh decide alike on \
             {} fixtures (pass --bench to measure)",
            fixtures.len()
        );
        return Ok(());
    }

    let plan = args.plan();
    let load_before = load_average();
    let mut scenarios = Vec::new();
    let paths = Path::ALL
        .into_iter()
        .filter(|p| args.only.is_none_or(|only| only == *p));
    for path in paths {
        for (name, selected) in selections(&fixtures) {
            let scenario = match path {
                Path::Native => Scenario::Native(
                    selected
                        .iter()
                        .map(|c| fixtures::to_sdk(c))
                        .collect::<Result<_, _>>()?,
                ),
                Path::NativeGlue => {
                    Scenario::Glue(selected.iter().map(|c| fixtures::to_wit(c)).collect())
                }
                Path::Warm => Scenario::Wasm(&warm, selected),
                Path::Fresh => Scenario::Wasm(&fresh, selected),
            };
            scenarios.push((path, name, scenario));
        }
    }
    // Round 0 warms every scenario up; then each round runs every scenario once, so that a burst
    // of noise from a neighbour on this shared machine slows one run of each scenario rather
    // than every run of one.
    let mut rates = vec![(Rates::default(), Rates::default()); scenarios.len()];
    for round in 0..=plan.runs {
        if round == 0 {
            eprintln!("warming up {} scenarios", scenarios.len());
        } else {
            eprintln!("round {round} of {}", plan.runs);
        }
        let budget = if round == 0 { plan.warm_up } else { plan.run };
        for (i, (_, _, scenario)) in scenarios.iter().enumerate() {
            let run = scenario.run(budget, &runtime, &limits);
            if round > 0 {
                rates[i].0 .0.push(run.wall);
                rates[i].1 .0.push(run.cpu);
            }
        }
    }
    drop(runtime);
    let measurements: Vec<Measurement> = scenarios
        .iter()
        .zip(rates)
        .map(|((path, fixture, _), (rates, cpu))| Measurement {
            path: *path,
            fixture,
            rates,
            cpu,
        })
        .collect();
    if args.only.is_some() {
        for m in &measurements {
            println!(
                "{} {}: {} · {} µs; per CPU second {} · {} µs",
                m.path.label(),
                m.fixture,
                per_second(m.rates.median()),
                micros(m.rates.micros()),
                per_second(m.cpu.median()),
                micros(m.cpu.micros())
            );
        }
        return Ok(());
    }

    let parallel = wasm_parallel(plan, [&warm, &fresh], &fixtures, &limits)?;

    eprintln!("timing compile_journey");
    let compile = time_compile(&warm_config, &bytes)?;

    let load = (load_before, load_average());
    let report = report(&Report {
        plan,
        load,
        component_bytes: bytes.len(),
        warm_instances: warm_config.warm_instances,
        measurements: &measurements,
        parallel: &parallel,
        compile,
    });
    println!("{report}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &report)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Each fixture alone, then all of them in turn (`mix`).
fn selections(fixtures: &[Fixture]) -> Vec<(&'static str, Vec<&model::DecisionContext>)> {
    let mut selections: Vec<_> = fixtures
        .iter()
        .map(|f| (f.name, vec![&f.context]))
        .collect();
    selections.push(("mix", fixtures.iter().map(|f| &f.context).collect()));
    selections
}

/// Every path gives the same decision for every fixture, and a reused instance decides as a
/// fresh one does. Otherwise the figures would compare different work.
async fn check_paths_agree(
    fixtures: &[Fixture],
    warm: &JourneyComponent,
    fresh: &JourneyComponent,
    limits: &model::Limits,
) -> Result<(), Error> {
    for fixture in fixtures {
        let name = fixture.name;
        let ctx = &fixture.context;
        let native = {
            let _quiet = Silenced::stderr();
            let sdk = fixtures::to_sdk(ctx)
                .map_err(|e| format!("{name}: the SDK glue refused the context: {e}"))?;
            Onboarding::decide(&sdk).map_err(|e| format!("{name}: native decide failed: {e}"))?
        };
        let native = fixtures::from_sdk(native.into_commands());
        if native.is_empty() {
            return Err(format!("{name}: the journey does nothing with this fixture").into());
        }
        let glue = {
            let _quiet = Silenced::stderr();
            waymark_guest::__export::decide::<Onboarding>(fixtures::to_wit(ctx))
                .map_err(|e| format!("{name}: native SDK glue failed: {e}"))?
        };
        if glue.len() != native.len() {
            return Err(format!("{name}: the SDK glue returned other commands").into());
        }
        for (what, component) in [("warm", warm), ("fresh", fresh)] {
            // Twice: the second call of the warm path runs in a reused instance.
            for attempt in 1..=2 {
                let wasm = component
                    .decide(ctx, fixtures::stats(), limits)
                    .await
                    .map_err(|e| format!("{name}: wasm ({what}) decide failed: {e}"))?;
                if wasm != native {
                    return Err(format!(
                        "{name}: wasm ({what}, call {attempt}) decided {wasm:?}; natively {native:?}"
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// One path on one selection of fixtures, its contexts converted up front.
enum Scenario<'a> {
    Native(Vec<waymark_guest::Context>),
    Glue(Vec<fixtures::wit::Context>),
    Wasm(&'a JourneyComponent, Vec<&'a model::DecisionContext>),
}

impl Scenario<'_> {
    /// Calls per second over `budget`, cycling through the contexts.
    fn run(&self, budget: Duration, runtime: &Runtime, limits: &model::Limits) -> measure::Run {
        match self {
            Scenario::Native(contexts) => {
                let _quiet = Silenced::stderr();
                measure::sync(budget, |i| {
                    let ctx = &contexts[i as usize % contexts.len()];
                    // `decide` takes the context by reference: nothing to rebuild per call.
                    let _ = black_box(Onboarding::decide(black_box(ctx)));
                })
            }
            Scenario::Glue(contexts) => {
                let _quiet = Silenced::stderr();
                measure::sync(budget, |i| {
                    // The glue takes the context by value, as the component's export does: the
                    // clone stands for the lifting the canonical ABI does inside the component.
                    let ctx = contexts[i as usize % contexts.len()].clone();
                    let commands = waymark_guest::__export::decide::<Onboarding>(black_box(ctx));
                    let _ = black_box(commands);
                })
            }
            Scenario::Wasm(component, contexts) => {
                let stats = fixtures::stats();
                runtime.block_on(measure::sequential(budget, async |i| {
                    let ctx = contexts[i as usize % contexts.len()];
                    let commands = component.decide(ctx, stats.clone(), limits).await;
                    black_box(commands.expect("decide succeeded when checked"));
                }))
            }
        }
    }
}

/// The mix on a multi-thread runtime with one worker per CPU and four tasks per worker, each
/// task deciding in a loop until the run's deadline; a run's rate is all calls over its wall
/// time. Warm and fresh alternate, run by run, for the same reason rounds do.
fn wasm_parallel(
    plan: Plan,
    [warm, fresh]: [&JourneyComponent; 2],
    fixtures: &[Fixture],
    limits: &model::Limits,
) -> Result<Vec<Parallel>, Error> {
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let tasks = workers * 4;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let contexts: Arc<Vec<model::DecisionContext>> =
        Arc::new(fixtures.iter().map(|f| f.context.clone()).collect());
    let run = |component: &JourneyComponent, budget: Duration| -> Result<f64, Error> {
        runtime.block_on(async {
            let start = Instant::now();
            let deadline = start + budget;
            let mut handles = Vec::with_capacity(tasks);
            for task in 0..tasks {
                let (component, contexts, limits) = (component.clone(), contexts.clone(), *limits);
                handles.push(tokio::spawn(async move {
                    let stats = fixtures::stats();
                    let mut n = task;
                    while Instant::now() < deadline {
                        for _ in 0..16 {
                            let ctx = &contexts[n % contexts.len()];
                            let commands = component.decide(ctx, stats.clone(), &limits).await;
                            black_box(commands.expect("decide succeeded when checked"));
                            n += 1;
                        }
                    }
                    n - task
                }));
            }
            let mut calls = 0;
            for handle in handles {
                calls += handle.await?;
            }
            Ok(calls as f64 / start.elapsed().as_secs_f64())
        })
    };
    let mut results = [(Path::Warm, warm), (Path::Fresh, fresh)].map(|(path, component)| {
        (
            Parallel {
                path,
                workers,
                tasks,
                rates: Rates::default(),
            },
            component,
        )
    });
    let runs = plan.runs.min(3);
    for round in 0..=runs {
        eprintln!(
            "all cores: round {round} of {runs}{}",
            if round == 0 { " (warm-up)" } else { "" }
        );
        for (parallel, component) in &mut results {
            if round == 0 {
                run(component, plan.warm_up)?;
            } else {
                parallel.rates.0.push(run(component, plan.run * 2)?);
            }
        }
    }
    Ok(results.into_iter().map(|(parallel, _)| parallel).collect())
}

/// Milliseconds to validate and compile the component, median of three (no compile cache).
fn time_compile(config: &SandboxConfig, bytes: &[u8]) -> Result<f64, Error> {
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: None,
        ..config.clone()
    })?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        black_box(sandbox.compile_journey(bytes)?);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// The aims of issue 10 "Throughput", reported against, never asserted: warm `decide` calls per
/// second on one core (the mix), what instantiating adds to a call (fresh − warm, the mix), and
/// the onboarding component's size.
const AIM_WARM_PER_CORE: f64 = 300_000.0;
const AIM_FRESH_MICROS: f64 = 20.0;
const AIM_COMPONENT_KIB: f64 = 400.0;

struct Report<'a> {
    plan: Plan,
    /// The one-minute load average when measuring started and when it ended.
    load: (Option<f64>, Option<f64>),
    component_bytes: usize,
    warm_instances: usize,
    measurements: &'a [Measurement],
    parallel: &'a [Parallel],
    compile: f64,
}

impl Report<'_> {
    fn rates(&self, path: Path, fixture: &str) -> Option<&Rates> {
        self.measurement(path, fixture).map(|m| &m.rates)
    }

    fn cpu(&self, path: Path, fixture: &str) -> Option<&Rates> {
        self.measurement(path, fixture).map(|m| &m.cpu)
    }

    fn measurement(&self, path: Path, fixture: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.path == path && m.fixture == fixture)
    }

    fn fixtures(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for m in self.measurements {
            if !names.contains(&m.fixture) {
                names.push(m.fixture);
            }
        }
        names
    }
}

/// The report as Markdown: headline tables first, every run's spread last.
fn report(r: &Report) -> String {
    let mut out = String::new();
    let plan = r.plan;
    let _ = writeln!(
        out,
        "Each figure is the median of {} runs of {} ms after a {} ms warm-up; the onboarding \
         component is {:.0} KiB; warm runs keep `warm_instances: {}`.\n",
        plan.runs,
        plan.run.as_millis(),
        plan.warm_up.as_millis(),
        r.component_bytes as f64 / 1024.0,
        r.warm_instances,
    );
    if let (Some(before), Some(after)) = r.load {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let _ = writeln!(
            out,
            "The machine is shared: its one-minute load average was {before:.2} when measuring \
             started and {after:.2} when it ended, on {cpus} CPUs. Noise only ever slows a run, \
             so the fastest round is the better estimate of what the code costs undisturbed.\n"
        );
    }

    let _ = writeln!(
        out,
        "**One core** — `decide` calls per second, and µs per call:\n"
    );
    out.push_str("| trigger |");
    for path in Path::ALL {
        let _ = write!(out, " {} |", path.label());
    }
    out.push_str(" warm ÷ native | fresh − warm |\n|---|");
    out.push_str(&"---:|".repeat(Path::ALL.len() + 2));
    out.push('\n');
    for fixture in r.fixtures() {
        let _ = write!(out, "| {fixture} |");
        for path in Path::ALL {
            match r.rates(path, fixture) {
                Some(rates) => {
                    let _ = write!(
                        out,
                        " {} · {} µs |",
                        per_second(rates.median()),
                        micros(rates.micros())
                    );
                }
                None => out.push_str(" – |"),
            }
        }
        match (
            r.rates(Path::Native, fixture),
            r.rates(Path::Warm, fixture),
            r.rates(Path::Fresh, fixture),
        ) {
            (Some(native), Some(warm), Some(fresh)) => {
                let _ = writeln!(
                    out,
                    " {:.1}× | {} µs |",
                    warm.micros() / native.micros(),
                    micros(fresh.micros() - warm.micros())
                );
            }
            _ => out.push_str(" – | – |\n"),
        }
    }
    out.push_str(
        "\n*warm ÷ native*: how many times longer a warm wasm call takes than the native call. \
         *fresh − warm*: what instantiating adds to a call.\n\n",
    );

    let _ = writeln!(
        out,
        "**One core, CPU time** — the same runs rated on the CPU time of the measuring thread \
         rather than the wall clock: what a call costs a core, without the time the thread \
         spent waiting for one on this shared machine. Calls per CPU-second, and CPU µs per \
         call:\n"
    );
    out.push_str("| trigger |");
    for path in Path::ALL {
        let _ = write!(out, " {} |", path.label());
    }
    out.push_str(" fresh − warm |\n|---|");
    out.push_str(&"---:|".repeat(Path::ALL.len() + 1));
    out.push('\n');
    for fixture in r.fixtures() {
        let _ = write!(out, "| {fixture} |");
        for path in Path::ALL {
            match r.cpu(path, fixture) {
                Some(rates) => {
                    let _ = write!(
                        out,
                        " {} · {} µs |",
                        per_second(rates.median()),
                        micros(rates.micros())
                    );
                }
                None => out.push_str(" – |"),
            }
        }
        match (r.cpu(Path::Warm, fixture), r.cpu(Path::Fresh, fixture)) {
            (Some(warm), Some(fresh)) => {
                let _ = writeln!(out, " {} µs |", micros(fresh.micros() - warm.micros()));
            }
            _ => out.push_str(" – |\n"),
        }
    }
    out.push('\n');

    if !r.parallel.is_empty() {
        let _ = writeln!(
            out,
            "**All cores** — the mix on a multi-thread runtime:\n\n\
             | path | workers | tasks | calls/s, all workers | per worker | µs per call per worker |\n\
             |---|---:|---:|---:|---:|---:|"
        );
        for p in r.parallel {
            let total = p.rates.median();
            let per_worker = total / p.workers as f64;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                p.path.label(),
                p.workers,
                p.tasks,
                per_second(total),
                per_second(per_worker),
                micros(1e6 / per_worker)
            );
        }
        out.push('\n');
    }

    let _ = writeln!(
        out,
        "**Compiling** the component (`compile_journey`: validation, Cranelift, linking; no \
         cache): {:.0} ms, median of 3.\n",
        r.compile
    );

    aims(&mut out, r);

    out.push_str(
        "<details><summary>Every measurement: median, slowest and fastest run</summary>\n\n\
         | path | trigger | median calls/s | µs per call | slowest run | fastest run | median per CPU-second |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for m in r.measurements {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.path.label(),
            m.fixture,
            per_second(m.rates.median()),
            micros(m.rates.micros()),
            per_second(m.rates.min()),
            per_second(m.rates.max()),
            per_second(m.cpu.median()),
        );
    }
    for p in r.parallel {
        let _ = writeln!(
            out,
            "| {} ({} workers, {} tasks) | mix | {} | {} | {} | {} | – |",
            p.path.label(),
            p.workers,
            p.tasks,
            per_second(p.rates.median()),
            micros(1e6 / p.rates.median()),
            per_second(p.rates.min()),
            per_second(p.rates.max()),
        );
    }
    out.push_str("\n</details>\n");
    out
}

/// The aims table. The verdict is on CPU time, which is what "per core" means on a machine
/// shared with other work; the wall clock's median and fastest round are given beside it.
fn aims(out: &mut String, r: &Report) {
    let verdict = |met: bool| if met { "met" } else { "**missed**" };
    let _ = writeln!(
        out,
        "**Aims** (issue 10 \"Throughput\"; reported, not asserted), on the mix; the verdict is \
         on CPU time:\n\n\
         | aim | CPU time (median) | wall clock (median) | wall clock (fastest round) | |\n\
         |---|---:|---:|---:|---|"
    );
    if let (Some(warm), Some(warm_cpu)) = (r.rates(Path::Warm, "mix"), r.cpu(Path::Warm, "mix")) {
        let _ = writeln!(
            out,
            "| ≥ {} warm `decide` calls per core | {} | {} | {} | {} |",
            per_second(AIM_WARM_PER_CORE),
            per_second(warm_cpu.median()),
            per_second(warm.median()),
            per_second(warm.max()),
            verdict(warm_cpu.median() >= AIM_WARM_PER_CORE),
        );
    }
    if let (Some(warm), Some(fresh), Some(warm_cpu), Some(fresh_cpu)) = (
        r.rates(Path::Warm, "mix"),
        r.rates(Path::Fresh, "mix"),
        r.cpu(Path::Warm, "mix"),
        r.cpu(Path::Fresh, "mix"),
    ) {
        let instantiation = fresh_cpu.micros() - warm_cpu.micros();
        let _ = writeln!(
            out,
            "| fresh instantiation ≤ {AIM_FRESH_MICROS} µs (fresh − warm) | {} µs | {} µs | {} µs | {} |\n\
             | (fresh instantiation + call) | {} µs | {} µs | {} µs | |",
            micros(instantiation),
            micros(fresh.micros() - warm.micros()),
            micros(1e6 / fresh.max() - 1e6 / warm.max()),
            verdict(instantiation <= AIM_FRESH_MICROS),
            micros(fresh_cpu.micros()),
            micros(fresh.micros()),
            micros(1e6 / fresh.max()),
        );
    }
    let kib = r.component_bytes as f64 / 1024.0;
    let _ = writeln!(
        out,
        "| onboarding component ≤ {AIM_COMPONENT_KIB:.0} KiB | {kib:.0} KiB | | | {} |\n",
        verdict(kib <= AIM_COMPONENT_KIB),
    );
}

/// `1 234 567/s` — whole calls, thin-space thousands, so columns read at a glance.
fn per_second(rate: f64) -> String {
    let digits = format!("{:.0}", rate.max(0.0));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push('\u{2009}');
        }
        grouped.push(c);
    }
    format!("{grouped}/s")
}

/// Two significant decimals below 10 µs, one below 100, none above.
fn micros(us: f64) -> String {
    if us.abs() < 10.0 {
        format!("{us:.2}")
    } else if us.abs() < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// The one-minute load average, where the system says (Linux).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Quiet native logging
// ---------------------------------------------------------------------------------------------

/// Natively the guest SDK's `log` writes to stderr (in a component it goes to the host's
/// `tracing`), and the `entered` path logs once per call. While this lives, stderr points at
/// `/dev/null`, so the terminal is not flooded; each native `entered` call still pays for one
/// `write(2)`, which the report mentions.
struct Silenced {
    #[cfg(unix)]
    saved: libc::c_int,
}

impl Silenced {
    #[cfg(unix)]
    fn stderr() -> Option<Silenced> {
        // SAFETY: plain descriptor calls on descriptors this function opened or duplicated;
        // Rust's stderr is unbuffered, so nothing is pending when fd 2 is swapped.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if null < 0 {
                return None;
            }
            let saved = libc::dup(libc::STDERR_FILENO);
            if saved < 0 || libc::dup2(null, libc::STDERR_FILENO) < 0 {
                libc::close(null);
                if saved >= 0 {
                    libc::close(saved);
                }
                return None;
            }
            libc::close(null);
            Some(Silenced { saved })
        }
    }

    #[cfg(not(unix))]
    fn stderr() -> Option<Silenced> {
        None
    }
}

impl Drop for Silenced {
    fn drop(&mut self) {
        // SAFETY: `saved` is the descriptor `stderr` duplicated, restored and closed once.
        #[cfg(unix)]
        unsafe {
            libc::dup2(self.saved, libc::STDERR_FILENO);
            libc::close(self.saved);
        }
    }
}
