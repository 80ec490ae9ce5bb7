//! The functional core: what a trigger and a journey's commands do to an enrollment.
//!
//! Everything here is a pure function of its arguments. It knows nothing of sled, HTTP or
//! wasmtime: the shell (`runtime`) loads an enrollment, asks the sandbox for commands, calls
//! [`apply`], and commits the returned enrollment and [`Effects`] in one store transaction.
//! That split is what lets these rules be tested exhaustively without a socket or a temp dir.

use crate::hash;
use crate::model::{
    Command, Customer, DeliveryOutcome, DeliveryReport, Enrollment, EnrollmentStatus, EntryTrigger,
    Event, Failure, Handoff, MilestoneHit, Millis, PendingTimer, Reentry, Send, Spec, Trigger,
};
use serde_json::Value;

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

/// Whether an event matches an entry trigger: same name, and every filter key equal.
pub fn matches_entry(entry: &EntryTrigger, event: &Event) -> bool {
    entry.event == event.name
        && entry.filter.as_ref().is_none_or(|filter| {
            filter
                .iter()
                .all(|(k, v)| event.properties.get(k) == Some(v))
        })
}

/// What an event means for one journey and one customer.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// Start a new run with this run number (and re-entry key), deciding on `entered`.
    Enter { run: u32, key: Option<String> },
    /// Hand the event to this active enrollment's `decide`.
    Deliver { enrollment_id: String },
    /// End this enrollment without asking the journey: the event is one of its exit events.
    Exit {
        enrollment_id: String,
        reason: String,
    },
}

/// Routes an event through one journey, given the customer's existing enrollments in it (any
/// version, any status) and the spec of each enrollment's version (`spec_of`), plus the latest
/// version's spec (`latest`), which governs entry.
pub fn route_event<'a>(
    latest: &Spec,
    enrollments: &'a [Enrollment],
    spec_of: impl Fn(&'a Enrollment) -> Option<&'a Spec>,
    event: &Event,
) -> Vec<Routing> {
    let mut routes = Vec::new();
    for enrollment in enrollments.iter().filter(|e| e.is_active()) {
        let exits = spec_of(enrollment).is_some_and(|s| s.exit_on.contains(&event.name));
        routes.push(if exits {
            Routing::Exit {
                enrollment_id: enrollment.id.clone(),
                reason: format!("exit_event:{}", event.name),
            }
        } else {
            Routing::Deliver {
                enrollment_id: enrollment.id.clone(),
            }
        });
    }
    if latest.entry.iter().any(|entry| matches_entry(entry, event)) {
        if let Some(enter) = entry_allowed(&latest.reentry, enrollments, event) {
            routes.push(enter);
        }
    }
    routes
}

/// Applies a re-entry policy: the new run, or `None` when the customer may not enter.
fn entry_allowed(policy: &Reentry, enrollments: &[Enrollment], event: &Event) -> Option<Routing> {
    let next_run = enrollments.iter().map(|e| e.run).max().unwrap_or(0) + 1;
    let enter = |key: Option<String>| Some(Routing::Enter { run: next_run, key });
    match policy {
        Reentry::Never if enrollments.is_empty() => enter(None),
        Reentry::Never => None,
        Reentry::AfterExit if enrollments.iter().all(|e| !e.is_active()) => enter(None),
        Reentry::AfterExit => None,
        Reentry::Always => enter(None),
        Reentry::Keyed(property) => {
            let key = match event.properties.get(property)? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            if enrollments.iter().any(|e| e.key.as_deref() == Some(&key)) {
                None
            } else {
                enter(Some(key))
            }
        }
    }
}

/// A fresh enrollment for a customer entering a journey version.
pub fn enroll(
    journey: &str,
    version: u32,
    customer: &str,
    run: u32,
    key: Option<String>,
    now: Millis,
) -> Enrollment {
    Enrollment {
        id: enrollment_id(journey, customer, run),
        journey: journey.to_string(),
        version,
        customer: customer.to_string(),
        run,
        key,
        status: EnrollmentStatus::Active,
        entered_at: now,
        ended_at: None,
        exit_reason: None,
        milestones: Vec::new(),
        stalls: Vec::new(),
        stalled_on: None,
        state: Vec::new(),
        timers: Vec::new(),
        variants: Vec::new(),
        channels: Default::default(),
        failure: None,
    }
}

/// `{journey}/{customer}/{run}`: unique per tenant.
pub fn enrollment_id(journey: &str, customer: &str, run: u32) -> String {
    format!("{journey}/{customer}/{run}")
}

