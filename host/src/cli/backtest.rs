//! `waymark backtest` (issue 13): starts a backtest through `POST
//! /v1/journeys/{name}/backtests`, follows it with a progress bar (plain lines when stdout is
//! not a terminal), and prints its diff, or with `--json` the backtest as the API answers it.
//! Ctrl-C cancels the backtest on the server before exiting.

use super::config::{Options, Role};
use super::error::CliError;
use super::output::{self, table};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use waymark_client::api::backtests::{
    Backtest, BacktestRequest, BacktestStatus, Candidate, CandidateMigration,
};
use waymark_client::Client;

/// How often the backtest is read while it runs.
const POLL: Duration = Duration::from_millis(500);
/// How often a plain progress line is printed when stdout is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// `waymark backtest JOURNEY (--version N | --component FILE.wasm) --from T --to T`.
#[derive(Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    pub options: Options,
    /// Print the finished backtest as JSON (the API's shape) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The journey.
    pub journey: String,
    /// The candidate: a stored version of the journey (a draft, typically).
    #[arg(
        long,
        required_unless_present = "component",
        conflicts_with = "component"
    )]
    pub version: Option<u32>,
    /// The candidate: a journey component (a `.wasm` file, or a crate directory to build),
    /// sent with the request and never stored as a version.
    #[arg(long, value_name = "FILE")]
    pub component: Option<std::path::PathBuf>,
    /// Replay events ingested from this time: RFC 3339 (`2026-05-01T00:00:00Z`) or ms.
    #[arg(long, value_parser = parse_time)]
    pub from: i64,
    /// ... up to this time (exclusive).
    #[arg(long, value_parser = parse_time)]
    pub to: i64,
    /// Only this customer's events; repeatable.
    #[arg(long = "customer", value_name = "ID")]
    pub customers: Vec<String>,
    /// Only a deterministic share of the customers (over 0, at most 1).
    #[arg(long)]
    pub sample: Option<f64>,
    /// Also check that replaying the live version reproduces what ran live, per customer.
    #[arg(long)]
    pub fidelity: bool,
    /// Roll the candidate out at `--migrate-at` instead of from the start, moving the running
    /// enrollments of this version to it (through its `migrate` export).
    #[arg(long, requires = "migrate_at", value_name = "VERSION")]
    pub migrate_from: Option<u32>,
    /// When the candidate takes over: RFC 3339 or ms, within `--from`..`--to`.
    #[arg(long, requires = "migrate_from", value_parser = parse_time)]
    pub migrate_at: Option<i64>,
}

/// A time as RFC 3339 text or milliseconds since the epoch.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("not RFC 3339 nor milliseconds: {e}"))
}

/// Runs `waymark backtest`.
pub async fn run(args: BacktestArgs) -> Result<(), CliError> {
    let client = args.options.client(Role::Tenant)?;
    let migrate = args
        .migrate_from
        .zip(args.migrate_at)
        .map(|(from, at)| CandidateMigration { from, at });
    let mut request = BacktestRequest {
        candidate: match &args.component {
            Some(path) => Candidate::component_base64(waymark_client::component_base64(
                &super::component::load(path)?,
            )),
            None => Candidate {
                version: args.version,
                component: None,
                migrate: None,
            },
        },
        from: args.from,
        to: args.to,
        customers: (!args.customers.is_empty()).then(|| args.customers.clone()),
        sample_fraction: args.sample,
        fidelity: args.fidelity,
    };
    request.candidate.migrate = migrate;
    let started = client.start_backtest(&args.journey, &request).await?;
    let terminal = std::io::stdout().is_terminal() && !args.json;
    let done = tokio::select! {
        done = follow(&client, &args.journey, &started.id, terminal) => done?,
        _ = tokio::signal::ctrl_c() => {
            client.cancel_backtest(&args.journey, &started.id).await?;
            return Err(CliError::Input(format!("backtest {} cancelled", started.id)));
        }
    };
    if args.json {
        return output::json(&done);
    }
    print(&done)
}

