//! Stall detection: the host's own timers that fire when a customer does not reach the next
//! milestone within its declared window.

use super::Effects;
use crate::model::{Enrollment, Millis, PendingTimer, Spec};

/// Timer names the host keeps for itself; journeys may not schedule or cancel them.
pub const RESERVED_TIMER_PREFIX: &str = "$";

/// The host's timer that fires when `milestone` has not been reached within its window.
pub fn stall_timer(milestone: &str) -> String {
    format!("$stall:{milestone}")
}

/// The milestone a host timer watches, if `timer` is a stall timer.
pub fn stalled_milestone(timer: &str) -> Option<&str> {
    timer.strip_prefix("$stall:")
}

/// Keeps stall detection armed: an active enrollment waits for the next milestone in the
/// spec's order (the one after the furthest reached), and if that milestone declares a window,
/// a stall timer is due that long after the latest progress (entry, a milestone, or the last
/// stall, so a customer who stays stuck stalls again after another window). Reaching a
/// milestone, or ending, moves or cancels the timer.
pub fn watch_stalls(enrollment: &mut Enrollment, spec: &Spec, effects: &mut Effects) {
    let wanted = enrollment
        .is_active()
        .then(|| {
            let reached = spec
                .milestones
                .iter()
                .rposition(|m| enrollment.milestone(&m.name).is_some());
            let next = spec.milestones.get(reached.map_or(0, |i| i + 1))?;
            let window = next.stall_after?;
            let progress = enrollment
                .milestones
                .iter()
                .chain(&enrollment.stalls)
                .map(|m| m.at)
                .fold(enrollment.entered_at, Millis::max);
            Some(PendingTimer {
                name: stall_timer(&next.name),
                due: progress.saturating_add(window),
            })
        })
        .flatten();
    let mut kept = false;
    let mut index = 0;
    while index < enrollment.timers.len() {
        let timer = &enrollment.timers[index];
        if stalled_milestone(&timer.name).is_none() {
            index += 1;
        } else if Some(timer) == wanted.as_ref() && !kept {
            kept = true;
            index += 1;
        } else {
            effects
                .timers_cancelled
                .push(enrollment.timers.remove(index));
        }
    }
    if let (Some(timer), false) = (wanted, kept) {
        effects.timers_set.push(timer.clone());
        enrollment.timers.push(timer);
    }
}
