//! Drains the outbox: calls the channel adapter's `deliver` for each due message and commits
//! what `engine::delivery::attempt` makes of the result — a retry with backoff, a dead letter, or
//! a delivery — with the final outcome reported back to the journey as a `delivery` trigger in
//! the same transaction.
//!
//! Three parts:
//!
//! - The **feeder** ([`run`]) keeps [`CONCURRENCY`] deliveries in flight at all times: it reads
//!   due messages in batches into a buffer and starts the next one as soon as any delivery ends,
//!   rather than waiting for a whole batch. Every message it reads is *taken* until its attempt
//!   is recorded, and reading the due index again skips taken messages
//!   ([`Store::scan_due_messages`](crate::store::Store::scan_due_messages)), so no message
//!   is ever in flight twice. Each tenant, and each channel of a tenant, may hold only its
//!   share of the slots ([`DeliveryBudgets`]): messages read are parked by tenant and channel
//!   and started as their budgets allow, so one tenant's provider that never answers stalls
//!   only that tenant's channel, never the loop; a tenant with [`PARK_PER_TENANT`] messages
//!   parked is passed over by reads until half of them have started, and then its own messages are
//!   read again from the first one passed over. It wakes when a message enters the outbox, when the earliest
//!   message it knows of falls due, and when a recorded retry is due earlier than that.
//! - Each **delivery** runs as its own task (guests of different deliveries run in parallel on
//!   the runtime's workers) and hands its attempt to the committer.
//! - The **committer** ([`commit_attempts`]) gathers finished attempts for up to
//!   [`COMMIT_WINDOW`] (or [`COMMIT_BATCH`] of them, or until none has come for
//!   [`COMMIT_IDLE`]) and records them in one transaction
//!   ([`Store::record_attempts`](crate::store::Store::record_attempts)), then releases them and
//!   wakes the shards of customers whose final outcome it queued.
//!
//! Delivery is at least once. Attempts are **not flushed** by the delivery loop: the next flush
//! of a shard batch or of an ingest covers them (sled's log is one sequence, and it recovers a
//! prefix of it, each transaction whole). An attempt lost in a crash (or a commit that failed)
//! leaves its message pending as it was, so it is attempted again with the same message id,
//! which adapters pass on as the idempotency key; its report and counter were in the same
//! transaction, so they are lost with it and never counted twice. A report is processed by its
//! shard worker only after the commit that queued it, and that worker's flush makes both
//! durable.

use crate::clock::system_now;
use crate::engine::delivery::{attempt, AttemptResult};
use crate::host::{Host, TemplateLoadError};
use crate::model::{Customer, DeliveryRequest, Millis};
use crate::pacing::Pacing;
use crate::store::keys::time_key;
use crate::store::outbox::{AttemptRecord, DueRead, MessageKey};
use crate::store::{Message, MessageStatus};
use crate::template::{payload_with_content, RenderInput};
use futures::FutureExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tracing::{debug, debug_span, warn, Instrument};

/// Due messages read from the outbox at once, into the feeder's buffer.
const READ_BATCH: usize = 256;
/// Entries of the due index one read looks at, at most (the next read goes on where it
/// stopped): this bounds the cost of one read behind a large backlog.
const READ_SCAN: usize = 4096;
/// Messages of one tenant read and waiting for its budgets, at most: a read passes over the
/// rest of that tenant's due messages (by key, without loading them), so a tenant's backlog
/// neither fills the feeder's memory nor hides other tenants' messages.
const PARK_PER_TENANT: usize = 256;
/// Most attempts recorded in one transaction.
const COMMIT_BATCH: usize = 256;
/// How long the committer gathers attempts after the first before recording them, at most:
/// long enough for a busy loop's attempts to share a transaction, short next to a delivery.
/// Each commit is a sled transaction (a log buffer sealed and written) and wakes the shards of
/// the customers whose reports it queued, each of which then commits its own small batch: with
/// a fixed 2 ms, a loop delivering 3,000 messages a second made about one transaction per
/// message.
const COMMIT_WINDOW: Duration = Duration::from_millis(25);
/// The committer records what it has gathered as soon as no attempt has come for this long:
/// a quiet loop's attempts are recorded within a few milliseconds, a busy one's in batches.
const COMMIT_IDLE: Duration = Duration::from_millis(2);
/// How long the feeder sleeps without news; a safety net, every change wakes it.
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// Cluster mode: how often the feeder looks whether a lease that ran out was renewed late
/// (it starts no delivery meanwhile; a lease lost for good stops the whole host).
const LAPSED_RECHECK: Duration = Duration::from_millis(100);

/// What the feeder and the committer share.
#[derive(Default)]
struct Loop {
    /// Messages the feeder has read and whose attempt is not recorded yet: buffered, in
    /// flight, or waiting for the committer.
    taken: Mutex<HashSet<MessageKey>>,
    /// The earliest next attempt (wall clock) of the retries recorded since the feeder last
    /// looked: the one change to the due index that the feeder cannot see coming otherwise.
    retry_due: Mutex<Option<Millis>>,
    retried: Notify,
}

impl Loop {
    fn taken(&self) -> MutexGuard<'_, HashSet<MessageKey>> {
        lock(&self.taken)
    }

    /// Notes that a message is due again at `at` and wakes the feeder.
    fn due_again(&self, at: Millis) {
        let mut due = lock(&self.retry_due);
        *due = Some(due.map_or(at, |d| d.min(at)));
        self.retried.notify_one();
    }
}

/// Delivers due messages until shutdown; then finishes the deliveries in flight and records
/// them.
pub async fn run(host: Arc<Host>) {
    let shared = Arc::new(Loop::default());
    let (finished, attempts) = mpsc::channel(COMMIT_BATCH * 2);
    let committer = tokio::spawn(commit_attempts(host.clone(), attempts, shared.clone()));
    feed(&host, &shared, finished).await;
    // Every sender is gone now: the committer records what is left, then ends.
    if let Err(error) = committer.await {
        warn!(%error, "the delivery committer failed");
    }
}

