//! Conversion between the WIT types ([`super::bindings`]) and [`crate::model`], at the boundary.
//!
//! Nothing past this module sees a WIT type: the worlds call these functions on the way in and
//! out of a guest. Inbound conversions are also the checks that keep a guest's output honest,
//! because the host later relies on it without asking:
//!
//! - a spec's entry filters are JSON objects, its milestones are named once with positive stall
//!   windows, its goal is a declared milestone, its experiments have distinct, named arms;
//! - a decision has at most `max_commands` commands and `max_hostcall_bytes` bytes, send
//!   payloads that are JSON objects, and state of at most `max_state_bytes`;
//! - guest error strings are cut to a bound.
//!
//! JSON crosses the boundary as text (the WIT `json` type), so outbound conversions serialize
//! objects and inbound ones parse and check them.

use super::bindings::{channel_types, stats as wit_stats, types as wit};
use super::failure::{truncate, DeliveryFailure, FailureReason, GuestFailure};
use super::journey::audienced::exports::waymark::journey::allocation as wit_allocation;
use super::journey::audienced::exports::waymark::journey::audience as wit_audience;
use crate::model;
use serde_json::Value;

/// The longest error string from `decide` that is kept.
const MAX_GUEST_ERROR: usize = 2048;

/// The longest adapter error message that is kept.
const MAX_ADAPTER_ERROR: usize = 2048;

/// JSON text of an object. Serializing a map with string keys cannot fail.
fn json_text(object: &model::Object) -> String {
    serde_json::to_string(object).unwrap_or_else(|_| "{}".to_owned())
}

pub(super) fn customer_to_wit(customer: &model::Customer) -> wit::Customer {
    wit::Customer {
        id: customer.id.clone(),
        attributes: json_text(&customer.attributes),
    }
}

/// The decision context as WIT, kept with a warm instance so that its strings' buffers outlive
/// a call: filling it for the next call copies the model's strings into the buffers the last
/// call left, and writes the JSON text of the customer's attributes and the event's properties
/// into them, rather than allocating every string of every context afresh (and freeing it all
/// again after the call).
pub(super) struct ContextBuffer {
    context: wit::Context,
    /// The buffers of the last event trigger's event, while the trigger is another kind.
    event: wit::Event,
    /// The buffer of the last timer's or stall's name, likewise.
    name: String,
}

impl Default for ContextBuffer {
    fn default() -> Self {
        ContextBuffer {
            context: wit::Context {
                trigger: wit::Trigger::Timer(String::new()),
                customer: wit::Customer {
                    id: String::new(),
                    attributes: String::new(),
                },
                enrollment: wit::Enrollment {
                    id: String::new(),
                    journey: String::new(),
                    version: 0,
                    status: wit::EnrollmentStatus::Active,
                    entered_at: 0,
                    milestones: Vec::new(),
                    state: Vec::new(),
                    timers: Vec::new(),
                    variants: Vec::new(),
                },
                now: 0,
                seed: 0,
            },
            event: empty_event(),
            name: String::new(),
        }
    }
}

impl ContextBuffer {
    /// `ctx` as WIT, JSON as text.
    pub(super) fn fill(&mut self, ctx: &model::DecisionContext) -> &wit::Context {
        self.fill_trigger(&ctx.trigger);
        let customer = &mut self.context.customer;
        copy(&mut customer.id, &ctx.customer.id);
        write_json(&mut customer.attributes, &ctx.customer.attributes);
        fill_enrollment(&mut self.context.enrollment, &ctx.enrollment);
        self.context.now = ctx.now;
        self.context.seed = ctx.seed;
        &self.context
    }

    fn fill_trigger(&mut self, trigger: &model::Trigger) {
        // Park the last trigger's buffers, then build this one from them.
        let last = std::mem::replace(
            &mut self.context.trigger,
            wit::Trigger::Timer(String::new()),
        );
        match last {
            wit::Trigger::Entered(event) | wit::Trigger::Event(event) => self.event = event,
            wit::Trigger::Timer(name) | wit::Trigger::Stalled(name) => self.name = name,
            wit::Trigger::Delivery(_) => {}
        }
        self.context.trigger = match trigger {
            model::Trigger::Entered { event } => wit::Trigger::Entered(self.take_event(event)),
            model::Trigger::Event { event } => wit::Trigger::Event(self.take_event(event)),
            model::Trigger::Timer { name } => wit::Trigger::Timer(self.take_name(name)),
            model::Trigger::Stalled { milestone } => {
                wit::Trigger::Stalled(self.take_name(milestone))
            }
            // Never asked of `decide`: `JourneyComponent::decide` hands a migration to the
            // component's `migrate` export, with a context of its own (`journey.rs`).
            model::Trigger::Migrated { .. } => wit::Trigger::Timer(self.take_name("")),
            // Rare enough not to keep buffers for.
            model::Trigger::Delivery { report } => wit::Trigger::Delivery(wit::DeliveryReport {
                message_id: report.message_id.clone(),
                channel: report.channel.clone(),
                template: report.template.clone(),
                outcome: match &report.outcome {
                    model::DeliveryOutcome::Delivered { provider_id } => {
                        wit::DeliveryOutcome::Delivered(provider_id.clone())
                    }
                    model::DeliveryOutcome::Failed { reason }
                    | model::DeliveryOutcome::Suppressed { reason } => {
                        wit::DeliveryOutcome::Failed(reason.clone())
                    }
                },
            }),
        };
    }

