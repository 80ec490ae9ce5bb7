//! A node's control loop: membership, placement, and the leases of the partitions it should
//! hold (`docs/SCALING.md` § "Rebalancing").
//!
//! Every tick (a sixth of the lease period) a node writes its entry in the bucket `wm-nodes`
//! (each entry expiring two lease periods after it was written), reads the live nodes, places
//! the partitions over them ([`super::partitions::placements`]), and then:
//!
//! - renews every lease it holds; a lease lost, or whose guard ran out while renewals failed,
//!   is given up ([`Change::Lost`]);
//! - hands over each partition it holds whose preferred owner is another live node: whoever
//!   runs it stops first ([`Change::HandingOver`]: in-flight work finished, the last writes
//!   appended under the lease, still renewed meanwhile), then the lease is released (the guard
//!   fenced first), and the preferred owner acquires it at its next tick, without waiting for
//!   an expiry;
//! - tries to acquire each partition it is the preferred owner of, and each partition it stands
//!   by for once nobody holds it: at once when another node held it at the last tick (its owner
//!   died or left), else after a lease period of ticks in a row without a holder (so at start,
//!   and after a handover, the preferred owner, not the standby, wins); a partition acquired
//!   is taken
//!   over ([`super::Owned::take_over`]: its log read to the end, a `Took` appended) and handed to
//!   whoever runs it ([`Change::Gained`]).
//!
//! Leases are renewed by a loop of their own beside the control loop ([`Node::run`] runs both),
//! every tick, all at once: a slow step of the control loop (a stream created, a log read, a
//! NATS server answering late) never keeps a held lease from its renewal, and a lease being
//! taken over is renewed like the others. A lease lost, run out, or whose guard an append
//! fenced is given up there ([`Change::Lost`]; a fenced one's entry deleted if it is still
//! ours, so the next owner need not wait for it to expire).
//!
//! A node that dies stops renewing: its leases expire after the period, and each partition's
//! standby (the next in its ranking, so the new preferred owner once the dead node's entry
//! expires too) acquires it within a tick. [`Node::leave`] is the graceful way out: every lease
//! released, the entry deleted.

use super::copies::Copies;
use super::lease::{Guard, Lease, Leases};
use super::members::live_members;
pub use super::members::{Directory, Member};
use super::partitions::placements;
use super::{ClusterError, Nats};
use crate::store::Store;
use async_nats::jetstream::kv;
use prometheus_client::metrics::counter::Counter;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// How far behind the log's last record the preferred owner's copy may be for the holder to
/// hand the partition over: records it then reads while taking over.
const HANDOVER_LAG: u64 = 32;

/// How long a handover waits, at most, for whoever runs the partition here to stop
/// ([`Change::HandingOver`]), in lease periods. The control loop does not wait with it (it
/// looks again at each tick, beating and renewing meanwhile), so a host finishing a batch or
/// compiling its first journey is let finish, and its last writes are appended; only a host
/// that does not stop at all is cut off, its work then redone by the next owner.
const HANDOVER_STOP: u32 = 4;

/// Ticks in a row a standby sees a partition without a holder before it acquires it (a lease
/// period), when it did not see the holder go.
const FREE_TICKS: u32 = 6;

/// The bucket of live nodes.
pub const NODES: &str = "wm-nodes";

/// A partition a node took over: its copy, the owner's now, and the guard acting for it checks.
#[derive(Clone)]
pub struct Gained {
    /// The partition.
    pub partition: u16,
    /// The lease epoch the node appends under.
    pub epoch: u64,
    /// Checked before every action for the partition (a delivery, an answer); fenced or run
    /// out once the node lost it.
    pub guard: Guard,
    /// The partition's copy: written by whoever runs the partition; its flushes append what
    /// was written to the partition's log, and fail once the node lost it.
    pub store: Store,
}

impl std::fmt::Debug for Gained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gained")
            .field("partition", &self.partition)
            .field("epoch", &self.epoch)
            .field("guard", &self.guard)
            .finish()
    }
}

