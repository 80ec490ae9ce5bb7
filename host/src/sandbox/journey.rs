//! World `journey`: a tenant's branching logic, called as `describe` and `decide`.
//!
//! This file holds the world's bindings, the per-call store data, the linker (deterministic
//! WASI, `log`, `stats`), and the conversions between the WIT types and [`crate::model`] —
//! including the checks that keep a guest's output honest: a spec's filters are JSON objects
//! and its goal is a declared milestone; a decision has at most `max_commands` commands, send
//! payloads that are JSON objects, and state of at most `max_state_bytes`.

use super::limits::{self, GuestState, MemoryCap, Stage};
use super::log::{self, LogState};
use super::stats::{self, StatsState};
use super::wasi::{self, WasiState};
use super::{FailureReason, GuestFailure, SandboxError, Shared};
use crate::model;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::component::{InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtxView, WasiView};

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "waymark:journey/journey",
        exports: { default: async },
    });
}

use bindings::waymark::journey::types as wit;
use bindings::JourneyPre;

/// The longest error string from `decide` that is kept.
const MAX_GUEST_ERROR: usize = 2048;

/// The store data of a journey instance, re-armed before every call.
pub(super) struct JourneyState {
    table: ResourceTable,
    wasi: WasiState,
    memory: MemoryCap,
    log: LogState,
    stats: StatsState,
}

impl JourneyState {
    fn new(
        now: model::Millis,
        seed: u64,
        stats: Vec<model::ChannelStats>,
        max_memory: u64,
    ) -> Self {
        JourneyState {
            table: ResourceTable::new(),
            wasi: WasiState::deterministic(now, seed),
            memory: MemoryCap::new(max_memory),
            log: LogState::new("journey"),
            stats: StatsState::new(stats),
        }
    }

    /// Prepares a reused instance's state for the next call: everything per call is new, only
    /// the resource table (whose stream handles the guest caches) carries over.
    fn rearm(
        &mut self,
        now: model::Millis,
        seed: u64,
        stats: Vec<model::ChannelStats>,
        max_memory: u64,
    ) {
        self.wasi.rearm(now, seed);
        self.memory.reset(max_memory);
        self.log = LogState::new("journey");
        self.stats = StatsState::new(stats);
    }
}

impl WasiView for JourneyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.table,
        }
    }
}

impl GuestState for JourneyState {
    fn memory_cap(&mut self) -> &mut MemoryCap {
        &mut self.memory
    }

    fn memory_hit(&self) -> bool {
        self.memory.was_hit()
    }

    fn wasi(&self) -> &WasiState {
        &self.wasi
    }

    fn log(&self) -> &LogState {
        &self.log
    }
}

/// The journey world's linker: what a journey may import.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<JourneyState>> {
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker)?;
    log::add_to_linker(&mut linker, |state: &mut JourneyState| &mut state.log)?;
    stats::add_to_linker(&mut linker, |state: &mut JourneyState| &mut state.stats)?;
    Ok(linker)
}

/// Calls after which a warm instance is retired anyway, so that whatever a guest leaks
/// (memory it never frees, handles it never drops) is bounded.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

/// An instantiated journey waiting for its next call.
struct Warm {
    store: Store<JourneyState>,
    journey: bindings::Journey,
    calls: u32,
}

/// A validated, compiled journey. Cheap to clone (clones share their idle instances).
///
/// Calls reuse an idle instance when there is one: the context carries all state, so an
/// instance holds nothing a customer needs, and every call gets fresh clocks, randomness,
/// memory cap, deadline and hostcall fuel. An instance that trapped, ran out of time or memory,
/// or was cancelled is dropped, never reused. Guests must therefore not keep state in globals
/// between calls (the SDK's types do not; `std::collections::HashMap`'s per-process random keys
/// are the classic way to make iteration order depend on the instance's history).
#[derive(Clone)]
pub struct JourneyComponent {
    pre: JourneyPre<JourneyState>,
    shared: Arc<Shared>,
    idle: Arc<IdlePool>,
}

/// A journey's idle instances; gives their slots back to the overall count when dropped.
struct IdlePool {
    warm: Mutex<Vec<Warm>>,
    shared: Arc<Shared>,
}

impl IdlePool {
    fn new(shared: &Arc<Shared>) -> Arc<IdlePool> {
        Arc::new(IdlePool {
            warm: Mutex::default(),
            shared: shared.clone(),
        })
    }
}

impl Drop for IdlePool {
    fn drop(&mut self) {
        let n = lock(&self.warm).len();
        self.shared.idle_total.fetch_sub(n, Ordering::Relaxed);
    }
}

impl JourneyComponent {
    pub(super) fn new(
        pre: InstancePre<JourneyState>,
        shared: Arc<Shared>,
    ) -> Result<JourneyComponent, SandboxError> {
        let pre = JourneyPre::new(pre).map_err(|e| {
            SandboxError::WrongWorld(format!(
                "not a journey component (it must export `describe` and `decide`): {e:#}"
            ))
        })?;
        Ok(JourneyComponent {
            idle: IdlePool::new(&shared),
            pre,
            shared,
        })
    }