    fn take_event(&mut self, event: &model::Event) -> wit::Event {
        let mut buffers = std::mem::replace(&mut self.event, empty_event());
        copy(&mut buffers.id, &event.id);
        copy(&mut buffers.name, &event.name);
        write_json(&mut buffers.properties, &event.properties);
        buffers.timestamp = event.timestamp;
        buffers
    }

    fn take_name(&mut self, name: &str) -> String {
        let mut buffer = std::mem::take(&mut self.name);
        copy(&mut buffer, name);
        buffer
    }
}

/// An event with no buffers yet (no allocation).
fn empty_event() -> wit::Event {
    wit::Event {
        id: String::new(),
        name: String::new(),
        properties: String::new(),
        timestamp: 0,
    }
}

/// `dst` becomes `src`, in `dst`'s buffer.
fn copy(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

/// `dst` becomes the JSON text of `object`, in `dst`'s buffer.
fn write_json(dst: &mut String, object: &model::Object) {
    let mut bytes = std::mem::take(dst).into_bytes();
    bytes.clear();
    // Serializing a map with string keys cannot fail, and what it writes is UTF-8.
    if serde_json::to_writer(&mut bytes, object).is_err() {
        bytes.clear();
        bytes.extend_from_slice(b"{}");
    }
    *dst = String::from_utf8(bytes).unwrap_or_else(|_| "{}".to_owned());
}

/// `src` as WIT, in buffers of its own (for the rare calls that keep no [`ContextBuffer`]).
pub(super) fn enrollment_to_wit(src: &model::Enrollment) -> wit::Enrollment {
    let mut dst = ContextBuffer::default().context.enrollment;
    fill_enrollment(&mut dst, src);
    dst
}

fn fill_enrollment(dst: &mut wit::Enrollment, src: &model::Enrollment) {
    copy(&mut dst.id, &src.id);
    copy(&mut dst.journey, &src.journey);
    dst.version = src.version;
    dst.status = match src.status {
        model::EnrollmentStatus::Active => wit::EnrollmentStatus::Active,
        model::EnrollmentStatus::Completed => wit::EnrollmentStatus::Completed,
        model::EnrollmentStatus::Exited => wit::EnrollmentStatus::Exited,
    };
    dst.entered_at = src.entered_at;
    fill_list(
        &mut dst.milestones,
        &src.milestones,
        || wit::MilestoneHit {
            name: String::new(),
            at: 0,
        },
        |hit, m| {
            copy(&mut hit.name, &m.name);
            hit.at = m.at;
        },
    );
    dst.state.clear();
    dst.state.extend_from_slice(&src.state);
    fill_list(
        &mut dst.timers,
        &src.timers,
        || wit::PendingTimer {
            name: String::new(),
            due: 0,
        },
        |timer, t| {
            copy(&mut timer.name, &t.name);
            timer.due = t.due;
        },
    );
    fill_list(
        &mut dst.variants,
        &src.variants,
        || wit::VariantAssignment {
            experiment: String::new(),
            arm: String::new(),
        },
        |variant, v| {
            copy(&mut variant.experiment, &v.experiment);
            copy(&mut variant.arm, &v.arm);
        },
    );
}

/// `dst` becomes as long as `src`, each element set from its counterpart by `set` (elements
/// past the old length start as `empty()`, with no buffers yet).
fn fill_list<D, S>(dst: &mut Vec<D>, src: &[S], empty: impl Fn() -> D, set: impl Fn(&mut D, &S)) {
    dst.truncate(src.len());
    dst.resize_with(src.len(), empty);
    for (d, s) in dst.iter_mut().zip(src) {
        set(d, s);
    }
}

/// Converts and checks what `decide` returned: its commands, or its error, cut to a bound.
pub fn decision_from_wit(
    decision: Result<Vec<wit::Command>, String>,
    limits: &model::Limits,
) -> Result<Vec<model::Command>, GuestFailure> {
    match decision {
        Ok(commands) => commands_from_wit(commands, limits),
        Err(message) => Err(GuestFailure::new(
            FailureReason::GuestError,
            truncate(message, MAX_GUEST_ERROR),
        )),
    }
}

/// Bytes a command brought across the boundary (its strings and lists; fixed-size fields are
/// counted as eight bytes).
fn command_bytes(command: &wit::Command) -> usize {
    8 + match command {
        wit::Command::Send(send) => send.channel.len() + send.template.len() + send.payload.len(),
        wit::Command::Schedule(schedule) => schedule.name.len() + 8,
        wit::Command::Cancel(name) | wit::Command::Milestone(name) | wit::Command::Exit(name) => {
            name.len()
        }
        wit::Command::SetState(state) => state.len(),
        wit::Command::Assign(a) => a.experiment.len() + a.arm.len(),
        wit::Command::Handoff(h) => h.queue.len() + h.reason.len() + 1,
        wit::Command::Complete => 0,
    }
}

/// Converts and checks a decision's commands.
fn commands_from_wit(
    commands: Vec<wit::Command>,
    limits: &model::Limits,
) -> Result<Vec<model::Command>, GuestFailure> {
    let invalid = |message: String| Err(GuestFailure::new(FailureReason::InvalidCommands, message));
    let max_commands = limits.max_commands;
    let max_state_bytes = limits.max_state_bytes;
    if commands.len() as u64 > max_commands {
        return invalid(format!(
            "decide returned {} commands; the limit is {max_commands}",
            commands.len()
        ));
    }
    let bytes: u64 = commands.iter().map(|c| command_bytes(c) as u64).sum();
    if bytes > limits.max_hostcall_bytes {
        return invalid(format!(
            "decide returned {bytes} bytes of commands; the limit is {}",
            limits.max_hostcall_bytes
        ));
    }
    let mut converted = Vec::with_capacity(commands.len());
    for (index, command) in commands.into_iter().enumerate() {
        converted.push(match command {
            wit::Command::Send(send) => {
                let payload = match serde_json::from_str::<Value>(&send.payload) {
                    Ok(payload @ Value::Object(_)) => payload,
                    Ok(_) => {
                        return invalid(format!(
                            "command {index} (send through `{}`): the payload is not a JSON object",
                            send.channel
                        ))
                    }
                    Err(e) => {
                        return invalid(format!(
                            "command {index} (send through `{}`): the payload is not JSON: {e}",
                            send.channel
                        ))
                    }
                };
                model::Command::Send(model::Send {
                    channel: send.channel,
                    template: send.template,
                    payload,
                })
            }
            wit::Command::Schedule(schedule) => model::Command::Schedule {
                name: schedule.name,
                due: schedule.due,
            },
            wit::Command::Cancel(name) => model::Command::Cancel { name },
            wit::Command::Milestone(name) => model::Command::Milestone { name },
            wit::Command::SetState(state) => {
                if state.len() as u64 > max_state_bytes {
                    return invalid(format!(
                        "command {index} (set-state): {} bytes of state; the limit is {max_state_bytes}",
                        state.len()
                    ));
                }
                model::Command::SetState { state }
            }
            wit::Command::Assign(assignment) => model::Command::Assign(model::VariantAssignment {
                experiment: assignment.experiment,
                arm: assignment.arm,
            }),
            wit::Command::Handoff(handoff) => model::Command::Handoff(model::Handoff {
                queue: handoff.queue,
                reason: handoff.reason,
                priority: handoff.priority,
            }),
            wit::Command::Exit(reason) => model::Command::Exit { reason },
            wit::Command::Complete => model::Command::Complete,
        });
    }
    Ok(converted)
}

/// Converts and checks a journey's spec: everything the host later relies on without asking.
/// A journey's `audience` declaration (contract 0.1.2) as the model's.
fn audience_from_wit(audience: wit_audience::AudienceSpec) -> model::Audience {
    model::Audience {
        subject: match audience.subject {
            wit_audience::Subject::Customer => model::Subject::Customer,
            wit_audience::Subject::Account => model::Subject::Account,
        },
        triggers: audience
            .triggers
            .into_iter()
            .map(|t| match t {
                wit_audience::AudienceTrigger::Inactive(i) => model::AudienceTrigger::Inactive {
                    name: i.name,
                    events: i.events,
                    quiet_for: i.quiet_for,
                },
                wit_audience::AudienceTrigger::Matches(c) => model::AudienceTrigger::Matches {
                    name: c.name,
                    expression: c.expression,
                    exit_when_unmatched: c.exit_when_unmatched,
                },
                wit_audience::AudienceTrigger::Date(d) => model::AudienceTrigger::Date {
                    name: d.name,
                    attribute: d.attribute,
                    offset_days: d.offset_days,
                    at_minute: d.at_minute,
                },
            })
            .collect(),
    }
}

/// `describe`'s answer, with `describe-audience`'s when the component exports it, as a checked
/// spec.
pub fn spec_from_wit(
    spec: wit::Spec,
    audience: Option<wit_audience::AudienceSpec>,
) -> Result<model::Spec, GuestFailure> {
    let invalid = |message: String| Err(GuestFailure::new(FailureReason::InvalidSpec, message));

    let mut entry = Vec::with_capacity(spec.entry.len());
    for trigger in spec.entry {
        let filter = match trigger.filter {
            None => None,
            Some(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(filter)) => Some(filter),
                Ok(_) => {
                    return invalid(format!(
                        "the filter of entry trigger `{}` is not a JSON object",
                        trigger.event
                    ))
                }
                Err(e) => {
                    return invalid(format!(
                        "the filter of entry trigger `{}` is not JSON: {e}",
                        trigger.event
                    ))
                }
            },
        };
        entry.push(model::EntryTrigger {
            event: trigger.event,
            filter,
        });
    }

    let reentry = match spec.reentry {
        wit::Reentry::Never => model::Reentry::Never,
        wit::Reentry::AfterExit => model::Reentry::AfterExit,
        wit::Reentry::Always => model::Reentry::Always,
        wit::Reentry::Keyed(property) => model::Reentry::Keyed(property),
    };

    let spec = model::Spec {
        description: spec.description,
        entry,
        exit_on: spec.exit_on,
        milestones: spec
            .milestones
            .into_iter()
            .map(|m| model::MilestoneSpec {
                name: m.name,
                stall_after: m.stall_after,
            })
            .collect(),
        goal: spec.goal,
        reentry,
        channels: spec.channels,
        experiments: spec
            .experiments
            .into_iter()
            .map(|e| model::ExperimentSpec {
                name: e.name,
                arms: e.arms,
                // Declared by `describe-allocation`, applied after (`with_allocation`).
                allocation: model::Allocation::Fixed,
            })
            .collect(),
        audience: audience.map(audience_from_wit).unwrap_or_default(),
    };
    // The rules of a valid spec live in one place, beside the type.
    spec.validate()
        .map_err(|e| GuestFailure::new(FailureReason::InvalidSpec, e.to_string()))?;
    // The names it declares follow the rules of the commands that will use them.
    crate::engine::names::check_spec(&spec)
        .map_err(|e| GuestFailure::new(FailureReason::InvalidSpec, e))?;
    Ok(spec)
}

