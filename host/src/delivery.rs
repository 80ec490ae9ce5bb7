//! Drains the outbox: calls the channel adapter's `deliver` for each due message, retries
//! retryable failures with exponential backoff and jitter, turns permanent failures and exhausted
//! retries into dead letters, and reports each final outcome back to the journey as a `delivery`
//! trigger (in the same transaction that records it).
//!
//! Delivery is at least once: a crash between `deliver` and recording its outcome repeats the
//! call with the same message id, which adapters pass on as the idempotency key.

use crate::clock::system_now;
use crate::model::{
    Counter, DeliveryError, DeliveryOutcome, DeliveryReport, DeliveryRequest, Millis,
};
use crate::runtime::Runtime;
use crate::sandbox::DeliveryFailure;
use crate::store::{Message, MessageStatus, Pending, QueuedTrigger};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, info_span, warn, Instrument};

/// Messages delivered concurrently; each waits mostly on the provider's network.
const CONCURRENCY: usize = 16;
const IDLE_RECHECK: Duration = Duration::from_secs(60);

pub async fn run(rt: Arc<Runtime>) {
    loop {
        let sent = rt.outbox_changed.notified();
        let now = system_now();
        match rt.store.due_messages(now, 256) {
            Ok(due) if !due.is_empty() => {
                futures::stream::iter(due)
                    .for_each_concurrent(CONCURRENCY, |entry| deliver(&rt, entry))
                    .await;
                continue;
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "reading the outbox failed"),
        }
        let wait = match rt.store.next_message_due() {
            Ok(Some(at)) => {
                Duration::from_millis(at.saturating_sub(now).max(0) as u64).min(IDLE_RECHECK)
            }
            _ => IDLE_RECHECK,
        };
        tokio::select! {
            _ = sent => {}
            _ = tokio::time::sleep(wait) => {}
            _ = rt.shutdown.cancelled() => return,
        }
    }
}

/// The outcome of one attempt to deliver a message.
enum Attempt {
    Delivered {
        provider_id: Option<String>,
        at: Millis,
    },
    Retry {
        error: String,
        at: Millis,
    },
    Dead {
        error: String,
    },
}

/// What an attempt makes of a message: the message as the attempt leaves it, the delivery
/// report to queue for its journey (final outcomes only) and the counter to bump.
fn settle(entry: &Message, attempt: Attempt) -> (Message, Option<QueuedTrigger>, Option<Counter>) {
    let mut updated = entry.clone();
    updated.attempts += 1;
    let (outcome, counter) = match attempt {
        Attempt::Delivered { provider_id, at } => {
            updated.status = MessageStatus::Delivered;
            updated.delivered_at = Some(at);
            updated.last_error = None;
            updated.provider_id = provider_id.clone();
            (
                Some(DeliveryOutcome::Delivered { provider_id }),
                Some(Counter::Delivered),
            )
        }
        Attempt::Retry { error, at } => {
            updated.last_error = Some(error);
            updated.next_attempt_at = at;
            (None, None)
        }
        Attempt::Dead { error } => {
            updated.status = MessageStatus::Dead;
            updated.last_error = Some(error.clone());
            (
                Some(DeliveryOutcome::Failed { reason: error }),
                Some(Counter::Failed),
            )
        }
    };
    let report = outcome.map(|outcome| QueuedTrigger {
        tenant: entry.tenant.clone(),
        customer: entry.customer.clone(),
        pending: Pending::Delivery {
            journey: entry.journey.clone(),
            run: entry.run,
            report: DeliveryReport {
                message_id: entry.id.clone(),
                channel: entry.channel.clone(),
                template: entry.template.clone(),
                outcome,
            },
        },
    });
    (updated, report, counter)
}

/// Why one attempt failed, and whether trying again may help.
struct Failed {
    retryable: bool,
    error: String,
}

