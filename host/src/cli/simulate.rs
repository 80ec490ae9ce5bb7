//! `waymark simulate --journey FILE.wasm --events FILE.ndjson` (issue 13): a journey run over a
//! file of events with the host's own semantics and no server (`waymark_host::backtest::
//! simulate`, the isolated engine backtests use), printing each customer's timeline — for a
//! journey author's CI. Unlike the other client commands it needs no server: it links the
//! engine rather than speaking HTTP.

use super::error::CliError;
use super::output;
use clap::Args;
use std::path::PathBuf;
use waymark_host::backtest::simulate::{simulate, Entry};

/// `waymark simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// The journey component (`.wasm`).
    #[arg(long)]
    pub journey: PathBuf,
    /// Events, one JSON object a line (`{"id","customer","name","properties","timestamp"}`,
    /// as `POST /v1/events` takes them; `timestamp` is when it happens).
    #[arg(long)]
    pub events: PathBuf,
    /// Run the clock on to this time (ms) after the last event, firing timers on the way.
    #[arg(long)]
    pub until: Option<i64>,
    /// Print the timelines as JSON: `{"customer": [{"at","what","run","detail"}]}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `waymark simulate`.
pub async fn run(args: SimulateArgs) -> Result<(), CliError> {
    let component =
        std::fs::read(&args.journey).map_err(|e| CliError::io("read", &args.journey, e))?;
    let text =
        std::fs::read_to_string(&args.events).map_err(|e| CliError::io("read", &args.events, e))?;
    let mut events = Vec::new();
    let mut last = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // An event without a timestamp happens when the one before it did.
        let parsed = waymark_host::api::parse_events(line.as_bytes(), last).map_err(|e| {
            CliError::Input(format!("{}: line {}: {e:?}", args.events.display(), i + 1))
        })?;
        for event in parsed {
            last = event.timestamp;
            events.push(event);
        }
    }
    let timelines = simulate(component, events, args.until)
        .await
        .map_err(|e| CliError::Input(e.to_string()))?;
    if args.json {
        return output::json(&timelines);
    }
    for (customer, entries) in &timelines {
        println!("{customer}");
        for Entry {
            at,
            what,
            run,
            detail,
        } in entries
        {
            println!("  {}  run {run}  {what:<13} {detail}", output::time(*at));
        }
    }
    Ok(())
}
