//! Why a guest call failed, in the sandbox's vocabulary, and the one classification of it.
//!
//! [`classify`] turns whatever wasmtime reports (a trap, an epoch interrupt, a refused memory
//! growth, a failed instantiation) into a [`GuestFailure`] with the right [`FailureReason`];
//! `runtime` records the reason on the enrollment. [`DeliveryFailure`] adds the adapter's own
//! `delivery-error`, and [`DeliveryFailure::retryable`] / [`DeliveryFailure::describe`] are the
//! one place that decides what the delivery loop does with it.
//!
//! Guest-supplied text (panic messages, backtraces, error strings, log lines) is bounded with
//! [`truncate`] before the host keeps it. This module depends on nothing else in the sandbox,
//! so every other module may use it.

use crate::model;
use std::time::Duration;
use wasmtime::{Trap, WasmBacktrace};

/// Longest failure message kept; traps carry a wasm backtrace that can run long.
const MAX_FAILURE_MESSAGE: usize = 2048;

/// Why a guest call failed. The enrollment records it; other customers proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct GuestFailure {
    pub reason: FailureReason,
    pub message: String,
}

impl GuestFailure {
    pub(crate) fn new(reason: FailureReason, message: impl Into<String>) -> GuestFailure {
        GuestFailure {
            reason,
            message: message.into(),
        }
    }
}

/// The kind of a [`GuestFailure`]: the domain's [`model::FailureReason`], which
/// `model::Failure::reason` records (the host adds `unavailable` and `internal`).
pub use crate::model::FailureReason;

/// Why `deliver` did not deliver: the adapter said so, or the guest failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryFailure {
    /// The adapter returned `delivery-error`.
    #[error("adapter: {0}")]
    Adapter(model::DeliveryError),
    /// The adapter returned a retryable `delivery-error` after passing on the provider's word
    /// not to call again before `retry_after` (`delivery-hints.retry-after`, contract 0.1.1).
    #[error("adapter: retryable: {reason} (not before {retry_after:?})")]
    Throttled {
        reason: String,
        retry_after: std::time::Duration,
    },
    /// The adapter trapped, ran out of time or memory, or could not be instantiated.
    #[error("guest: {0}")]
    Guest(GuestFailure),
    /// What the adapter handed the host is over a bound: more bytes crossing the boundary
    /// than `max_hostcall_bytes` (a receipt, an error or a request body), or a receipt over
    /// its own bound. The same message would do the same again, so it is permanent.
    #[error("oversized: {0}")]
    Oversized(String),
}

impl DeliveryFailure {
    /// Whether trying again later may succeed: what the adapter said, and always for a guest
    /// failure, since a trap or a deadline may be a slow provider; the delivery loop's backoff
    /// and dead-lettering bound the cost of an adapter that always traps.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryFailure::Adapter(model::DeliveryError::Retryable(_)) => true,
            DeliveryFailure::Adapter(model::DeliveryError::Permanent(_)) => false,
            DeliveryFailure::Throttled { .. } => true,
            DeliveryFailure::Guest(_) => true,
            DeliveryFailure::Oversized(_) => false,
        }
    }

    /// How long the provider asked the next attempt to wait, when it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DeliveryFailure::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The error text a delivery attempt records: the adapter's own message, or
    /// `{reason}: {message}` for a guest failure (e.g. `deadline: the guest did not finish
    /// within 30000 ms`).
    pub fn describe(&self) -> String {
        match self {
            DeliveryFailure::Adapter(
                model::DeliveryError::Retryable(m) | model::DeliveryError::Permanent(m),
            ) => m.clone(),
            DeliveryFailure::Throttled { reason, .. } => reason.clone(),
            DeliveryFailure::Guest(failure) => failure.to_string(),
            DeliveryFailure::Oversized(m) => m.clone(),
        }
    }
}

/// Whether `error` is wasmtime refusing to copy more bytes across the boundary than the
/// call's hostcall fuel allows. Wasmtime's error type for it is private, so this reads its
/// text (pinned by a test that exhausts the fuel for real, `sandbox::tests`).
pub(super) fn is_hostcall_fuel_exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// Where a call failed: creating the instance, or running the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Instantiate,
    Call,
}

