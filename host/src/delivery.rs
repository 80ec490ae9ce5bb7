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
//!   share of the slots ([`DeliveryBudgets`]): a read passes over the messages of a tenant or
//!   channel whose budget is spent (they stay pending, in place, and are read again once one of
//!   its deliveries ends), so one tenant's provider that never answers stalls only that
//!   tenant's channel, never the loop. It wakes when a message enters the outbox, when the earliest
//!   message it knows of falls due, and when a recorded retry is due earlier than that.
//! - Each **delivery** runs as its own task (guests of different deliveries run in parallel on
//!   the runtime's workers) and hands its attempt to the committer.
//! - The **committer** ([`commit_attempts`]) gathers finished attempts for up to
//!   [`COMMIT_WINDOW`] (or [`COMMIT_BATCH`] of them) and records them in one transaction
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
use crate::host::Host;
use crate::model::{Customer, DeliveryRequest, Millis};
use crate::store::outbox::{AttemptRecord, DueRead, MessageKey};
use crate::store::{Message, MessageStatus};
use futures::FutureExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tracing::{debug, info_span, warn, Instrument};

/// Due messages read from the outbox at once, into the feeder's buffer.
const READ_BATCH: usize = 256;
/// Entries of the due index one read looks at, at most: messages passed over for want of
/// budget are looked at again, so this bounds the cost of a read behind a large backlog; the
/// next read goes on where this one stopped.
const READ_SCAN: usize = 4096;
/// Most attempts recorded in one transaction.
const COMMIT_BATCH: usize = 256;
/// How long the committer gathers attempts after the first before recording them: long enough
/// for a busy loop's attempts to share a transaction, short next to a delivery.
const COMMIT_WINDOW: Duration = Duration::from_millis(2);
/// How long the feeder sleeps without news; a safety net, every change wakes it.
const IDLE_RECHECK: Duration = Duration::from_secs(60);

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
async fn feed(host: &Arc<Host>, shared: &Loop, finished: mpsc::Sender<AttemptRecord>) {
    let mut running = JoinSet::new();
    // What each running task delivers for: its slot in the budgets is given back when it ends.
    let mut running_for: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
    let mut budgets = Budgets::new(host.config.delivery_budgets);
    // Read messages, each already counted in `budgets`: any of them may start at once.
    let mut buffer: VecDeque<Message> = VecDeque::new();
    // Where the next read of the due index goes on (`None`: from the earliest).
    let mut resume: Option<Vec<u8>> = None;
    // Whether the outbox may hold due messages the feeder has not read.
    let mut look = true;
    // Whether the last pass over the due index passed over messages for want of budget: then
    // the end of any delivery may let one of them start.
    let mut waiting_for_budget = false;
    // When the earliest message not taken falls due, as of the last read that found no more.
    let mut next_due: Option<Millis> = None;
    loop {
        while running.len() < CONCURRENCY {
            if buffer.is_empty() && look {
                let read = read_due(host, shared, &mut budgets, resume.as_deref(), &mut buffer);
                waiting_for_budget |= read.skipped;
                look = read.resume.is_some();
                resume = read.resume;
                if !look {
                    next_due = host
                        .store
                        .next_message_due_after(read.now, &shared.taken())
                        .unwrap_or_else(|error| {
                            warn!(%error, "reading the outbox failed");
                            None
                        });
                }
            }
            let Some(message) = buffer.pop_front() else {
                break;
            };
            let key = (message.tenant.clone(), message.channel.clone());
            let task = running.spawn(deliver(host.clone(), message, finished.clone()));
            running_for.insert(task.id(), key);
        }
        let wait = next_due.map_or(IDLE_RECHECK, |at| {
            let ms = at.saturating_sub(system_now()).max(0) as u64;
            Duration::from_millis(ms).min(IDLE_RECHECK)
        });
        tokio::select! {
            Some(ended) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match ended {
                    Ok((id, ())) => id,
                    Err(error) => {
                        warn!(%error, "a delivery task failed");
                        error.id()
                    }
                };
                if let Some((tenant, channel)) = running_for.remove(&id) {
                    budgets.release(&tenant, &channel);
                }
                if waiting_for_budget {
                    // Look again from the start: what waited for this slot is behind us.
                    waiting_for_budget = false;
                    look = true;
                    resume = None;
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

/// What one read of the due index did.
struct Read {
    /// The wall-clock time it read at.
    now: Millis,
    /// Where the next read goes on, if this one stopped before the end of what is due.
    resume: Option<Vec<u8>>,
    /// Whether it passed over due messages whose tenant or channel had no budget left.
    skipped: bool,
}

/// Reads due messages that are not taken, and that their tenant's and channel's budgets have
/// room for, into `buffer`, taking them and counting them in `budgets`. Looks at no more than
/// [`READ_SCAN`] entries of the due index, from `resume` on.
fn read_due(
    host: &Host,
    shared: &Loop,
    budgets: &mut Budgets,
    resume: Option<&[u8]>,
    buffer: &mut VecDeque<Message>,
) -> Read {
    let mut taken = shared.taken();
    let now = system_now();
    let open = {
        let closed = budgets.closed_tenants();
        move |tenant: &str| !closed.contains(tenant)
    };
    let mut claim = |m: &Message| budgets.claim(&m.tenant, &m.channel);
    let read = DueRead {
        now,
        limit: READ_BATCH,
        scan: READ_SCAN,
        from: resume,
    };
    match host
        .store
        .scan_due_messages(read, &taken, &open, &mut claim)
    {
        Ok(read) => {
            taken.extend(read.messages.iter().map(Message::key));
            buffer.extend(read.messages);
            Read {
                now,
                resume: read.resume,
                skipped: read.skipped,
            }
        }
        Err(error) => {
            warn!(%error, "reading the outbox failed");
            Read {
                now,
                resume: None,
                skipped: false,
            }
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

    /// Tenants with no room left: their messages need not even be loaded.
    fn closed_tenants(&self) -> HashSet<String> {
        self.tenants
            .iter()
            .filter(|(_, n)| **n >= self.limits.per_tenant)
            .map(|(t, _)| t.clone())
            .collect()
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
async fn deliver(host: Arc<Host>, message: Message, finished: mpsc::Sender<AttemptRecord>) {
    let span = info_span!(
        "delivery",
        tenant = %message.tenant,
        channel = %message.channel,
        customer = %message.customer,
        message = %message.id,
        attempt = message.attempts + 1,
    );
    let record = async {
        // A panic here is a bug of the host's; it fails this attempt (to be retried), rather
        // than leaving the message taken and never attempted again.
        let result = AssertUnwindSafe(call_adapter(&host, &message))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| AttemptResult::Failed {
                retryable: true,
                error: "the host failed while delivering".into(),
            });
        match &result {
            AttemptResult::Delivered { .. } => debug!("delivered"),
            AttemptResult::Failed { retryable, error } => {
                warn!(%error, retryable, "delivery failed")
            }
        }
        let records = attempt(
            &message,
            result,
            &host.config.retry,
            host.clock.now(),
            system_now(),
        );
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
    let _ = finished.send(record).await;
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
        let until = tokio::time::Instant::now() + COMMIT_WINDOW;
        while batch.len() < COMMIT_BATCH {
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

/// Calls the channel's adapter for `message`. Anything the host itself could not do (read the
/// store, load the component) is retryable; an unregistered channel is permanent.
async fn call_adapter(host: &Host, message: &Message) -> AttemptResult {
    let permanent = |error: String| AttemptResult::Failed {
        retryable: false,
        error,
    };
    let retryable = |error: String| AttemptResult::Failed {
        retryable: true,
        error,
    };
    let record = match host.store.channel(&message.tenant, &message.channel) {
        Ok(Some(record)) => record,
        Ok(None) => return permanent(format!("channel {:?} is not registered", message.channel)),
        Err(e) => return retryable(e.to_string()),
    };
    let component = match host
        .registry
        .channel(&message.tenant, &message.channel, &record.digest)
        .await
    {
        Ok(component) => component,
        Err(e) => return retryable(e.to_string()),
    };
    let customer = match host.store.customer(&message.tenant, &message.customer) {
        Ok(customer) => customer.unwrap_or_else(|| Customer {
            id: message.customer.clone(),
            attributes: Default::default(),
        }),
        Err(e) => return retryable(e.to_string()),
    };
    let limits = match host.tenant_limits(&message.tenant) {
        Ok(limits) => limits,
        Err(e) => return retryable(e.to_string()),
    };
    let mut config = record.settings.clone();
    config.extend(record.secrets.clone());
    let request = DeliveryRequest {
        id: message.id.clone(),
        channel: message.channel.clone(),
        customer,
        template: message.template.clone(),
        payload: message.payload.clone(),
        config,
    };
    match component
        .deliver(&request, &record.allowed_hosts, &limits)
        .await
    {
        Ok(receipt) => AttemptResult::Delivered {
            provider_id: receipt.provider_id,
        },
        Err(failure) => AttemptResult::Failed {
            retryable: failure.retryable(),
            error: failure.describe(),
        },
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
        assert_eq!(
            budgets.closed_tenants(),
            HashSet::from(["noisy".to_string()])
        );
        assert!(
            budgets.claim("quiet", "stuck"),
            "other tenants are not held back"
        );

        budgets.release("noisy", "stuck");
        assert!(budgets.closed_tenants().is_empty());
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

    #[test]
    fn the_default_budgets_leave_most_slots_to_other_tenants() {
        let d = DeliveryBudgets::default();
        assert!(d.per_channel <= d.per_tenant && d.per_tenant < CONCURRENCY);
        assert_eq!((d.per_tenant, d.per_channel), (16, 8));
    }
}
