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
//!   ([`Store::due_messages_except`](crate::store::Store::due_messages_except)), so no message
//!   is ever in flight twice. It wakes when a message enters the outbox, when the earliest
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
use crate::store::outbox::{AttemptRecord, MessageKey};
use crate::store::{Message, MessageStatus};
use futures::FutureExt;
use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tracing::{debug, info_span, warn, Instrument};

/// Deliveries in flight at once; each waits mostly on the provider's network.
const CONCURRENCY: usize = 32;
/// Due messages read from the outbox at once, into the feeder's buffer.
const READ_BATCH: usize = 256;
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

/// The feeder: keeps [`CONCURRENCY`] deliveries running while messages are due.
async fn feed(host: &Arc<Host>, shared: &Loop, finished: mpsc::Sender<AttemptRecord>) {
    let mut running = JoinSet::new();
    let mut buffer: VecDeque<Message> = VecDeque::new();
    // Whether the outbox may hold due messages the feeder has not read.
    let mut look = true;
    // When the earliest message not taken falls due, as of the last read that found no more.
    let mut next_due: Option<Millis> = None;
    loop {
        while running.len() < CONCURRENCY {
            if buffer.is_empty() && look {
                look = read_due(host, shared, &mut buffer);
                if !look {
                    next_due = host
                        .store
                        .next_message_due_except(&shared.taken())
                        .unwrap_or_else(|error| {
                            warn!(%error, "reading the outbox failed");
                            None
                        });
                }
            }
            let Some(message) = buffer.pop_front() else {
                break;
            };
            running.spawn(deliver(host.clone(), message, finished.clone()));
        }
        let wait = next_due.map_or(IDLE_RECHECK, |at| {
            let ms = at.saturating_sub(system_now()).max(0) as u64;
            Duration::from_millis(ms).min(IDLE_RECHECK)
        });
        tokio::select! {
            Some(ended) = running.join_next(), if !running.is_empty() => {
                if let Err(error) = ended {
                    warn!(%error, "a delivery task failed");
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

/// Reads due messages that are not taken into `buffer`, taking them. Returns whether there may
/// be more than it read.
fn read_due(host: &Host, shared: &Loop, buffer: &mut VecDeque<Message>) -> bool {
    let mut taken = shared.taken();
    match host
        .store
        .due_messages_except(system_now(), READ_BATCH, &taken)
    {
        Ok(due) => {
            let full = due.len() == READ_BATCH;
            taken.extend(due.iter().map(Message::key));
            buffer.extend(due);
            full
        }
        Err(error) => {
            warn!(%error, "reading the outbox failed");
            false
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