/// Classifies a wasmtime error from `stage`. `memory_hit` says whether the guest ran into its
/// memory cap during the call; `stderr` is the tail of what the guest printed (a Rust panic
/// message lands there), appended to the message because it usually says what went wrong.
pub(super) fn classify(
    stage: Stage,
    error: &wasmtime::Error,
    memory_hit: bool,
    stderr: &str,
) -> GuestFailure {
    let trap = error.downcast_ref::<Trap>().copied();
    let reason = if trap == Some(Trap::Interrupt) {
        FailureReason::Deadline
    } else if memory_hit {
        FailureReason::Memory
    } else {
        match stage {
            Stage::Instantiate => FailureReason::Instantiate,
            Stage::Call => FailureReason::Trap,
        }
    };
    // Most useful first, since the message is truncated: what happened, what the guest said
    // about it (a panic message), then where (the wasm backtrace).
    let backtrace = error.downcast_ref::<WasmBacktrace>();
    let what = match (trap, backtrace) {
        // A trap's own text already reads "wasm trap: ...".
        (Some(trap), _) => trap.to_string(),
        // The backtrace is context on top of the root error; show the root alone here.
        (None, Some(_)) => error.root_cause().to_string(),
        (None, None) => format!("{error:#}"),
    };
    let mut message = match reason {
        FailureReason::Deadline => "the guest ran past its deadline".to_string(),
        FailureReason::Memory => format!("the guest exceeded its memory limit ({what})"),
        _ => what,
    };
    if reason != FailureReason::Deadline {
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            message.push_str("; guest stderr: ");
            message.push_str(stderr);
        }
        if let Some(backtrace) = backtrace {
            message.push('\n');
            message.push_str(backtrace.to_string().trim_end());
        }
    }
    GuestFailure::new(reason, truncate(message, MAX_FAILURE_MESSAGE))
}

/// The failure of a call that did not finish within `deadline` of wall time (a guest blocked
/// in a host call, where the epoch cannot interrupt it).
pub(super) fn timed_out(deadline: Duration) -> GuestFailure {
    GuestFailure::new(
        FailureReason::Deadline,
        format!(
            "the guest did not finish within {} ms",
            deadline.as_millis()
        ),
    )
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
pub(super) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_use_the_recorded_vocabulary() {
        let failure = GuestFailure::new(FailureReason::GuestError, "no such template");
        assert_eq!(failure.to_string(), "guest_error: no such template");
        assert_eq!(FailureReason::InvalidCommands.as_str(), "invalid_commands");
    }

    #[test]
    fn a_failed_adapter_call_is_retried_unless_the_adapter_says_permanent() {
        let trap = DeliveryFailure::Guest(GuestFailure::new(FailureReason::Trap, "boom"));
        let deadline = DeliveryFailure::Guest(timed_out(Duration::from_secs(30)));
        let busy = DeliveryFailure::Adapter(model::DeliveryError::Retryable("503".into()));
        let refused = DeliveryFailure::Adapter(model::DeliveryError::Permanent("400".into()));
        assert!(trap.retryable());
        assert!(deadline.retryable());
        assert!(busy.retryable());
        assert!(!refused.retryable());
        assert!(!DeliveryFailure::Oversized("receipt".into()).retryable());
    }

    #[test]
    fn a_delivery_failure_is_described_as_the_attempt_records_it() {
        let trap = DeliveryFailure::Guest(GuestFailure::new(FailureReason::Trap, "boom"));
        assert_eq!(trap.describe(), "trap: boom");
        let deadline = DeliveryFailure::Guest(timed_out(Duration::from_millis(1500)));
        assert_eq!(
            deadline.describe(),
            "deadline: the guest did not finish within 1500 ms"
        );
        let refused = DeliveryFailure::Adapter(model::DeliveryError::Permanent("400".into()));
        assert_eq!(refused.describe(), "400");
        let busy = DeliveryFailure::Adapter(model::DeliveryError::Retryable("503".into()));
        assert_eq!(busy.describe(), "503");
    }

    #[test]
    fn interrupts_are_deadlines_and_traps_after_hitting_the_cap_are_memory() {
        let interrupt = wasmtime::Error::from(Trap::Interrupt);
        assert_eq!(
            classify(Stage::Call, &interrupt, false, "").reason,
            FailureReason::Deadline
        );
        let unreachable = wasmtime::Error::from(Trap::UnreachableCodeReached);
        assert_eq!(
            classify(Stage::Call, &unreachable, true, "").reason,
            FailureReason::Memory
        );
        let failure = classify(
            Stage::Call,
            &unreachable,
            false,
            "panicked at src/lib.rs:3\n",
        );
        assert_eq!(failure.reason, FailureReason::Trap);
        assert!(failure
            .message
            .ends_with("guest stderr: panicked at src/lib.rs:3"));
        let pool = wasmtime::format_err!("maximum concurrent instance limit reached");
        assert_eq!(
            classify(Stage::Instantiate, &pool, false, "").reason,
            FailureReason::Instantiate
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h…");
        assert_eq!(truncate("short".into(), 10), "short");
    }
}
