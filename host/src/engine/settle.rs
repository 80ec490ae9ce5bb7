//! Settling one step: what the host observes before asking the journey ([`prepare`]), what the
//! journey's answer does ([`settle`]: apply the commands, suppress sends to customers who may not
//! receive them, hold sends under the tenant's sending policy), and the records one trigger
//! writes ([`record`]: the enrollment, timers, messages, tasks and counters of a
//! [`TriggerCommit`], which the store commits atomically with the trigger's removal from the
//! queue, and what writing the enrollment does to the report's cells).
//!
//! Every enrollment this module writes goes through one function, which also writes the
//! enrollment's report delta: the tally of its new state minus `before`, the tally of the
//! state it replaces. A write without its delta would make the report drift.

use super::apply::{apply_checked, check, fail, observe, should_decide};
use super::ids::{key_prefix, seed, task_id, trigger_id};
use super::profile::suppress;
use super::Applied;
use crate::model::{
    Command, Counter, Customer, DecisionContext, Enrollment, Event, FailureReason, Millis, Object,
    PendingTimer, SendingPolicy, Spec, TaskStatus, Trigger,
};
use crate::report::cells::{delta, Tally};
use crate::store::{Message, MessageStatus, Task, TimerRecord, TriggerCommit};
use std::borrow::Cow;

/// A step after the host's observation: either nothing to ask (the enrollment is recorded as
/// observed), or a question for the journey.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The journey is not asked (the enrollment is not active, or a timer is stale); the
    /// observed enrollment is still written ([`observed`]).
    Observed {
        enrollment: Enrollment,
        before: Option<Tally>,
    },
    /// Ask the journey's `decide` with this context.
    Ask(Ask),
}

/// A question for a journey: the decision context and the trigger's identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub context: DecisionContext,
    /// Part of every idempotency key and task id the answer produces.
    pub trigger_id: String,
    /// What the enrollment counted in the report as stored (see [`Step`](super::Step)).
    pub before: Option<Tally>,
}

/// Why a journey's answer could not be had; the trigger fails for this enrollment only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// The journey's component could not be loaded.
    #[error("{0}")]
    Unavailable(String),
    /// The host could not read what the decision needs.
    #[error("{0}")]
    Internal(String),
    /// The guest trapped, ran out of time or memory, or returned an error (`reason` names which).
    #[error("{message}")]
    Guest {
        reason: FailureReason,
        message: String,
    },
}

/// Why a trigger failed, as the enrollment records it and the metrics count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFailure {
    pub reason: FailureReason,
    pub message: String,
}

impl DecideError {
    fn into_failure(self) -> TriggerFailure {
        match self {
            DecideError::Unavailable(message) => TriggerFailure {
                reason: FailureReason::Unavailable,
                message,
            },
            DecideError::Internal(message) => TriggerFailure {
                reason: FailureReason::Internal,
                message,
            },
            DecideError::Guest { reason, message } => TriggerFailure { reason, message },
        }
    }
}

/// Observes the trigger on the enrollment (a fired timer leaves the pending set, a stall is
/// recorded, a delivery report is counted) and says whether the journey is asked. `before` is
/// the step's (what the enrollment counted in the report as stored).
pub fn prepare(
    tenant: &str,
    customer: Cow<'_, Customer>,
    mut enrollment: Enrollment,
    before: Option<Tally>,
    trigger: Trigger,
    due: Option<Millis>,
    now: Millis,
) -> Prepared {
    let decides = should_decide(&enrollment, &trigger, due);
    observe(&mut enrollment, &trigger, due);
    if !decides {
        return Prepared::Observed { enrollment, before };
    }
    let trigger_id = trigger_id(&trigger, due);
    Prepared::Ask(Ask {
        context: DecisionContext {
            seed: seed(tenant, &enrollment.id, &trigger_id),
            trigger,
            customer: customer.into_owned(),
            enrollment,
            now,
        },
        trigger_id,
        before,
    })
}

/// Whether settling `answer` under `policy` needs the customer's earlier messages (frequency
/// caps count them): only when the tenant has a policy and the answer sends. The shell loads
/// them only then.
pub fn needs_history(policy: &SendingPolicy, answer: &Result<Vec<Command>, DecideError>) -> bool {
    has_policy(policy)
        && answer
            .as_ref()
            .is_ok_and(|commands| commands.iter().any(|c| matches!(c, Command::Send(_))))
}

fn has_policy(policy: &SendingPolicy) -> bool {
    *policy != SendingPolicy::default()
}

