//! Applying a trigger to an enrollment: what the host observes before asking the journey, and
//! what the journey's commands do (sends, timers, milestones, state, experiments, handoffs, exits).

use super::ids::message_id;
use super::names::check_command;
use super::stalls::{stall_timer, watch_stalls, RESERVED_TIMER_PREFIX};
use super::{Applied, Effects, EngineError, OutboxDraft};
use crate::model::{
    Command, DeliveryOutcome, DeliveryReport, Enrollment, EnrollmentStatus, Failure, FailureReason,
    MilestoneHit, Millis, PendingTimer, Spec, Trigger,
};

/// Whether `decide` should run for this trigger at all. Only active enrollments decide, and a
/// timer only fires if it is still pending with the same due time (it may have been cancelled or
/// rescheduled after it was queued).
pub fn should_decide(enrollment: &Enrollment, trigger: &Trigger, due: Option<Millis>) -> bool {
    if !enrollment.is_active() {
        return false;
    }
    match trigger {
        Trigger::Timer { name } => enrollment.timer(name).is_some_and(|t| Some(t.due) == due),
        Trigger::Stalled { milestone } => enrollment
            .timer(&stall_timer(milestone))
            .is_some_and(|t| Some(t.due) == due),
        _ => true,
    }
}

/// What the host records before asking the journey: a fired timer leaves the pending set (only
/// if it is the same timer: one rescheduled after the old one was queued stays pending), and a
/// delivery report updates the channel summary. Applies whether or not `decide` then succeeds.
pub fn observe(enrollment: &mut Enrollment, trigger: &Trigger, due: Option<Millis>) {
    match trigger {
        Trigger::Timer { name } => enrollment
            .timers
            .retain(|t| !(t.name == *name && Some(t.due) == due)),
        Trigger::Stalled { milestone } => {
            let name = stall_timer(milestone);
            let pending = enrollment
                .timers
                .iter()
                .position(|t| t.name == name && Some(t.due) == due);
            if let (Some(index), Some(at)) = (pending, due) {
                enrollment.timers.remove(index);
                enrollment.stalls.push(MilestoneHit {
                    name: milestone.clone(),
                    at,
                });
                enrollment.stalled_on = Some(milestone.clone());
            }
        }
        Trigger::Delivery {
            report: DeliveryReport {
                channel, outcome, ..
            },
        } => {
            let summary = enrollment.channels.entry(channel.clone()).or_default();
            match outcome {
                DeliveryOutcome::Delivered { .. } => summary.delivered += 1,
                DeliveryOutcome::Failed { .. } => summary.failed += 1,
                // Suppressed at delivery time: counted as `suppress` counts a send suppressed
                // when it was decided (moved from sent to suppressed), so it counts once.
                DeliveryOutcome::Suppressed { .. } => {
                    summary.sent = summary.sent.saturating_sub(1);
                    summary.suppressed += 1;
                }
            }
        }
        _ => {}
    }
}

/// Applies a journey's commands, in order, to an (already observed) enrollment: [`check`],
/// then [`apply_checked`].
///
/// Rules: every name a command carries is checked first ([`names`](super::names)); sends go
/// only through declared channels, and each gets a deterministic idempotency key
/// ([`message_id`]); scheduling a timer that is pending replaces it; milestones are recorded
/// once, at `now`, and the goal milestone completes the enrollment; the first assignment of an
/// experiment sticks; commands after the enrollment ends are ignored; ending cancels every
/// pending timer.
pub fn apply(
    enrollment: Enrollment,
    spec: &Spec,
    commands: Vec<Command>,
    key_prefix: &str,
    now: Millis,
) -> Result<Applied, EngineError> {
    check(&enrollment, spec, &commands)?;
    Ok(apply_checked(enrollment, spec, commands, key_prefix, now))
}

/// The first command [`apply`] would refuse, leaving `enrollment` as it is (so a refused
/// decision needs no copy of it): a name the rules refuse, or a channel, milestone or
/// experiment arm `spec` does not declare. The commands after one that ends the enrollment
/// are ignored, as `apply` ignores them.
pub fn check(
    enrollment: &Enrollment,
    spec: &Spec,
    commands: &[Command],
) -> Result<(), EngineError> {
    let mut active = enrollment.is_active();
    for (index, command) in commands.iter().enumerate() {
        if !active {
            break;
        }
        check_command(index, command)?;
        match command {
            Command::Send(send) if !spec.channels.contains(&send.channel) => {
                return Err(EngineError::UndeclaredChannel {
                    index,
                    channel: send.channel.clone(),
                });
            }
            Command::Schedule { name, .. }
                if name.is_empty() || name.starts_with(RESERVED_TIMER_PREFIX) =>
            {
                return Err(EngineError::Invalid {
                    index,
                    message: format!(
                        "a timer needs a name, not starting with `{RESERVED_TIMER_PREFIX}` (reserved for the host): {name:?}"
                    ),
                });
            }
            Command::Cancel { name } if name.starts_with(RESERVED_TIMER_PREFIX) => {
                return Err(EngineError::Invalid {
                    index,
                    message: format!("timer {name:?} belongs to the host"),
                })
            }
            Command::Milestone { name } if !spec.milestones.iter().any(|m| m.name == *name) => {
                return Err(EngineError::UndeclaredMilestone {
                    index,
                    milestone: name.clone(),
                });
            }
            // Reaching the goal for the first time completes the enrollment.
            Command::Milestone { name } => {
                active = !(spec.goal.as_deref() == Some(name.as_str())
                    && enrollment.milestone(name).is_none());
            }
            Command::Assign(a)
                if !spec
                    .experiments
                    .iter()
                    .any(|x| x.name == a.experiment && x.arms.contains(&a.arm)) =>
            {
                return Err(EngineError::UndeclaredArm {
                    index,
                    experiment: a.experiment.clone(),
                    arm: a.arm.clone(),
                });
            }
            Command::Exit { .. } | Command::Complete => active = false,
            _ => {}
        }
    }
    Ok(())
}

