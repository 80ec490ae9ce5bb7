//! Partition leases in the replicated key-value bucket `wm-leases`: who should process a
//! partition, and for how long it may still act (`docs/SCALING.md` § "Leases and fencing").
//!
//! A lease is the key `p.<partition>`, written with `create` (accepted only when the key is
//! absent: never written, deleted, or expired by the bucket's `max_age`) and renewed with
//! `update` against the revision the holder last wrote. The revision `create` returned is the
//! lease's **epoch**: revisions are the bucket stream's sequence, so a later acquisition always
//! has a higher epoch, and the epoch is the fencing token every append to a partition's log
//! carries.
//!
//! The holder counts the lease as held until the moment it *sent* its last successful write,
//! plus the period, minus a margin, on its own boot-time clock ([`BootInstant`], which keeps
//! counting while the machine is suspended): the server stamped the entry
//! later than that, so the holder always gives up before the entry can expire. [`Guard`] is that
//! deadline, shared with whatever acts for the partition (the worker before an append, the
//! delivery loop before a send); a refused renewal or a refused append fences it at once.

use super::ClusterError;
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The bucket holding the leases.
pub const BUCKET: &str = "wm-leases";

/// The key written to order a lease's confirmation read after racing acquisitions.
const BARRIER: &str = "barrier";

/// The key of `partition`'s lease.
pub fn key(partition: u16) -> String {
    format!("p.{partition}")
}

/// What a lease entry says: who holds it, and since which epoch (0 in the entry `create`
/// wrote, whose own revision is the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holding node's id.
    pub node: String,
    /// The epoch the holder acquired the lease with.
    pub epoch: u64,
}

/// A point on the clock the guards' deadlines are kept on: `CLOCK_BOOTTIME`, in nanoseconds.
/// Not `Instant` (`CLOCK_MONOTONIC`), which stops while the machine is suspended: a VM
/// suspended past its leases and resumed must find its guards run out, as the NATS servers,
/// which kept time, have expired its leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BootInstant(u64);

impl BootInstant {
    /// Now.
    pub fn now() -> BootInstant {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux
        // this host supports (2.6.39 and later), so the call cannot fail.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        debug_assert_eq!(rc, 0);
        let nanos = u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec).unwrap_or(0);
        BootInstant(nanos)
    }

    fn nanos(self) -> u64 {
        self.0
    }
}

