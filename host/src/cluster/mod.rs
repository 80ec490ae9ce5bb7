//! Cluster mode on NATS JetStream (issue 16): the building blocks `docs/SCALING.md` designs,
//! tested against real `nats-server` clusters.
//!
//! Partition arithmetic ([`partitions`]: a customer's partition, rendezvous placement of
//! owners and standbys), partition leases with fencing epochs and guards ([`lease`]), each
//! partition's replicated log with conditional appends, takeover records and the reader's
//! chain check ([`log`]), joined in [`Owned`] (a partition this node holds); a node's control
//! loop ([`node`]: membership in `wm-nodes`, placement, acquiring, renewing and handing over
//! leases, graceful leave); a partition's copy kept through its log ([`replica`], [`snapshot`]);
//! the mirror of partition 0's tenant-global records in every other partition ([`mirror`]);
//! and `waymark serve --cluster` ([`serve`]). The single-node server uses none of it.

mod copies;
mod forwarder;
pub mod lease;
pub mod log;
pub mod members;
pub mod mirror;
pub mod node;
pub mod partitions;
pub mod replica;
pub mod serve;
pub mod snapshot;

use async_nats::jetstream;
use bytes::Bytes;
use lease::{Guard, Holding, Leases};
use log::{AppendError, Chain, Entry, Kind, PartitionLog, Verdict};
use std::time::Duration;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// NATS answered with an error, or not in time.
    #[error("cannot {what}: {source}")]
    Nats {
        /// What was being done.
        what: &'static str,
        /// NATS's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A lease this node held is someone else's now (or nobody's).
    #[error("the lease of partition {0} was lost")]
    LeaseLost(u16),
    /// This node's settings disagree with the cluster's.
    #[error("{0}")]
    Config(String),
    /// A partition's stream refused an append for a record its leader does not show yet (a new
    /// stream leader still applying its log): read again shortly.
    #[error("partition {0}'s log is settling after a leader change")]
    Lagging(u16),
    /// Something in a bucket or a log could not be read as what it should be.
    #[error("unreadable cluster record: {0}")]
    Corrupt(String),
    /// Partition's log no longer holds the records after this reader's position (purged after
    /// a snapshot): start again from the snapshot.
    #[error("partition {0}'s log was purged past this copy's position")]
    Missing(u16),
}

impl ClusterError {
    fn nats(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ClusterError::Nats {
            what,
            source: Box::new(source),
        }
    }
}

/// How many times a stream's creation is asked for when its answer does not come in time.
const STREAM_ATTEMPTS: u32 = 4;

/// The stream `config` names, created as configured when missing. A request that times out
/// is made again, a few times: a server whose meta or stream leader is being elected (a
/// cluster just formed, a server just lost) may not answer a creation it then makes — seen on
/// nats-server 2.9.10, the stream's leader elected while the client waited — and asking again
/// finds the stream.
pub(crate) async fn stream(
    js: &jetstream::Context,
    config: jetstream::stream::Config,
    what: &'static str,
) -> Result<jetstream::stream::Stream, ClusterError> {
    use jetstream::context::CreateStreamErrorKind;
    let mut attempt = 1;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(e)
                if attempt < STREAM_ATTEMPTS
                    && matches!(
                        e.kind(),
                        CreateStreamErrorKind::TimedOut
                            | CreateStreamErrorKind::JetStreamUnavailable
                    ) =>
            {
                tracing::warn!(stream = %config.name, error = %e, attempt, "no answer in time; asking again");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(ClusterError::nats(what, e)),
        }
    }
}

/// Opens the key-value bucket `bucket` (keeping one entry per key, each expiring `max_age`
/// after it was written), creating its stream when missing, as `create_key_value` would
/// configure it (async-nats's `kv_to_stream_config`). Not `create_key_value` itself: it first
/// reads the account's info, with fields nats-server 2.9 does not send. Answers the bucket and
/// its stream (for reads from the stream's leader).
async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<(jetstream::kv::Store, jetstream::stream::Stream), ClusterError> {
    let config = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    let stream = stream(js, config, "open a bucket's stream").await?;
    let kv = js
        .get_key_value(bucket)
        .await
        .map_err(|e| ClusterError::nats("open a bucket", e))?;
    Ok((kv, stream))
}

/// The bucket of the cluster's settings, fixed when its first node started.
pub const CLUSTER: &str = "wm-cluster";

