//! Cluster mode on NATS JetStream (issue 16): the building blocks `docs/SCALING.md` designs,
//! tested against real `nats-server` clusters.
//!
//! **Built so far**: partition arithmetic ([`partitions`]: a customer's partition, rendezvous
//! placement of owners and standbys), partition leases with fencing epochs and guards
//! ([`lease`]), and each partition's replicated log with conditional appends, takeover records
//! and the reader's chain check ([`log`]), joined in [`Owned`] (a partition this node holds).
//! **Not built yet**: `waymark serve --cluster` and everything that runs on these blocks
//! (ingest publishing to the log, the worker's batch records, standbys, snapshots, forwards,
//! the global replica, reads from any node, rebalancing, `/v1/admin/cluster`). Nothing in the
//! single-node server uses this module.

pub mod lease;
pub mod log;
pub mod partitions;

use async_nats::jetstream;
use bytes::Bytes;
use lease::{Guard, Lease, Leases};
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
    /// Something in a bucket or a log could not be read as what it should be.
    #[error("unreadable cluster record: {0}")]
    Corrupt(String),
}

impl ClusterError {
    fn nats(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ClusterError::Nats {
            what,
            source: Box::new(source),
        }
    }
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

    /// Partition `partition`'s log, created if missing.
    pub async fn log(&self, partition: u16) -> Result<PartitionLog, ClusterError> {
        PartitionLog::open(&self.js, partition, self.replicas).await
    }
}

/// A partition this node holds the lease of: it has read the log to its end and appended its
/// `Took`, so every record it appends after follows the history every reader applies.
#[derive(Debug)]
pub struct Owned {
    lease: Lease,
    log: PartitionLog,
    chain: Chain,
    /// An append's answer was lost: the log must be read before the next one.
    uncertain: bool,
}

impl Owned {
    /// Takes a partition over with a freshly acquired `lease`: reads `log` after `chain` to its
    /// end, giving each record the chain applies to `apply`, then appends `Took`. Records
    /// appended meanwhile (the previous owner's last, before its guard ran out) are read and the
    /// `Took` tried again; a refusal after the lease's guard ran out gives up.
    pub async fn take_over(
        lease: Lease,
        log: PartitionLog,
        mut chain: Chain,
        mut apply: impl FnMut(&Entry),
    ) -> Result<Owned, AppendError> {
        loop {
            loop {
                let entries = log.read_after(chain.previous, 256).await?;
                if entries.is_empty() {
                    break;
                }
                for entry in &entries {
                    if chain.judge(entry) == Verdict::Apply {
                        apply(entry);
                    }
                }
            }
            // A record under a later epoch: a later acquisition already took over.
            if chain.epoch > lease.epoch() {
                lease.guard().fence();
                return Err(AppendError::Fenced(log.partition()));
            }
            if !lease.guard().may_act() {
                return Err(AppendError::LeaseExpired(log.partition()));
            }
            let payload = Bytes::from(lease.node().to_owned());
            match log
                .append(lease.epoch(), chain.previous, Kind::Took, payload.clone())
                .await
            {
                // Another record was stored after the same one (a race 2.9.10 lets through):
                // ours does not count; read on and try again.
                Ok(seq) if !log.is_next(chain.previous, seq).await? => continue,
                Ok(seq) => {
                    let took = Entry {
                        seq,
                        after: chain.previous,
                        epoch: lease.epoch(),
                        kind: Kind::Took,
                        payload,
                    };
                    let verdict = chain.judge(&took);
                    debug_assert_eq!(verdict, Verdict::Apply);
                    return Ok(Owned {
                        lease,
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
    /// ([`AppendError::LeaseExpired`]); a refusal by the stream fences it
    /// ([`AppendError::Fenced`]), after which this owner appends nothing more.
    pub async fn append(&mut self, kind: Kind, payload: Bytes) -> Result<u64, AppendError> {
        if !self.lease.guard().may_act() {
            return Err(AppendError::LeaseExpired(self.log.partition()));
        }
        if self.uncertain {
            self.resync().await?;
        }
        let guard = self.lease.guard();
        let after = self.chain.previous;
        match self
            .log
            .append(self.lease.epoch(), after, kind, payload.clone())
            .await
        {
            Ok(seq)
                if !self
                    .log
                    .is_next(after, seq)
                    .await
                    .inspect_err(|_| self.uncertain = true)? =>
            {
                // A racing append was stored first: readers skip ours, and whoever appended
                // first owns the history now.
                guard.fence();
                Err(AppendError::Fenced(self.log.partition()))
            }
            Ok(seq) => {
                self.chain.judge(&Entry {
                    seq,
                    after,
                    epoch: self.lease.epoch(),
                    kind,
                    payload,
                });
                Ok(seq)
            }
            Err(AppendError::Fenced(partition)) => {
                guard.fence();
                Err(AppendError::Fenced(partition))
            }
            Err(e) => {
                self.uncertain = true;
                Err(e)
            }
        }
    }

    /// Reads the log after this owner's position, answering the records it moved past. After
    /// an append whose answer was lost (a timeout while a stream leader was elected), the
    /// record may be there: records of this owner's epoch are its own and are taken as
    /// appended. A record of a higher epoch means another owner took over, and fences this one.
    /// [`Owned::append`] does this itself before appending after a lost answer; a caller that
    /// must know whether a record landed calls it first.
    pub async fn resync(&mut self) -> Result<Vec<Entry>, AppendError> {
        let entries = self.log.read_after(self.chain.previous, 256).await?;
        for entry in &entries {
            if entry.epoch > self.lease.epoch() {
                self.lease.guard().fence();
                return Err(AppendError::Fenced(self.log.partition()));
            }
            self.chain.judge(entry);
        }
        self.uncertain = false;
        Ok(entries)
    }

    /// Renews the lease (see [`Leases::renew`]).
    pub async fn renew(&mut self, leases: &Leases) -> Result<(), ClusterError> {
        leases.renew(&mut self.lease).await
    }

    /// Gives the partition up: fences the guard and releases the lease.
    pub async fn release(self, leases: &Leases) -> Result<Chain, ClusterError> {
        leases.release(self.lease).await?;
        Ok(self.chain)
    }

    /// The guard every action for the partition checks.
    pub fn guard(&self) -> &Guard {
        self.lease.guard()
    }

    /// The lease epoch this owner appends under.
    pub fn epoch(&self) -> u64 {
        self.lease.epoch()
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