/// Reads the backtest until it finishes, showing its progress.
async fn follow(
    client: &Client,
    journey: &str,
    id: &str,
    terminal: bool,
) -> Result<Backtest, CliError> {
    let bar = terminal.then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} events replayed ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let mut last_line: Option<Instant> = None;
    loop {
        let backtest = client.backtest(journey, id).await?;
        match &bar {
            Some(bar) => {
                bar.set_length(backtest.total);
                bar.set_position(backtest.replayed);
            }
            None if last_line.is_none_or(|at| at.elapsed() >= LINE_EVERY) => {
                eprintln!(
                    "backtest {id}: {:?}, {} of {} events replayed",
                    backtest.status, backtest.replayed, backtest.total
                );
                last_line = Some(Instant::now());
            }
            None => {}
        }
        if !matches!(
            backtest.status,
            BacktestStatus::Queued | BacktestStatus::Running
        ) {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(backtest);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The diff as tables.
fn print(backtest: &Backtest) -> Result<(), CliError> {
    let result = match (&backtest.status, &backtest.result) {
        (BacktestStatus::Done, Some(result)) => result,
        (status, _) => {
            return Err(CliError::Input(format!(
                "backtest {} {:?}{}",
                backtest.id,
                status,
                backtest
                    .error
                    .as_ref()
                    .map_or(String::new(), |e| format!(": {e}"))
            )))
        }
    };
    let diff = &result.diff;
    println!(
        "backtest {}: {} against live version {}",
        backtest.id,
        match &result.candidate_digest {
            Some(digest) => format!("component {digest}"),
            None => format!("version {}", result.candidate_version),
        },
        result.live_version
    );
    let mut t = table([
        "milestone",
        "reached (live)",
        "reached (candidate)",
        "conversion (live)",
        "conversion (candidate)",
        "median (live)",
        "median (candidate)",
    ]);
    for m in &diff.milestones {
        let median = |ms: Option<i64>| ms.map_or("-".into(), output::duration);
        t.add_row([
            m.name.clone(),
            m.reached.live.to_string(),
            m.reached.candidate.to_string(),
            output::percent(m.conversion.live),
            output::percent(m.conversion.candidate),
            median(m.median_time_to_reach_ms.live),
            median(m.median_time_to_reach_ms.candidate),
        ]);
    }
    println!("{t}");
    let mut t = table(["", "live", "candidate"]);
    for (reason, n) in &diff.exits_by_reason {
        t.add_row([
            format!("exit {reason}"),
            n.live.to_string(),
            n.candidate.to_string(),
        ]);
    }
    for (channel, n) in &diff.sends_by_channel {
        t.add_row([
            format!("sends via {channel}"),
            n.live.to_string(),
            n.candidate.to_string(),
        ]);
    }
    t.add_row([
        "sends per customer".into(),
        format!("{:.2}", diff.sends_per_customer.live),
        format!("{:.2}", diff.sends_per_customer.candidate),
    ]);
    println!("{t}");
    println!("{} customers' sends changed", diff.customers_changed);
    if let Some(f) = &result.fidelity {
        println!(
            "fidelity: {} of {} customers reproduced exactly",
            f.identical, f.customers
        );
        for d in f.divergences.iter().take(20) {
            println!(
                "  {} diverges at {}: {}",
                d.customer,
                output::time(d.at),
                d.what
            );
        }
    }
    let mut t = table(["customer", "side", "channel", "template", "decided"]);
    for c in diff.customers.iter().take(20) {
        for (side, sends) in [("live", &c.live), ("candidate", &c.candidate)] {
            for m in sends {
                t.add_row([
                    c.customer.clone(),
                    side.into(),
                    m.channel.clone(),
                    m.template.clone(),
                    output::time(m.decided_at),
                ]);
            }
        }
    }
    if !diff.customers.is_empty() {
        println!("{t}");
    }
    Ok(())
}
