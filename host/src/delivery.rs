//! Drains the outbox: calls the channel adapter's `deliver` for each due message and commits
//! what `engine::delivery::attempt` makes of the result — a retry with backoff, a dead letter, or
//! a delivery — with the final outcome reported back to the journey as a `delivery` trigger in
//! the same transaction.
//!
//! Delivery is at least once: a crash between `deliver` and recording its outcome repeats the
//! call with the same message id, which adapters pass on as the idempotency key.

use crate::clock::system_now;
use crate::engine::delivery::{attempt, AttemptResult};
use crate::host::Host;
use crate::model::{Customer, DeliveryRequest};
use crate::store::Message;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, info_span, warn, Instrument};

/// Messages delivered concurrently; each waits mostly on the provider's network.
const CONCURRENCY: usize = 16;
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// Delivers due messages until shutdown.
pub async fn run(host: Arc<Host>) {
    loop {
        let ready = host.message_ready();
        let now = system_now();
        match host.store.due_messages(now, 256) {
            Ok(due) if !due.is_empty() => {
                futures::stream::iter(due)
                    .for_each_concurrent(CONCURRENCY, |message| deliver(&host, message))
                    .await;
                continue;
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "reading the outbox failed"),
        }
        let wait = match host.store.next_message_due() {
            Ok(Some(at)) => {
                Duration::from_millis(at.saturating_sub(now).max(0) as u64).min(IDLE_RECHECK)
            }
            _ => IDLE_RECHECK,
        };
        tokio::select! {
            _ = ready => {}
            _ = tokio::time::sleep(wait) => {}
            _ = host.shutdown.cancelled() => return,
        }
    }
}

/// One attempt at one message, recorded.
async fn deliver(host: &Host, message: Message) {
    let span = info_span!(
        "delivery",
        tenant = %message.tenant,
        channel = %message.channel,
        customer = %message.customer,
        message = %message.id,
        attempt = message.attempts + 1,
    );
    async {
        let result = call_adapter(host, &message).await;
        match &result {
            AttemptResult::Delivered { .. } => info!("delivered"),
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
        host.metrics
            .delivery(match (&records.report, records.after.status) {
                (None, _) => "retry",
                (Some(_), crate::store::MessageStatus::Delivered) => "delivered",
                (Some(_), _) => "dead",
            });
        let counter = records
            .counter
            .map(|c| (message.journey.as_str(), message.channel.as_str(), c));
        if let Err(error) =
            host.store
                .record_attempt(&message, &records.after, records.report.as_ref(), counter)
        {
            warn!(%error, "recording the delivery attempt failed");
            return;
        }
        if let Err(error) = host.store.flush().await {
            warn!(%error, "flushing the delivery attempt failed");
        }
        if records.is_final() {
            host.wake_customer(&message.tenant, &message.customer);
        }
    }
    .instrument(span)
    .await
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
    let component = match host.registry.channel(&record.digest).await {
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
