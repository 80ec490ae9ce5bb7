//! Wiring: opens the store, builds the sandbox, restores the clock, starts the shard workers,
//! the scheduler and the delivery loop, serves the API, and shuts everything down in order on
//! SIGTERM or Ctrl-C (stop accepting, finish triggers in flight, flush, exit).

use crate::api::{self, AppState};
use crate::clock::{system_now, Clock};
use crate::host::{Host, HostConfig};
use crate::registry::Registry;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::Store;
use crate::{delivery, scheduler, worker};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockKind {
    System,
    Manual,
}

/// Everything `waymark serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_token: String,
    pub clock: ClockKind,
    pub host: HostConfig,
    pub sandbox: SandboxConfig,
    /// The storage engine's page cache: the bound on the memory that stored data takes.
    pub store_cache_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the data directory {0}: {1}")]
    Store(PathBuf, crate::store::StoreError),
    #[error("cannot set up the sandbox: {0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage failure: {0}")]
    Flush(#[from] crate::store::StoreError),
}

/// Runs the server until a shutdown signal.
pub async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ServerError::Store(config.data_dir.clone(), crate::store::StoreError::Io(e))
    })?;
    let store = Store::open(
        &config.data_dir.join("db"),
        config.host.shards,
        config.store_cache_bytes,
    )
    .map_err(|e| ServerError::Store(config.data_dir.clone(), e))?;
    let clock = match config.clock {
        ClockKind::System => Clock::system(),
        ClockKind::Manual => {
            // A manual clock resumes where it stood, so pending timers keep their meaning.
            let start = store.manual_clock()?.unwrap_or_else(system_now);
            store.save_manual_clock(start).await?;
            Clock::manual(start)
        }
    };
    let sandbox = Sandbox::new(config.sandbox.clone())?;
    let registry = Registry::new(sandbox, store.clone());
    // Nothing compiles yet: the cache can lose what no stored version names, leftovers of
    // interrupted writes included.
    match registry.evict_compiled(true) {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "compiled-code cache trimmed"),
        Err(error) => tracing::warn!(%error, "cannot trim the compiled-code cache"),
    }
    let host = Arc::new(Host::new(
        store.clone(),
        registry,
        clock,
        config.host.clone(),
    ));

    let mut workers = tokio::task::JoinSet::new();
    for shard in 0..store.shards() {
        workers.spawn(worker::run(host.clone(), shard));
    }
    workers.spawn(scheduler::run(host.clone()));
    workers.spawn(delivery::run(host.clone()));
    workers.spawn(log_progress(host.clone()));

    let state = AppState {
        host: host.clone(),
        admin_digest: api::digest(&config.admin_token),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Listen(config.listen, e))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, clock = host.clock.kind(), "serving");
    // The one line on stdout: tests and scripts read the address from it.
    println!("waymark listening on http://{local}");

    let shutdown = host.shutdown.clone();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        })
        .await?;
    host.shutdown.cancel();
    while workers.join_next().await.is_some() {}
    store.flush().await?;
    tracing::info!("stopped");
    Ok(())
}

/// How often the `info` log says what was done since its last line.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// One `info` line per interval in which anything happened: the log of a busy server is a few
/// lines of progress (per-trigger and per-message lines are `debug`), and an idle one is quiet.
async fn log_progress(host: Arc<Host>) {
    let mut last = host.metrics.progress();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = host.shutdown.cancelled() => return,
        }
        let now = host.metrics.progress();
        if now != last {
            tracing::info!(
                events = now.events - last.events,
                triggers = now.triggers - last.triggers,
                deliveries = now.deliveries - last.deliveries,
                failures = now.failures - last.failures,
                seconds = PROGRESS_EVERY.as_secs(),
                "progress"
            );
            last = now;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