/// `describe-allocation`'s answer (contract 0.1.2, issue 13) applied to a checked spec: each
/// entry must name a declared experiment, once, and its goal a declared milestone.
pub(super) fn with_allocation(
    mut spec: model::Spec,
    allocations: Vec<wit_allocation::ExperimentAllocation>,
) -> Result<model::Spec, GuestFailure> {
    let invalid = |message: String| Err(GuestFailure::new(FailureReason::InvalidSpec, message));
    let mut seen = std::collections::HashSet::new();
    for a in allocations {
        if !seen.insert(a.experiment.clone()) {
            return invalid(format!("experiment `{}` is allocated twice", a.experiment));
        }
        if let Some(goal) = &a.goal {
            if !spec.milestones.iter().any(|m| &m.name == goal) {
                return invalid(format!(
                    "experiment `{}` optimises milestone `{goal}`, which the journey does not declare",
                    a.experiment
                ));
            }
        }
        let Some(experiment) = spec.experiments.iter_mut().find(|e| e.name == a.experiment) else {
            return invalid(format!(
                "allocation names experiment `{}`, which the journey does not declare",
                a.experiment
            ));
        };
        experiment.allocation = match a.mode {
            wit_allocation::AllocationMode::Fixed => model::Allocation::Fixed,
            wit_allocation::AllocationMode::Thompson => {
                model::Allocation::Thompson { goal: a.goal }
            }
        };
    }
    Ok(spec)
}