/// The feeder: keeps [`CONCURRENCY`] deliveries running while messages are due, each tenant
/// and each of its channels within its share ([`Budgets`]).
///
/// Messages read are *parked* by tenant and channel, in order, and started as their budgets
/// allow: a delivery's end starts the next parked message of its tenant and channel without a
/// read. A tenant with [`PARK_PER_TENANT`] messages parked is passed over by reads (by its key
/// alone, nothing loaded), and once half of them have started its own messages are read again
/// from the first one passed over ([`read_tenant`]) — not the whole due index from its start,
/// which behind one tenant's backlog of tens of thousands cost more than the deliveries.
async fn feed(host: &Arc<Host>, shared: &Loop, finished: mpsc::Sender<AttemptRecord>) {
    let mut running = JoinSet::new();
    // What each running task delivers: its slot in the budgets is given back when it ends, and
    // its message released if it ended without an attempt to record.
    let mut running_for: HashMap<tokio::task::Id, (String, String, MessageKey)> = HashMap::new();
    let mut budgets = Budgets::new(host.config.delivery_budgets);
    let mut pacing = Pacing::default();
    let mut parked = Parked::default();
    // Passed-over tenants whose parking is half free again, with where their messages go on.
    let mut refill: VecDeque<(String, Vec<u8>)> = VecDeque::new();
    // Where the next read of the due index goes on (`None`: from the earliest).
    let mut resume: Option<Vec<u8>> = None;
    // Whether the outbox may hold due messages the feeder has not read.
    let mut look = true;
    // When the earliest message not taken falls due, as of the last read that found no more.
    let mut next_due: Option<Millis> = None;
    loop {
        // Cluster mode: while the lease has run out nothing starts; what is read stays parked
        // for when a late renewal lets the node act again.
        let lapsed = !host.may_act();
        while !lapsed && running.len() < CONCURRENCY {
            let message = match next_paced(host, &mut parked, &budgets, &mut pacing) {
                Some(message) => message,
                None if !refill.is_empty() => {
                    if let Some((tenant, from)) = refill.pop_front() {
                        if let Some(more) = read_tenant(host, shared, &mut parked, &tenant, &from) {
                            refill.push_back((tenant, more));
                        }
                        pacing.forget_rates();
                    }
                    continue;
                }
                None if look => {
                    let read = read_due(host, shared, &mut parked, resume.as_deref());
                    // Registrations' rates are looked up again for what this read parked.
                    pacing.forget_rates();
                    look = read.resume.is_some();
                    // Caught up: what falls due from now on is all after this point, and what
                    // was passed over before it is read again when its tenant wants more.
                    resume = read.resume.or(read.caught_up);
                    if !look {
                        next_due = host
                            .store
                            .next_message_due_after(read.now, &shared.taken())
                            .unwrap_or_else(|error| {
                                warn!(%error, "reading the outbox failed");
                                None
                            });
                    }
                    continue;
                }
                None => break,
            };
            budgets.claim(&message.tenant, &message.channel);
            let for_ = (
                message.tenant.clone(),
                message.channel.clone(),
                message.key(),
            );
            // Boxed: the delivery's future is large, and tokio moved it twice on spawn.
            let task = running.spawn(Box::pin(deliver(host.clone(), message, finished.clone())));
            running_for.insert(task.id(), for_);
        }
        let wait = next_due.map_or(IDLE_RECHECK, |at| {
            let ms = at.saturating_sub(system_now()).max(0) as u64;
            Duration::from_millis(ms).min(IDLE_RECHECK)
        });
        let wait = if lapsed {
            wait.min(LAPSED_RECHECK)
        } else {
            wait
        };
        let paced_wait = next_paced_start(&parked, &budgets, &pacing, running.len());
        tokio::select! {
            _ = tokio::time::sleep(paced_wait.unwrap_or_default()), if paced_wait.is_some() => {}
            Some(ended) = running.join_next_with_id(), if !running.is_empty() => {
                let (id, attempted) = match ended {
                    Ok((id, attempted)) => (id, attempted),
                    Err(error) => {
                        warn!(%error, "a delivery task failed");
                        (error.id(), Attempted::No)
                    }
                };
                if let Some((tenant, channel, key)) = running_for.remove(&id) {
                    if attempted == Attempted::No {
                        // Nothing reaches the committer for it: it is due again as it was, and
                        // read again once the feeder looks (at once, unless the lease ran out).
                        shared.taken().remove(&key);
                        look = true;
                        resume = None;
                    }
                    budgets.release(&tenant, &channel);
                    if let Some(from) = parked.wants_more(&tenant) {
                        // Its messages were passed over by a read: read them from there.
                        refill.push_back((tenant, from));
                    }
                }
            }
            _ = host.message_ready() => look = true,
            _ = shared.retried.notified() => {
                if let Some(at) = lock(&shared.retry_due).take() {
                    next_due = Some(next_due.map_or(at, |d| d.min(at)));
                }
            }
            _ = tokio::time::sleep(wait) => {
                look = true;
                resume = None;
                next_due = None;
            }
            _ = host.shutdown.cancelled() => break,
        }
    }
    // Interrupting a delivery would only send it again after the restart: let them finish.
    while let Some(ended) = running.join_next().await {
        if let Err(error) = ended {
            warn!(%error, "a delivery task failed");
        }
    }
}

/// Whether a delivery task handed an attempt to the committer. One that did not (its lease ran
/// out before it started, or it failed) leaves its message pending, to be released by the
/// feeder: a message kept taken would never be read again while this host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempted {
    Yes,
    No,
}

