//! `cargo xtask fuzz [--seconds N] [target]`: coverage-guided fuzzing with libFuzzer on the
//! stable toolchain.
//!
//! The targets live in `fuzz/` (its own workspace, excluded from the main one): `events` (the
//! ingest body parser), `apply` (the engine's apply on arbitrary command lists), `convert` (the
//! WIT to model conversion of decisions) and `keys` (the store's key encoding). They link
//! libFuzzer through the `libfuzzer-sys` crate, and are built with the sanitizer-coverage
//! passes named in [`RUSTFLAGS`] (what cargo-fuzz passes, minus any nightly-only sanitizer),
//! into `target/fuzz` so the instrumentation never invalidates the main build. Each target
//! then runs for the given time on its corpus, `fuzz/corpus/<target>` (a few seeds are kept in
//! git; what a run adds is not), and a crashing input is written to
//! `fuzz/artifacts/<target>/`, which fails the run.
//!
//! `cargo xtask test` ends with a smoke run of [`SMOKE_SECONDS`] per target (unless
//! `--no-fuzz`, or a test filter, is given); `cargo xtask bench` runs [`BENCH_SECONDS`] per
//! target (`--fuzz-seconds` changes it).

use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Instant;

/// The fuzz targets, in the order they run.
pub const TARGETS: [&str; 4] = ["events", "apply", "convert", "keys"];

/// Seconds per target of the smoke run at the end of `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 20;

/// Seconds per target of the run in `cargo xtask bench`.
pub const BENCH_SECONDS: u64 = 300;

/// Seconds one input may take before libFuzzer reports it as a hang.
const INPUT_TIMEOUT_SECONDS: u64 = 30;

/// libFuzzer's instrumentation, as cargo-fuzz sets it: inline 8-bit edge counters, the PC
/// table, and comparison tracing. `--cfg fuzzing` lets code tell it is being fuzzed.
pub const RUSTFLAGS: &str = "-Cpasses=sancov-module \
     -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares \
     --cfg fuzzing";

/// Builds the targets, then fuzzes `only` (or every target) for `seconds` each.
pub fn run(seconds: u64, only: Option<&str>) -> Result<()> {
    let targets: Vec<&str> = match only {
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => bail!("no fuzz target `{name}`; there are {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let root = super::root();
    let fuzz = root.join("fuzz");
    let triple = host_triple()?;
    let target_dir = root.join("target").join("fuzz");
    eprintln!("$ RUSTFLAGS=\"{RUSTFLAGS}\" cargo build (fuzz/, into target/fuzz)");
    let started = Instant::now();
    // An explicit --target keeps RUSTFLAGS off build scripts and proc macros.
    let status = Command::new(env!("CARGO"))
        .current_dir(&fuzz)
        .env("RUSTFLAGS", RUSTFLAGS)
        .args(["build", "--bins", "--target", &triple, "--target-dir"])
        .arg(&target_dir)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    eprintln!(
        "fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let bin_dir = target_dir.join(&triple).join("debug");
    let mut crashed = Vec::new();
    for target in targets {
        let corpus = fuzz.join("corpus").join(target);
        let artifacts = fuzz.join("artifacts").join(target);
        for dir in [&corpus, &artifacts] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // libFuzzer's running commentary goes to a log; the console gets one line a target.
        let log_path = target_dir.join(format!("{target}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let status = Command::new(bin_dir.join(target))
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .arg(&corpus)
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("cannot run fuzz target `{target}`"))?;
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let runs = text
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?", str::trim);
        if status.success() {
            eprintln!("fuzz target `{target}`: {runs} inputs in {seconds} s, no crash");
        } else {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!(
                "fuzz target `{target}` CRASHED ({status}); the end of {}:",
                log_path.display()
            );
            for line in tail.into_iter().rev() {
                eprintln!("  {line}");
            }
            crashed.push(format!("{target} (inputs in {})", artifacts.display()));
        }
    }
    if !crashed.is_empty() {
        bail!("fuzzing found crashes: {}", crashed.join("; "));
    }
    Ok(())
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("cannot run rustc")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}