/// [`apply`] of commands [`check`] found nothing to refuse in.
pub fn apply_checked(
    mut enrollment: Enrollment,
    spec: &Spec,
    commands: Vec<Command>,
    key_prefix: &str,
    now: Millis,
) -> Applied {
    let mut effects = Effects::default();
    for (index, command) in commands.into_iter().enumerate() {
        if !enrollment.is_active() {
            break;
        }
        match command {
            Command::Send(send) => {
                enrollment
                    .channels
                    .entry(send.channel.clone())
                    .or_default()
                    .sent += 1;
                effects.sends.push(OutboxDraft {
                    id: message_id(key_prefix, index),
                    send,
                    suppressed: false,
                    release_at: None,
                });
            }
            Command::Schedule { name, due } => {
                cancel_timer(&mut enrollment, &mut effects, &name);
                let timer = PendingTimer {
                    name,
                    due: due.max(now),
                };
                effects.timers_set.push(timer.clone());
                enrollment.timers.push(timer);
            }
            Command::Cancel { name } => cancel_timer(&mut enrollment, &mut effects, &name),
            Command::Milestone { name } => {
                if enrollment.milestone(&name).is_none() {
                    enrollment.stalled_on = None;
                    let is_goal = spec.goal.as_deref() == Some(name.as_str());
                    enrollment.milestones.push(MilestoneHit { name, at: now });
                    if is_goal {
                        end(&mut enrollment, EnrollmentStatus::Completed, None, now);
                    }
                }
            }
            Command::SetState { state } => enrollment.state = state,
            Command::Assign(assignment) => {
                if !enrollment
                    .variants
                    .iter()
                    .any(|v| v.experiment == assignment.experiment)
                {
                    enrollment.variants.push(assignment);
                }
            }
            Command::Handoff(handoff) => effects.handoffs.push(handoff),
            Command::Exit { reason } => {
                end(&mut enrollment, EnrollmentStatus::Exited, Some(reason), now)
            }
            Command::Complete => end(&mut enrollment, EnrollmentStatus::Completed, None, now),
        }
    }
    if !enrollment.is_active() {
        effects
            .timers_cancelled
            .extend(std::mem::take(&mut enrollment.timers));
    }
    watch_stalls(&mut enrollment, spec, &mut effects);
    enrollment.failure = None;
    Applied {
        enrollment,
        effects,
    }
}

/// Ends an enrollment without asking the journey (an exit event), cancelling its timers.
pub fn exit(mut enrollment: Enrollment, reason: String, now: Millis) -> Applied {
    end(&mut enrollment, EnrollmentStatus::Exited, Some(reason), now);
    let effects = Effects {
        timers_cancelled: std::mem::take(&mut enrollment.timers),
        ..Effects::default()
    };
    Applied {
        enrollment,
        effects,
    }
}

/// Records a failed trigger on the enrollment; its state is otherwise unchanged (stall
/// detection stays armed).
pub fn fail(
    mut enrollment: Enrollment,
    spec: &Spec,
    trigger: &Trigger,
    reason: FailureReason,
    message: String,
    now: Millis,
) -> Applied {
    enrollment.record_failure(Failure {
        trigger: trigger.kind().to_string(),
        reason,
        message,
        at: now,
    });
    let mut effects = Effects::default();
    watch_stalls(&mut enrollment, spec, &mut effects);
    Applied {
        enrollment,
        effects,
    }
}

fn cancel_timer(enrollment: &mut Enrollment, effects: &mut Effects, name: &str) {
    if let Some(pos) = enrollment.timers.iter().position(|t| t.name == name) {
        effects.timers_cancelled.push(enrollment.timers.remove(pos));
    }
}

fn end(enrollment: &mut Enrollment, status: EnrollmentStatus, reason: Option<String>, now: Millis) {
    enrollment.status = status;
    enrollment.ended_at = Some(now);
    enrollment.exit_reason = reason;
}