// Issue 11, crm slice: per-registration send rates.
/// The next parked message whose tenant and channel have room in the budgets and whose
/// registration's send rate ([`Pacing`]) lets it start now, taking its token. A registration
/// whose rate is not known yet is looked up in the store (a registration that cannot be read
/// has no rate: the delivery itself will say what is wrong).
fn next_paced(
    host: &Host,
    parked: &mut Parked,
    budgets: &Budgets,
    pacing: &mut Pacing,
) -> Option<Message> {
    let now = system_now();
    for (tenant, channel) in parked.queues.keys() {
        if !pacing.knows(tenant, channel) {
            let rate = match host.store.channel(tenant, channel) {
                Ok(record) => record.and_then(|r| r.rate),
                Err(error) => {
                    warn!(%error, "reading a channel's send rate failed");
                    None
                }
            };
            pacing.set_rate(tenant, channel, rate, now);
        }
    }
    let message = parked.next_startable_where(|tenant, channel| {
        budgets.has_room(tenant, channel) && pacing.ready_at(tenant, channel, now) <= now
    })?;
    pacing.take(&message.tenant, &message.channel, now);
    Some(message)
}

/// How long until a parked message held back only by its registration's send rate may start,
/// if there is one and a slot is free: the feeder sleeps that long at most.
fn next_paced_start(
    parked: &Parked,
    budgets: &Budgets,
    pacing: &Pacing,
    running: usize,
) -> Option<Duration> {
    if running >= CONCURRENCY {
        return None;
    }
    let now = system_now();
    parked
        .queues
        .iter()
        .filter(|((tenant, channel), queue)| !queue.is_empty() && budgets.has_room(tenant, channel))
        .map(|((tenant, channel), _)| pacing.ready_at(tenant, channel, now))
        .filter(|at| *at > now)
        .min()
        .map(|at| Duration::from_millis(at.saturating_sub(now).max(1) as u64))
}

/// Messages read and taken but not started yet, by tenant and channel, each in due order.
#[derive(Debug, Default)]
struct Parked {
    queues: HashMap<(String, String), VecDeque<Message>>,
    per_tenant: HashMap<String, usize>,
    /// Tenants whose messages a read passed over because their parking was full, each with
    /// the due-index key of the earliest message passed over (where reading it again starts).
    passed_over: HashMap<String, Vec<u8>>,
}

impl Parked {
    fn park(&mut self, message: Message) {
        *self.per_tenant.entry(message.tenant.clone()).or_default() += 1;
        self.queues
            .entry((message.tenant.clone(), message.channel.clone()))
            .or_default()
            .push_back(message);
    }

    /// Notes that a read passed over `tenant`'s message at due-index key `key`.
    fn pass_over(&mut self, tenant: &str, key: &[u8]) {
        match self.passed_over.get_mut(tenant) {
            Some(earliest) if key < earliest.as_slice() => *earliest = key.to_vec(),
            Some(_) => {}
            None => {
                self.passed_over.insert(tenant.to_owned(), key.to_vec());
            }
        }
    }

    fn is_full(&self, tenant: &str) -> bool {
        self.per_tenant.get(tenant).copied().unwrap_or(0) >= PARK_PER_TENANT
    }

    /// The first parked message of a tenant and channel that the budgets have room for,
    /// taken out. The queues are visited in no particular order, so no tenant is preferred.
    #[cfg(test)]
    fn next_startable(&mut self, budgets: &Budgets) -> Option<Message> {
        self.next_startable_where(|tenant, channel| budgets.has_room(tenant, channel))
    }

    /// The first parked message of a tenant and channel that `may_start`, taken out.
    fn next_startable_where(&mut self, may_start: impl Fn(&str, &str) -> bool) -> Option<Message> {
        let key = self
            .queues
            .iter()
            .find(|((tenant, channel), queue)| !queue.is_empty() && may_start(tenant, channel))
            .map(|(key, _)| key.clone())?;
        let queue = self.queues.get_mut(&key)?;
        let message = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&key);
        }
        if let Some(n) = self.per_tenant.get_mut(&key.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_tenant.remove(&key.0);
            }
        }
        Some(message)
    }

    /// Where to read `tenant`'s messages again, if a read passed them over and half its
    /// parking is free again (then it forgets that they were).
    fn wants_more(&mut self, tenant: &str) -> Option<Vec<u8>> {
        if self.per_tenant.get(tenant).copied().unwrap_or(0) <= PARK_PER_TENANT / 2 {
            return self.passed_over.remove(tenant);
        }
        None
    }
}

/// What one read of the due index did.
struct Read {
    /// The wall-clock time it read at.
    now: Millis,
    /// Where the next read goes on, if this one stopped before the end of what is due.
    resume: Option<Vec<u8>>,
    /// Where a read of what falls due later starts, if this one reached the end.
    caught_up: Option<Vec<u8>>,
}

