//! The functional core: everything that decides what an event or a trigger means for a
//! customer's journeys, and which records it writes.
//!
//! Everything here is a pure function of its arguments. It knows nothing of sled, HTTP or
//! wasmtime: it names the store's record types (plain data) but never calls the store. The shell
//! (`worker`) loads what a plan needs, asks the sandbox where a step says so, and commits the
//! [`TriggerCommit`](crate::store::TriggerCommit) this module fills. That split is what lets
//! journey semantics be tested exhaustively without a socket or a temp dir, and what a replay
//! or backtest reuses unchanged.
//!
//! | file | what it decides |
//! | --- | --- |
//! | [`plan`] | what an event means: profile changes, the record it is about, the enrollments it reaches ([`plan_event`], [`plan_trigger`]) |
//! | [`routing`] | entry triggers and filters, exit events, re-entry policies |
//! | [`apply`] | what the host observes before asking, and what a journey's commands do |
//! | [`settle`] | a journey's answer into records: suppression, the sending policy, timers, messages, tasks, counters, report deltas ([`prepare`], [`settle()`], [`record`]) |
//! | [`stalls`] | the host's stall timers per milestone window |
//! | [`profile`] | `identify` traits, unsubscribes, suppression, engagement |
//! | [`breaker`] | when a journey version that keeps failing is held back, and when it is probed again |
//! | [`loops`] | loop budgets: when an enrollment that runs or sends too much is paused |
//! | [`delivery`] | one delivery attempt: retry, dead letter, the report back to the journey |
//! | [`ids`] | trigger ids, idempotency keys, task ids, seeds |
//! | [`names`] | the rules for names commands carry (timers, templates, channels, ...) |
//! | [`accounts`] | what a `group` event does to the tenant's accounts (issue 12) |
//! | [`identity`] | which events merge an anonymous id into a known customer, and what the merge writes (issue 12) |

pub mod accounts; // Accounts (issue 12)
pub mod apply;
pub mod breaker;
pub mod delivery;
pub mod identity; // Identity merge (issue 12)
pub mod ids;
pub mod loops;
pub mod names;
pub mod plan;
pub mod profile;
pub mod routing;
pub mod settle;
pub mod stalls;
#[cfg(test)]
mod tests;

pub use apply::{apply, check, exit, fail, observe, should_decide};
pub use ids::{enrollment_id, key_prefix, message_id, seed, task_id, trigger_id};
pub use plan::{
    interpret, plan_event, plan_migration, plan_trigger, About, Addressed, Addressee, Interpreted,
    JourneyRef, Step,
};
pub use profile::{
    apply_traits, engagement, is_suppressed, record_engagement, suppress, unsubscribe,
    update_profile, Engagement, IDENTIFY, TASK_RESOLVED, UNSUBSCRIBED,
};
pub use routing::{enroll, matches_entry, route_event, Routing};
pub use settle::{
    needs_history, observed, prepare, record, settle, task_resolved_event, Ask, DecideError,
    Prepared, TriggerFailure,
};
pub use stalls::{stall_timer, stalled_milestone, watch_stalls, RESERVED_TIMER_PREFIX};

use crate::model::{Enrollment, Handoff, Millis, PendingTimer, Send};

/// Why a decision could not be applied; the trigger fails, the enrollment keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("command {index}: channel {channel:?} is not declared in the journey's spec")]
    UndeclaredChannel { index: usize, channel: String },
    #[error("command {index}: milestone {milestone:?} is not declared in the journey's spec")]
    UndeclaredMilestone { index: usize, milestone: String },
    #[error("command {index}: experiment {experiment:?} has no arm {arm:?} in the journey's spec")]
    UndeclaredArm {
        index: usize,
        experiment: String,
        arm: String,
    },
    #[error("command {index}: {message}")]
    Invalid { index: usize, message: String },
}

/// A send the engine decided, to be written to the outbox with this idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxDraft {
    /// Deterministic and collision-free: `k1-{digest of the trigger's parts}-{command index}`
    /// ([`ids`]).
    pub id: String,
    pub send: Send,
    /// Recorded but never delivered: the customer may not receive it ([`suppress`]).
    pub suppressed: bool,
    /// Deferred by the sending policy until this journey time.
    pub release_at: Option<Millis>,
}

/// Everything a trigger does beyond the enrollment itself; committed with it atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub timers_set: Vec<PendingTimer>,
    pub timers_cancelled: Vec<PendingTimer>,
    pub sends: Vec<OutboxDraft>,
    pub handoffs: Vec<Handoff>,
}

/// The outcome of a trigger: the enrollment as it now is, and the effects to commit with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub enrollment: Enrollment,
    pub effects: Effects,
}