    /// The same compiled journey with a pool of warm instances of its own: what the registry
    /// hands each tenant, so that instances (and whatever a guest keeps in its globals) are
    /// never shared between tenants.
    pub fn with_own_instances(&self) -> JourneyComponent {
        JourneyComponent {
            pre: self.pre.clone(),
            shared: self.shared.clone(),
            idle: IdlePool::new(&self.shared),
        }
    }

    /// Asks the journey to declare itself, and checks the declaration. Runs in an instance of
    /// its own that is not kept: `describe` runs once per upload.
    pub async fn describe(&self, limits: &model::Limits) -> Result<model::Spec, GuestFailure> {
        // `describe` is as deterministic as `decide`: the epoch at zero, seed zero.
        let spec = self
            .run(0, 0, Vec::new(), limits, false, async |journey, store| {
                journey.call_describe(store).await
            })
            .await?;
        spec_from_wit(spec)
    }

    /// Asks the journey what to do about `ctx.trigger`; `stats` is what the `stats` import
    /// returns during this call.
    pub async fn decide(
        &self,
        ctx: &model::DecisionContext,
        stats: Vec<model::ChannelStats>,
        limits: &model::Limits,
    ) -> Result<Vec<model::Command>, GuestFailure> {
        let context = context_to_wit(ctx);
        let decision = self
            .run(
                ctx.now,
                ctx.seed,
                stats,
                limits,
                true,
                async |journey, store| journey.call_decide(store, &context).await,
            )
            .await?;
        match decision {
            Ok(commands) => commands_from_wit(commands, limits),
            Err(message) => Err(GuestFailure::new(
                FailureReason::GuestError,
                limits::truncate(message, MAX_GUEST_ERROR),
            )),
        }
    }

    /// Idle instances right now (for tests and metrics).
    pub fn idle_instances(&self) -> usize {
        lock(&self.idle.warm).len()
    }

    /// Runs `call` on an idle instance, or a fresh one, under the decide deadline: both the
    /// epoch's (a spinning guest) and the wall clock's (a guest blocked in the host).
    async fn run<R>(
        &self,
        now: model::Millis,
        seed: u64,
        stats: Vec<model::ChannelStats>,
        limits: &model::Limits,
        pooled: bool,
        call: impl AsyncFnOnce(&bindings::Journey, &mut Store<JourneyState>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestFailure> {
        let deadline = limits.decide_deadline();
        let warm = lock(&self.idle.warm).pop();
        if warm.is_some() {
            self.shared.idle_total.fetch_sub(1, Ordering::Relaxed);
        }
        let (mut store, journey, calls) = match warm {
            Some(Warm {
                mut store,
                journey,
                calls,
            }) => {
                store
                    .data_mut()
                    .rearm(now, seed, stats, limits.max_memory_bytes);
                limits::rearm_store(&mut store, deadline, limits.max_hostcall_bytes);
                self.shared.counters.reused.inc();
                (store, Some(journey), calls)
            }
            None => {
                let state = JourneyState::new(now, seed, stats, limits.max_memory_bytes);
                let store = limits::new_store(
                    &self.shared.engine,
                    state,
                    deadline,
                    limits.max_hostcall_bytes,
                );
                self.shared.counters.instantiated.inc();
                (store, None, 0)
            }
        };
        let outcome = tokio::time::timeout(deadline, async {
            let journey = match journey {
                Some(journey) => journey,
                None => self
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| (Stage::Instantiate, e))?,
            };
            let value = call(&journey, &mut store)
                .await
                .map_err(|e| (Stage::Call, e))?;
            Ok((journey, value))
        })
        .await;
        let (outcome, journey) = match outcome {
            Ok(Ok((journey, value))) => (Ok(Ok(value)), Some(journey)),
            Ok(Err(e)) => (Ok(Err(e)), None),
            Err(elapsed) => (Err(elapsed), None),
        };
        let result = limits::settle(&store, "journey", deadline, outcome);
        // Only an instance that finished cleanly goes back: after a trap its state is
        // undefined, and one that hit a limit is likely to hit it again.
        if let (Ok(_), Some(journey)) = (&result, journey) {
            let calls = calls + 1;
            let mut idle = lock(&self.idle.warm);
            // Idle instances hold slots of the instance pool: bounded per journey and overall.
            let room = self
                .shared
                .idle_total
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < self.shared.config.max_idle_instances).then_some(n + 1)
                })
                .is_ok();
            if room {
                if pooled
                    && !store.data().memory_hit()
                    && calls < MAX_CALLS_PER_INSTANCE
                    && idle.len() < self.shared.config.warm_instances
                {
                    idle.push(Warm {
                        store,
                        journey,
                        calls,
                    });
                } else {
                    self.shared.idle_total.fetch_sub(1, Ordering::Relaxed);
                }
            }
        } else {
            self.shared.counters.recycled.inc();
        }
        result
    }
}