/// Reads due messages that are not taken into `parked`, taking them, passing over the tenants
/// whose parking is full. Looks at no more than [`READ_SCAN`] entries of the due index, from
/// `resume` on.
fn read_due(host: &Host, shared: &Loop, parked: &mut Parked, resume: Option<&[u8]>) -> Read {
    let mut taken = shared.taken();
    let now = system_now();
    // Issue 10: a read that reached the end of what was due goes on from there, not from a
    // fixed time before it (a minute of the index walked again for every new message, every
    // passed-over message of a large backlog with it); messages committed since with an
    // earlier due time (a slow trigger batch, a held message released, a retry) are read from
    // the earliest of them. Taken after the lock above and before the scan: what is committed
    // while it runs is noted for the next read.
    let written = host
        .store
        .take_due_written()
        .map(|at| time_key(at).to_vec());
    let from = match (resume, written.as_deref()) {
        (Some(resume), Some(written)) => Some(resume.min(written)),
        (resume, _) => resume,
    };
    let read = DueRead {
        now,
        limit: READ_BATCH,
        scan: READ_SCAN,
        from,
    };
    // Tenants passed over, each with the key of its earliest message passed over.
    let passed_over = std::cell::RefCell::new(Parked::default());
    // Parking used per tenant, counting what this read has accepted so far.
    let used = std::cell::RefCell::new(HashMap::<String, usize>::new());
    // A tenant whose parking is full — before this read, or filled by it — is passed over by
    // its key alone: its message is neither loaded nor decoded (behind one tenant's backlog,
    // loading each message only to turn it away was a tenth of the server's CPU while the
    // onboarding bench enrolled).
    let mut open = |tenant: &str, key: &[u8]| {
        let full = match used.borrow().get(tenant) {
            Some(n) => *n >= PARK_PER_TENANT,
            None => parked.is_full(tenant),
        };
        if full {
            passed_over.borrow_mut().pass_over(tenant, key);
        }
        !full
    };
    // Within one read, a tenant takes no more than its free parking (`open` saw room).
    let mut accept = |m: &Message, _key: &[u8]| {
        *used
            .borrow_mut()
            .entry(m.tenant.clone())
            .or_insert_with(|| parked.per_tenant.get(&m.tenant).copied().unwrap_or(0)) += 1;
        true
    };
    let result = host
        .store
        .scan_due_messages(read, &taken, &mut open, &mut accept);
    for (tenant, key) in passed_over.into_inner().passed_over {
        parked.pass_over(&tenant, &key);
    }
    match result {
        Ok(read) => {
            taken.extend(read.messages.iter().map(Message::key));
            for message in read.messages {
                parked.park(message);
            }
            Read {
                now,
                caught_up: read.resume.is_none().then_some(read.caught_up),
                resume: read.resume,
            }
        }
        Err(error) => {
            warn!(%error, "reading the outbox failed");
            Read {
                now,
                resume: None,
                caught_up: None,
            }
        }
    }
}

/// Reads one passed-over tenant's due messages into `parked` (up to its free parking), from
/// due-index key `from`, where a read first passed them over: the messages before it are
/// taken or another tenant's. Returns where to go on at once when the read stopped at
/// [`READ_SCAN`] entries with parking still free (other tenants' entries in between); when it
/// filled the parking, the rest is passed over from where it stopped, to be read again once
/// half of it has started.
fn read_tenant(
    host: &Host,
    shared: &Loop,
    parked: &mut Parked,
    tenant: &str,
    from: &[u8],
) -> Option<Vec<u8>> {
    let mut taken = shared.taken();
    let free = PARK_PER_TENANT.saturating_sub(parked.per_tenant.get(tenant).copied().unwrap_or(0));
    if free == 0 {
        parked.pass_over(tenant, from);
        return None;
    }
    let read = DueRead {
        now: system_now(),
        limit: free,
        scan: READ_SCAN,
        from: Some(from),
    };
    let mut open = |t: &str, _: &[u8]| t == tenant;
    let result = host
        .store
        .scan_due_messages(read, &taken, &mut open, &mut |_, _| true);
    match result {
        Ok(read) => {
            let filled = read.messages.len() >= free;
            taken.extend(read.messages.iter().map(Message::key));
            for message in read.messages {
                parked.park(message);
            }
            match read.resume {
                Some(resume) if filled => {
                    parked.pass_over(tenant, &resume);
                    None
                }
                resume => resume,
            }
        }
        Err(error) => {
            warn!(%error, "reading the outbox failed");
            parked.pass_over(tenant, from);
            None
        }
    }
}

/// How many deliveries one tenant, and one channel of one tenant, may have in flight at once
/// out of the loop's [`CONCURRENCY`]: a tenant whose provider never answers holds at most its
/// own share of the slots, and everyone else's messages go by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryBudgets {
    /// Deliveries in flight per tenant.
    pub per_tenant: usize,
    /// Deliveries in flight per channel registration of a tenant.
    pub per_channel: usize,
}

/// Deliveries in flight at once, over all tenants (the slots the budgets share out).
pub const CONCURRENCY: usize = 32;

impl Default for DeliveryBudgets {
    /// Half the slots per tenant and a quarter per channel: one tenant's stuck channel leaves
    /// three quarters of the loop to everyone else, and a lone busy tenant still uses half.
    fn default() -> Self {
        DeliveryBudgets {
            per_tenant: CONCURRENCY / 2,
            per_channel: CONCURRENCY / 4,
        }
    }
}

/// The feeder's count of the deliveries each tenant and channel has claimed (read and not yet
/// ended), against its [`DeliveryBudgets`].
#[derive(Debug)]
struct Budgets {
    limits: DeliveryBudgets,
    tenants: HashMap<String, usize>,
    channels: HashMap<(String, String), usize>,
}

impl Budgets {
    fn new(limits: DeliveryBudgets) -> Budgets {
        Budgets {
            limits: DeliveryBudgets {
                per_tenant: limits.per_tenant.max(1),
                per_channel: limits.per_channel.max(1),
            },
            tenants: HashMap::new(),
            channels: HashMap::new(),
        }
    }

    /// Whether `tenant`'s `channel` may start another delivery.
    fn has_room(&self, tenant: &str, channel: &str) -> bool {
        self.tenants.get(tenant).copied().unwrap_or(0) < self.limits.per_tenant
            && self
                .channels
                .get(&(tenant.to_string(), channel.to_string()))
                .copied()
                .unwrap_or(0)
                < self.limits.per_channel
    }