async fn deliver(rt: &Runtime, entry: Message) {
    let span = info_span!(
        "delivery",
        tenant = %entry.tenant,
        channel = %entry.channel,
        customer = %entry.customer,
        message = %entry.id,
        attempt = entry.attempts + 1,
    );
    async {
        let attempt = match attempt(rt, &entry).await {
            Ok(provider_id) => {
                info!("delivered");
                rt.metrics.delivery("delivered");
                Attempt::Delivered {
                    provider_id,
                    at: rt.clock.now(),
                }
            }
            Err(Failed { retryable, error })
                if retryable && entry.attempts + 1 < rt.config.max_attempts =>
            {
                warn!(%error, "delivery failed; will retry");
                rt.metrics.delivery("retry");
                Attempt::Retry {
                    at: system_now() + backoff(rt, entry.attempts, &entry.id),
                    error,
                }
            }
            Err(Failed { error, .. }) => {
                warn!(%error, "delivery failed for good; dead letter");
                rt.metrics.delivery("dead");
                Attempt::Dead { error }
            }
        };
        let final_outcome = !matches!(attempt, Attempt::Retry { .. });
        let (after, report, counter) = settle(&entry, attempt);
        let counter = counter.map(|c| (entry.journey.as_str(), entry.channel.as_str(), c));
        if let Err(error) = rt
            .store
            .record_attempt(&entry, &after, report.as_ref(), counter)
        {
            warn!(%error, "recording the delivery attempt failed");
            return;
        }
        if let Err(error) = rt.store.flush().await {
            warn!(%error, "flushing the delivery attempt failed");
        }
        if final_outcome {
            rt.wake_customer(&entry.tenant, &entry.customer);
        }
    }
    .instrument(span)
    .await
}

async fn attempt(rt: &Runtime, entry: &Message) -> Result<Option<String>, Failed> {
    let permanent = |error: String| Failed {
        retryable: false,
        error,
    };
    let retryable = |error: String| Failed {
        retryable: true,
        error,
    };
    let record = rt
        .store
        .channel(&entry.tenant, &entry.channel)
        .map_err(|e| retryable(e.to_string()))?
        .ok_or_else(|| permanent(format!("channel {:?} is not registered", entry.channel)))?;
    let component = rt
        .registry
        .channel(&record.digest)
        .await
        .map_err(|e| retryable(e.to_string()))?;
    let customer = rt
        .store
        .customer(&entry.tenant, &entry.customer)
        .map_err(|e| retryable(e.to_string()))?
        .unwrap_or_else(|| crate::model::Customer {
            id: entry.customer.clone(),
            attributes: Default::default(),
        });
    let mut config = record.settings.clone();
    config.extend(record.secrets.clone());
    let message = DeliveryRequest {
        id: entry.id.clone(),
        channel: entry.channel.clone(),
        customer,
        template: entry.template.clone(),
        payload: entry.payload.clone(),
        config,
    };
    let limits = rt
        .tenant_limits(&entry.tenant)
        .map_err(|e| retryable(e.to_string()))?;
    match component
        .deliver(&message, &record.allowed_hosts, &limits)
        .await
    {
        Ok(receipt) => Ok(receipt.provider_id),
        Err(DeliveryFailure::Adapter(DeliveryError::Retryable(m))) => Err(retryable(m)),
        Err(DeliveryFailure::Adapter(DeliveryError::Permanent(m))) => Err(permanent(m)),
        // A trap or deadline in an adapter may be transient (a slow provider): retry it.
        Err(DeliveryFailure::Guest(f)) => {
            Err(retryable(format!("{}: {}", f.reason.as_str(), f.message)))
        }
    }
}

/// Exponential backoff with deterministic jitter (±25%, from the message id and attempt), so
/// retries of many messages that failed together spread out.
fn backoff(rt: &Runtime, attempts: u32, id: &str) -> Millis {
    let base = rt.config.retry_base.as_millis() as u64;
    let cap = rt.config.retry_cap.as_millis() as u64;
    let exp = base.saturating_mul(1u64 << attempts.min(30)).min(cap);
    let h =
        crate::hash::fnv1a_continue(crate::hash::FNV_OFFSET ^ u64::from(attempts), id.as_bytes());
    let spread = exp / 2;
    let jittered = exp - exp / 4 + if spread > 0 { h % (spread + 1) } else { 0 };
    jittered as Millis
}
