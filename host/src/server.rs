//! Wiring: opens the store, builds the sandbox, restores the clock, starts the shard workers,
//! the scheduler and the delivery loop, serves the API, and shuts everything down in order on
//! SIGTERM or Ctrl-C (stop accepting, finish triggers in flight, flush, exit).
//!
//! Connections are served by hyper-util's connection builder rather than `axum::serve`, for
//! what the edge needs below the router: a header-read timeout (which also closes idle
//! kept-alive connections), a cap on concurrent connections (past it new ones wait in the
//! listen backlog), and the soft open-file limit raised to the hard one at start.

use crate::api::{self, AppState, Edge, EdgeConfig};
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
    /// Connection timeouts and caps, request limits, rate limits, backpressure.
    pub edge: EdgeConfig,
    /// Called once the store is open, before any work starts: the binary hands back to the
    /// operating system what its allocator holds free. Opening replays sled's log, which
    /// allocates and frees several times what the open store keeps, and an allocator keeps
    /// freed memory for reuse (issue 10: resident memory after a restart).
    pub release_free_memory: Option<fn()>,
    /// Cluster mode (issue 16): the NATS cluster and this node's place in it; `None` for the
    /// single-node server.
    pub cluster: Option<crate::cluster::serve::ClusterConfig>,
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
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Runs the server until a shutdown signal.
pub async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ServerError::Store(config.data_dir.clone(), crate::store::StoreError::Io(e))
    })?;
    if let Some(cluster) = config.cluster.clone() {
        return crate::cluster::serve::serve(config, cluster).await;
    }
    let store = Store::open(
        &config.data_dir.join("db"),
        config.host.shards,
        config.store_cache_bytes,
    )
    .map_err(|e| ServerError::Store(config.data_dir.clone(), e))?;
    if let Some(release) = config.release_free_memory {
        release();
    }
    let sandbox = Sandbox::new(config.sandbox.clone())?;
    let running = start(store, sandbox, &config, None).await?;
    let host = running.host.clone();
    let state = AppState {
        host: host.clone(),
        admin_digest: api::digest(&config.admin_token),
        edge: Arc::new(Edge::new(config.edge.clone())),
        across: None,
    };
    let listener = listen(&config).await?;
    tracing::info!(clock = host.clock.kind(), "serving");
    let shutdown = host.shutdown.clone();
    let signal = async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    };
    serve_connections(listener, api::router(state), &config.edge, signal).await;
    running.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds the API's listener (the open-files limit raised first) and says where on stdout.
pub(crate) async fn listen(config: &ServerConfig) -> Result<tokio::net::TcpListener, ServerError> {
    raise_open_files_limit();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Listen(config.listen, e))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "listening");
    // The one line on stdout: tests and scripts read the address from it.
    println!("waymark listening on http://{local}");
    Ok(listener)
}

/// A host running over a store: its shard workers, scheduler, delivery loop and progress log.
pub(crate) struct Running {
    pub host: Arc<Host>,
    workers: tokio::task::JoinSet<()>,
}

impl Running {
    /// Stops the host: its loops finish what is in flight, then the store is flushed.
    pub async fn stop(mut self) -> Result<(), crate::store::StoreError> {
        self.host.shutdown.cancel();
        while self.workers.join_next().await.is_some() {}
        self.host.store.flush().await
    }
}

/// Builds a host over `store` (its clock restored, its compiled-code cache trimmed; in a
/// cluster, `fence` the partition it runs and its lease guard) and starts its loops.
pub(crate) async fn start(
    store: Store,
    sandbox: Sandbox,
    config: &ServerConfig,
    fence: Option<(u16, crate::cluster::lease::Guard)>,
) -> Result<Running, ServerError> {
    let clock = match config.clock {
        ClockKind::System => Clock::system(),
        ClockKind::Manual => {
            // A manual clock resumes where it stood, so pending timers keep their meaning.
            let start = store.manual_clock()?.unwrap_or_else(system_now);
            store.save_manual_clock(start).await?;
            Clock::manual(start)
        }
    };
    let registry = Registry::new(sandbox, store.clone());
    // Nothing compiles yet: the cache can lose what no stored version names, leftovers of
    // interrupted writes included. In a cluster the node's other partitions share the cache
    // and may be compiling: only partition 0, which holds every stored version, trims it,
    // and leaves the files being written.
    let trim = match &fence {
        None => Some(true),
        Some((0, _)) => Some(false),
        Some(_) => None,
    };
    match trim.map_or(Ok(0), |temporaries| registry.evict_compiled(temporaries)) {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "compiled-code cache trimmed"),
        Err(error) => tracing::warn!(%error, "cannot trim the compiled-code cache"),
    }
    let host = Host::new(store.clone(), registry, clock, config.host.clone());
    let host = Arc::new(match fence {
        Some((partition, guard)) => host.fenced_by(partition, guard),
        None => host,
    });

    let mut workers = tokio::task::JoinSet::new();
    for shard in 0..store.shards() {
        workers.spawn(worker::run(host.clone(), shard));
    }
    workers.spawn(scheduler::run(host.clone()));
    workers.spawn(delivery::run(host.clone()));
    workers.spawn(log_progress(host.clone()));
    // Backtests (issue 13): jobs the previous process did not finish start over.
    match host.backtests.resume(&host).await {
        Ok(0) => {}
        Ok(resumed) => tracing::info!(resumed, "unfinished backtests started over"),
        Err(error) => tracing::error!(%error, "cannot start unfinished backtests over"),
    }
    Ok(Running { host, workers })
}

/// Accepts connections until `signal` completes, then stops accepting and waits for the
/// requests in flight (at most [`DRAIN`]). At most `edge.max_connections` are served at once:
/// past that the loop stops accepting until one closes, so the kernel's backlog queues (and
/// eventually refuses) newcomers instead of the process running out of descriptors.
pub(crate) async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    edge: &EdgeConfig,
    signal: impl std::future::Future<Output = ()>,
) {
    use crate::api::head::{Guarded, HeadLimits};
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    // hyper enforces the head's limits; `Guarded` turns its bare refusals into JSON.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.header_timeout)
        .max_buf_size(edge.max_head_bytes)
        .max_headers(edge.max_header_fields);
    let limits = HeadLimits {
        max_bytes: edge.max_head_bytes,
        max_fields: edge.max_header_fields,
    };
    let builder = Arc::new(builder);
    let permits = Arc::new(tokio::sync::Semaphore::new(edge.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(signal);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            _ = &mut signal => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let io = Guarded::new(stream, limits);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(io), service);
            if let Err(error) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%error, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN:?}; closing them");
    }
}

/// How long shutdown waits for requests in flight.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Raises the soft limit on open files to the hard limit, so the connection cap (not the
/// descriptor limit) is what bounds connections. Failure is logged, not fatal.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            if limit.rlim_cur < limit.rlim_max {
                let wanted = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                    tracing::debug!(
                        from = limit.rlim_cur,
                        to = limit.rlim_max,
                        "open files limit raised"
                    );
                } else {
                    tracing::warn!(soft = limit.rlim_cur, "cannot raise the open files limit");
                }
            }
        }
    }
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

pub(crate) async fn shutdown_signal() {
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
