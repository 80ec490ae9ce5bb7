//! The command-line client: `waymark tenant|journey|channel|events|customer|tasks|dead-letters`,
//! each a thin shell over the typed client crate `waymark-client`, so the CLI speaks exactly
//! the API of `docs/API.md` and nothing of the server's internals.
//!
//! - [`config`] — where the server and the key come from: flags, `WAYMARK_URL` /
//!   `WAYMARK_KEY`, or a profile of the config file.
//! - [`error`] — [`CliError`]: every failure printed as `error: <code>: <message>`.
//! - [`output`] — tables for a person at a terminal, JSON (`--json`) for scripts.
//! - [`component`] — a component's bytes from a `.wasm` file or a crate directory (built
//!   with `cargo build --release --target wasm32-wasip2`).
//! - [`commands`] — one function per subcommand.
//! - [`import`] — `events import`: batches, retries, progress, and the checkpoint that makes
//!   an interrupted import resume without sending anything twice.
//!
//! - [`backtest`] — `waymark backtest` (issue 13): a backtest through the API, with a progress
//!   bar; [`simulate`] — `waymark simulate`, the one command that needs no server: it links the
//!   library's isolated engine (`waymark_host::backtest::simulate`).
//!
//! The module is the binary's only: the server library (`waymark_host`) knows nothing of it.

mod backtest; // Backtests (issue 13)
mod commands;
mod component;
mod config;
mod error;
mod import;
mod output;
mod simulate; // Backtests (issue 13)

use clap::{Args, Subcommand};
use std::path::PathBuf;

pub use error::CliError;

/// The client's subcommands, flattened into the binary's beside `serve`.
#[derive(Subcommand)]
pub enum Command {
    /// Create tenants (needs the admin token).
    Tenant(Group<TenantCommand>),
    /// Push, list, show and report journeys.
    Journey(Group<JourneyCommand>),
    /// Push and list channel adapters.
    Channel(Group<ChannelCommand>),
    /// Send one event, or import a file of them.
    Events(Group<EventsCommand>),
    /// Look up a customer.
    Customer(Group<CustomerCommand>),
    /// Work the handoff queue.
    Tasks(Group<TasksCommand>),
    /// List and requeue messages that failed for good.
    #[command(name = "dead-letters")]
    DeadLetters(Group<DeadLettersCommand>),
    // Backtests (issue 13)
    /// Replay a candidate journey version over recorded events and compare it with live.
    Backtest(backtest::BacktestArgs),
    /// Run a journey component over a file of events with the host's semantics and no
    /// server, printing each customer's timeline.
    Simulate(simulate::SimulateArgs),
}

/// A group of subcommands with the options every client command shares (accepted anywhere
/// after the group's name: `waymark journey list --json` or `waymark journey --json list`).
#[derive(Args)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    pub options: config::Options,
    /// Print JSON (the API's own shapes) instead of tables: for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: C,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its API key (shown once).
    Create {
        /// `[a-z0-9_-]{1,64}`.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum JourneyCommand {
    /// Upload a new version: a `.wasm` component, or a crate directory to build first.
    Push {
        /// A component file, or a journey crate's directory.
        path: PathBuf,
        /// The journey's name; by default the file's stem or the directory's name.
        #[arg(long)]
        name: Option<String>,
        /// Store it as a draft: no one enters it until `journey promote`.
        #[arg(long)]
        draft: bool,
    },
    /// Make a version live, or with `--share` roll it out to that percentage of new entrants.
    Promote {
        name: String,
        version: u32,
        /// Percent of new entrants (1 to 99) that enter it while the live version keeps the rest.
        #[arg(long)]
        share: Option<u8>,
    },
    /// Stop a rollout, or else return to the version live before.
    Rollback { name: String },
    /// The tenant's journeys: latest, live and rolling-out versions.
    List,
    /// A journey's versions and what each declares.
    Show { name: String },
    /// A journey's milestone funnel: overall, per version, per experiment arm.
    Report { name: String },
}

#[derive(Subcommand)]
pub enum ChannelCommand {
    /// Register (or replace) a channel: its adapter component and configuration.
    Push {
        /// The channel's name (what journeys `send` through).
        name: String,
        /// A component file, or an adapter crate's directory.
        path: PathBuf,
        /// A setting, `KEY=VALUE` (VALUE read as JSON when it parses, else as a string).
        #[arg(long = "setting", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// A secret, `KEY=VALUE` (kept by the server; never shown again).
        #[arg(long = "secret", value_name = "KEY=VALUE")]
        secrets: Vec<String>,
        /// A host the adapter may reach (`host`, `host:port` or `*.domain`); repeatable.
        #[arg(long = "allow-host", value_name = "HOST")]
        allowed_hosts: Vec<String>,
    },
    /// The tenant's channels (secrets' names only).
    List,
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Send one event, from flags or as JSON.
    Send(commands::SendArgs),
    /// Import events from NDJSON or CSV in batches, resuming after an interruption.
    Import(import::ImportArgs),
}

#[derive(Subcommand)]
pub enum CustomerCommand {
    /// A customer's attributes, enrollments and messages.
    Show { id: String },
}

#[derive(Subcommand)]
pub enum TasksCommand {
    /// Tasks, most urgent and oldest first.
    List {
        /// `open`, `claimed` or `resolved`.
        #[arg(long, value_parser = ["open", "claimed", "resolved"])]
        status: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Take an open task.
    Claim {
        id: String,
        /// Who works on it.
        #[arg(long)]
        assignee: String,
    },
    /// Close a task; the journey that handed it off hears `task_resolved`.
    Resolve {
        id: String,
        /// How it ended.
        #[arg(long)]
        resolution: String,
        /// A property of the `task_resolved` event, `KEY=VALUE` (JSON when it parses).
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// Messages that failed permanently or ran out of attempts.
    List {
        /// At most this many (server default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
        /// The page after this message id (the `next` a listing printed).
        #[arg(long)]
        after: Option<String>,
    },
    /// Put dead letters back in the delivery queue (same idempotency keys).
    Retry {
        /// Message ids; or `--channel`, or `--all`.
        ids: Vec<String>,
        /// Every dead letter of this channel.
        #[arg(long, conflicts_with = "ids")]
        channel: Option<String>,
        /// Every dead letter of the tenant.
        #[arg(long, conflicts_with_all = ["ids", "channel"])]
        all: bool,
    },
}

/// Runs one client command and returns the process's exit code: what it printed is its
/// answer, `0` says it worked, `1` comes with `error: <code>: <message>` on stderr.
pub async fn run(command: Command) -> i32 {
    match commands::dispatch(command).await {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {}: {}", err.code(), err.message());
            1
        }
    }
}