/// The `stats` import's arm statistics as the guest reads them (contract 0.1.2).
pub(super) fn arm_stats_to_wit(arms: &[model::ArmStats]) -> Vec<wit_stats::ArmStats> {
    arms.iter()
        .map(|a| wit_stats::ArmStats {
            experiment: a.experiment.clone(),
            arm: a.arm.clone(),
            goal: a.goal.clone(),
            entered: a.entered,
            converted: a.converted,
        })
        .collect()
}

/// The `stats` snapshot as the guest reads it.
pub(super) fn channel_stats_to_wit(
    snapshot: &[model::ChannelStats],
) -> Vec<wit_stats::ChannelStats> {
    snapshot
        .iter()
        .map(|s| wit_stats::ChannelStats {
            channel: s.channel.clone(),
            sent: s.sent,
            delivered: s.delivered,
            failed: s.failed,
        })
        .collect()
}

/// A message to deliver, JSON as text.
pub(super) fn message_to_wit(msg: &model::DeliveryRequest) -> channel_types::Message {
    channel_types::Message {
        id: msg.id.clone(),
        channel: msg.channel.clone(),
        customer: customer_to_wit(&msg.customer),
        template: msg.template.clone(),
        payload: msg.payload.to_string(),
        config: json_text(&msg.config),
    }
}

