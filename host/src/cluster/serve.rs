//! `waymark serve --cluster` (issue 16): a node of a Waymark cluster.
//!
//! **What runs today: one partition, active on one node at a time.** The node joins the
//! cluster ([`super::node`]), keeps a copy of the partition while it stands by, and when it
//! takes the partition over ([`super::node::Change::Gained`]) runs the single-node host over
//! the partition's copy ([`crate::server::start`]): the same workers, scheduler, delivery loop
//! and API, with every flush appending to the partition's log ([`super::replica`]), so an event
//! is acknowledged once the replicated log has it, and deliveries check the lease guard first.
//! When it loses the partition the host is stopped; a standby takes over from its copy. Any
//! node accepts HTTP: the owner answers, the others pass the request on to the owner
//! ([`crate::api::cluster`]), or answer `503` with `Retry-After` while nobody holds the
//! partition.
//!
//! So a cluster survives the loss of a node (and of a NATS server) without losing or doubling
//! anything, but does not yet spread the work: with one partition, one node works at a time.
//! Spreading it needs what `docs/SCALING.md` designs beside the copies — tenant-global data
//! outside the partitions, requests routed by customer, forwards between partitions — and a
//! partition count above 1 is refused until then.

use super::node::{Change, Node};
use super::{ClusterError, Nats};
use crate::api::{self, AppState, Edge};
use crate::sandbox::Sandbox;
use crate::server::{self, Running, ServerConfig, ServerError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A node's place in a cluster (`waymark serve --cluster`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS servers to connect to (any of the cluster's).
    pub nats: Vec<String>,
    /// This node's id: letters, digits, `-` and `_`, unique in the cluster.
    pub node_id: String,
    /// The partition count (only 1 runs today; see the module's documentation).
    pub partitions: u16,
    /// Copies of each stream and bucket: 3 for a three-server NATS cluster, 1 for one server.
    pub replicas: usize,
    /// The lease period: a dead node's partitions are taken over about this long after it died.
    pub lease_period: Duration,
    /// The URL other nodes pass requests on to (default: `http://` and the listen address).
    pub advertise: Option<String>,
}

/// Runs a cluster node until a shutdown signal, then leaves gracefully: the API stops
/// accepting, the partition's host finishes what is in flight and flushes (to the log), and the
/// lease is released so a standby takes over at once.
pub async fn serve(config: ServerConfig, cluster: ClusterConfig) -> Result<(), ServerError> {
    if cluster.partitions != 1 {
        return Err(ClusterError::Config(format!(
            "--partitions {}: a cluster runs one partition today, active on one node at a time \
             (spreading partitions over nodes is not built yet; docs/SCALING.md)",
            cluster.partitions
        ))
        .into());
    }
    let nats = Nats::connect(&cluster.nats, cluster.replicas).await?;
    let listener = server::listen(&config).await?;
    let advertise = match &cluster.advertise {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://{}", listener.local_addr()?),
    };
    let copies = config.data_dir.join("cluster");
    // NATS may be electing leaders (a server restarting): joining is tried again until it
    // works; only a wrong setting ends the process.
    let (mut node, changes) = loop {
        let joined = Node::join(
            nats.clone(),
            &cluster.node_id,
            cluster.partitions,
            cluster.lease_period,
            &copies,
        )
        .await;
        match joined {
            Ok(joined) => break joined,
            Err(e @ ClusterError::Config(_)) => return Err(e.into()),
            Err(error) => {
                tracing::warn!(%error, "cannot join the cluster yet; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = server::shutdown_signal() => return Ok(()),
                }
            }
        }
    };
    node.advertise(&advertise);
    node.copies_with(config.host.shards, config.store_cache_bytes);
    let active = api::cluster::Active::default();
    let state = api::cluster::ClusterState::new(
        node.directory(),
        active.clone(),
        &cluster.node_id,
        api::digest(&config.admin_token),
        node.counters(),
    );
    tracing::info!(node = %cluster.node_id, %advertise, "joined the cluster");

    let stop_node = CancellationToken::new();
    let node_loop = tokio::spawn(node.run(stop_node.clone()));
    let stop_partitions = CancellationToken::new();
    let partitions = tokio::spawn(run_partitions(
        changes,
        Sandbox::new(config.sandbox.clone())?,
        config.clone(),
        active,
        stop_partitions.clone(),
    ));
    let signal = async {
        server::shutdown_signal().await;
        tracing::info!("shutting down");
    };
    server::serve_connections(listener, api::cluster::router(state), &config.edge, signal).await;
    // The partition's host stops (its last writes appended), then the lease goes.
    stop_partitions.cancel();
    if let Err(error) = partitions.await {
        tracing::error!(%error, "the partitions' runner failed");
    }
    stop_node.cancel();
    if let Err(error) = node_loop.await {
        tracing::error!(%error, "the cluster loop failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs the host of each partition this node holds, from its `Gained` to its `Lost`.
async fn run_partitions(
    mut changes: mpsc::UnboundedReceiver<Change>,
    sandbox: Sandbox,
    config: ServerConfig,
    active: api::cluster::Active,
    stop: CancellationToken,
) {
    let edge = Arc::new(Edge::new(config.edge.clone()));
    let admin_digest = api::digest(&config.admin_token);
    let mut running: Option<(u16, Running)> = None;
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = stop.cancelled() => None,
        };
        match change {
            Some(Change::Gained(gained)) => {
                let partition = gained.partition;
                match server::start(
                    gained.store.clone(),
                    sandbox.clone(),
                    &config,
                    Some((partition, gained.guard.clone())),
                )
                .await
                {
                    Ok(host) => {
                        tracing::info!(partition, epoch = gained.epoch, "running the partition");
                        active.set(Some(api::router(AppState {
                            host: host.host.clone(),
                            admin_digest,
                            edge: edge.clone(),
                        })));
                        running = Some((partition, host));
                    }
                    Err(error) => {
                        // Nothing runs it here (lost again already, or the store is unusable):
                        // the lease is given up for another node.
                        tracing::warn!(partition, %error, "cannot run the partition");
                        gained.guard.fence();
                    }
                }
            }
            // Handing over: stopped with the lease still held, so the last writes are appended
            // (requests meanwhile wait in the front for the next owner).
            Some(Change::HandingOver {
                partition,
                stopped: done,
            }) => {
                stop_running(&mut running, &active, partition).await;
                let _ = done.send(());
            }
            Some(Change::Lost(partition)) => {
                stop_running(&mut running, &active, partition).await;
            }
            None => break,
        }
    }
    active.set(None);
    if let Some((partition, host)) = running.take() {
        stopped(partition, host).await;
    }
}

/// Stops the host of `partition` if it is the one running.
async fn stop_running(
    running: &mut Option<(u16, Running)>,
    active: &api::cluster::Active,
    partition: u16,
) {
    if running.as_ref().is_some_and(|(p, _)| *p == partition) {
        active.set(None);
        if let Some((_, host)) = running.take() {
            stopped(partition, host).await;
        }
    }
}

/// Stops a partition's host. After a handover its last flush is appended; after a loss it
/// fails, the lease gone already: what it had not appended is the next owner's to do again.
async fn stopped(partition: u16, host: Running) {
    match host.stop().await {
        Ok(()) => tracing::info!(partition, "stopped running the partition"),
        Err(error) => {
            tracing::warn!(partition, %error, "stopped running the partition; its last writes were not appended")
        }
    }
}