/// A send the engine decided, to be written to the outbox with this idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxDraft {
    /// Deterministic: `{tenant}/{journey}/{version}/{customer}/{run}/{trigger}/{command index}`.
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

/// Where the idempotency keys of one trigger's sends start: every key is this prefix plus the
/// command's index.
pub fn key_prefix(tenant: &str, enrollment: &Enrollment, trigger_id: &str) -> String {
    format!(
        "{tenant}/{}/{}/{}/{}/{trigger_id}",
        enrollment.journey, enrollment.version, enrollment.customer, enrollment.run
    )
}

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
            }
        }
        _ => {}
    }
}

/// Applies a journey's commands, in order, to an (already observed) enrollment.
///
/// Rules: sends go only through declared channels, and each gets a deterministic idempotency
/// key; scheduling a timer that is pending replaces it; milestones are recorded once, at `now`,
/// and the goal milestone completes the enrollment; the first assignment of an experiment
/// sticks; commands after the enrollment ends are ignored; ending cancels every pending timer.
pub fn apply(
    mut enrollment: Enrollment,
    spec: &Spec,
    commands: Vec<Command>,
    key_prefix: &str,
    now: Millis,
) -> Result<Applied, EngineError> {
    let mut effects = Effects::default();
    for (index, command) in commands.into_iter().enumerate() {
        if !enrollment.is_active() {
            break;
        }
        match command {
            Command::Send(send) => {
                if !spec.channels.contains(&send.channel) {
                    return Err(EngineError::UndeclaredChannel {
                        index,
                        channel: send.channel,
                    });
                }
                enrollment
                    .channels
                    .entry(send.channel.clone())
                    .or_default()
                    .sent += 1;
                effects.sends.push(OutboxDraft {
                    id: format!("{key_prefix}/{index}"),
                    send,
                    suppressed: false,
                    release_at: None,
                });
            }
            Command::Schedule { name, due } => {
                if name.is_empty() || name.starts_with(RESERVED_TIMER_PREFIX) {
                    return Err(EngineError::Invalid {
                        index,
                        message: format!(
                            "a timer needs a name, not starting with `{RESERVED_TIMER_PREFIX}` (reserved for the host): {name:?}"
                        ),
                    });
                }
                cancel_timer(&mut enrollment, &mut effects, &name);
                let timer = PendingTimer {
                    name,
                    due: due.max(now),
                };
                effects.timers_set.push(timer.clone());
                enrollment.timers.push(timer);
            }
            Command::Cancel { name } if name.starts_with(RESERVED_TIMER_PREFIX) => {
                return Err(EngineError::Invalid {
                    index,
                    message: format!("timer {name:?} belongs to the host"),
                })
            }
            Command::Cancel { name } => cancel_timer(&mut enrollment, &mut effects, &name),
            Command::Milestone { name } => {
                if !spec.milestones.iter().any(|m| m.name == name) {
                    return Err(EngineError::UndeclaredMilestone {
                        index,
                        milestone: name,
                    });
                }
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
                let declared = spec
                    .experiments
                    .iter()
                    .any(|x| x.name == assignment.experiment && x.arms.contains(&assignment.arm));
                if !declared {
                    return Err(EngineError::UndeclaredArm {
                        index,
                        experiment: assignment.experiment,
                        arm: assignment.arm,
                    });
                }
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
    Ok(Applied {
        enrollment,
        effects,
    })
}

/// Event names the host interprets before routing.
pub const IDENTIFY: &str = "identify";
/// Tracking events that name one of the customer's messages in property `message_id`.
pub const ENGAGEMENT: [&str; 6] = [
    "delivered",
    "opened",
    "clicked",
    "replied",
    "bounced",
    "unsubscribed",
];

/// Applies `identify` traits to a customer's attributes: each key is set, and `null` removes
/// it. Returns whether anything changed.
pub fn apply_traits(customer: &mut Customer, traits: &crate::model::Object) -> bool {
    let mut changed = false;
    for (name, value) in traits {
        if value.is_null() {
            changed |= customer.attributes.remove(name).is_some();
        } else if customer.attributes.get(name) != Some(value) {
            customer.attributes.insert(name.clone(), value.clone());
            changed = true;
        }
    }
    changed
}

/// The engagement an event reports, and the message it is about.
pub fn engagement(event: &Event) -> Option<(&'static str, &str)> {
    let kind = ENGAGEMENT.iter().find(|k| **k == event.name)?;
    let message = event.properties.get("message_id")?.as_str()?;
    Some((kind, message))
}

/// Counts engagement on the enrollment's summary of `channel`. A provider's `delivered` is not
/// counted again: the host counted the message delivered when the adapter handed it over.
pub fn record_engagement(enrollment: &mut Enrollment, channel: &str, kind: &str) {
    let summary = enrollment.channels.entry(channel.to_string()).or_default();
    match kind {
        "opened" => summary.opened += 1,
        "clicked" => summary.clicked += 1,
        "replied" => summary.replied += 1,
        "bounced" => summary.bounced += 1,
        "unsubscribed" => summary.unsubscribed += 1,
        _ => {}
    }
}

/// Records an unsubscribe on the customer: from `channel` if the event names one (attribute
/// `unsubscribed_channels`), else from everything (attribute `unsubscribed: true`).
pub fn unsubscribe(customer: &mut Customer, channel: Option<&str>) {
    match channel {
        Some(channel) => {
            let list = customer
                .attributes
                .entry("unsubscribed_channels")
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if !list.is_array() {
                *list = serde_json::Value::Array(Vec::new());
            }
            if let Some(list) = list.as_array_mut() {
                if !list.iter().any(|c| c.as_str() == Some(channel)) {
                    list.push(channel.into());
                }
            }
        }
        None => {
            customer
                .attributes
                .insert("unsubscribed".into(), true.into());
        }
    }
}

/// Whether the customer may not receive messages through `channel`: attribute `unsubscribed`
/// or `suppressed` is `true`, or `unsubscribed_channels` lists the channel.
pub fn is_suppressed(customer: &Customer, channel: &str) -> bool {
    let flag = |name: &str| customer.attributes.get(name).and_then(|v| v.as_bool()) == Some(true);
    flag("unsubscribed")
        || flag("suppressed")
        || customer
            .attributes
            .get("unsubscribed_channels")
            .and_then(|v| v.as_array())
            .is_some_and(|list| list.iter().any(|c| c.as_str() == Some(channel)))
}

/// Marks the sends a suppressed customer may not receive: they are recorded (status
/// `suppressed`) and counted as suppressed rather than sent, and never delivered.
pub fn suppress(applied: &mut Applied, customer: &Customer) {
    for draft in &mut applied.effects.sends {
        if is_suppressed(customer, &draft.send.channel) {
            draft.suppressed = true;
            let summary = applied
                .enrollment
                .channels
                .entry(draft.send.channel.clone())
                .or_default();
            summary.sent = summary.sent.saturating_sub(1);
            summary.suppressed += 1;
        }
    }
}

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
    reason: &str,
    message: String,
    now: Millis,
) -> Applied {
    enrollment.failure = Some(Failure {
        trigger: trigger.kind().to_string(),
        reason: reason.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExperimentSpec, MilestoneSpec, VariantAssignment};
    use serde_json::json;

    const DAY: Millis = 86_400_000;

    fn spec() -> Spec {
        Spec {
            description: "onboarding".into(),
            entry: vec![EntryTrigger {
                event: "signed_up".into(),
                filter: None,
            }],
            exit_on: vec!["deleted_account".into()],
            milestones: vec![
                MilestoneSpec {
                    name: "first_login".into(),
                    stall_after: None,
                },
                MilestoneSpec {
                    name: "first_value".into(),
                    stall_after: None,
                },
            ],
            goal: Some("first_value".into()),
            reentry: Reentry::Never,
            channels: vec!["webhook".into()],
            experiments: vec![ExperimentSpec {
                name: "welcome_copy".into(),
                arms: vec!["a".into(), "b".into()],
            }],
        }
    }

    fn event(name: &str, properties: Value) -> Event {
        Event {
            id: format!("{name}-1"),
            customer: "c1".into(),
            name: name.into(),
            properties: properties.as_object().cloned().unwrap_or_default(),
            timestamp: 1_000,
        }
    }

    fn active() -> Enrollment {
        enroll("onboarding", 1, "c1", 1, None, 1_000)
    }

    fn send(template: &str) -> Command {
        Command::Send(Send {
            channel: "webhook".into(),
            template: template.into(),
            payload: json!({}),
        })
    }

    fn ended(status: EnrollmentStatus, run: u32) -> Enrollment {
        let mut e = enroll("onboarding", 1, "c1", run, None, 0);
        e.status = status;
        e
    }

    #[test]
    fn entry_event_enrolls_a_new_customer() {
        let routes = route_event(&spec(), &[], |_| None, &event("signed_up", json!({})));
        assert_eq!(routes, vec![Routing::Enter { run: 1, key: None }]);
    }

    #[test]
    fn entry_filter_requires_every_property_to_match() {
        let mut spec = spec();
        spec.entry[0].filter = json!({"plan": "pro"}).as_object().cloned();
        let pro = event("signed_up", json!({"plan": "pro", "x": 1}));
        let free = event("signed_up", json!({"plan": "free"}));
        assert_eq!(route_event(&spec, &[], |_| None, &pro).len(), 1);
        assert!(route_event(&spec, &[], |_| None, &free).is_empty());
    }

    #[test]
    fn other_events_reach_active_enrollments_only() {
        let s = spec();
        let enrollments = [active(), ended(EnrollmentStatus::Completed, 2)];
        let routes = route_event(&s, &enrollments, |_| Some(&s), &event("clicked", json!({})));
        assert_eq!(
            routes,
            vec![Routing::Deliver {
                enrollment_id: "onboarding/c1/1".into()
            }]
        );
    }

    #[test]
    fn exit_event_ends_the_enrollment_without_the_journey() {
        let s = spec();
        let enrollments = [active()];
        let routes = route_event(
            &s,
            &enrollments,
            |_| Some(&s),
            &event("deleted_account", json!({})),
        );
        assert_eq!(
            routes,
            vec![Routing::Exit {
                enrollment_id: "onboarding/c1/1".into(),
                reason: "exit_event:deleted_account".into()
            }]
        );
        let mut e = active();
        e.timers.push(PendingTimer {
            name: "nudge".into(),
            due: 5,
        });
        let applied = exit(e, "exit_event:deleted_account".into(), 7);
        assert_eq!(applied.enrollment.status, EnrollmentStatus::Exited);
        assert_eq!(applied.enrollment.ended_at, Some(7));
        assert!(applied.enrollment.timers.is_empty());
        assert_eq!(applied.effects.timers_cancelled.len(), 1);
    }

    #[test]
    fn reentry_never_refuses_a_second_run() {
        let s = spec();
        let done = [ended(EnrollmentStatus::Completed, 1)];
        assert!(route_event(&s, &done, |_| Some(&s), &event("signed_up", json!({}))).is_empty());
    }

    #[test]
    fn reentry_after_exit_waits_for_the_active_run_to_end() {
        let mut s = spec();
        s.reentry = Reentry::AfterExit;
        let running = [active()];
        let entering = route_event(&s, &running, |_| Some(&s), &event("signed_up", json!({})));
        assert!(!entering.iter().any(|r| matches!(r, Routing::Enter { .. })));
        let done = [ended(EnrollmentStatus::Exited, 1)];
        let entering = route_event(&s, &done, |_| Some(&s), &event("signed_up", json!({})));
        assert_eq!(entering, vec![Routing::Enter { run: 2, key: None }]);
    }

    #[test]
    fn reentry_always_runs_beside_the_active_run() {
        let mut s = spec();
        s.reentry = Reentry::Always;
        let running = [active()];
        let routes = route_event(&s, &running, |_| Some(&s), &event("signed_up", json!({})));
        assert!(routes.contains(&Routing::Enter { run: 2, key: None }));
        assert!(routes.contains(&Routing::Deliver {
            enrollment_id: "onboarding/c1/1".into()
        }));
    }

    #[test]
    fn keyed_reentry_runs_once_per_key_in_parallel() {
        let mut s = spec();
        s.reentry = Reentry::Keyed("order_id".into());
        let mut first = active();
        first.key = Some("o-1".into());
        let runs = [first];
        let same = event("signed_up", json!({"order_id": "o-1"}));
        let other = event("signed_up", json!({"order_id": "o-2"}));
        let numeric = event("signed_up", json!({"order_id": 7}));
        let missing = event("signed_up", json!({}));
        let enters = |e: &Event| {
            route_event(&s, &runs, |_| Some(&s), e)
                .into_iter()
                .filter(|r| matches!(r, Routing::Enter { .. }))
                .collect::<Vec<_>>()
        };
        assert!(enters(&same).is_empty());
        assert_eq!(
            enters(&other),
            vec![Routing::Enter {
                run: 2,
                key: Some("o-2".into())
            }]
        );
        assert_eq!(
            enters(&numeric),
            vec![Routing::Enter {
                run: 2,
                key: Some("7".into())
            }]
        );
        assert!(enters(&missing).is_empty());
    }

    #[test]
    fn sends_get_deterministic_idempotency_keys() {
        let applied = apply(
            active(),
            &spec(),
            vec![send("welcome"), send("tips")],
            "t/k",
            5,
        )
        .unwrap();
        let ids: Vec<_> = applied
            .effects
            .sends
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(ids, ["t/k/0", "t/k/1"]);
        assert_eq!(applied.enrollment.channels["webhook"].sent, 2);
        let again = apply(
            active(),
            &spec(),
            vec![send("welcome"), send("tips")],
            "t/k",
            5,
        )
        .unwrap();
        assert_eq!(applied, again);
    }

    #[test]
    fn key_prefix_names_tenant_journey_version_customer_run_and_trigger() {
        let trigger = Trigger::Entered {
            event: event("signed_up", json!({})),
        };
        let id = trigger_id(&trigger, None);
        assert_eq!(
            key_prefix("acme", &active(), &id),
            "acme/onboarding/1/c1/1/e-signed_up-1"
        );
    }

    #[test]
    fn send_through_an_undeclared_channel_fails_the_trigger() {
        let cmd = Command::Send(Send {
            channel: "sms".into(),
            template: "x".into(),
            payload: json!({}),
        });
        let err = apply(active(), &spec(), vec![cmd], "k", 5).unwrap_err();
        assert!(matches!(
            err,
            EngineError::UndeclaredChannel { index: 0, .. }
        ));
    }

    #[test]
    fn scheduling_a_pending_timer_replaces_it() {
        let first = apply(
            active(),
            &spec(),
            vec![Command::Schedule {
                name: "nudge".into(),
                due: 3 * DAY,
            }],
            "k",
            0,
        )
        .unwrap();
        let second = apply(
            first.enrollment,
            &spec(),
            vec![Command::Schedule {
                name: "nudge".into(),
                due: 5 * DAY,
            }],
            "k",
            0,
        )
        .unwrap();
        assert_eq!(
            second.enrollment.timers,
            vec![PendingTimer {
                name: "nudge".into(),
                due: 5 * DAY
            }]
        );
        assert_eq!(second.effects.timers_cancelled[0].due, 3 * DAY);
        assert_eq!(second.effects.timers_set[0].due, 5 * DAY);
    }

    #[test]
    fn a_timer_in_the_past_is_due_now() {
        let applied = apply(
            active(),
            &spec(),
            vec![Command::Schedule {
                name: "late".into(),
                due: 10,
            }],
            "k",
            500,
        )
        .unwrap();
        assert_eq!(applied.enrollment.timers[0].due, 500);
    }

    #[test]
    fn cancel_removes_only_the_named_timer() {
        let mut e = active();
        e.timers = vec![
            PendingTimer {
                name: "a".into(),
                due: 1,
            },
            PendingTimer {
                name: "b".into(),
                due: 2,
            },
        ];
        let applied = apply(
            e,
            &spec(),
            vec![
                Command::Cancel { name: "a".into() },
                Command::Cancel { name: "zzz".into() },
            ],
            "k",
            0,
        )
        .unwrap();
        assert_eq!(applied.enrollment.timers.len(), 1);
        assert_eq!(applied.enrollment.timers[0].name, "b");
        assert_eq!(applied.effects.timers_cancelled.len(), 1);
    }

    #[test]
    fn goal_milestone_completes_with_its_time_and_cancels_timers() {
        let mut e = active();
        e.timers.push(PendingTimer {
            name: "nudge".into(),
            due: 3 * DAY,
        });
        let applied = apply(
            e,
            &spec(),
            vec![
                Command::Milestone {
                    name: "first_value".into(),
                },
                send("after-the-end"),
            ],
            "k",
            42,
        )
        .unwrap();
        let e = &applied.enrollment;
        assert_eq!(e.status, EnrollmentStatus::Completed);
        assert_eq!(e.ended_at, Some(42));
        assert_eq!(
            e.milestones,
            vec![MilestoneHit {
                name: "first_value".into(),
                at: 42
            }]
        );
        assert!(e.timers.is_empty());
        assert_eq!(applied.effects.timers_cancelled.len(), 1);
        assert!(
            applied.effects.sends.is_empty(),
            "commands after the end are ignored"
        );
    }

    #[test]
    fn milestones_are_recorded_once_at_the_first_time() {
        let first = apply(
            active(),
            &spec(),
            vec![Command::Milestone {
                name: "first_login".into(),
            }],
            "k",
            10,
        )
        .unwrap();
        let again = apply(
            first.enrollment,
            &spec(),
            vec![Command::Milestone {
                name: "first_login".into(),
            }],
            "k",
            20,
        )
        .unwrap();
        assert_eq!(
            again.enrollment.milestones,
            vec![MilestoneHit {
                name: "first_login".into(),
                at: 10
            }]
        );
        assert!(again.enrollment.is_active());
    }

    #[test]
    fn undeclared_milestone_fails_the_trigger() {
        let err = apply(
            active(),
            &spec(),
            vec![Command::Milestone {
                name: "nope".into(),
            }],
            "k",
            0,
        )
        .unwrap_err();
        assert!(matches!(err, EngineError::UndeclaredMilestone { .. }));
    }

    #[test]
    fn sends_before_exit_go_out_and_exit_records_its_reason() {
        let applied = apply(
            active(),
            &spec(),
            vec![
                send("goodbye"),
                Command::Exit {
                    reason: "not_a_fit".into(),
                },
            ],
            "k",
            9,
        )
        .unwrap();
        assert_eq!(applied.effects.sends.len(), 1);
        assert_eq!(applied.enrollment.status, EnrollmentStatus::Exited);
        assert_eq!(applied.enrollment.exit_reason.as_deref(), Some("not_a_fit"));
    }

    #[test]
    fn first_assignment_of_an_experiment_sticks() {
        let assign = |arm: &str| {
            Command::Assign(VariantAssignment {
                experiment: "welcome_copy".into(),
                arm: arm.into(),
            })
        };
        let applied = apply(active(), &spec(), vec![assign("b"), assign("a")], "k", 0).unwrap();
        assert_eq!(applied.enrollment.variants.len(), 1);
        assert_eq!(applied.enrollment.variants[0].arm, "b");
        let err = apply(active(), &spec(), vec![assign("c")], "k", 0).unwrap_err();
        assert!(matches!(err, EngineError::UndeclaredArm { .. }));
    }

    #[test]
    fn handoff_becomes_an_effect() {
        let h = Handoff {
            queue: "cs".into(),
            reason: "stalled twice".into(),
            priority: 1,
        };
        let applied = apply(active(), &spec(), vec![Command::Handoff(h.clone())], "k", 0).unwrap();
        assert_eq!(applied.effects.handoffs, vec![h]);
    }

    #[test]
    fn state_is_replaced_and_a_success_clears_the_last_failure() {
        let trigger = Trigger::Timer { name: "x".into() };
        let failed = fail(active(), &spec(), &trigger, "trap", "boom".into(), 3).enrollment;
        assert_eq!(failed.failure.as_ref().unwrap().trigger, "timer");
        let applied = apply(
            failed,
            &spec(),
            vec![Command::SetState { state: vec![1, 2] }],
            "k",
            4,
        )
        .unwrap();
        assert_eq!(applied.enrollment.state, vec![1, 2]);
        assert!(applied.enrollment.failure.is_none());
    }

    /// The test spec with stall windows: a day to log in, two more to reach first value.
    fn stalling_spec() -> Spec {
        let mut spec = spec();
        spec.milestones[0].stall_after = Some(DAY);
        spec.milestones[1].stall_after = Some(2 * DAY);
        spec
    }

    fn stall_timers(e: &Enrollment) -> Vec<(String, Millis)> {
        e.timers
            .iter()
            .filter(|t| stalled_milestone(&t.name).is_some())
            .map(|t| (t.name.clone(), t.due))
            .collect()
    }

    #[test]
    fn entering_arms_a_stall_timer_for_the_first_milestone() {
        let e = enroll("onboarding", 1, "c1", 1, None, 0);
        let applied = apply(e, &stalling_spec(), vec![], "k", 0).unwrap();
        assert_eq!(
            stall_timers(&applied.enrollment),
            [("$stall:first_login".into(), DAY)]
        );
        assert_eq!(applied.effects.timers_set.len(), 1);
        // Another trigger with no progress leaves the same timer alone.
        let again = apply(applied.enrollment, &stalling_spec(), vec![], "k", 10).unwrap();
        assert!(again.effects.timers_set.is_empty() && again.effects.timers_cancelled.is_empty());
    }

    #[test]
    fn reaching_a_milestone_moves_the_stall_watch_to_the_next_one() {
        let e = enroll("onboarding", 1, "c1", 1, None, 0);
        let e = apply(e, &stalling_spec(), vec![], "k", 0)
            .unwrap()
            .enrollment;
        let reached = Command::Milestone {
            name: "first_login".into(),
        };
        let applied = apply(e, &stalling_spec(), vec![reached], "k", DAY / 2).unwrap();
        assert_eq!(
            stall_timers(&applied.enrollment),
            [("$stall:first_value".into(), DAY / 2 + 2 * DAY)]
        );
        assert_eq!(
            applied.effects.timers_cancelled[0].name,
            "$stall:first_login"
        );
        // The goal completes the journey and cancels the watch.
        let goal = Command::Milestone {
            name: "first_value".into(),
        };
        let done = apply(applied.enrollment, &stalling_spec(), vec![goal], "k", DAY).unwrap();
        assert!(stall_timers(&done.enrollment).is_empty());
        assert_eq!(done.effects.timers_cancelled[0].name, "$stall:first_value");
    }

    #[test]
    fn a_stall_is_recorded_once_and_rearms_for_another_window() {
        let e = enroll("onboarding", 1, "c1", 1, None, 0);
        let mut e = apply(e, &stalling_spec(), vec![], "k", 0)
            .unwrap()
            .enrollment;
        let stalled = Trigger::Stalled {
            milestone: "first_login".into(),
        };
        assert!(should_decide(&e, &stalled, Some(DAY)));
        assert!(
            !should_decide(&e, &stalled, Some(DAY - 1)),
            "a stale stall timer"
        );
        observe(&mut e, &stalled, Some(DAY));
        observe(&mut e, &stalled, Some(DAY)); // a duplicate delivery of the same timer
        assert_eq!(
            e.stalls,
            [MilestoneHit {
                name: "first_login".into(),
                at: DAY
            }]
        );
        assert_eq!(e.stalled_on.as_deref(), Some("first_login"));
        let applied = apply(e, &stalling_spec(), vec![], "k", DAY).unwrap();
        assert_eq!(
            stall_timers(&applied.enrollment),
            [("$stall:first_login".into(), 2 * DAY)],
            "still stuck: it stalls again after another window"
        );
        let reached = Command::Milestone {
            name: "first_login".into(),
        };
        let moved = apply(
            applied.enrollment,
            &stalling_spec(),
            vec![reached],
            "k",
            DAY + 5,
        )
        .unwrap();
        assert_eq!(
            moved.enrollment.stalled_on, None,
            "progress clears the stall"
        );
        assert_eq!(moved.enrollment.stalls.len(), 1, "the history stays");
    }

    fn customer(attributes: serde_json::Value) -> Customer {
        Customer {
            id: "c1".into(),
            attributes: attributes.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn identify_sets_traits_and_null_removes_them() {
        let mut c = customer(json!({"plan": "trial", "email": "a@example.com"}));
        let traits = json!({"plan": "pro", "email": null, "timezone": "Europe/Paris"});
        assert!(apply_traits(&mut c, traits.as_object().unwrap()));
        assert_eq!(
            serde_json::Value::Object(c.attributes.clone()),
            json!({"plan": "pro", "timezone": "Europe/Paris"})
        );
        assert!(!apply_traits(
            &mut c,
            json!({"plan": "pro"}).as_object().unwrap()
        ));
    }

    #[test]
    fn unsubscribed_or_suppressed_customers_get_no_sends_recorded_as_suppressed() {
        let sends = vec![send("welcome")];
        let mut applied = apply(active(), &spec(), sends.clone(), "k", 0).unwrap();
        suppress(&mut applied, &customer(json!({})));
        assert!(!applied.effects.sends[0].suppressed);

        for attrs in [
            json!({"unsubscribed": true}),
            json!({"suppressed": true}),
            json!({"unsubscribed_channels": ["webhook"]}),
        ] {
            let mut applied = apply(active(), &spec(), sends.clone(), "k", 0).unwrap();
            suppress(&mut applied, &customer(attrs.clone()));
            assert!(applied.effects.sends[0].suppressed, "{attrs}");
            let summary = &applied.enrollment.channels["webhook"];
            assert_eq!((summary.sent, summary.suppressed), (0, 1), "{attrs}");
        }
        let other_channel = customer(json!({"unsubscribed_channels": ["sms"]}));
        assert!(!is_suppressed(&other_channel, "webhook"));
    }

    #[test]
    fn unsubscribing_from_one_channel_or_all() {
        let mut c = customer(json!({}));
        unsubscribe(&mut c, Some("sms"));
        unsubscribe(&mut c, Some("sms"));
        assert_eq!(c.attributes["unsubscribed_channels"], json!(["sms"]));
        assert!(is_suppressed(&c, "sms") && !is_suppressed(&c, "email"));
        unsubscribe(&mut c, None);
        assert!(is_suppressed(&c, "email"));
    }

    #[test]
    fn engagement_events_name_their_message_and_count_per_channel() {
        let event = |name: &str, props: serde_json::Value| Event {
            id: "e".into(),
            customer: "c1".into(),
            name: name.into(),
            properties: props.as_object().unwrap().clone(),
            timestamp: 0,
        };
        assert_eq!(
            engagement(&event("opened", json!({"message_id": "m1"}))),
            Some(("opened", "m1"))
        );
        assert_eq!(engagement(&event("opened", json!({}))), None);
        assert_eq!(
            engagement(&event("signed_up", json!({"message_id": "m1"}))),
            None
        );
        let mut e = active();
        record_engagement(&mut e, "webhook", "opened");
        record_engagement(&mut e, "webhook", "clicked");
        assert_eq!(
            (e.channels["webhook"].opened, e.channels["webhook"].clicked),
            (1, 1)
        );
    }

    #[test]
    fn journeys_cannot_touch_the_hosts_timers() {
        let schedule = Command::Schedule {
            name: "$stall:first_login".into(),
            due: 5,
        };
        assert!(apply(active(), &spec(), vec![schedule], "k", 0).is_err());
        let cancel = Command::Cancel {
            name: "$stall:first_login".into(),
        };
        assert!(apply(active(), &spec(), vec![cancel], "k", 0).is_err());
    }

    #[test]
    fn a_failed_trigger_keeps_stall_detection_armed() {
        let e = enroll("onboarding", 1, "c1", 1, None, 0);
        let trigger = Trigger::Entered {
            event: Event {
                id: "e".into(),
                customer: "c1".into(),
                name: "signed_up".into(),
                properties: Default::default(),
                timestamp: 0,
            },
        };
        let failed = fail(e, &stalling_spec(), &trigger, "trap", "boom".into(), 0);
        assert_eq!(
            stall_timers(&failed.enrollment),
            [("$stall:first_login".into(), DAY)]
        );
        assert_eq!(failed.effects.timers_set.len(), 1);
    }

    #[test]
    fn a_timer_decides_only_while_pending_with_the_same_due_time() {
        let mut e = active();
        e.timers.push(PendingTimer {
            name: "nudge".into(),
            due: 100,
        });
        let t = Trigger::Timer {
            name: "nudge".into(),
        };
        assert!(should_decide(&e, &t, Some(100)));
        assert!(
            !should_decide(&e, &t, Some(99)),
            "rescheduled since it was queued"
        );
        let mut done = e.clone();
        done.status = EnrollmentStatus::Completed;
        assert!(!should_decide(&done, &t, Some(100)));
        observe(&mut e, &t, Some(100));
        assert!(e.timers.is_empty());
    }

    #[test]
    fn a_stale_timer_leaves_its_rescheduled_successor_pending() {
        // `nudge` was due at 100 and queued; then an event rescheduled it to 200.
        let mut e = active();
        e.timers.push(PendingTimer {
            name: "nudge".into(),
            due: 200,
        });
        let stale = Trigger::Timer {
            name: "nudge".into(),
        };
        assert!(!should_decide(&e, &stale, Some(100)));
        observe(&mut e, &stale, Some(100));
        assert_eq!(e.timer("nudge").map(|t| t.due), Some(200), "still pending");
    }

    #[test]
    fn delivery_reports_update_the_channel_summary() {
        let mut e = active();
        let report = |outcome| Trigger::Delivery {
            report: DeliveryReport {
                message_id: "m".into(),
                channel: "webhook".into(),
                template: "welcome".into(),
                outcome,
            },
        };
        observe(
            &mut e,
            &report(DeliveryOutcome::Delivered { provider_id: None }),
            None,
        );
        observe(
            &mut e,
            &report(DeliveryOutcome::Failed { reason: "x".into() }),
            None,
        );
        assert_eq!(e.channels["webhook"].delivered, 1);
        assert_eq!(e.channels["webhook"].failed, 1);
    }

    #[test]
    fn delivery_trigger_ids_do_not_grow_with_message_ids() {
        let report = DeliveryReport {
            message_id: "a/very/long/key/".repeat(20),
            channel: "webhook".into(),
            template: "t".into(),
            outcome: DeliveryOutcome::Delivered { provider_id: None },
        };
        let id = trigger_id(&Trigger::Delivery { report }, None);
        assert_eq!(id.len(), 18);
    }

    #[test]
    fn seeds_are_stable_and_distinct_per_trigger() {
        assert_eq!(seed("t", "e", "x"), seed("t", "e", "x"));
        assert_ne!(seed("t", "e", "x"), seed("t", "e", "y"));
        assert_ne!(seed("t", "ex", ""), seed("t", "e", "x"));
    }
}
