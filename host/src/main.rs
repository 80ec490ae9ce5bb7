//! `waymark`: the journey-automation server, and the command-line client of its API
//! (`cli/`).

mod cli; // Command-line client (issue 14)

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use waymark_host::api::limits::{self, TenantRates};
use waymark_host::api::EdgeConfig;
use waymark_host::delivery::DeliveryBudgets; // Isolation (issue 15)
use waymark_host::engine::breaker::BreakerPolicy; // Isolation (issue 15)
use waymark_host::engine::delivery::RetryPolicy;
use waymark_host::host::HostConfig;
use waymark_host::model::Limits; // Isolation (issue 15)
use waymark_host::sandbox::SandboxConfig;
use waymark_host::server::{serve, ClockKind, ServerConfig};

/// mimalloc rather than glibc's malloc: a templated delivery spent ~8 % of its CPU in glibc's
/// allocator (free-list consolidation among them), and a render allocates a good deal
/// (docs/BENCHMARKS.md § Templates).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands the pages mimalloc holds free back to the operating system. mimalloc purges freed
/// memory only a while later and only when the thread that freed it allocates again, so what
/// opening the store freed (sled's log replay) would stay resident in an idle server.
fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[derive(Parser)]
#[command(
    name = "waymark",
    version,
    about = "Journey automation with WebAssembly journeys and channels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and run journeys, timers and deliveries.
    Serve(ServeArgs),
    // Command-line client (issue 14): `tenant`, `journey`, `events`, ... (`cli/`).
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(Clone, Copy, ValueEnum)]
enum ClockArg {
    System,
    /// Moves only through `POST /v1/admin/clock/advance`; persists across restarts.
    Manual,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where sled keeps all state.
    #[arg(long, env = "WAYMARK_DATA_DIR", default_value = "waymark-data")]
    data_dir: PathBuf,
    #[arg(long, env = "WAYMARK_LISTEN", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Bearer token of the admin routes.
    #[arg(long, env = "WAYMARK_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    #[arg(long, value_enum, default_value = "system")]
    clock: ClockArg,
    /// Let channel adapters reach loopback and private networks (tests, demos, on-premise
    /// providers); refused by default.
    #[arg(long)]
    allow_private_network: bool,
    /// Profiling only: list compiled guest code in `/tmp/perf-<pid>.map`, so that `perf report`
    /// names guest functions (guests built with `--profile guest-profiling` keep their names).
    /// The map grows with every component compiled.
    #[arg(long, env = "WAYMARK_PERF_MAP", hide = true)]
    perf_map: bool,
    /// Shard workers; a customer's triggers are processed in order on one shard.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=4096))]
    shards: u16,
    /// Delivery attempts before a message becomes a dead letter.
    #[arg(long, default_value_t = 8)]
    max_attempts: u32,
    /// First delivery retry delay in milliseconds; doubles per attempt.
    #[arg(long, default_value_t = 1000)]
    retry_base_ms: u64,
    /// Memory for the storage engine's page cache, in MiB. Resident memory stays near this
    /// however many customers sleep in the database.
    #[arg(long, default_value_t = 128)]
    cache_mb: u64,
    /// How long event ids are remembered, in hours of journey time: a retry within the window
    /// is answered `duplicate`, one after it is a new event. 0 remembers them for ever (the id
    /// index then grows with the event log).
    #[arg(long, default_value_t = 168)]
    dedup_window_hours: u64,
    // Edge limits (issue 15): connections, request sizes, tenants' rates, backpressure.
    /// How long a client may take to send a request's head, and a kept-alive connection may
    /// sit idle, in milliseconds.
    #[arg(long, env = "WAYMARK_HEADER_TIMEOUT_MS", default_value_t = limits::HEADER_TIMEOUT.as_millis() as u64)]
    header_timeout_ms: u64,
    /// How long a client may take to send a request's body, in milliseconds.
    #[arg(long, env = "WAYMARK_BODY_TIMEOUT_MS", default_value_t = limits::BODY_TIMEOUT.as_millis() as u64)]
    body_timeout_ms: u64,
    /// Connections served at once; past it new ones wait in the listen backlog.
    #[arg(long, env = "WAYMARK_MAX_CONNECTIONS", default_value_t = limits::MAX_CONNECTIONS)]
    max_connections: usize,
    /// The largest `POST /v1/events` body, in bytes.
    #[arg(long, env = "WAYMARK_MAX_EVENTS_BODY_BYTES", default_value_t = limits::MAX_EVENTS_BODY)]
    max_events_body_bytes: usize,
    /// Triggers waiting in one shard's queue past which ingest answers 503.
    #[arg(long, env = "WAYMARK_SHARD_QUEUE_BOUND", default_value_t = limits::SHARD_QUEUE_BOUND)]
    shard_queue_bound: usize,
    /// Each tenant's sustained requests per second (0: unlimited); overridable per tenant.
    #[arg(long, env = "WAYMARK_REQUESTS_PER_SECOND", default_value_t = TenantRates::DEFAULT.requests_per_second)]
    requests_per_second: u64,
    /// Requests a tenant may make at once above its rate.
    #[arg(long, env = "WAYMARK_REQUEST_BURST", default_value_t = TenantRates::DEFAULT.request_burst)]
    request_burst: u64,
    /// Each tenant's sustained events per second (0: unlimited); overridable per tenant.
    #[arg(long, env = "WAYMARK_EVENTS_PER_SECOND", default_value_t = TenantRates::DEFAULT.events_per_second)]
    events_per_second: u64,
    /// Events a tenant may post at once above its rate.
    #[arg(long, env = "WAYMARK_EVENT_BURST", default_value_t = TenantRates::DEFAULT.event_burst)]
    event_burst: u64,
    /// A tenant's expensive requests (uploads, mass retries, listings) in flight at once.
    #[arg(long, env = "WAYMARK_MAX_EXPENSIVE_REQUESTS", default_value_t = TenantRates::DEFAULT.max_expensive_requests)]
    max_expensive_requests: u64,
    // Isolation (issue 15)
    /// Deliveries one tenant may have in flight at once (of the delivery loop's 32).
    #[arg(long, env = "WAYMARK_DELIVERY_TENANT_BUDGET", default_value_t = 16)]
    delivery_tenant_budget: usize,
    /// Deliveries one channel registration of a tenant may have in flight at once.
    #[arg(long, env = "WAYMARK_DELIVERY_CHANNEL_BUDGET", default_value_t = 8)]
    delivery_channel_budget: usize,
    /// A journey version's circuit breaker opens after this many of its last
    /// `--breaker-window` triggers ran to the deadline, trapped or ran out of memory.
    #[arg(long, env = "WAYMARK_BREAKER_FAILURES", default_value_t = 5)]
    breaker_failures: usize,
    /// The triggers a breaker's failures are counted over.
    #[arg(long, env = "WAYMARK_BREAKER_WINDOW", default_value_t = 10)]
    breaker_window: usize,
    /// How long an open breaker defers its version's triggers before one probe, in
    /// milliseconds; doubled by each failed probe, up to 30 times this.
    #[arg(long, env = "WAYMARK_BREAKER_COOL_DOWN_MS", default_value_t = 10_000)]
    breaker_cool_down_ms: u64,
    /// Loop budgets (operator defaults; tenants may override them): triggers one enrollment
    /// may run within `--loop-window-ms` of journey time before it is paused.
    #[arg(long, env = "WAYMARK_MAX_ENROLLMENT_TRIGGERS", default_value_t = 1_000)]
    max_enrollment_triggers: u64,
    /// Sends one enrollment may decide within `--loop-window-ms` before it is paused.
    #[arg(long, env = "WAYMARK_MAX_ENROLLMENT_SENDS", default_value_t = 100)]
    max_enrollment_sends: u64,
    /// Triggers all of one tenant's enrollments may run within `--loop-window-ms`.
    #[arg(
        long,
        env = "WAYMARK_MAX_TENANT_TRIGGERS",
        default_value_t = 10_000_000
    )]
    max_tenant_triggers: u64,
    /// Sends all of one tenant's enrollments may decide within `--loop-window-ms`.
    #[arg(long, env = "WAYMARK_MAX_TENANT_SENDS", default_value_t = 1_000_000)]
    max_tenant_sends: u64,
    /// The window of the loop budgets, in milliseconds of journey time.
    #[arg(long, env = "WAYMARK_LOOP_WINDOW_MS", default_value_t = 3_600_000)]
    loop_window_ms: u64,
    // Unsubscribe (issue 11)
    /// The base URL customers reach this server at (e.g. `https://waymark.example.com`):
    /// one-click unsubscribe links are `<public-url>/u/<token>`. Without it no unsubscribe
    /// links are made (templates see no `message.unsubscribe_url`).
    #[arg(long, env = "WAYMARK_PUBLIC_URL", value_parser = parse_public_url)]
    public_url: Option<String>,
    // History kept for replay (issue 13)
    /// How long the event log keeps events for backtests, in hours of journey time after
    /// ingest (0: for ever); a tenant's limits may override it.
    #[arg(long, env = "WAYMARK_HISTORY_RETENTION_HOURS", default_value_t = 90 * 24)]
    history_retention_hours: u64,
    /// How much memory one backtest's scratch stores may take together, in MiB (0: no
    /// limit), with the recorded events it reads once (a quarter at most): a replay that
    /// would hold more fails with an error saying to narrow it to a customer sample.
    #[arg(long, env = "WAYMARK_BACKTEST_MEMORY_MIB", default_value_t = 4096)]
    backtest_memory_mib: u64,
    /// How many parts of a backtest's replay run at once, on several cores, when its
    /// customers' replays are independent (0: one per core).
    #[arg(long, env = "WAYMARK_BACKTEST_PARTS", default_value_t = 0)]
    backtest_parts: u64,
    /// About how many recorded events one part of a split replay takes: a longer history is
    /// split into more parts than run at once, each small enough to stay in the caches.
    #[arg(long, env = "WAYMARK_BACKTEST_PART_EVENTS", default_value_t = waymark_host::backtest::parts::PART_EVENTS)]
    backtest_part_events: u64,
    // Cluster mode (issue 16)
    /// Run as a node of a cluster over these NATS servers (comma-separated `nats://` URLs;
    /// any of the cluster's): the partition's state is kept in its replicated log, a standby
    /// takes over when the node running it dies, and any node answers the API (docs/SCALING.md).
    #[arg(long, env = "WAYMARK_CLUSTER", value_delimiter = ',')]
    cluster: Vec<String>,
    /// This node's id in the cluster: letters, digits, '-' and '_', unique among the nodes.
    #[arg(long, env = "WAYMARK_NODE_ID", requires = "cluster")]
    node_id: Option<String>,
    /// The cluster's partition count, the same on every node and fixed when the cluster's
    /// first node starts: customers are hashed onto the partitions, which are spread over the
    /// live nodes (1: one node runs everything at a time).
    #[arg(long, env = "WAYMARK_PARTITIONS", default_value_t = 1)]
    partitions: u16,
    /// Copies NATS keeps of each stream (3 for a three-server NATS cluster, 1 for one server).
    #[arg(long, env = "WAYMARK_NATS_REPLICAS", default_value_t = 3)]
    nats_replicas: usize,
    /// The lease period in milliseconds: a dead node's partition is taken over about this long
    /// after its last renewal.
    #[arg(long, env = "WAYMARK_LEASE_MS", default_value_t = 3_000)]
    lease_ms: u64,
    /// The URL other nodes pass requests on to (default: http:// and the listen address).
    #[arg(long, env = "WAYMARK_ADVERTISE_URL")]
    advertise_url: Option<String>,
}

