//! What one delivery attempt means: retry or dead letter, the message as it now stands, the
//! `delivery` trigger that reports a final outcome back to the sending enrollment, and the
//! counter it bumps. The delivery loop calls the adapter and commits what this returns.

use crate::hash;
use crate::model::{Counter, DeliveryOutcome, DeliveryReport, Millis};
use crate::store::{Message, MessageStatus, Pending, QueuedTrigger};
use std::time::Duration;

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a message becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, up to `cap`.
    pub base: Duration,
    pub cap: Duration,
}

/// What one call of the adapter's `deliver` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// Delivered; the provider's id for the message, if it gave one.
    Delivered { provider_id: Option<String> },
    /// Not delivered; `retryable` says whether trying again may help, and `retry_after` how
    /// long the provider asked the next attempt to wait (a floor under the backoff).
    Failed {
        retryable: bool,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Not attempted: the message goes to an address a hard bounce or a complaint suppressed on
    /// its channel (issue 11, provider feedback); `reason` says which and why.
    Suppressed { reason: String },
}

/// Everything one attempt writes.
#[derive(Debug, Clone)]
pub struct AttemptRecords {
    /// The message after the attempt: delivered, dead, or pending its next attempt.
    pub after: Message,
    /// A final outcome, reported to the enrollment that sent the message.
    pub report: Option<QueuedTrigger>,
    /// The counter a final outcome bumps for the journey's channel stats.
    pub counter: Option<Counter>,
}

impl AttemptRecords {
    /// Whether the message is done (delivered or dead) rather than waiting for a retry.
    pub fn is_final(&self) -> bool {
        self.report.is_some()
    }
}

/// Settles one attempt of `before`: a success is delivered at journey time `now`; a retryable
/// failure with attempts left is retried at wall-clock `wall` plus [`backoff`], or plus the
/// provider's `Retry-After` when that is longer; a suppressed address is final, `suppressed`
/// (counted [`Counter::SuppressedLate`]: it was counted sent when decided); anything else is a
/// dead letter. Final outcomes leave a `delivery` trigger for the sending enrollment.
pub fn attempt(
    before: &Message,
    result: AttemptResult,
    retry: &RetryPolicy,
    now: Millis,
    wall: Millis,
) -> AttemptRecords {
    let mut after = before.clone();
    after.attempts += 1;
    let outcome = match result {
        AttemptResult::Delivered { provider_id } => {
            after.status = MessageStatus::Delivered;
            after.delivered_at = Some(now);
            after.last_error = None;
            after.provider_id = provider_id.clone();
            Some(DeliveryOutcome::Delivered { provider_id })
        }
        AttemptResult::Failed {
            retryable,
            error,
            retry_after,
        } if retryable && before.attempts + 1 < retry.max_attempts => {
            after.last_error = Some(error);
            let asked = retry_after.map_or(0, |d| d.as_millis() as Millis);
            after.next_attempt_at = wall + backoff(retry, before.attempts, &before.id).max(asked);
            None
        }
        AttemptResult::Suppressed { reason } => {
            after.status = MessageStatus::Suppressed;
            after.last_error = Some(reason.clone());
            Some(DeliveryOutcome::Suppressed { reason })
        }
        AttemptResult::Failed { error, .. } => {
            after.status = MessageStatus::Dead;
            after.last_error = Some(error.clone());
            Some(DeliveryOutcome::Failed { reason: error })
        }
    };
    // A late suppression was counted `sent` when decided: `SuppressedLate` moves it to
    // suppressed, so it is neither sent nor failed.
    let counter = outcome.as_ref().map(|o| match o {
        DeliveryOutcome::Delivered { .. } => Counter::Delivered,
        DeliveryOutcome::Failed { .. } => Counter::Failed,
        DeliveryOutcome::Suppressed { .. } => Counter::SuppressedLate,
    });
    let report = outcome.map(|outcome| QueuedTrigger {
        tenant: before.tenant.clone(),
        customer: before.customer.clone(),
        pending: Pending::Delivery {
            journey: before.journey.clone(),
            run: before.run,
            report: DeliveryReport {
                message_id: before.id.clone(),
                channel: before.channel.clone(),
                template: before.template.clone(),
                outcome,
            },
        },
    });
    AttemptRecords {
        after,
        report,
        counter,
    }
}