/// Settles a journey's answer into `commit`: the commands applied (a rejected decision fails
/// the trigger instead), sends to a customer who may not receive them suppressed, sends the
/// sending policy does not allow yet held until they may go out (counting `history`, the
/// customer's earlier messages, and this commit's), then every record written. Returns the
/// failure, if the trigger failed.
#[allow(clippy::too_many_arguments)]
pub fn settle(
    commit: &mut TriggerCommit,
    ask: Ask,
    spec: &Spec,
    answer: Result<Vec<Command>, DecideError>,
    policy: &SendingPolicy,
    history: &[Message],
    wall: Millis,
) -> Option<TriggerFailure> {
    let Ask {
        context,
        trigger_id,
        before,
    } = ask;
    let DecisionContext {
        trigger,
        customer,
        enrollment,
        now,
        ..
    } = context;
    // Checked before the enrollment is handed over, so a refused decision fails the
    // enrollment as it was without a copy of it kept on the way.
    let checked = answer
        .map_err(DecideError::into_failure)
        .and_then(|commands| match check(&enrollment, spec, &commands) {
            Ok(()) => Ok(commands),
            Err(e) => Err(TriggerFailure {
                reason: FailureReason::InvalidCommands,
                message: e.to_string(),
            }),
        });
    match checked {
        Ok(commands) => {
            // Only sends take ids from it: a decision that sends nothing skips the digest.
            let sends = commands.iter().any(|c| matches!(c, Command::Send(_)));
            let prefix = match sends {
                true => key_prefix(&commit.tenant, &enrollment, &trigger_id),
                false => String::new(),
            };
            let mut applied = apply_checked(enrollment, spec, commands, &prefix, now);
            suppress(&mut applied, &customer);
            hold_sends(&mut applied, commit, &customer, policy, history, now);
            let trigger_id = Some(trigger_id.as_str());
            record(commit, &customer.id, trigger_id, before, applied, now, wall);
            None
        }
        // A refused migration leaves the enrollment as stored, on the version it was on: the
        // move never happened. (The shell reports the refusal with the migration.)
        Err(failure) if matches!(trigger, Trigger::Migrated { .. }) => Some(failure),
        Err(failure) => {
            let failed = fail(
                enrollment,
                spec,
                &trigger,
                failure.reason,
                failure.message.clone(),
                now,
            );
            record(commit, &customer.id, None, before, failed, now, wall);
            Some(failure)
        }
    }
}

/// Holds the sends the sending policy does not allow yet: each gets the journey time it may go
/// out at, counting the customer's earlier messages (`history` and this commit's) that were not
/// suppressed or dead.
fn hold_sends(
    applied: &mut Applied,
    commit: &TriggerCommit,
    customer: &Customer,
    policy: &SendingPolicy,
    history: &[Message],
    now: Millis,
) {
    if !has_policy(policy) || applied.effects.sends.iter().all(|d| d.suppressed) {
        return;
    }
    let counts = |m: &Message| !matches!(m.status, MessageStatus::Suppressed | MessageStatus::Dead);
    let mut earlier: Vec<(String, Millis)> = history
        .iter()
        .chain(commit.outbox.iter().filter(|m| m.customer == customer.id))
        .filter(|m| counts(m))
        .map(|m| (m.channel.clone(), m.release_at.unwrap_or(m.created_at)))
        .collect();
    let zone = crate::policy::zone_of(
        customer,
        policy
            .quiet_hours
            .as_ref()
            .map_or("UTC", |q| q.default_timezone.as_str()),
    );
    for draft in applied.effects.sends.iter_mut().filter(|d| !d.suppressed) {
        let at = crate::policy::release_time(now, &draft.send.channel, &earlier, policy, zone);
        if at > now {
            draft.release_at = Some(at);
        }
        earlier.push((draft.send.channel.clone(), at));
    }
}