/// `--public-url`: an absolute `http`/`https` URL, kept without its trailing slashes.
fn parse_public_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err("must be a base URL: scheme, host, optional port and path".into());
    }
    Ok(trimmed.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Command-line client (issue 14): its commands print their own answers and errors.
    let args = match Cli::parse().command {
        Command::Serve(args) => args,
        Command::Client(command) => std::process::exit(cli::run(command).await),
    };
    // `info` is progress and operator-relevant events only: per-trigger and per-message lines
    // are `debug`, and so (by default) are guests' own `info` lines, which come once per call.
    // `RUST_LOG=info,waymark=debug` shows every trigger and delivery with its context.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,waymark::guest=warn,wasmtime=warn,cranelift=warn",
                )
            }),
        )
        // Colour codes only for a person at a terminal, never into a file or a collector.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if args.admin_token.len() < 16 {
        anyhow::bail!("--admin-token must be at least 16 characters");
    }
    // Isolation (issue 15)
    let breaker_cool_down_ms = i64::try_from(args.breaker_cool_down_ms.max(1)).unwrap_or(i64::MAX);
    // Cluster mode (issue 16)
    let cluster = if args.cluster.is_empty() {
        None
    } else {
        let Some(node_id) = args.node_id.clone() else {
            anyhow::bail!("--cluster needs --node-id: this node's id in the cluster");
        };
        Some(waymark_host::cluster::serve::ClusterConfig {
            nats: args.cluster.clone(),
            node_id,
            partitions: args.partitions,
            replicas: args.nats_replicas.max(1),
            lease_period: Duration::from_millis(args.lease_ms.max(600)),
            advertise: args.advertise_url.clone(),
        })
    };
    let config = ServerConfig {
        cluster,
        release_free_memory: Some(release_free_memory),
        data_dir: args.data_dir.clone(),
        store_cache_bytes: args.cache_mb.max(8) << 20,
        listen: args.listen,
        admin_token: args.admin_token,
        clock: match args.clock {
            ClockArg::System => ClockKind::System,
            ClockArg::Manual => ClockKind::Manual,
        },
        host: HostConfig {
            shards: args.shards.max(1),
            retry: RetryPolicy {
                max_attempts: args.max_attempts.max(1),
                base: Duration::from_millis(args.retry_base_ms),
                ..HostConfig::default().retry
            },
            dedup_window: (args.dedup_window_hours > 0)
                .then(|| Duration::from_secs(args.dedup_window_hours.saturating_mul(3600))),
            // Isolation (issue 15)
            delivery_budgets: DeliveryBudgets {
                per_tenant: args.delivery_tenant_budget.max(1),
                per_channel: args.delivery_channel_budget.max(1),
            },
            breaker: BreakerPolicy {
                failures: args.breaker_failures.max(1),
                window: args.breaker_window.max(args.breaker_failures).max(1),
                cool_down_ms: breaker_cool_down_ms,
                max_cool_down_ms: breaker_cool_down_ms.saturating_mul(30),
            },
            public_url: args.public_url, // Unsubscribe (issue 11)
            // Backtests (issue 13)
            backtest_memory: Some(args.backtest_memory_mib)
                .filter(|mib| *mib > 0)
                .map(|mib| mib.saturating_mul(1 << 20)),
            backtest_parts: Some(args.backtest_parts).filter(|n| *n > 0),
            backtest_part_events: args.backtest_part_events.max(1),
        },
        sandbox: SandboxConfig {
            // Isolation (issue 15): the operator's loop budgets.
            defaults: Limits {
                max_enrollment_triggers: args.max_enrollment_triggers.max(1),
                max_enrollment_sends: args.max_enrollment_sends.max(1),
                max_tenant_triggers: args.max_tenant_triggers.max(1),
                max_tenant_sends: args.max_tenant_sends.max(1),
                loop_window_ms: args.loop_window_ms.max(1),
                // History kept for replay (issue 13)
                history_retention_ms: args.history_retention_hours.saturating_mul(3_600_000),
                ..SandboxConfig::default().defaults
            },
            allow_private_network: args.allow_private_network,
            // Beside the database: compiled code, written and read only by this host.
            cache_dir: Some(args.data_dir.join("compiled")),
            perf_map: args.perf_map,
            ..SandboxConfig::default()
        },
        edge: EdgeConfig {
            header_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
            max_connections: args.max_connections.max(1),
            max_events_body: args.max_events_body_bytes,
            shard_queue_bound: args.shard_queue_bound,
            rates: TenantRates {
                requests_per_second: args.requests_per_second,
                request_burst: args.request_burst,
                events_per_second: args.events_per_second,
                event_burst: args.event_burst,
                max_expensive_requests: args.max_expensive_requests,
            },
            ..EdgeConfig::default()
        },
    };
    serve(config).await?;
    Ok(())
}