    /// Claims a slot for a delivery through `tenant`'s `channel`, if both have room.
    fn claim(&mut self, tenant: &str, channel: &str) -> bool {
        let t = self.tenants.get(tenant).copied().unwrap_or(0);
        let key = (tenant.to_string(), channel.to_string());
        let c = self.channels.get(&key).copied().unwrap_or(0);
        if t >= self.limits.per_tenant || c >= self.limits.per_channel {
            return false;
        }
        self.tenants.insert(key.0.clone(), t + 1);
        self.channels.insert(key, c + 1);
        true
    }

    /// Gives back a slot claimed for `tenant`'s `channel`.
    fn release(&mut self, tenant: &str, channel: &str) {
        if let Some(n) = self.tenants.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.tenants.remove(tenant);
            }
        }
        let key = (tenant.to_string(), channel.to_string());
        if let Some(n) = self.channels.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.channels.remove(&key);
            }
        }
    }
}

/// One attempt at one message, handed to the committer.
async fn deliver(
    host: Arc<Host>,
    message: Message,
    finished: mpsc::Sender<AttemptRecord>,
) -> Attempted {
    let span = debug_span!(
        "delivery",
        tenant = %message.tenant,
        channel = %message.channel,
        customer = %message.customer,
        message = %message.id,
        attempt = message.attempts + 1,
    );
    // Cluster mode (issue 16): a partition this node no longer holds is delivered by its new
    // owner; the message stays as the log has it, pending.
    if !host.may_act() {
        debug!(message = %message.id, "not attempted: the partition's lease is no longer held");
        return Attempted::No;
    }
    let record = async {
        // A panic here is a bug of the host's; it fails this attempt (to be retried), rather
        // than leaving the message taken and never attempted again.
        let (result, receipt) = AssertUnwindSafe(call_adapter(&host, &message))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                let failed = AttemptResult::Failed {
                    retryable: true,
                    error: "the host failed while delivering".into(),
                    retry_after: None,
                };
                (failed, None)
            });
        match &result {
            AttemptResult::Delivered { .. } => debug!("delivered"),
            AttemptResult::Suppressed { reason } => debug!(%reason, "suppressed"),
            AttemptResult::Failed {
                retryable,
                error,
                retry_after,
            } => {
                warn!(%error, retryable, ?retry_after, "delivery failed")
            }
        }
        let mut records = attempt(
            &message,
            result,
            &host.config.retry,
            host.clock.now(),
            system_now(),
        );
        if records.after.status == MessageStatus::Delivered {
            records.after.receipt = receipt;
        }
        AttemptRecord {
            before: message,
            after: records.after,
            report: records.report,
            counter: records.counter,
        }
    }
    .instrument(span)
    .await;
    // The committer outlives every delivery (it ends when the last sender is dropped).
    match finished.send(record).await {
        Ok(()) => Attempted::Yes,
        Err(_) => Attempted::No,
    }
}

/// The committer: records finished attempts in batches until every delivery has ended.
async fn commit_attempts(
    host: Arc<Host>,
    mut attempts: mpsc::Receiver<AttemptRecord>,
    shared: Arc<Loop>,
) {
    let mut batch = Vec::with_capacity(COMMIT_BATCH);
    while let Some(first) = attempts.recv().await {
        batch.push(first);
        let window = tokio::time::Instant::now() + COMMIT_WINDOW;
        while batch.len() < COMMIT_BATCH {
            let until = window.min(tokio::time::Instant::now() + COMMIT_IDLE);
            match tokio::time::timeout_at(until, attempts.recv()).await {
                Ok(Some(record)) => batch.push(record),
                Ok(None) | Err(_) => break,
            }
        }
        let due_again = record(&host, &batch);
        {
            let mut taken = shared.taken();
            for attempt in &batch {
                taken.remove(&attempt.before.key());
            }
        }
        if let Some(at) = due_again {
            shared.due_again(at);
        }
        batch.clear();
    }
}

/// Records one batch of attempts and wakes the shards that have a delivery report to process.
/// Returns when the earliest of the batch's messages is due again, if any is: a retry's next
/// attempt, or at once if recording failed (the messages then stay pending as they were and
/// are attempted again).
fn record(host: &Host, batch: &[AttemptRecord]) -> Option<Millis> {
    if let Err(error) = host.store.record_attempts(batch) {
        warn!(%error, attempts = batch.len(), "recording delivery attempts failed");
        return Some(system_now());
    }
    let mut due_again: Option<Millis> = None;
    for attempt in batch {
        host.metrics
            .delivery(match (&attempt.report, attempt.after.status) {
                (None, _) => "retry",
                (Some(_), MessageStatus::Delivered) => "delivered",
                (Some(_), MessageStatus::Suppressed) => "suppressed",
                (Some(_), _) => "dead",
            });
        if attempt.report.is_some() {
            host.wake_customer(&attempt.after.tenant, &attempt.after.customer);
        } else if attempt.after.status == MessageStatus::Pending {
            let at = attempt.after.next_attempt_at;
            due_again = Some(due_again.map_or(at, |d| d.min(at)));
        }
    }
    due_again
}

/// A poisoned lock still guards valid data: recover it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Calls the channel's adapter for `message`; with the adapter's receipt detail (contract
/// 0.1.2) when it gave one.
async fn call_adapter(
    host: &Host,
    message: &Message,
) -> (AttemptResult, Option<serde_json::Value>) {
    let mut receipt = None;
    let result = call_adapter_with(host, message, &mut receipt).await;
    (result, receipt)
}