/// What changed in the partitions a node holds.
#[derive(Debug)]
#[non_exhaustive]
pub enum Change {
    /// The node took the partition over: run it.
    Gained(Box<Gained>),
    /// The node no longer holds the partition (lost, run out, or handed over): stop running it.
    /// Its guard is fenced or run out already.
    Lost(u16),
    /// The node is about to hand the partition over, still holding its lease: stop running it
    /// (its last writes appended), then answer on `stopped`. The lease is released once it
    /// has, or after [`HANDOVER_STOP`] (what was not appended by then is the next owner's to
    /// do again); a `Lost` follows.
    HandingOver {
        /// The partition.
        partition: u16,
        /// Answered (or dropped) once nothing runs the partition here.
        stopped: oneshot::Sender<()>,
    },
}

/// A lease this node holds, and whether its `Gained` was sent (a `Lost` follows only then).
#[derive(Debug)]
struct Held {
    lease: Lease,
    announced: bool,
}

/// What a node counts, for its `/metrics` ([`Node::counters`]).
#[derive(Debug, Clone, Default)]
pub struct NodeCounters {
    /// Partitions taken over (acquired, their logs read to the end, a `Took` appended).
    pub takeovers: Counter,
    /// Partitions handed over to their preferred owner.
    pub handovers: Counter,
    /// Leases lost, or run out while renewals failed.
    pub leases_lost: Counter,
    /// Snapshots written by this node's standby copies.
    pub snapshots: Counter,
    /// Snapshots that could not be written.
    pub snapshot_failures: Counter,
    /// Copies reopened where the node's last run left them.
    pub copies_reopened: Counter,
    /// Copies started from a snapshot (or from the log's start).
    pub copies_restored: Counter,
}

/// What the control loop and the renewal loop share.
#[derive(Debug, Clone)]
struct Shared {
    leases: Leases,
    held: Arc<Mutex<BTreeMap<u16, Held>>>,
    changes: mpsc::UnboundedSender<Change>,
    counters: NodeCounters,
}

impl Shared {
    /// Renews every held lease at once; gives up those lost, run out, or fenced by an append.
    async fn renew_all(&self) {
        let mut held = self.held.lock().await;
        let leases = &self.leases;
        let outcomes = futures::future::join_all(
            held.iter_mut()
                .map(|(p, h)| async move { (*p, leases.renew(&mut h.lease).await) }),
        )
        .await;
        for (partition, outcome) in outcomes {
            let gone = match outcome {
                Ok(()) => false,
                Err(ClusterError::LeaseLost(_)) => {
                    tracing::warn!(partition, "lease lost");
                    true
                }
                Err(e) => {
                    let out = !held[&partition].lease.guard().may_act();
                    if out {
                        tracing::warn!(partition, error = %e, "lease ran out while renewals failed");
                    } else {
                        tracing::warn!(partition, error = %e, "lease renewal failed");
                    }
                    out
                }
            };
            if gone {
                self.counters.leases_lost.inc();
                if let Some(h) = held.remove(&partition) {
                    self.give_up(partition, h).await;
                }
            }
        }
    }

    /// Gives a lease up: fenced, `Lost` sent if `Gained` was, then its entry deleted if it is
    /// still ours (a lost lease's is not: the conditional delete leaves it).
    async fn give_up(&self, partition: u16, held: Held) {
        held.lease.guard().fence();
        if held.announced {
            let _ = self.changes.send(Change::Lost(partition));
        }
        if let Err(e) = self.leases.release(held.lease).await {
            tracing::warn!(partition, error = %e, "releasing a lease failed; it will expire");
        }
    }
}

