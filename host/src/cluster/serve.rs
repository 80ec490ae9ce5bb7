//! `waymark serve --cluster` (issue 16): a node of a Waymark cluster.
//!
//! The node joins the cluster ([`super::node`]), keeps a copy of each partition it stands by
//! for, and runs each partition it takes over ([`super::node::Change::Gained`]): the
//! single-node host over the partition's copy ([`crate::server::start`]) — the same workers,
//! scheduler, delivery loop and API — with every flush appending to the partition's log
//! ([`super::replica`]), so an event is acknowledged once the replicated log has it, and
//! deliveries check the lease guard first. In a cluster of several partitions, a partition
//! other than 0 first mirrors partition 0's tenant-global records to the end of its log, then
//! keeps mirroring them while it runs ([`super::mirror`]). When the node loses a partition its
//! host is stopped; a standby takes over from its copy. Any node accepts HTTP: a partition's
//! requests are answered by the node running it and passed on by the others, and the requests
//! that span partitions are spread over them ([`crate::api::cluster`]).

use super::mirror::Mirror;
use super::node::{Change, Gained, Node};
use super::snapshot::Snapshots;
use super::{ClusterError, Nats};
use crate::api::{self, AppState, Edge};
use crate::sandbox::Sandbox;
use crate::server::{self, Running, ServerConfig, ServerError};
use std::collections::BTreeMap;
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
    /// The partition count, fixed when the cluster's first node started.
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
    // `--cache-mb` is the node's page cache: a node holding every partition's copy uses it
    // all, one holding a share of them that share of it (each copy at least 8 MiB), so a
    // large partition count does not multiply it.
    let per_copy = (config.store_cache_bytes / u64::from(cluster.partitions.max(1))).max(8 << 20);
    node.copies_with(config.host.shards, per_copy);
    let active = api::cluster::Active::default();
    let mirrors = api::cluster::Mirrors::default();
    let state = api::cluster::ClusterState::new(
        node.directory(),
        active.clone(),
        mirrors.clone(),
        &cluster.node_id,
        &config.admin_token,
        node.counters(),
    );
    tracing::info!(node = %cluster.node_id, %advertise, "joined the cluster");

    let stop_node = CancellationToken::new();
    let node_loop = tokio::spawn(node.run(stop_node.clone()));
    let stop_partitions = CancellationToken::new();
    let runner = Runner {
        sandbox: Sandbox::new(config.sandbox.clone())?,
        config: config.clone(),
        active,
        mirrors,
        front: state.clone(),
        snapshots: nats.snapshots().await?,
        nats: nats.clone(),
        partitions: cluster.partitions,
        edge: Arc::new(Edge::new(config.edge.clone())),
    };
    let partitions = tokio::spawn(run_partitions(changes, runner, stop_partitions.clone()));
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

/// What runs a partition on this node: its host, and (for a partition other than 0 in a
/// cluster of several) the loop mirroring partition 0's global records into it.
struct Run {
    host: Running,
    mirror: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
    /// Sends what the partition's commits queued for other partitions (several partitions).
    forwarder: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
}

/// What the partitions' runner shares.
struct Runner {
    sandbox: Sandbox,
    config: ServerConfig,
    active: api::cluster::Active,
    mirrors: api::cluster::Mirrors,
    /// This node's HTTP front: partition 0's dashboard reads the other partitions through it.
    front: api::cluster::ClusterState,
    nats: Nats,
    snapshots: Snapshots,
    partitions: u16,
    edge: Arc<Edge>,
}

/// Runs the host of each partition this node holds, from its `Gained` to its `Lost`.
async fn run_partitions(
    mut changes: mpsc::UnboundedReceiver<Change>,
    runner: Runner,
    stop: CancellationToken,
) {
    let mut running: BTreeMap<u16, Run> = BTreeMap::new();
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = stop.cancelled() => None,
        };
        match change {
            Some(Change::Gained(gained)) => {
                let partition = gained.partition;
                match runner.start(&gained).await {
                    Ok(run) => {
                        tracing::info!(partition, epoch = gained.epoch, "running the partition");
                        running.insert(partition, run);
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
                runner.stop(&mut running, partition).await;
                let _ = done.send(());
            }
            Some(Change::Lost(partition)) => runner.stop(&mut running, partition).await,
            None => break,
        }
    }
    runner.active.clear();
    for partition in running.keys().copied().collect::<Vec<_>>() {
        runner.stop(&mut running, partition).await;
    }
}