/// Turns an enrollment's new state and effects into the records of `commit`: timers to set and
/// cancel, messages (suppressed, held, or pending delivery from wall-clock `wall`), tasks (ids
/// from `trigger_id`, or `host` for a trigger the journey did not answer), counters, and the
/// enrollment with its report delta from `before`.
pub fn record(
    commit: &mut TriggerCommit,
    customer: &str,
    trigger_id: Option<&str>,
    before: Option<Tally>,
    applied: Applied,
    now: Millis,
    wall: Millis,
) {
    let Applied {
        enrollment,
        effects,
    } = applied;
    let timer = |t: PendingTimer| TimerRecord {
        tenant: commit.tenant.clone(),
        customer: customer.to_string(),
        journey: enrollment.journey.clone(),
        run: enrollment.run,
        name: t.name,
        due: t.due,
    };
    let set: Vec<_> = effects.timers_set.into_iter().map(timer).collect();
    let cancelled: Vec<_> = effects.timers_cancelled.into_iter().map(timer).collect();
    commit.timers_set.extend(set);
    commit.timers_cancelled.extend(cancelled);
    for draft in effects.sends {
        let counter = if draft.suppressed {
            Counter::Suppressed
        } else {
            Counter::Sent
        };
        commit.counters.push((
            enrollment.journey.clone(),
            draft.send.channel.clone(),
            counter,
        ));
        commit.outbox.push(Message {
            id: draft.id,
            tenant: commit.tenant.clone(),
            customer: customer.to_string(),
            journey: enrollment.journey.clone(),
            version: enrollment.version,
            enrollment: enrollment.id.clone(),
            run: enrollment.run,
            channel: draft.send.channel,
            template: draft.send.template,
            payload: draft.send.payload,
            status: if draft.suppressed {
                MessageStatus::Suppressed
            } else if draft.release_at.is_some() {
                MessageStatus::Held
            } else {
                MessageStatus::Pending
            },
            release_at: draft.release_at,
            attempts: 0,
            next_attempt_at: wall,
            last_error: None,
            provider_id: None,
            created_at: now,
            delivered_at: None,
            // Pinned by the worker, which can read the tenant's templates.
            template_version: None,
            receipt: None,
        });
    }
    for (i, handoff) in effects.handoffs.into_iter().enumerate() {
        commit.tasks.push(Task {
            id: task_id(&enrollment.id, trigger_id.unwrap_or("host"), i),
            tenant: commit.tenant.clone(),
            customer: customer.to_string(),
            journey: enrollment.journey.clone(),
            enrollment: enrollment.id.clone(),
            queue: handoff.queue,
            reason: handoff.reason,
            priority: handoff.priority,
            status: TaskStatus::Open,
            created_at: now,
            assignee: None,
            claimed_at: None,
            resolved_at: None,
            resolution: None,
        });
    }
    write_enrollment(commit, before, enrollment);
}

/// Writes an enrollment the journey was not asked about ([`Prepared::Observed`]).
pub fn observed(commit: &mut TriggerCommit, before: Option<Tally>, enrollment: Enrollment) {
    write_enrollment(commit, before, enrollment);
}

/// The one place an enrollment is written into a commit: with what the write does to the
/// report's cells, given the tally of the state it replaces.
fn write_enrollment(commit: &mut TriggerCommit, before: Option<Tally>, enrollment: Enrollment) {
    let after = Tally::of(&enrollment);
    commit.report_deltas.extend(delta(before.as_ref(), after));
    commit.enrollments.push(enrollment);
}