/// Calls the channel's adapter for `message`. Anything the host itself could not do (read the
/// store, load the component) is retryable; an unregistered channel is permanent.
async fn call_adapter_with(
    host: &Host,
    message: &Message,
    receipt_detail: &mut Option<serde_json::Value>,
) -> AttemptResult {
    let permanent = |error: String| AttemptResult::Failed {
        retryable: false,
        error,
        retry_after: None,
    };
    let retryable = |error: String| AttemptResult::Failed {
        retryable: true,
        error,
        retry_after: None,
    };
    let record = match host.store.channel(&message.tenant, &message.channel) {
        Ok(Some(record)) => record,
        Ok(None) => return permanent(format!("channel {:?} is not registered", message.channel)),
        Err(e) => return retryable(e.to_string()),
    };
    // Account journeys (issue 12): an account's message loads the account.
    let subject =
        crate::worker::accounts::subject_customer(&host.store, &message.tenant, &message.customer);
    let customer = match subject {
        Ok(customer) => customer.unwrap_or_else(|| Customer {
            id: message.customer.clone(),
            attributes: Default::default(),
        }),
        Err(e) => return retryable(e.to_string()),
    };
    // In-app inbox and unsubscribe (issue 11): the message's signed unsubscribe link, and an
    // `inapp` registration delivers into the customer's inbox without a component.
    let unsubscribe_url = match crate::inapp::unsubscribe_url(host, message).await {
        Ok(url) => url,
        Err(e) => return retryable(e.to_string()),
    };
    if record.adapter == crate::store::ChannelAdapter::Inapp {
        return crate::inapp::deliver(host, message, &customer, unsubscribe_url.as_deref());
    }
    // Provider feedback (issue 11): an address a hard bounce or a complaint suppressed on this
    // channel gets nothing more; the message is recorded `suppressed` with the reason.
    let addresses = crate::feedback::message_addresses(&message.payload, &customer);
    for address in &addresses {
        match host
            .store
            .suppression(&message.tenant, &message.channel, address)
        {
            Ok(Some(s)) => {
                // The SDK's `DeliveryOutcome::is_suppressed` reads this prefix.
                return AttemptResult::Suppressed {
                    reason: format!(
                        "suppressed: {address} is suppressed on channel {:?} ({})",
                        message.channel, s.reason
                    ),
                };
            }
            Ok(None) => {}
            Err(e) => return retryable(e.to_string()),
        }
    }
    let component = match host
        .registry
        .channel(&message.tenant, &message.channel, &record.digest)
        .await
    {
        Ok(component) => component,
        Err(e) => return retryable(e.to_string()),
    };
    let limits = match host.tenant_limits(&message.tenant) {
        Ok(limits) => limits,
        Err(e) => return retryable(e.to_string()),
    };
    // An adapter is shown an account by its own id, as `decide` is.
    let customer = crate::engine::accounts::as_seen(&customer).into_owned();
    let payload = match adapter_payload(host, message, &customer, unsubscribe_url.as_deref()) {
        Ok(payload) => payload,
        Err(failed) => return failed,
    };
    let mut config = record.settings.clone();
    config.extend(record.secrets.clone());
    let request = DeliveryRequest {
        id: message.id.clone(),
        channel: message.channel.clone(),
        customer,
        template: message.template.clone(),
        payload,
        config,
    };
    match component
        .deliver_guarded(&request, &record.allowed_hosts, &limits, host.may_send())
        .await
    {
        Ok(receipt) => {
            // Provider feedback (issue 11): a webhook about this message names it by our id,
            // the provider's, or its address; indexed before the attempt is recorded — if the
            // registration receives webhooks at all (issue 10: `feedback::receivers`).
            let receives = host
                .feedback_receivers
                .receives(
                    &message.tenant,
                    &record,
                    &component,
                    &limits,
                    host.clock.now(),
                )
                .await;
            let reference = crate::store::feedback::MessageRef {
                customer: message.customer.clone(),
                message_id: message.id.clone(),
            };
            let indexed = if receives {
                host.store.index_message(
                    &message.tenant,
                    &message.channel,
                    &reference,
                    receipt.provider_id.as_deref(),
                    &addresses,
                )
            } else {
                Ok(())
            };
            if let Err(error) = indexed {
                warn!(%error, "indexing a delivered message for provider feedback failed");
            }
            *receipt_detail = receipt.detail;
            AttemptResult::Delivered {
                provider_id: receipt.provider_id,
            }
        }
        Err(failure) => AttemptResult::Failed {
            retryable: failure.retryable(),
            error: failure.describe(),
            retry_after: failure.retry_after(),
        },
    }
}