/// The longest provider id a receipt may carry: it is stored on the message and reported to
/// the journey, so an adapter cannot make every later record of it large.
pub const MAX_PROVIDER_ID_BYTES: usize = 1024;

/// An adapter's proof of delivery; one whose provider id is over [`MAX_PROVIDER_ID_BYTES`] is
/// refused as [`DeliveryFailure::Oversized`] (the adapter broke its contract; asking again
/// would not help).
pub(super) fn receipt_from_wit(
    receipt: channel_types::Receipt,
) -> Result<model::Receipt, DeliveryFailure> {
    match receipt.provider_id {
        Some(id) if id.len() > MAX_PROVIDER_ID_BYTES => Err(DeliveryFailure::Oversized(format!(
            "the adapter's receipt is too large: a provider id of {} bytes (at most {MAX_PROVIDER_ID_BYTES})",
            id.len()
        ))),
        provider_id => Ok(model::Receipt {
            provider_id,
            detail: None,
        }),
    }
}

/// An adapter's `delivery-error`, its message cut to a bound.
pub(super) fn delivery_error_from_wit(error: channel_types::DeliveryError) -> model::DeliveryError {
    match error {
        channel_types::DeliveryError::Retryable(m) => {
            model::DeliveryError::Retryable(truncate(m, MAX_ADAPTER_ERROR))
        }
        channel_types::DeliveryError::Permanent(m) => {
            model::DeliveryError::Permanent(truncate(m, MAX_ADAPTER_ERROR))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn send(payload: &str) -> wit::Command {
        wit::Command::Send(wit::Send {
            channel: "email".into(),
            template: "welcome".into(),
            payload: payload.into(),
        })
    }

    fn caps(max_commands: u64, max_state_bytes: u64) -> model::Limits {
        model::Limits {
            max_commands,
            max_state_bytes,
            ..crate::sandbox::config::DEFAULT_LIMITS
        }
    }

    fn reason(result: Result<impl std::fmt::Debug, GuestFailure>) -> FailureReason {
        result.expect_err("refused").reason
    }

    #[test]
    fn commands_convert_one_to_one() {
        let commands = vec![
            send(r#"{"first_name":"Ada"}"#),
            wit::Command::Schedule(wit::Schedule {
                name: "nudge".into(),
                due: 86_400_000,
            }),
            wit::Command::Cancel("nudge".into()),
            wit::Command::Milestone("activated".into()),
            wit::Command::SetState(vec![1, 2, 3]),
            wit::Command::Assign(wit::VariantAssignment {
                experiment: "subject".into(),
                arm: "b".into(),
            }),
            wit::Command::Handoff(wit::Handoff {
                queue: "cs".into(),
                reason: "stalled".into(),
                priority: 1,
            }),
            wit::Command::Exit("unsubscribed".into()),
            wit::Command::Complete,
        ];
        let converted = commands_from_wit(commands, &caps(64, 1024)).unwrap();
        assert_eq!(
            converted[0],
            model::Command::Send(model::Send {
                channel: "email".into(),
                template: "welcome".into(),
                payload: json!({"first_name": "Ada"}),
            })
        );
        assert_eq!(
            converted[1],
            model::Command::Schedule {
                name: "nudge".into(),
                due: 86_400_000
            }
        );
        assert_eq!(
            converted[4],
            model::Command::SetState {
                state: vec![1, 2, 3]
            }
        );
        assert_eq!(converted[8], model::Command::Complete);
        assert_eq!(converted.len(), 9);
    }

    #[test]
    fn a_send_payload_must_be_a_json_object() {
        assert_eq!(
            reason(commands_from_wit(vec![send("[1,2]")], &caps(64, 1024))),
            FailureReason::InvalidCommands
        );
        let failure = commands_from_wit(vec![send("{not json")], &caps(64, 1024)).unwrap_err();
        assert_eq!(failure.reason, FailureReason::InvalidCommands);
        assert!(
            failure.message.contains("command 0 (send through `email`)"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn too_many_commands_or_too_much_state_is_refused() {
        let many = (0..3).map(|_| wit::Command::Complete).collect();
        assert_eq!(
            reason(commands_from_wit(many, &caps(2, 1024))),
            FailureReason::InvalidCommands
        );
        let big = vec![wit::Command::SetState(vec![0; 1025])];
        assert_eq!(
            reason(commands_from_wit(big, &caps(64, 1024))),
            FailureReason::InvalidCommands
        );
        let exact = vec![wit::Command::SetState(vec![0; 1024])];
        assert!(commands_from_wit(exact, &caps(64, 1024)).is_ok());
    }

    #[test]
    fn a_guest_error_is_recorded_as_such_and_cut_to_a_bound() {
        let failure =
            decision_from_wit(Err("x".repeat(MAX_GUEST_ERROR + 100)), &caps(64, 1024)).unwrap_err();
        assert_eq!(failure.reason, FailureReason::GuestError);
        assert!(failure.message.len() <= MAX_GUEST_ERROR + '…'.len_utf8());
        assert!(failure.message.ends_with('…'));
        let decided = decision_from_wit(Ok(vec![wit::Command::Complete]), &caps(64, 1024));
        assert_eq!(decided, Ok(vec![model::Command::Complete]));
    }

    #[test]
    fn a_decision_larger_than_the_boundary_budget_is_refused() {
        let huge = format!("{{\"blob\":\"{}\"}}", "x".repeat(2048));
        let limits = model::Limits {
            max_hostcall_bytes: 1024,
            ..caps(64, 1024)
        };
        let failure = commands_from_wit(vec![send(&huge)], &limits).unwrap_err();
        assert_eq!(failure.reason, FailureReason::InvalidCommands);
        assert!(
            failure.message.contains("bytes of commands"),
            "{}",
            failure.message
        );
    }

    fn spec() -> wit::Spec {
        wit::Spec {
            description: "Onboarding".into(),
            entry: vec![wit::EntryTrigger {
                event: "signed_up".into(),
                filter: Some(r#"{"plan":"trial"}"#.into()),
            }],
            exit_on: vec!["churned".into()],
            milestones: vec![
                wit::MilestoneSpec {
                    name: "activated".into(),
                    stall_after: Some(3 * 86_400_000),
                },
                wit::MilestoneSpec {
                    name: "paid".into(),
                    stall_after: None,
                },
            ],
            goal: Some("paid".into()),
            reentry: wit::Reentry::Keyed("order_id".into()),
            channels: vec!["email".into()],
            experiments: vec![wit::ExperimentSpec {
                name: "subject".into(),
                arms: vec!["a".into(), "b".into()],
            }],
        }
    }

    #[test]
    fn a_valid_spec_converts_with_parsed_filters() {
        let converted = spec_from_wit(spec(), None).unwrap();
        assert_eq!(
            converted.entry[0].filter,
            Some(json!({"plan": "trial"}).as_object().unwrap().clone())
        );
        assert_eq!(converted.reentry, model::Reentry::Keyed("order_id".into()));
        assert_eq!(converted.goal.as_deref(), Some("paid"));
        assert_eq!(converted.milestones[0].stall_after, Some(3 * 86_400_000));
    }

    #[test]
    fn a_spec_with_a_non_object_filter_is_refused_clearly() {
        let mut bad = spec();
        bad.entry[0].filter = Some("42".into());
        let failure = spec_from_wit(bad, None).unwrap_err();
        assert_eq!(failure.reason, FailureReason::InvalidSpec);
        assert!(failure.message.contains("signed_up"), "{}", failure.message);
    }

    #[test]
    fn a_spec_whose_goal_is_not_a_milestone_is_refused() {
        let mut bad = spec();
        bad.goal = Some("retained".into());
        assert_eq!(reason(spec_from_wit(bad, None)), FailureReason::InvalidSpec);
        let mut twice = spec();
        twice.milestones.push(wit::MilestoneSpec {
            name: "paid".into(),
            stall_after: None,
        });
        assert_eq!(
            reason(spec_from_wit(twice, None)),
            FailureReason::InvalidSpec
        );
        let mut no_arms = spec();
        no_arms.experiments[0].arms.clear();
        assert_eq!(
            reason(spec_from_wit(no_arms, None)),
            FailureReason::InvalidSpec
        );
        let mut negative = spec();
        negative.milestones[0].stall_after = Some(0);
        assert_eq!(
            reason(spec_from_wit(negative, None)),
            FailureReason::InvalidSpec
        );
    }

    // The plain conversion, one owned string per field: what a filled `ContextBuffer` must
    // equal whatever it held before.
    fn event_to_wit(event: &model::Event) -> wit::Event {
        wit::Event {
            id: event.id.clone(),
            name: event.name.clone(),
            properties: json_text(&event.properties),
            timestamp: event.timestamp,
        }
    }

    fn trigger_to_wit(trigger: &model::Trigger) -> wit::Trigger {
        match trigger {
            model::Trigger::Entered { event } => wit::Trigger::Entered(event_to_wit(event)),
            model::Trigger::Event { event } => wit::Trigger::Event(event_to_wit(event)),
            model::Trigger::Timer { name } => wit::Trigger::Timer(name.clone()),
            model::Trigger::Stalled { milestone } => wit::Trigger::Stalled(milestone.clone()),
            // As `ContextBuffer::fill_trigger` writes it (never asked of `decide`).
            model::Trigger::Migrated { .. } => wit::Trigger::Timer(String::new()),
            model::Trigger::Delivery { report } => wit::Trigger::Delivery(wit::DeliveryReport {
                message_id: report.message_id.clone(),
                channel: report.channel.clone(),
                template: report.template.clone(),
                outcome: match &report.outcome {
                    model::DeliveryOutcome::Delivered { provider_id } => {
                        wit::DeliveryOutcome::Delivered(provider_id.clone())
                    }
                    model::DeliveryOutcome::Failed { reason }
                    | model::DeliveryOutcome::Suppressed { reason } => {
                        wit::DeliveryOutcome::Failed(reason.clone())
                    }
                },
            }),
        }
    }

    fn enrollment_to_wit(enrollment: &model::Enrollment) -> wit::Enrollment {
        wit::Enrollment {
            id: enrollment.id.clone(),
            journey: enrollment.journey.clone(),
            version: enrollment.version,
            status: match enrollment.status {
                model::EnrollmentStatus::Active => wit::EnrollmentStatus::Active,
                model::EnrollmentStatus::Completed => wit::EnrollmentStatus::Completed,
                model::EnrollmentStatus::Exited => wit::EnrollmentStatus::Exited,
            },
            entered_at: enrollment.entered_at,
            milestones: enrollment
                .milestones
                .iter()
                .map(|m| wit::MilestoneHit {
                    name: m.name.clone(),
                    at: m.at,
                })
                .collect(),
            state: enrollment.state.clone(),
            timers: enrollment
                .timers
                .iter()
                .map(|t| wit::PendingTimer {
                    name: t.name.clone(),
                    due: t.due,
                })
                .collect(),
            variants: enrollment
                .variants
                .iter()
                .map(|v| wit::VariantAssignment {
                    experiment: v.experiment.clone(),
                    arm: v.arm.clone(),
                })
                .collect(),
        }
    }

    fn context_to_wit(ctx: &model::DecisionContext) -> wit::Context {
        wit::Context {
            trigger: trigger_to_wit(&ctx.trigger),
            customer: customer_to_wit(&ctx.customer),
            enrollment: enrollment_to_wit(&ctx.enrollment),
            now: ctx.now,
            seed: ctx.seed,
        }
    }

    fn context(
        trigger: model::Trigger,
        milestones: &[&str],
        state: &[u8],
    ) -> model::DecisionContext {
        let mut enrollment = crate::engine::enroll("onboarding", 3, "ada", 1, None, 500);
        enrollment.milestones = milestones
            .iter()
            .map(|name| model::MilestoneHit {
                name: name.to_string(),
                at: 700,
            })
            .collect();
        enrollment.state = state.to_vec();
        model::DecisionContext {
            trigger,
            customer: model::Customer {
                id: format!("ada-{}", milestones.len()),
                attributes: json!({"plan": "pro", "seats": milestones.len()})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            enrollment,
            now: 1_000 + milestones.len() as i64,
            seed: 7,
        }
    }

    fn event(name: &str, properties: serde_json::Value) -> model::Event {
        model::Event {
            id: format!("{name}-1"),
            customer: "ada".into(),
            name: name.into(),
            properties: properties.as_object().unwrap().clone(),
            timestamp: 900,
        }
    }

    #[test]
    fn a_reused_context_buffer_converts_exactly_as_a_fresh_conversion() {
        let contexts = [
            context(
                model::Trigger::Entered {
                    event: event("signed_up", json!({"plan": "trial", "source": "ads"})),
                },
                &["a", "b", "c"],
                &[1, 2, 3],
            ),
            context(
                model::Trigger::Timer {
                    name: "nudge".into(),
                },
                &[],
                &[],
            ),
            context(
                model::Trigger::Event {
                    event: event("x", json!({})),
                },
                &["only"],
                &[9],
            ),
            context(
                model::Trigger::Delivery {
                    report: model::DeliveryReport {
                        message_id: "m1".into(),
                        channel: "webhook".into(),
                        template: "welcome".into(),
                        outcome: model::DeliveryOutcome::Delivered { provider_id: None },
                    },
                },
                &["a", "b"],
                &[],
            ),
            context(
                model::Trigger::Stalled {
                    milestone: "activated".into(),
                },
                &[],
                &[4, 5],
            ),
            context(
                model::Trigger::Event {
                    event: event("first_value", json!({"feature": "reports"})),
                },
                &["a"],
                &[],
            ),
        ];
        let mut buffer = ContextBuffer::default();
        // Twice through, so that every kind follows every other.
        for ctx in contexts.iter().chain(contexts.iter().rev()) {
            assert_eq!(
                format!("{:?}", buffer.fill(ctx)),
                format!("{:?}", context_to_wit(ctx))
            );
        }
    }

    #[test]
    fn the_context_carries_json_as_text_and_everything_else_as_is() {
        let ctx = model::DecisionContext {
            trigger: model::Trigger::Event {
                event: model::Event {
                    id: "e1".into(),
                    customer: "c1".into(),
                    name: "opened".into(),
                    properties: json!({"n": 1}).as_object().unwrap().clone(),
                    timestamp: 1000,
                },
            },
            customer: model::Customer {
                id: "c1".into(),
                attributes: json!({"tz": "Europe/Paris"}).as_object().unwrap().clone(),
            },
            enrollment: model::Enrollment {
                id: "onboarding/c1/1".into(),
                journey: "onboarding".into(),
                version: 2,
                customer: "c1".into(),
                run: 1,
                key: None,
                status: model::EnrollmentStatus::Active,
                entered_at: 500,
                ended_at: None,
                exit_reason: None,
                milestones: vec![model::MilestoneHit {
                    name: "activated".into(),
                    at: 700,
                }],
                stalls: Vec::new(),
                stalled_on: None,
                state: vec![9],
                timers: vec![],
                variants: vec![],
                channels: Default::default(),
                failure: None,
                failures: Vec::new(),
                loop_window: None,
                paused: None,
            },
            now: 1000,
            seed: 7,
        };
        let mut buffer = ContextBuffer::default();
        let context = buffer.fill(&ctx);
        let wit::Trigger::Event(event) = &context.trigger else {
            panic!("event trigger")
        };
        assert_eq!(event.properties, r#"{"n":1}"#);
        assert_eq!(context.customer.attributes, r#"{"tz":"Europe/Paris"}"#);
        assert_eq!(context.enrollment.version, 2);
        assert_eq!(context.enrollment.milestones[0].at, 700);
        assert_eq!((context.now, context.seed), (1000, 7));
    }

    #[test]
    fn a_message_carries_payload_and_config_as_json_text() {
        let msg = model::DeliveryRequest {
            id: "t/j/1/c/trig/0".into(),
            channel: "email".into(),
            customer: model::Customer {
                id: "c1".into(),
                attributes: json!({"email": "ada@example.com"})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            template: "welcome".into(),
            payload: json!({"first_name": "Ada"}),
            config: json!({"url": "https://api.example.com", "token": "s3cret"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let message = message_to_wit(&msg);
        assert_eq!(message.id, "t/j/1/c/trig/0");
        assert_eq!(message.payload, r#"{"first_name":"Ada"}"#);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&message.config).unwrap(),
            json!({"url": "https://api.example.com", "token": "s3cret"})
        );
        assert_eq!(
            message.customer.attributes,
            r#"{"email":"ada@example.com"}"#
        );
    }

    #[test]
    fn a_receipt_with_an_oversized_provider_id_is_a_permanent_failure() {
        let receipt = |len: usize| channel_types::Receipt {
            provider_id: Some("p".repeat(len)),
        };
        assert_eq!(
            receipt_from_wit(receipt(MAX_PROVIDER_ID_BYTES))
                .map(|r| r.provider_id.map(|p| p.len())),
            Ok(Some(MAX_PROVIDER_ID_BYTES))
        );
        let refused = receipt_from_wit(receipt(MAX_PROVIDER_ID_BYTES + 1)).unwrap_err();
        assert!(!refused.retryable(), "{refused:?}");
        assert!(
            refused.describe().contains("receipt is too large"),
            "{refused:?}"
        );
    }

    #[test]
    fn adapter_errors_keep_their_retryability() {
        assert_eq!(
            delivery_error_from_wit(channel_types::DeliveryError::Retryable("503".into())),
            model::DeliveryError::Retryable("503".into())
        );
        assert_eq!(
            delivery_error_from_wit(channel_types::DeliveryError::Permanent("400".into())),
            model::DeliveryError::Permanent("400".into())
        );
    }
}