/// The event that tells the journey which handed `task` off that it was resolved:
/// `task_resolved` with the task, its queue and journey, the resolution and the caller's
/// `properties`. Its id is `{task id}:resolved`, so it is ingested once.
pub fn task_resolved_event(
    task: &Task,
    resolution: &str,
    mut properties: Object,
    now: Millis,
) -> Event {
    properties.insert("task".into(), task.id.clone().into());
    properties.insert("queue".into(), task.queue.clone().into());
    properties.insert("journey".into(), task.journey.clone().into());
    properties.insert("resolution".into(), resolution.into());
    Event {
        id: format!("{}:resolved", task.id),
        customer: task.customer.clone(),
        name: super::profile::TASK_RESOLVED.into(),
        properties,
        timestamp: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{enroll, message_id, stall_timer};
    use crate::model::{
        EntryTrigger, FrequencyCap, Handoff, MilestoneSpec, Reentry, Send, TaskStatus,
    };
    use serde_json::json;

    const HOUR: Millis = 3_600_000;

    fn spec() -> Spec {
        Spec {
            description: String::new(),
            entry: vec![EntryTrigger {
                event: "signed_up".into(),
                filter: None,
            }],
            exit_on: vec![],
            milestones: vec![MilestoneSpec {
                name: "first_value".into(),
                stall_after: Some(72 * HOUR),
            }],
            goal: Some("first_value".into()),
            reentry: Reentry::Never,
            channels: vec!["email".into(), "sms".into()],
            experiments: vec![],
            audience: Default::default(),
        }
    }

    fn customer(attributes: serde_json::Value) -> Customer {
        Customer {
            id: "ada".into(),
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        }
    }

    fn signed_up() -> Trigger {
        Trigger::Entered {
            event: Event {
                id: "ev-1".into(),
                customer: "ada".into(),
                name: "signed_up".into(),
                properties: Default::default(),
                timestamp: 0,
            },
        }
    }

    fn commit() -> TriggerCommit {
        TriggerCommit {
            tenant: "acme".into(),
            ..TriggerCommit::default()
        }
    }

    fn ask(c: &Customer, now: Millis) -> Ask {
        let entered = enroll("onboarding", 1, "ada", 1, None, now);
        match prepare(
            "acme",
            Cow::Borrowed(c),
            entered,
            None,
            signed_up(),
            None,
            now,
        ) {
            Prepared::Ask(ask) => ask,
            Prepared::Observed { .. } => panic!("an active enrollment is asked"),
        }
    }

    fn send(channel: &str, template: &str) -> Command {
        Command::Send(Send {
            channel: channel.into(),
            template: template.into(),
            payload: json!({}),
        })
    }

    #[test]
    fn preparing_gives_the_journey_a_seeded_context_with_the_trigger_id() {
        let a = ask(&customer(json!({})), 10);
        assert_eq!(a.trigger_id, "e-ev-1");
        assert_eq!(a.context.now, 10);
        assert_eq!(a.context.seed, seed("acme", "onboarding/ada/1", "e-ev-1"));
    }

    #[test]
    fn an_ended_enrollment_is_observed_but_not_asked() {
        let mut ended = enroll("onboarding", 1, "ada", 1, None, 0);
        ended.status = crate::model::EnrollmentStatus::Completed;
        let before = Some(Tally::of(&ended));
        let prepared = prepare(
            "acme",
            Cow::Owned(customer(json!({}))),
            ended.clone(),
            before.clone(),
            signed_up(),
            None,
            5,
        );
        assert_eq!(
            prepared,
            Prepared::Observed {
                enrollment: ended,
                before
            }
        );
    }

    #[test]
    fn an_applied_decision_writes_the_enrollment_messages_timers_tasks_and_counters() {
        let c = customer(json!({}));
        let mut out = commit();
        let answer = Ok(vec![
            send("email", "welcome"),
            Command::Schedule {
                name: "nudge".into(),
                due: 24 * HOUR,
            },
            Command::Handoff(Handoff {
                queue: "cs".into(),
                reason: "vip".into(),
                priority: 1,
            }),
        ]);
        let failure = settle(
            &mut out,
            ask(&c, 0),
            &spec(),
            answer,
            &SendingPolicy::default(),
            &[],
            777,
        );
        assert_eq!(failure, None);
        let [message] = out.outbox.as_slice() else {
            panic!("one message, got {:?}", out.outbox);
        };
        let entered = enroll("onboarding", 1, "ada", 1, None, 0);
        assert_eq!(
            message.id,
            message_id(&key_prefix("acme", &entered, "e-ev-1"), 0)
        );
        assert_eq!(message.status, MessageStatus::Pending);
        assert_eq!(
            message.next_attempt_at, 777,
            "delivery is due at wall-clock now"
        );
        let mut timers: Vec<&str> = out.timers_set.iter().map(|t| t.name.as_str()).collect();
        timers.sort();
        assert_eq!(timers, vec![stall_timer("first_value").as_str(), "nudge"]);
        assert_eq!(out.tasks.len(), 1);
        assert_eq!(out.tasks[0].status, TaskStatus::Open);
        assert_eq!(out.tasks[0].id, task_id("onboarding/ada/1", "e-ev-1", 0));
        assert_eq!(
            out.counters,
            vec![("onboarding".into(), "email".into(), Counter::Sent)]
        );
        assert_eq!(out.enrollments.len(), 1);
        assert_eq!(out.enrollments[0].channels["email"].sent, 1);
    }

    #[test]
    fn a_suppressed_customers_send_is_recorded_as_suppressed_and_counted_so() {
        let c = customer(json!({"unsubscribed": true}));
        let mut out = commit();
        settle(
            &mut out,
            ask(&c, 0),
            &spec(),
            Ok(vec![send("email", "welcome")]),
            &SendingPolicy::default(),
            &[],
            0,
        );
        assert_eq!(out.outbox[0].status, MessageStatus::Suppressed);
        assert_eq!(out.counters[0].2, Counter::Suppressed);
    }

    #[test]
    fn sends_over_a_frequency_cap_are_held_until_the_window_allows_them() {
        let c = customer(json!({}));
        let policy = SendingPolicy {
            frequency_caps: vec![FrequencyCap {
                channel: "email".into(),
                max: 1,
                window_ms: 24 * HOUR,
            }],
            quiet_hours: None,
        };
        let mut out = commit();
        let answer = Ok(vec![send("email", "welcome"), send("email", "tips")]);
        assert!(needs_history(&policy, &answer));
        settle(&mut out, ask(&c, 0), &spec(), answer, &policy, &[], 0);
        let statuses: Vec<_> = out
            .outbox
            .iter()
            .map(|m| (m.status, m.release_at))
            .collect();
        assert_eq!(
            statuses,
            vec![
                (MessageStatus::Pending, None),
                (MessageStatus::Held, Some(24 * HOUR))
            ]
        );
        assert!(!needs_history(
            &SendingPolicy::default(),
            &Ok(vec![send("email", "x")])
        ));
        assert!(!needs_history(&policy, &Ok(vec![])));
    }

    #[test]
    fn earlier_messages_count_against_the_cap() {
        let c = customer(json!({}));
        let policy = SendingPolicy {
            frequency_caps: vec![FrequencyCap {
                channel: "*".into(),
                max: 1,
                window_ms: 24 * HOUR,
            }],
            quiet_hours: None,
        };
        let mut earlier = commit();
        settle(
            &mut earlier,
            ask(&c, 0),
            &spec(),
            Ok(vec![send("sms", "hello")]),
            &SendingPolicy::default(),
            &[],
            0,
        );
        let mut out = commit();
        let later = HOUR;
        settle(
            &mut out,
            ask(&c, later),
            &spec(),
            Ok(vec![send("email", "welcome")]),
            &policy,
            &earlier.outbox,
            0,
        );
        assert_eq!(out.outbox[0].status, MessageStatus::Held);
        assert_eq!(out.outbox[0].release_at, Some(24 * HOUR));
    }

    #[test]
    fn a_guest_failure_is_recorded_on_the_enrollment_and_reported() {
        let c = customer(json!({}));
        let mut out = commit();
        let failure = settle(
            &mut out,
            ask(&c, 3),
            &spec(),
            Err(DecideError::Guest {
                reason: FailureReason::Trap,
                message: "unreachable".into(),
            }),
            &SendingPolicy::default(),
            &[],
            0,
        );
        assert_eq!(failure.map(|f| f.reason), Some(FailureReason::Trap));
        let recorded = out.enrollments[0]
            .failure
            .as_ref()
            .map(|f| f.reason.as_str());
        assert_eq!(recorded, Some("trap"));
        assert!(out.outbox.is_empty());
        assert_eq!(out.timers_set.len(), 1, "stall detection stays armed");
    }

    #[test]
    fn an_invalid_decision_fails_the_trigger_and_sends_nothing() {
        let c = customer(json!({}));
        let mut out = commit();
        let failure = settle(
            &mut out,
            ask(&c, 0),
            &spec(),
            Ok(vec![send("email", "ok"), send("fax", "nope")]),
            &SendingPolicy::default(),
            &[],
            0,
        );
        assert_eq!(
            failure.map(|f| f.reason),
            Some(FailureReason::InvalidCommands)
        );
        assert!(out.outbox.is_empty() && out.counters.is_empty());
    }

    #[test]
    fn a_resolved_task_becomes_one_task_resolved_event_with_the_task_and_queue() {
        let task = Task {
            id: "task_1".into(),
            tenant: "acme".into(),
            customer: "ada".into(),
            journey: "onboarding".into(),
            enrollment: "onboarding/ada/1".into(),
            queue: "cs".into(),
            reason: "stalled".into(),
            priority: 2,
            status: TaskStatus::Claimed,
            created_at: 0,
            assignee: Some("bo".into()),
            claimed_at: Some(1),
            resolved_at: None,
            resolution: None,
        };
        let mut extra = Object::new();
        extra.insert("note".into(), "called".into());
        let event = task_resolved_event(&task, "helped", extra, 9);
        assert_eq!(event.id, "task_1:resolved");
        assert_eq!(event.name, "task_resolved");
        assert_eq!((event.customer.as_str(), event.timestamp), ("ada", 9));
        assert_eq!(
            serde_json::Value::Object(event.properties),
            json!({"note": "called", "task": "task_1", "queue": "cs",
                   "journey": "onboarding", "resolution": "helped"})
        );
    }
}