/// A poisoned pool of idle instances is still a pool: recover it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// JSON text of an object. Serializing a map with string keys cannot fail.
pub(super) fn json_text(object: &model::Object) -> String {
    serde_json::to_string(object).unwrap_or_else(|_| "{}".to_owned())
}

pub(super) fn customer_to_wit(customer: &model::Customer) -> wit::Customer {
    wit::Customer {
        id: customer.id.clone(),
        attributes: json_text(&customer.attributes),
    }
}

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
        model::Trigger::Delivery { report } => wit::Trigger::Delivery(wit::DeliveryReport {
            message_id: report.message_id.clone(),
            channel: report.channel.clone(),
            template: report.template.clone(),
            outcome: match &report.outcome {
                model::DeliveryOutcome::Delivered { provider_id } => {
                    wit::DeliveryOutcome::Delivered(provider_id.clone())
                }
                model::DeliveryOutcome::Failed { reason } => {
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
fn spec_from_wit(spec: wit::Spec) -> Result<model::Spec, GuestFailure> {
    let invalid = |message: String| Err(GuestFailure::new(FailureReason::InvalidSpec, message));

    let mut entry = Vec::with_capacity(spec.entry.len());
    for trigger in spec.entry {
        if trigger.event.is_empty() {
            return invalid("an entry trigger has an empty event name".into());
        }
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

    let mut names = HashSet::new();
    for milestone in &spec.milestones {
        if milestone.name.is_empty() {
            return invalid("a milestone has an empty name".into());
        }
        if !names.insert(milestone.name.as_str()) {
            return invalid(format!("milestone `{}` is declared twice", milestone.name));
        }
        if milestone.stall_after.is_some_and(|window| window <= 0) {
            return invalid(format!(
                "milestone `{}` has a stall window that is not positive",
                milestone.name
            ));
        }
    }
    if let Some(goal) = &spec.goal {
        if !names.contains(goal.as_str()) {
            return invalid(format!("the goal `{goal}` is not a declared milestone"));
        }
    }
    drop(names);

    let reentry = match spec.reentry {
        wit::Reentry::Never => model::Reentry::Never,
        wit::Reentry::AfterExit => model::Reentry::AfterExit,
        wit::Reentry::Always => model::Reentry::Always,
        wit::Reentry::Keyed(property) if property.is_empty() => {
            return invalid("keyed re-entry names an empty property".into())
        }
        wit::Reentry::Keyed(property) => model::Reentry::Keyed(property),
    };

    let mut experiments = HashSet::new();
    for experiment in &spec.experiments {
        if experiment.name.is_empty() || !experiments.insert(experiment.name.as_str()) {
            return invalid(format!(
                "experiment `{}` is unnamed or declared twice",
                experiment.name
            ));
        }
        let arms: HashSet<&str> = experiment.arms.iter().map(String::as_str).collect();
        if arms.is_empty() || arms.len() != experiment.arms.len() || arms.contains("") {
            return invalid(format!(
                "experiment `{}` needs at least one arm, each named and declared once",
                experiment.name
            ));
        }
    }
    drop(experiments);

    Ok(model::Spec {
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
            })
            .collect(),
    })
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
            ..crate::sandbox::limits::DEFAULT_LIMITS
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
        let converted = spec_from_wit(spec()).unwrap();
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
        let failure = spec_from_wit(bad).unwrap_err();
        assert_eq!(failure.reason, FailureReason::InvalidSpec);
        assert!(failure.message.contains("signed_up"), "{}", failure.message);
    }

    #[test]
    fn a_spec_whose_goal_is_not_a_milestone_is_refused() {
        let mut bad = spec();
        bad.goal = Some("retained".into());
        assert_eq!(reason(spec_from_wit(bad)), FailureReason::InvalidSpec);
        let mut twice = spec();
        twice.milestones.push(wit::MilestoneSpec {
            name: "paid".into(),
            stall_after: None,
        });
        assert_eq!(reason(spec_from_wit(twice)), FailureReason::InvalidSpec);
        let mut no_arms = spec();
        no_arms.experiments[0].arms.clear();
        assert_eq!(reason(spec_from_wit(no_arms)), FailureReason::InvalidSpec);
        let mut negative = spec();
        negative.milestones[0].stall_after = Some(0);
        assert_eq!(reason(spec_from_wit(negative)), FailureReason::InvalidSpec);
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
            },
            now: 1000,
            seed: 7,
        };
        let context = context_to_wit(&ctx);
        let wit::Trigger::Event(event) = &context.trigger else {
            panic!("event trigger")
        };
        assert_eq!(event.properties, r#"{"n":1}"#);
        assert_eq!(context.customer.attributes, r#"{"tz":"Europe/Paris"}"#);
        assert_eq!(context.enrollment.version, 2);
        assert_eq!(context.enrollment.milestones[0].at, 700);
        assert_eq!((context.now, context.seed), (1000, 7));
    }
}
