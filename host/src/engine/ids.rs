//! Identities derived from triggers: trigger ids, idempotency-key prefixes, task ids, seeds and
//! enrollment ids. Each is a pure function of the trigger's own identity, so processing the same
//! trigger again after a crash yields the same keys, ids and seed (invariant 3), and a replay
//! yields the same decision (invariant 5).

use crate::hash;
use crate::model::{Enrollment, Millis, Trigger};

/// Identifies one trigger of one enrollment; part of every idempotency key it produces.
///
/// Derived from the trigger's own identity (event id, timer name and due time, message id), so
/// that re-processing the same trigger after a crash yields the same keys.
pub fn trigger_id(trigger: &Trigger, due: Option<Millis>) -> String {
    match trigger {
        Trigger::Entered { event } | Trigger::Event { event } => format!("e-{}", event.id),
        Trigger::Timer { name } => format!("t-{name}-{}", due.unwrap_or_default()),
        Trigger::Stalled { milestone } => format!("s-{milestone}-{}", due.unwrap_or_default()),
        // Message ids contain earlier trigger ids: hash them so keys do not grow per hop.
        Trigger::Delivery { report } => {
            format!("d-{:016x}", hash::fnv1a(report.message_id.as_bytes()))
        }
    }
}

/// The id of the `index`th task a trigger hands off: short, URL-safe, and the same if the
/// trigger is processed again after a crash.
pub fn task_id(enrollment_id: &str, trigger_id: &str, index: usize) -> String {
    let h = hash::fnv1a_terminated(&[enrollment_id, trigger_id, &index.to_string()]);
    format!("task_{h:016x}")
}

/// The deterministic seed of one trigger, offered to `decide`.
pub fn seed(tenant: &str, enrollment_id: &str, trigger_id: &str) -> u64 {
    hash::fnv1a_terminated(&[tenant, enrollment_id, trigger_id])
}

/// Where the idempotency keys of one trigger's sends start: every key is this prefix plus the
/// command's index.
pub fn key_prefix(tenant: &str, enrollment: &Enrollment, trigger_id: &str) -> String {
    format!(
        "{tenant}/{}/{}/{}/{}/{trigger_id}",
        enrollment.journey, enrollment.version, enrollment.customer, enrollment.run
    )
}

/// `{journey}/{customer}/{run}`: unique per tenant.
pub fn enrollment_id(journey: &str, customer: &str, run: u32) -> String {
    format!("{journey}/{customer}/{run}")
}