impl Runner {
    /// Starts running a partition this node took over: in a cluster of several partitions,
    /// one other than 0 first mirrors partition 0's global records to the end of its log (so
    /// it never runs on older journeys or keys than partition 0 answered for), then its host,
    /// then the mirror's loop.
    async fn start(&self, gained: &Gained) -> Result<Run, ServerError> {
        let partition = gained.partition;
        let mut mirror = None;
        if self.partitions > 1 && partition != 0 {
            let log = self.nats.log(0).await?;
            let mut caught = Mirror::open(&gained.store, log)?;
            caught.follow(&gained.store, &self.snapshots).await?;
            self.mirrors.set(partition, caught.position());
            mirror = Some(caught);
        }
        if self.partitions > 1 {
            gained.store.place_in(crate::store::forwards::Place {
                partition,
                partitions: self.partitions,
            });
        }
        let host = server::start(
            gained.store.clone(),
            self.sandbox.clone(),
            &self.config,
            Some((partition, gained.guard.clone())),
        )
        .await?;
        self.active.set(
            partition,
            Some(api::router(AppState {
                host: host.host.clone(),
                admin_digest: api::digest(&self.config.admin_token),
                edge: self.edge.clone(),
                // The dashboard is served by partition 0, which reads the rest through the
                // front.
                across: (self.partitions > 1 && partition == 0)
                    .then(|| api::cluster::Across::new(self.front.clone())),
            })),
        );
        let mirror = mirror.map(|mirror| {
            let stop = CancellationToken::new();
            let looping = tokio::spawn(mirror_loop(
                mirror,
                partition,
                host.host.clone(),
                self.edge.clone(),
                self.mirrors.clone(),
                self.snapshots.clone(),
                stop.clone(),
            ));
            (looping, stop)
        });
        let forwarder = (self.partitions > 1).then(|| {
            let stop = CancellationToken::new();
            let looping = tokio::spawn(super::forwarder::run(
                host.host.clone(),
                self.front.clone(),
                partition,
                stop.clone(),
            ));
            (looping, stop)
        });
        Ok(Run {
            host,
            mirror,
            forwarder,
        })
    }

    /// Stops running `partition`, if it runs here.
    async fn stop(&self, running: &mut BTreeMap<u16, Run>, partition: u16) {
        let Some(run) = running.remove(&partition) else {
            return;
        };
        self.active.set(partition, None);
        for (looping, stop) in [run.mirror, run.forwarder].into_iter().flatten() {
            stop.cancel();
            let _ = looping.await;
        }
        self.mirrors.remove(partition);
        stopped(partition, run.host).await;
    }
}

/// How often a partition's mirror reads partition 0's log when nobody asks it to.
const MIRROR_EVERY: Duration = Duration::from_millis(250);

/// Mirrors partition 0's global records into `partition` while it runs here: every
/// [`MIRROR_EVERY`], or at once when a global write waits for it; what it wrote is flushed to
/// the partition's log and forgotten by the host's caches.
async fn mirror_loop(
    mut mirror: Mirror,
    partition: u16,
    host: Arc<crate::host::Host>,
    edge: Arc<Edge>,
    mirrors: api::cluster::Mirrors,
    snapshots: Snapshots,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(MIRROR_EVERY) => {}
            _ = mirrors.poked() => {}
            _ = stop.cancelled() => return,
        }
        match mirror.follow(&host.store, &snapshots).await {
            Ok(touched) => {
                if !touched.is_empty() {
                    host.forget_global(&touched);
                    if touched.everything {
                        edge.forget_all();
                    }
                    touched.tenants.iter().for_each(|t| edge.forget(t));
                    if let Err(error) = host.store.flush().await {
                        tracing::warn!(partition, %error, "the mirrored records were not appended");
                        continue;
                    }
                }
                mirrors.set(partition, mirror.position());
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(partition, %error, "cannot mirror partition 0's records");
                }
                failing = true;
            }
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