impl std::ops::Add<Duration> for BootInstant {
    type Output = BootInstant;
    fn add(self, d: Duration) -> BootInstant {
        BootInstant(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl std::ops::Sub<Duration> for BootInstant {
    type Output = BootInstant;
    fn sub(self, d: Duration) -> BootInstant {
        BootInstant(
            self.0
                .saturating_sub(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

#[derive(Debug)]
struct GuardState {
    /// The deadline, on [`BootInstant`]'s clock.
    deadline: AtomicU64,
    fenced: AtomicBool,
}

/// "May this node still act for the partition?": the lease deadline not passed and nothing
/// refused. Cheap to clone and to check; every clone sees a renewal or a fence at once.
#[derive(Debug, Clone)]
pub struct Guard(Arc<GuardState>);

impl Guard {
    fn until(deadline: BootInstant) -> Guard {
        Guard(Arc::new(GuardState {
            deadline: AtomicU64::new(deadline.nanos()),
            fenced: AtomicBool::new(false),
        }))
    }

    /// True while the lease deadline has not passed and the guard was not fenced.
    pub fn may_act(&self) -> bool {
        !self.0.fenced.load(Ordering::Acquire)
            && BootInstant::now().nanos() < self.0.deadline.load(Ordering::Acquire)
    }

    /// True once a refusal fenced the guard (as opposed to a deadline that merely passed).
    pub fn is_fenced(&self) -> bool {
        self.0.fenced.load(Ordering::Acquire)
    }

    /// Stops every holder of this guard from acting, for good.
    pub fn fence(&self) {
        self.0.fenced.store(true, Ordering::Release);
    }

    fn extend(&self, deadline: BootInstant) {
        self.0
            .deadline
            .fetch_max(deadline.nanos(), Ordering::AcqRel);
    }

    /// A guard that lets its holders act for `for_` from now, for tests of what acts under one.
    #[cfg(test)]
    pub(crate) fn lasting(for_: Duration) -> Guard {
        Guard::until(BootInstant::now() + for_)
    }

    /// Renews a test's guard as a late successful renewal does: `for_` from now.
    #[cfg(test)]
    pub(crate) fn renewed(&self, for_: Duration) {
        self.extend(BootInstant::now() + for_);
    }
}

/// A held lease: the partition, the epoch (fencing token), the revision to renew against, and
/// the guard.
#[derive(Debug)]
pub struct Lease {
    partition: u16,
    node: String,
    epoch: u64,
    revision: u64,
    guard: Guard,
}

/// What acting for a lease needs, without the lease itself (which stays with whoever renews
/// it): the node, the epoch, the guard.
#[derive(Debug, Clone)]
pub struct Holding {
    /// The holding node.
    pub node: String,
    /// The lease's epoch.
    pub epoch: u64,
    /// The lease's guard.
    pub guard: Guard,
}

impl Lease {
    /// What acting for this lease needs.
    pub fn holding(&self) -> Holding {
        Holding {
            node: self.node.clone(),
            epoch: self.epoch,
            guard: self.guard.clone(),
        }
    }

    /// The partition this lease is for.
    pub fn partition(&self) -> u16 {
        self.partition
    }

    /// The fencing token: the revision the acquisition wrote.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The node holding it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The guard everything acting for the partition checks.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

/// The lease bucket, with its period (the bucket's `max_age`).
#[derive(Debug, Clone)]
pub struct Leases {
    kv: kv::Store,
    /// The bucket's stream, for reads from its leader.
    stream: jetstream::stream::Stream,
    period: Duration,
}

impl Leases {
    /// Opens the bucket, creating it (`replicas` copies, history 1, `max_age` = `period`) when
    /// it does not exist. An existing bucket keeps its own period; a node whose `period`
    /// differs is refused, since two nodes counting different periods would overlap.
    pub async fn open(
        js: &jetstream::Context,
        period: Duration,
        replicas: usize,
    ) -> Result<Leases, ClusterError> {
        if period < Duration::from_millis(500) {
            return Err(ClusterError::Config(format!(
                "a lease period of {period:?} is too short; at least 500 ms"
            )));
        }
        let (kv, stream) = super::open_bucket(
            js,
            BUCKET,
            "Waymark partition leases (docs/SCALING.md)",
            period,
            replicas,
        )
        .await?;
        let max_age = stream.cached_info().config.max_age;
        if max_age != period {
            return Err(ClusterError::Config(format!(
                "the cluster's lease period is {max_age:?}, this node was started with {period:?}"
            )));
        }
        Ok(Leases { kv, stream, period })
    }

    /// The lease period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The deadline a write sent at `sent` buys: the period less a sixth of it, so the holder
    /// stops well before the server could expire the entry.
    fn deadline(&self, sent: BootInstant) -> BootInstant {
        sent + self.period - self.period / 6
    }

    /// Tries to acquire `partition`'s lease for `node`: `Ok(None)` while another node holds it.
    pub async fn acquire(&self, partition: u16, node: &str) -> Result<Option<Lease>, ClusterError> {
        // `create`, written out: the key's last entry read from the stream's leader (async-nats's
        // `create` reads a deleted entry by direct get, which a lagging replica may answer with
        // the entry before the delete), then a write expecting exactly that entry.
        let expected = match self.last_entry(partition).await? {
            Some((_, Some(_))) => return Ok(None),
            Some((revision, None)) => revision,
            None => 0,
        };
        let value = encode(&Holder {
            node: node.into(),
            epoch: 0,
        })?;
        let sent = BootInstant::now();
        let revision = match self.kv.update(key(partition), value, expected).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => return Ok(None),
            Err(e) => return Err(ClusterError::nats("acquire a lease", e)),
        };
        // Two writes racing on one expectation can both be stored by nats-server 2.9.10
        // (nats-server#4320); the bucket keeps the last. A write to the bucket's stream, once
        // acknowledged, is ordered after every racing write already checked, so the entry read
        // after it is final: only the acquirer whose entry it is holds the lease.
        let confirmed = async {
            self.kv
                .put(BARRIER, bytes::Bytes::new())
                .await
                .map_err(|e| ClusterError::nats("confirm a lease", e))?;
            Ok::<_, ClusterError>(self.last(partition).await?.map(|(r, _)| r) == Some(revision))
        }
        .await;
        match confirmed {
            Ok(true) => Ok(Some(Lease {
                partition,
                node: node.into(),
                epoch: revision,
                revision,
                guard: Guard::until(self.deadline(sent)),
            })),
            Ok(false) => Ok(None),
            Err(e) => {
                // Not known to hold it: take back our entry if it is still the last.
                let _ = self
                    .kv
                    .delete_expect_revision(key(partition), Some(revision))
                    .await;
                Err(e)
            }
        }
    }

    /// Renews `lease`. A refusal (someone else's entry, or none) means the lease is lost: its
    /// guard is fenced and [`ClusterError::LeaseLost`] returned. Any other failure (a timeout, a
    /// stream leader being elected) leaves the guard as it was, running down to its deadline.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), ClusterError> {
        if lease.guard.is_fenced() {
            return Err(ClusterError::LeaseLost(lease.partition));
        }
        let value = encode(&Holder {
            node: lease.node.clone(),
            epoch: lease.epoch,
        })?;
        let sent = BootInstant::now();
        match self
            .kv
            .update(key(lease.partition), value, lease.revision)
            .await
        {
            Ok(revision) => {
                lease.revision = revision;
                lease.guard.extend(self.deadline(sent));
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                lease.guard.fence();
                Err(ClusterError::LeaseLost(lease.partition))
            }
            Err(e) => Err(ClusterError::nats("renew a lease", e)),
        }
    }

    /// Gives `lease` up: the guard is fenced first, then the entry deleted if it is still this
    /// holder's, so the next node need not wait for it to expire.
    pub async fn release(&self, lease: Lease) -> Result<(), ClusterError> {
        lease.guard.fence();
        match self
            .kv
            .delete_expect_revision(key(lease.partition), Some(lease.revision))
            .await
        {
            Ok(()) => Ok(()),
            // Someone else's entry now (or none): nothing of ours to delete.
            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(ClusterError::nats("release a lease", e)),
        }
    }

    /// The last entry of `partition`'s lease key, read from the bucket stream's leader (a
    /// replica's direct get may lag a write): its revision, and its value unless it is a
    /// delete marker. `None` when the key has no entry (never written, or expired).
    async fn last_entry(
        &self,
        partition: u16,
    ) -> Result<Option<(u64, Option<bytes::Bytes>)>, ClusterError> {
        let subject = format!("$KV.{BUCKET}.{}", key(partition));
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let deleted = super::is_delete_marker(&message.headers);
                Ok(Some((
                    message.sequence,
                    (!deleted).then_some(message.payload),
                )))
            }
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(e) => Err(ClusterError::nats("read a lease", e)),
        }
    }

    /// The revision and value of `partition`'s lease entry, from the leader; `None` when
    /// absent or deleted.
    async fn last(&self, partition: u16) -> Result<Option<(u64, bytes::Bytes)>, ClusterError> {
        Ok(self
            .last_entry(partition)
            .await?
            .and_then(|(revision, value)| Some((revision, value?))))
    }

    /// Who holds `partition`'s lease now (`None` when nobody does).
    pub async fn holder(&self, partition: u16) -> Result<Option<Holder>, ClusterError> {
        let Some((revision, value)) = self.last(partition).await? else {
            return Ok(None);
        };
        let mut holder: Holder = rmp_serde::from_slice(&value)
            .map_err(|e| ClusterError::Corrupt(format!("lease {}: {e}", key(partition))))?;
        if holder.epoch == 0 {
            holder.epoch = revision;
        }
        Ok(Some(holder))
    }
}

fn encode(holder: &Holder) -> Result<bytes::Bytes, ClusterError> {
    rmp_serde::to_vec_named(holder)
        .map(Into::into)
        .map_err(|e| ClusterError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_allows_acting_until_its_deadline_or_a_fence() {
        let guard = Guard::until(BootInstant::now() + Duration::from_secs(60));
        assert!(guard.may_act());
        let clone = guard.clone();
        clone.fence();
        assert!(!guard.may_act() && guard.is_fenced());

        let passed = Guard::until(BootInstant::now() - Duration::from_millis(1));
        assert!(!passed.may_act() && !passed.is_fenced());
    }

    #[test]
    fn a_renewal_never_moves_a_deadline_back() {
        let guard = Guard::until(BootInstant::now() + Duration::from_secs(60));
        guard.extend(BootInstant::now() + Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            guard.may_act(),
            "the earlier deadline replaced the later one"
        );
    }
}