// Templates (issue 11)
/// The payload the adapter receives: the journey's as it is, or, for a message pinned to a
/// version of a stored template, the journey's with that version's parts rendered for this
/// customer under `content` (`template::payload_with_content`). Rendering happens here, at
/// delivery, from the pinned version, so a retry renders what the first attempt did (with the
/// customer's attributes as they are now). A render error is the template's or the data's
/// fault, never the provider's: the message fails permanently with the reason, not retried.
///
/// Issue 11: the message's unsubscribe URL, when there is one, is offered to the template as
/// `message.unsubscribe_url` and set as the payload's `unsubscribe_url`
/// (`inapp::with_unsubscribe_url`).
pub(crate) fn adapter_payload(
    host: &Host,
    message: &Message,
    customer: &Customer,
    unsubscribe_url: Option<&str>,
) -> Result<serde_json::Value, AttemptResult> {
    let with_url = |payload| crate::inapp::with_unsubscribe_url(payload, unsubscribe_url);
    let Some(version) = message.template_version else {
        return Ok(with_url(message.payload.clone()));
    };
    let permanent = |why: String| AttemptResult::Failed {
        retryable: false,
        error: format!(
            "template_error: template {:?} version {version}: {why}",
            message.template
        ),
        retry_after: None,
    };
    let compiled = match host.compiled_template(&message.tenant, &message.template, version) {
        Ok(compiled) => compiled,
        Err(TemplateLoadError::Store(e)) => {
            return Err(AttemptResult::Failed {
                retryable: true,
                error: e.to_string(),
                retry_after: None,
            })
        }
        Err(e @ TemplateLoadError::Missing) => return Err(permanent(e.to_string())),
        Err(TemplateLoadError::Template(e)) => return Err(permanent(e.to_string())),
    };
    let input = RenderInput {
        customer_id: &customer.id,
        attributes: &customer.attributes,
        payload: &message.payload,
        message_id: &message.id,
        channel: &message.channel,
        unsubscribe_url,
    };
    match compiled.render(input) {
        Ok(rendered) => Ok(with_url(payload_with_content(
            &message.payload,
            &message.template,
            version,
            rendered,
        ))),
        Err(e) => Err(permanent(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_and_a_channel_claim_no_more_than_their_budgets() {
        let mut budgets = Budgets::new(DeliveryBudgets {
            per_tenant: 3,
            per_channel: 2,
        });
        assert!(budgets.claim("noisy", "stuck"));
        assert!(budgets.claim("noisy", "stuck"));
        assert!(
            !budgets.claim("noisy", "stuck"),
            "the channel's budget is spent"
        );
        assert!(
            budgets.claim("noisy", "email"),
            "another channel has its own"
        );
        assert!(
            !budgets.claim("noisy", "sms"),
            "the tenant's budget is spent"
        );
        assert!(!budgets.has_room("noisy", "sms"));
        assert!(
            budgets.claim("quiet", "stuck"),
            "other tenants are not held back"
        );

        budgets.release("noisy", "stuck");
        assert!(budgets.has_room("noisy", "stuck"));
        assert!(
            budgets.claim("noisy", "stuck"),
            "an ended delivery frees its slot"
        );
        assert!(!budgets.claim("noisy", "sms"));
    }

    #[test]
    fn released_slots_are_forgotten_and_budgets_are_at_least_one() {
        let mut budgets = Budgets::new(DeliveryBudgets {
            per_tenant: 0,
            per_channel: 0,
        });
        assert!(
            budgets.claim("t", "c"),
            "a zero budget still lets one through"
        );
        assert!(!budgets.claim("t", "c"));
        budgets.release("t", "c");
        budgets.release("t", "c");
        assert!(budgets.tenants.is_empty() && budgets.channels.is_empty());
        assert!(budgets.claim("t", "c"));
    }

    fn message(tenant: &str, channel: &str, id: &str) -> Message {
        Message {
            tenant: tenant.into(),
            channel: channel.into(),
            ..crate::store::fixtures::message(id, channel, crate::store::MessageStatus::Pending, 0)
        }
    }

    #[test]
    fn parked_messages_start_in_order_as_their_tenant_and_channel_have_room() {
        let mut budgets = Budgets::new(DeliveryBudgets {
            per_tenant: 2,
            per_channel: 1,
        });
        let mut parked = Parked::default();
        for (tenant, channel, id) in [
            ("noisy", "stuck", "n1"),
            ("noisy", "stuck", "n2"),
            ("quiet", "email", "q1"),
            ("quiet", "email", "q2"),
        ] {
            parked.park(message(tenant, channel, id));
        }
        let mut started = Vec::new();
        while let Some(m) = parked.next_startable(&budgets) {
            budgets.claim(&m.tenant, &m.channel);
            started.push(m.id);
        }
        started.sort();
        assert_eq!(
            started,
            ["n1", "q1"],
            "one per channel, each its channel's first"
        );
        budgets.release("noisy", "stuck");
        let next = parked.next_startable(&budgets).map(|m| m.id);
        assert_eq!(next.as_deref(), Some("n2"));
        assert_eq!(
            parked.per_tenant.get("noisy"),
            None,
            "nothing of noisy is parked"
        );
    }

    #[tokio::test]
    async fn a_message_left_while_the_lease_ran_out_is_attempted_once_a_late_renewal_revives_it() {
        use crate::cluster::lease::Guard;
        use crate::store::fixtures;
        let store = crate::store::Store::open_scratch().unwrap();
        let mut commit = fixtures::commit(&store, "t", "c");
        for id in ["m1", "m2"] {
            commit.outbox.push(Message {
                tenant: "t".into(),
                customer: "c".into(),
                ..fixtures::message(id, "unregistered", MessageStatus::Pending, 1_000)
            });
        }
        store.commit_trigger(&commit).unwrap();
        let attempts = |id: &str| {
            store
                .message("t", "c", id)
                .unwrap()
                .expect("the message")
                .attempts
        };
        // A delivery whose lease has run out sends nothing and hands nothing to the committer.
        let guard = Guard::lasting(Duration::ZERO);
        let host = Arc::new(host_over(store.clone()).fenced_by(0, guard.clone()));
        let (finished, mut handed) = mpsc::channel(1);
        let m1 = store.message("t", "c", "m1").unwrap().unwrap();
        assert_eq!(deliver(host.clone(), m1, finished).await, Attempted::No);
        assert!(handed.recv().await.is_none(), "nothing was handed on");
        // The loop starts no delivery while the lease has run out...
        let running = tokio::spawn(run(host.clone()));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!((attempts("m1"), attempts("m2")), (0, 0));
        // ...and attempts both once a late renewal lets the node act again (each fails for
        // good here: its channel is not registered, which is an attempt recorded).
        guard.renewed(Duration::from_secs(60));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while (attempts("m1"), attempts("m2")) != (1, 1) {
            assert!(
                std::time::Instant::now() < deadline,
                "not attempted after the renewal: {:?}",
                (attempts("m1"), attempts("m2"))
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        host.shutdown.cancel();
        running.await.unwrap();
    }

    /// A host over a scratch store, for the feeder's reads.
    fn host_over(store: crate::store::Store) -> Host {
        use crate::sandbox::{Sandbox, SandboxConfig};
        let sandbox = Sandbox::new(SandboxConfig::default()).expect("a sandbox");
        let registry = crate::registry::Registry::new(sandbox, store.clone());
        Host::new(
            store,
            registry,
            crate::clock::Clock::manual(0),
            crate::host::HostConfig::default(),
        )
    }

    /// Every message parked, by id.
    fn parked_ids(parked: &Parked) -> Vec<String> {
        let mut ids: Vec<String> = parked
            .queues
            .values()
            .flatten()
            .map(|m| m.id.clone())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_passed_over_tenant_is_read_again_from_where_it_was_passed_over_each_message_once() {
        use crate::store::fixtures;
        let store = crate::store::Store::open_scratch().unwrap();
        let host = host_over(store.clone());
        // A backlog of `noisy`'s, due first, then a few of `quiet`'s.
        let backlog = PARK_PER_TENANT + 100;
        for (tenant, n, due) in [("noisy", backlog, 1_000), ("quiet", 10, 900_000)] {
            let mut commit = fixtures::commit(&store, tenant, "c");
            for i in 0..n {
                commit.outbox.push(Message {
                    tenant: tenant.into(),
                    customer: "c".into(),
                    ..fixtures::message(
                        &format!("{tenant}{i:04}"),
                        "email",
                        MessageStatus::Pending,
                        due + i as Millis,
                    )
                });
            }
            store.commit_trigger(&commit).unwrap();
        }
        let shared = Loop::default();
        let mut parked = Parked::default();
        // The first read fills noisy's parking; the next passes over the rest of its
        // backlog (by key) and reaches quiet's messages behind it.
        let first = read_due(&host, &shared, &mut parked, None);
        assert_eq!(parked_ids(&parked).len(), PARK_PER_TENANT);
        let resume = first.resume.expect("more is due");
        read_due(&host, &shared, &mut parked, Some(&resume));
        assert_eq!(parked.per_tenant.get("quiet"), Some(&10));
        assert!(parked.passed_over.contains_key("noisy"));
        // Half of noisy's parking starts: its messages are read again from the first one
        // passed over, and the read reaches the end of them.
        let mut started = Vec::new();
        while parked.per_tenant.get("noisy").copied().unwrap_or(0) > PARK_PER_TENANT / 2 {
            let m = parked.next_startable_where(|tenant, _| tenant == "noisy");
            started.push(m.expect("a parked message").id);
        }
        let from = parked.wants_more("noisy").expect("noisy wants more");
        assert_eq!(
            read_tenant(&host, &shared, &mut parked, "noisy", &from),
            None
        );
        let mut seen = started;
        seen.extend(parked_ids(&parked));
        seen.retain(|id| id.starts_with("noisy"));
        seen.sort();
        let expected: Vec<String> = (0..backlog).map(|i| format!("noisy{i:04}")).collect();
        assert_eq!(seen, expected, "each of noisy's messages read exactly once");
        assert_eq!(shared.taken().len(), backlog + 10);
        assert!(!parked.passed_over.contains_key("noisy"));
    }

    #[test]
    fn a_tenant_passed_over_is_read_again_once_half_its_parking_is_free() {
        let mut parked = Parked::default();
        for i in 0..PARK_PER_TENANT {
            parked.park(message("noisy", "stuck", &format!("n{i}")));
        }
        assert!(parked.is_full("noisy") && !parked.is_full("quiet"));
        parked.pass_over("noisy", b"k");
        let budgets = Budgets::new(DeliveryBudgets {
            per_tenant: CONCURRENCY,
            per_channel: CONCURRENCY,
        });
        assert_eq!(parked.wants_more("noisy"), None);
        parked.pass_over("noisy", b"j");
        parked.pass_over("noisy", b"m");
        for _ in 0..PARK_PER_TENANT / 2 {
            parked.next_startable(&budgets);
        }
        assert_eq!(
            parked.wants_more("noisy").as_deref(),
            Some(&b"j"[..]),
            "read again from the earliest message passed over"
        );
        assert_eq!(parked.wants_more("noisy"), None, "asked once");
    }

    #[test]
    fn the_default_budgets_leave_most_slots_to_other_tenants() {
        let d = DeliveryBudgets::default();
        assert!(d.per_channel <= d.per_tenant && d.per_tenant < CONCURRENCY);
        assert_eq!((d.per_tenant, d.per_channel), (16, 8));
    }

    // Issue 11, crm slice: per-registration send rates.
    #[test]
    fn a_paced_channel_waits_for_its_tokens_while_other_channels_start() {
        let budgets = Budgets::new(DeliveryBudgets::default());
        let mut pacing = Pacing::default();
        let rate = crate::pacing::SendRate::checked(1.0, 1).ok();
        pacing.set_rate("acme", "crm", rate, 0);
        pacing.set_rate("acme", "email", None, 0);
        let mut parked = Parked::default();
        for i in 0..3 {
            parked.park(message("acme", "crm", &format!("crm-{i}")));
            parked.park(message("acme", "email", &format!("email-{i}")));
        }
        let mut start_at = |now: Millis, parked: &mut Parked| {
            let mut started = Vec::new();
            while let Some(m) = parked.next_startable_where(|t, c| {
                budgets.has_room(t, c) && pacing.ready_at(t, c, now) <= now
            }) {
                pacing.take(&m.tenant, &m.channel, now);
                started.push(m.id);
            }
            started.sort();
            started
        };
        assert_eq!(
            start_at(0, &mut parked),
            ["crm-0", "email-0", "email-1", "email-2"]
        );
        assert_eq!(start_at(999, &mut parked), Vec::<String>::new());
        assert_eq!(start_at(1000, &mut parked), ["crm-1"]);
        assert_eq!(start_at(2000, &mut parked), ["crm-2"]);
    }
}