/// Exponential backoff with deterministic jitter (±25%, from the message id and attempt), so
/// retries of many messages that failed together spread out.
pub fn backoff(retry: &RetryPolicy, attempts: u32, id: &str) -> Millis {
    let base = retry.base.as_millis() as u64;
    let cap = retry.cap.as_millis() as u64;
    let exp = base.saturating_mul(1u64 << attempts.min(30)).min(cap);
    let h = hash::fnv1a_continue(hash::FNV_OFFSET ^ u64::from(attempts), id.as_bytes());
    let spread = exp / 2;
    let jittered = exp - exp / 4 + if spread > 0 { h % (spread + 1) } else { 0 };
    jittered as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
    };

    fn pending() -> Message {
        Message {
            id: "acme/onboarding/1/ada/1/e-1/0".into(),
            tenant: "acme".into(),
            customer: "ada".into(),
            journey: "onboarding".into(),
            version: 1,
            enrollment: "onboarding/ada/1".into(),
            run: 1,
            channel: "email".into(),
            template: "welcome".into(),
            payload: serde_json::json!({}),
            status: MessageStatus::Pending,
            attempts: 0,
            next_attempt_at: 1_000,
            last_error: None,
            provider_id: None,
            created_at: 500,
            delivered_at: None,
            release_at: None,
            template_version: None,
            receipt: None,
        }
    }

    fn failed(retryable: bool) -> AttemptResult {
        AttemptResult::Failed {
            retryable,
            error: "HTTP 503".into(),
            retry_after: None,
        }
    }

    #[test]
    fn a_delivery_is_final_reported_and_counted() {
        let records = attempt(
            &pending(),
            AttemptResult::Delivered {
                provider_id: Some("p-1".into()),
            },
            &POLICY,
            7_000,
            9_000,
        );
        assert_eq!(records.after.status, MessageStatus::Delivered);
        assert_eq!(records.after.delivered_at, Some(7_000));
        assert_eq!(records.after.provider_id.as_deref(), Some("p-1"));
        assert_eq!(records.after.attempts, 1);
        assert_eq!(records.counter, Some(Counter::Delivered));
        let Some(QueuedTrigger {
            pending:
                Pending::Delivery {
                    journey,
                    run,
                    report,
                },
            ..
        }) = records.report
        else {
            panic!("a final outcome queues a delivery trigger");
        };
        assert_eq!((journey.as_str(), run), ("onboarding", 1));
        assert_eq!(report.message_id, pending().id);
        assert_eq!(
            report.outcome,
            DeliveryOutcome::Delivered {
                provider_id: Some("p-1".into())
            }
        );
    }

    #[test]
    fn a_suppressed_address_is_final_with_its_reason_and_counted_suppressed() {
        let reason = "suppressed: ada@example.com hard_bounce".to_string();
        let records = attempt(
            &pending(),
            AttemptResult::Suppressed {
                reason: reason.clone(),
            },
            &POLICY,
            7_000,
            9_000,
        );
        assert_eq!(records.after.status, MessageStatus::Suppressed);
        assert_eq!(records.after.last_error.as_deref(), Some(reason.as_str()));
        assert_eq!(
            records.counter,
            Some(Counter::SuppressedLate),
            "moved from sent to suppressed, never failed"
        );
        assert!(records.is_final(), "the journey hears of it");
        let Some(QueuedTrigger {
            pending: Pending::Delivery { report, .. },
            ..
        }) = records.report
        else {
            panic!("a final outcome queues a delivery trigger");
        };
        assert_eq!(report.outcome, DeliveryOutcome::Suppressed { reason });
    }

    #[test]
    fn a_retryable_failure_with_attempts_left_waits_for_its_backoff() {
        let records = attempt(&pending(), failed(true), &POLICY, 7_000, 9_000);
        assert_eq!(records.after.status, MessageStatus::Pending);
        assert_eq!(records.after.last_error.as_deref(), Some("HTTP 503"));
        let delay = records.after.next_attempt_at - 9_000;
        assert!((750..=1_250).contains(&delay), "{delay} ms is 1 s ± 25 %");
        assert!(!records.is_final());
        assert_eq!(records.counter, None);
    }

    #[test]
    fn a_providers_retry_after_is_a_floor_under_the_backoff_never_a_ceiling() {
        let throttled = |after_ms| AttemptResult::Failed {
            retryable: true,
            error: "HTTP 429".into(),
            retry_after: Some(Duration::from_millis(after_ms)),
        };
        let waits = attempt(&pending(), throttled(5_000), &POLICY, 7_000, 9_000);
        assert_eq!(waits.after.next_attempt_at, 9_000 + 5_000);
        assert_eq!(waits.after.status, MessageStatus::Pending);
        let shorter = attempt(&pending(), throttled(10), &POLICY, 7_000, 9_000);
        let delay = shorter.after.next_attempt_at - 9_000;
        assert!(
            (750..=1_250).contains(&delay),
            "{delay} ms: the backoff wins"
        );
        let mut tired = pending();
        tired.attempts = POLICY.max_attempts - 1;
        let last = attempt(&tired, throttled(5_000), &POLICY, 7_000, 9_000);
        assert_eq!(
            last.after.status,
            MessageStatus::Dead,
            "attempts still count"
        );
    }

    #[test]
    fn a_permanent_failure_or_the_last_attempt_is_a_dead_letter() {
        let permanent = attempt(&pending(), failed(false), &POLICY, 7_000, 9_000);
        assert_eq!(permanent.after.status, MessageStatus::Dead);
        assert_eq!(permanent.counter, Some(Counter::Failed));
        assert!(permanent.is_final());
        let mut tired = pending();
        tired.attempts = POLICY.max_attempts - 1;
        let last = attempt(&tired, failed(true), &POLICY, 7_000, 9_000);
        assert_eq!(last.after.status, MessageStatus::Dead);
        assert_eq!(last.after.attempts, POLICY.max_attempts);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_stable_jitter() {
        let at = |n| backoff(&POLICY, n, "m");
        assert_eq!(at(3), at(3), "jitter is deterministic");
        assert!((750..=1_250).contains(&at(0)));
        assert!((1_500..=2_500).contains(&at(1)));
        assert!((45_000..=75_000).contains(&at(20)), "capped at 60 s ± 25 %");
        assert_ne!(backoff(&POLICY, 4, "a"), backoff(&POLICY, 4, "b"));
    }
}
