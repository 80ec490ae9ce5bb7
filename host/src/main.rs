//! `waymark`: the journey-automation server.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use waymark_host::engine::delivery::RetryPolicy;
use waymark_host::host::HostConfig;
use waymark_host::sandbox::SandboxConfig;
use waymark_host::server::{serve, ClockKind, ServerConfig};

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
    /// Shard workers; a customer's triggers are processed in order on one shard.
    #[arg(long, default_value_t = 4)]
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    let Cli {
        command: Command::Serve(args),
    } = Cli::parse();
    if args.admin_token.len() < 16 {
        anyhow::bail!("--admin-token must be at least 16 characters");
    }
    let config = ServerConfig {
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
        },
        sandbox: SandboxConfig {
            allow_private_network: args.allow_private_network,
            // Beside the database: compiled code, written and read only by this host.
            cache_dir: Some(args.data_dir.join("compiled")),
            ..SandboxConfig::default()
        },
    };
    serve(config).await?;
    Ok(())
}