/// A node of the cluster, as its control loop keeps it.
#[derive(Debug)]
pub struct Node {
    id: String,
    partitions: u16,
    nats: Nats,
    members: kv::Store,
    /// The members bucket's stream, for listing its keys without a consumer.
    members_stream: async_nats::jetstream::stream::Stream,
    shared: Shared,
    /// Partitions this node stands by for, and for how many ticks in a row they have been
    /// seen without a holder.
    free_ticks: BTreeMap<u16, u32>,
    /// Partitions this node stands by for, seen held by another node at the last tick.
    held_last_tick: BTreeSet<u16>,
    /// The copies of the partitions this node holds or stands by for.
    copies: Copies,
    /// Where this node serves HTTP ([`Node::advertise`]).
    url: Option<String>,
    /// Each node's last entry's sequence, and since when this node has seen it unchanged.
    beats: std::collections::HashMap<String, (u64, std::time::Instant)>,
    /// Partitions being handed over: answered once whoever runs them here stopped, and since
    /// when.
    handing: BTreeMap<u16, (oneshot::Receiver<()>, std::time::Instant)>,
}

impl Node {
    /// Joins the cluster as `id`, with `partitions` partitions and leases of `period`, keeping
    /// the partitions' copies under `dir`, where the copies a previous run left are kept to be
    /// reopened ([`Replica::reopen`]: a standby's goes on from its mark; an owner's is never
    /// trusted) and anything else is removed; ownership changes arrive on the receiver answered
    /// beside the node.
    pub async fn join(
        nats: Nats,
        id: &str,
        partitions: u16,
        period: Duration,
        dir: &Path,
    ) -> Result<(Node, mpsc::UnboundedReceiver<Change>), ClusterError> {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ClusterError::Config(format!(
                "a node id is letters, digits, '-' and '_': {id:?}"
            )));
        }
        if partitions == 0 {
            return Err(ClusterError::Config(
                "a cluster has at least one partition".into(),
            ));
        }
        let unusable = |e: std::io::Error| {
            ClusterError::Config(format!("the copies' directory {}: {e}", dir.display()))
        };
        super::agree_on_partitions(&nats, partitions).await?;
        let snapshots = nats.snapshots().await?;
        let counters = NodeCounters::default();
        let copies = Copies::open(nats.clone(), dir, partitions, period, snapshots)
            .map_err(unusable)?
            .counted_by(counters.clone());
        let leases = nats.leases(period).await?;
        let (members, members_stream) = super::open_bucket(
            nats.jetstream(),
            NODES,
            "Waymark's live nodes (docs/SCALING.md)",
            period * 2,
            nats.replicas,
        )
        .await?;
        let (changes, receiver) = mpsc::unbounded_channel();
        let node = Node {
            id: id.into(),
            partitions,
            nats,
            members,
            members_stream,
            shared: Shared {
                leases,
                held: Arc::default(),
                changes,
                counters,
            },
            free_ticks: BTreeMap::new(),
            held_last_tick: BTreeSet::new(),
            copies,
            url: None,
            beats: Default::default(),
            handing: BTreeMap::new(),
        };
        Ok((node, receiver))
    }

    /// Says, in this node's entry, where it serves HTTP: other nodes pass requests for the
    /// partitions it owns on to `url`.
    pub fn advertise(&mut self, url: &str) {
        self.url = Some(url.to_owned());
    }

    /// Opens the copies with `shards` queue shards (the same on every node: the queue's keys
    /// carry it) and `cache_bytes` of page cache each (default: 1 shard, 32 MiB).
    pub fn copies_with(&mut self, shards: u16, cache_bytes: u64) {
        self.copies.shards = shards.max(1);
        self.copies.cache = cache_bytes;
    }

    /// What this node counts (takeovers, handovers, leases lost, snapshots, copies), shared
    /// with whoever exports it.
    pub fn counters(&self) -> NodeCounters {
        self.shared.counters.clone()
    }

    /// A reader of the cluster's membership and ownership, for the HTTP side.
    pub fn directory(&self) -> Directory {
        Directory {
            nats: self.nats.clone(),
            leases: self.shared.leases.clone(),
            members: self.members.clone(),
            members_stream: self.members_stream.clone(),
            partitions: self.partitions,
        }
    }

    /// Sets how often a standby snapshots its copy: after `records` records applied, or
    /// `every` after its last snapshot with at least one applied (default: 10,000 records or 10
    /// minutes; docs/SCALING.md).
    pub fn snapshot_every(&mut self, records: u64, every: Duration) {
        self.copies.snapshot_every = (records, every);
    }

    /// The time between two ticks: a sixth of the lease period (500 ms for the default 3 s),
    /// so a lease is renewed several times before its guard runs out and a standby notices a
    /// dead owner's lease gone within half a second.
    pub fn tick_interval(&self) -> Duration {
        self.shared.leases.period() / 6
    }

    /// The partitions this node holds now.
    pub async fn holds(&self) -> Vec<u16> {
        self.shared.held.lock().await.keys().copied().collect()
    }

    /// The ids of the live nodes, this one included: those whose entry has not expired nor
    /// been deleted, and has been written again within a lease period of this node first
    /// seeing it unchanged (a node that died stops beating at once, but its entry lingers for
    /// two periods: it must not be handed partitions meanwhile).
    pub async fn live(&mut self) -> Result<Vec<String>, ClusterError> {
        Ok(self.live_members().await?.into_keys().collect())
    }

    /// [`Node::live`], with each live node's entry.
    async fn live_members(&mut self) -> Result<BTreeMap<String, Member>, ClusterError> {
        let now = std::time::Instant::now();
        let period = self.shared.leases.period();
        let mut live = BTreeMap::new();
        let mut beats = std::collections::HashMap::new();
        for (seq, member) in live_members(&self.members_stream).await? {
            let since = match self.beats.get(&member.id) {
                Some((seen, since)) if *seen == seq => *since,
                _ => now,
            };
            beats.insert(member.id.clone(), (seq, since));
            if member.id == self.id || now.duration_since(since) < period {
                live.insert(member.id.clone(), member);
            }
        }
        self.beats = beats;
        live.entry(self.id.clone()).or_insert_with(|| Member {
            id: self.id.clone(),
            holds: Vec::new(),
            url: self.url.clone(),
            standby_at: BTreeMap::new(),
        });
        Ok(live)
    }

    /// Renews every held lease (what the renewal loop does every tick; see the module's
    /// documentation).
    pub async fn renew(&self) {
        self.shared.renew_all().await;
    }

    /// The renewal loop: every tick, [`Node::renew`], until dropped. [`Node::run`] runs it
    /// beside the control loop; a caller driving [`Node::tick`] itself runs it too.
    pub fn renewals(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        let interval = self.tick_interval();
        async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                shared.renew_all().await;
            }
        }
    }

    /// One round of the control loop (see the module's documentation). A failure to reach NATS
    /// ends the round early. Renewals are the renewal loop's ([`Node::renew`]).
    pub async fn tick(&mut self) -> Result<(), ClusterError> {
        self.beat().await?;
        let members = self.live_members().await?;
        let live: Vec<String> = members.keys().cloned().collect();
        let placed = placements(&live, self.partitions);
        self.finish_handovers().await;
        // Hand over what another live node should own, once that node's copy has caught up
        // with the log (it keeps one as the preferred owner): the partition waits for it only
        // as long as the handover itself.
        for place in &placed {
            if place.owner == self.id
                || self.handing.contains_key(&place.partition)
                || !self.holds().await.contains(&place.partition)
            {
                continue;
            }
            let read = members
                .get(place.owner)
                .and_then(|m| m.standby_at.get(&place.partition))
                .copied()
                .unwrap_or(0);
            let last = self.nats.log(place.partition).await?.last().await?;
            if read + HANDOVER_LAG < last {
                tracing::debug!(
                    partition = place.partition,
                    to = place.owner,
                    read,
                    last,
                    "waiting for the preferred owner to catch up"
                );
                continue;
            }
            let announced = self
                .shared
                .held
                .lock()
                .await
                .get(&place.partition)
                .map(|held| held.announced);
            let Some(announced) = announced else { continue };
            tracing::info!(
                partition = place.partition,
                to = place.owner,
                "handing over"
            );
            self.shared.counters.handovers.inc();
            if announced {
                // Whoever runs it stops while the lease is still held (and renewed), so its
                // last writes reach the log and nothing is left for the next owner to redo;
                // the lease goes once it has ([`Node::finish_handovers`], at a later tick).
                let (stopped, is_stopped) = oneshot::channel();
                let handing = Change::HandingOver {
                    partition: place.partition,
                    stopped,
                };
                if self.shared.changes.send(handing).is_ok() {
                    self.handing
                        .insert(place.partition, (is_stopped, std::time::Instant::now()));
                    continue;
                }
            }
            self.release(place.partition).await;
        }
        self.keep_copies(&placed).await?;
        // Acquire what this node should own, and what it stands by for once nobody holds it:
        // at once if another node held it at the last tick (its owner died or left), else
        // after a lease period of ticks in a row without a holder (at start, or after this
        // node handed the partition over to its preferred owner, who is taking it: the
        // preferred owner, not the standby, should win).
        let holds: BTreeSet<u16> = self.holds().await.into_iter().collect();
        let mut free_now = BTreeMap::new();
        let mut held_now = BTreeSet::new();
        for place in &placed {
            if holds.contains(&place.partition) {
                continue;
            }
            let preferred = place.owner == self.id;
            let standby = place.standby == Some(self.id.as_str());
            if !preferred && !standby {
                continue;
            }
            if standby {
                if self.shared.leases.holder(place.partition).await?.is_some() {
                    held_now.insert(place.partition);
                    continue;
                }
                let was_held = self.held_last_tick.contains(&place.partition);
                let free = self.free_ticks.get(&place.partition).copied().unwrap_or(0) + 1;
                if !was_held && free < FREE_TICKS {
                    free_now.insert(place.partition, free);
                    continue;
                }
            }
            if !self.acquire(place.partition).await? && standby {
                free_now.insert(place.partition, 1);
            }
        }
        self.free_ticks = free_now;
        self.held_last_tick = held_now;
        Ok(())
    }

    /// Releases the lease of each partition being handed over whose host has stopped (or has
    /// not stopped within [`HANDOVER_STOP`] lease periods: it is cut off, and the next owner
    /// redoes what it had not appended).
    async fn finish_handovers(&mut self) {
        let patience = self.shared.leases.period() * HANDOVER_STOP;
        let mut done = Vec::new();
        for (partition, (stopped, since)) in &mut self.handing {
            match stopped.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) if since.elapsed() < patience => {}
                Err(oneshot::error::TryRecvError::Empty) => {
                    tracing::warn!(
                        partition,
                        "the partition did not stop in time; handing it over anyway"
                    );
                    done.push(*partition);
                }
                _ => done.push(*partition),
            }
        }
        for partition in done {
            self.handing.remove(&partition);
            self.release(partition).await;
        }
    }

    /// Gives up `partition`'s lease if this node still holds it.
    async fn release(&mut self, partition: u16) {
        let handed = self.shared.held.lock().await.remove(&partition);
        if let Some(held) = handed {
            self.shared.give_up(partition, held).await;
        }
    }

    /// Keeps this node's copies: a copy of a partition it held and no longer holds is dropped
    /// (it may hold writes its log refused); each partition it stands by for has a copy,
    /// brought up to its log's end; the others' are dropped.
    async fn keep_copies(
        &mut self,
        placed: &[super::partitions::Placement<'_>],
    ) -> Result<(), ClusterError> {
        let holds: BTreeSet<u16> = self.holds().await.into_iter().collect();
        // The standby's copy, and the preferred owner's while another node holds the partition
        // (it takes it over from its copy when handed it).
        let standing_by: BTreeSet<u16> = placed
            .iter()
            .filter(|p| p.standby == Some(self.id.as_str()) || p.owner == self.id)
            .filter(|p| !holds.contains(&p.partition))
            .map(|p| p.partition)
            .collect();
        self.copies.keep(&holds, standing_by).await
    }

    /// Writes this node's entry in `wm-nodes`.
    async fn beat(&self) -> Result<(), ClusterError> {
        let member = Member {
            id: self.id.clone(),
            holds: self.holds().await,
            url: self.url.clone(),
            standby_at: self.copies.standing_at(),
        };
        let value =
            rmp_serde::to_vec_named(&member).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
        self.members
            .put(&self.id, value.into())
            .await
            .map_err(|e| ClusterError::nats("write this node's entry", e))?;
        Ok(())
    }

    /// Tries to acquire `partition` and take it over; answers whether it did. The lease is
    /// held (and so renewed) from the moment it is acquired, through the takeover.
    async fn acquire(&mut self, partition: u16) -> Result<bool, ClusterError> {
        let Some(lease) = self.shared.leases.acquire(partition, &self.id).await? else {
            return Ok(false);
        };
        let holding = lease.holding();
        self.shared.held.lock().await.insert(
            partition,
            Held {
                lease,
                announced: false,
            },
        );
        let copy = self.copies.take(partition).await;
        let taken = match copy {
            Ok(mut copy) => {
                let taken = copy.take_over(holding).await.map_err(|e| e.to_string());
                // Kept either way: dropped at the next tick unless it is the owner's.
                self.copies.put_back(partition, copy);
                taken
            }
            Err(e) => Err(e),
        };
        let mut held = self.shared.held.lock().await;
        match taken {
            Ok(guard) => match held.get_mut(&partition) {
                Some(h) if h.lease.guard().may_act() => {
                    let epoch = h.lease.epoch();
                    tracing::info!(partition, epoch, "took over");
                    self.shared.counters.takeovers.inc();
                    h.announced = true;
                    let store = self.copies.store(partition).expect("just put back");
                    // A receiver gone means nobody runs partitions any more: the lease is kept
                    // anyway until `leave`, so the placement stays stable.
                    let _ = self.shared.changes.send(Change::Gained(Box::new(Gained {
                        partition,
                        epoch,
                        guard,
                        store,
                    })));
                    Ok(true)
                }
                // Lost while taking over (the renewal loop gave it up already).
                _ => Ok(false),
            },
            Err(e) => {
                tracing::warn!(partition, error = %e, "takeover failed");
                if let Some(h) = held.remove(&partition) {
                    drop(held);
                    self.shared.give_up(partition, h).await;
                }
                Ok(false)
            }
        }
    }

    /// Runs the control loop and the renewal loop until `stop` is cancelled, then leaves
    /// gracefully. A stop waits for the tick under way to end (a tick cut short could leave a
    /// lease acquired and not yet recorded, held by nobody until it expires); renewals go on
    /// meanwhile. Dropping the future (aborting its task) stops both at once, with no goodbye:
    /// what `kill -9` does to a node.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) {
        let interval = self.tick_interval();
        let renewals = self.renewals();
        let control = async {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.cancelled() => break,
                }
                if let Err(e) = self.tick().await {
                    tracing::warn!(node = %self.id, error = %e, "cluster tick failed");
                }
            }
        };
        tokio::select! {
            _ = renewals => {}
            _ = control => {}
        }
        let id = self.id.clone();
        if let Err(e) = self.leave().await {
            tracing::warn!(node = %id, error = %e, "leaving the cluster failed");
        }
    }

    /// Leaves gracefully: every lease given up (its partition then free for its next owner at
    /// once), and this node's entry deleted.
    pub async fn leave(self) -> Result<(), ClusterError> {
        let held = std::mem::take(&mut *self.shared.held.lock().await);
        for (partition, h) in held {
            self.shared.give_up(partition, h).await;
        }
        self.members
            .delete(&self.id)
            .await
            .map_err(|e| ClusterError::nats("delete this node's entry", e))
    }
}