/// Records the cluster's partition count when its first node starts, and refuses a node
/// started with another: the count decides which partition keeps each customer's records, so
/// changing it would lose them (`docs/SCALING.md`, "Partitions").
pub(crate) async fn agree_on_partitions(nats: &Nats, partitions: u16) -> Result<(), ClusterError> {
    let (settings, _) = open_bucket(
        nats.jetstream(),
        CLUSTER,
        "Waymark's cluster settings (docs/SCALING.md)",
        Duration::ZERO,
        nats.replicas,
    )
    .await?;
    let ours = partitions.to_string();
    // A bucket just created may not take writes or answer reads at once (its stream's leader
    // is still being elected on a cluster that just formed: "no stream found", a timeout), and
    // the first node's record may not have been written yet: asked again until it is there.
    let deadline = tokio::time::Instant::now() + AGREEMENT_PATIENCE;
    loop {
        let created = settings.create("partitions", ours.clone().into()).await;
        if created.is_ok() {
            return Ok(());
        }
        let recorded = settings
            .get("partitions")
            .await
            .map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()));
        match recorded {
            Ok(Some(count)) if count == ours => return Ok(()),
            Ok(Some(count)) => {
                return Err(ClusterError::Config(format!(
                    "--partitions {partitions}: this cluster was created with {count} \
                     partitions, and the count decides where each customer's records are kept; \
                     start the node with --partitions {count}"
                )))
            }
            Ok(None) if tokio::time::Instant::now() >= deadline => {
                return Err(ClusterError::Config(format!(
                    "the cluster's partition count could not be recorded or read within {} s \
                     ({})",
                    AGREEMENT_PATIENCE.as_secs(),
                    created.err().map_or_else(String::new, |e| e.to_string())
                )))
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(ClusterError::nats("read the cluster's partition count", e))
            }
            Ok(None) | Err(_) => {
                tracing::warn!(
                    error = %created.err().map_or_else(String::new, |e| e.to_string()),
                    "the cluster's partition count is not recorded yet; asking again"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// How long a starting node asks for the cluster's partition count to be recorded or read.
const AGREEMENT_PATIENCE: Duration = Duration::from_secs(30);

/// Whether a key-value entry's message is a delete or purge marker rather than a value.
fn is_delete_marker(headers: &async_nats::HeaderMap) -> bool {
    headers
        .get("KV-Operation")
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
}

/// A connection to the NATS cluster, with the replica count the cluster's streams and buckets
/// are created with.
#[derive(Debug, Clone)]
pub struct Nats {
    js: jetstream::Context,
    replicas: usize,
}

impl Nats {
    /// Connects to `urls` (any of the cluster's servers; the client follows the cluster's
    /// gossip to the others). `replicas` is 3 for a three-server cluster, 1 for a single server.
    pub async fn connect(urls: &[String], replicas: usize) -> Result<Nats, ClusterError> {
        let servers = urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClusterError::Config(format!("a NATS server address: {e}")))?;
        let client = async_nats::ConnectOptions::new()
            .name("waymark")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(|e| ClusterError::nats("connect to NATS", e))?;
        let mut js = jetstream::new(client);
        // A stream leader election (a NATS server lost) takes a few seconds; a request waits
        // that long rather than failing the node's lease renewals at once.
        js.set_timeout(Duration::from_secs(5));
        Ok(Nats { js, replicas })
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The lease bucket, created if missing, with lease period `period`.
    pub async fn leases(&self, period: Duration) -> Result<Leases, ClusterError> {
        Leases::open(&self.js, period, self.replicas).await
    }

    /// The object store of partitions' snapshots ([`snapshot::SNAPSHOTS`]), created if missing,
    /// as `create_object_store` would configure it (not that call: its stream already exists
    /// once any node created it).
    pub async fn snapshots(&self) -> Result<snapshot::Snapshots, ClusterError> {
        let bucket = snapshot::SNAPSHOTS;
        let config = jetstream::stream::Config {
            name: format!("OBJ_{bucket}"),
            description: Some("Waymark partitions' snapshots (docs/SCALING.md)".into()),
            subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
            storage: jetstream::stream::StorageType::File,
            num_replicas: self.replicas,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: true,
            ..Default::default()
        };
        stream(&self.js, config, "open the snapshots' stream").await?;
        let store = self
            .js
            .get_object_store(bucket)
            .await
            .map_err(|e| ClusterError::nats("open the snapshots", e))?;
        Ok(snapshot::Snapshots(store))
    }

    /// Partition `partition`'s log, created if missing.
    pub async fn log(&self, partition: u16) -> Result<PartitionLog, ClusterError> {
        PartitionLog::open(&self.js, partition, self.replicas).await
    }
}

/// A partition this node holds the lease of: it has read the log to its end and appended its
/// `Took`, so every record it appends after follows the history every reader applies.
pub struct Owned {
    node: String,
    epoch: u64,
    guard: Guard,
    log: PartitionLog,
    chain: Chain,
    /// An append's answer was lost: the log must be read before the next one.
    uncertain: bool,
}

impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owned")
            .field("partition", &self.log.partition())
            .field("node", &self.node)
            .field("epoch", &self.epoch)
            .field("may_act", &self.guard.may_act())
            .field("fenced", &self.guard.is_fenced())
            .field("chain", &self.chain)
            .finish()
    }
}

impl Owned {
    /// Takes a partition over for a freshly acquired lease (`holding`, from
    /// [`Lease::holding`]; the lease itself stays with whoever renews it): reads `log` after
    /// `chain` to its end, giving each record the chain applies to `apply`, then appends `Took`.
    /// Records appended meanwhile (the previous owner's last, before its guard ran out) are
    /// read and the `Took` tried again; a later epoch on the log, or the guard running out,
    /// gives up.
    pub async fn take_over(
        holding: Holding,
        log: PartitionLog,
        mut chain: Chain,
        mut apply: impl FnMut(&Entry),
    ) -> Result<Owned, AppendError> {
        let Holding { node, epoch, guard } = holding;
        loop {
            loop {
                let entries = log.read_after(chain.previous, 256).await?;
                if entries.is_empty() {
                    break;
                }
                for entry in &entries {
                    match chain.judge(entry) {
                        Verdict::Apply => apply(entry),
                        Verdict::Missing => {
                            return Err(ClusterError::Missing(log.partition()).into())
                        }
                        _ => {}
                    }
                }
            }
            // A record under a later epoch: a later acquisition already took over.
            if chain.epoch > epoch {
                guard.fence();
                return Err(AppendError::Fenced(log.partition()));
            }
            if !guard.may_act() {
                return Err(AppendError::LeaseExpired(log.partition()));
            }
            let payload = Bytes::from(node.clone());
            match log
                .append(epoch, chain.previous, Kind::Took, payload.clone())
                .await
            {
                // Another record was stored after the same one (a race 2.9.10 lets through):
                // ours does not count; read on and try again.
                Ok(seq) if !log.is_next(chain.previous, seq).await? => continue,
                Ok(seq) => {
                    let took = Entry {
                        seq,
                        after: chain.previous,
                        epoch,
                        kind: Kind::Took,
                        payload,
                    };
                    let verdict = chain.judge(&took);
                    debug_assert_eq!(verdict, Verdict::Apply);
                    return Ok(Owned {
                        node,
                        epoch,
                        guard,
                        log,
                        chain,
                        uncertain: false,
                    });
                }
                Err(AppendError::Fenced(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends a record as this owner; answers its sequence. The guard is checked first
    /// ([`AppendError::LeaseExpired`]). When the stream refuses the expectation, the log is
    /// read on: a later epoch there fences this owner ([`AppendError::Fenced`]; it appends
    /// nothing more); records of its own epoch (an earlier append whose answer was lost) or of
    /// an older one (skipped by every reader) are moved past and the append tried again. An
    /// append stored but not the next record (a racing append stored first) fences too.
    pub async fn append(&mut self, kind: Kind, payload: Bytes) -> Result<u64, AppendError> {
        loop {
            if !self.guard.may_act() {
                return Err(AppendError::LeaseExpired(self.log.partition()));
            }
            if self.uncertain {
                self.resync().await?;
            }
            let after = self.chain.previous;
            let appended = self
                .log
                .append(self.epoch, after, kind, payload.clone())
                .await;
            let seq = match appended {
                Ok(seq) => seq,
                Err(AppendError::Fenced(_)) => {
                    // Refused: read what is there before deciding (a fence, or our own record).
                    if self.resync().await?.is_empty() {
                        // The stream saw a record its leader does not show yet.
                        self.uncertain = true;
                        return Err(ClusterError::Lagging(self.log.partition()).into());
                    }
                    continue;
                }
                Err(e) => {
                    self.uncertain = true;
                    return Err(e);
                }
            };
            match self.log.is_next(after, seq).await {
                Ok(true) => {
                    self.chain.judge(&Entry {
                        seq,
                        after,
                        epoch: self.epoch,
                        kind,
                        payload,
                    });
                    return Ok(seq);
                }
                Ok(false) => {
                    // A racing append was stored first: readers skip ours, and whoever
                    // appended first owns the history now.
                    self.guard.fence();
                    return Err(AppendError::Fenced(self.log.partition()));
                }
                Err(e) => {
                    self.uncertain = true;
                    return Err(e.into());
                }
            }
        }
    }

    /// Reads the log after this owner's position and moves past what is there, answering each
    /// record read with the chain's verdict. After an append whose answer was lost (a timeout
    /// while a stream leader was elected), the record may be there: records of this owner's
    /// epoch are its own and the chain applies them as appended. A record of a later epoch
    /// means another owner took over, and fences this one. [`Owned::append`] does this itself
    /// when it must; a caller that must know whether a record landed calls it first.
    pub async fn resync(&mut self) -> Result<Vec<(Entry, Verdict)>, AppendError> {
        let entries = self.log.read_after(self.chain.previous, 256).await?;
        let mut judged = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.epoch > self.epoch {
                self.guard.fence();
                return Err(AppendError::Fenced(self.log.partition()));
            }
            let verdict = self.chain.judge(&entry);
            if verdict == Verdict::Missing {
                return Err(ClusterError::Missing(self.log.partition()).into());
            }
            judged.push((entry, verdict));
        }
        self.uncertain = false;
        Ok(judged)
    }

    /// The guard every action for the partition checks.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The node this owner is.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The lease epoch this owner appends under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Where this owner's reading of its log stands.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The partition's log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }
}
