//! The contexts the bench decides on, in the host's vocabulary ([`model`]), and the same contexts
//! in the two shapes the native paths take: the guest's WIT-generated types (what the SDK's
//! export glue receives inside a component) and the guest SDK's plain types (what a journey's
//! logic sees), the latter made by the SDK's own glue.
//!
//! Each trigger makes the onboarding journey do real work: `entered` builds a JSON payload from
//! the customer and the signup and schedules a timer (and logs a line), `timer` sends the nudge,
//! `event` records the goal milestone and completes.

use serde_json::{json, Value};
pub use waymark_guest::__export::journey::waymark::journey::types as wit;
use waymark_host::model::{self, Millis};

const SIGNUP_AT: Millis = 1_700_000_000_000;
const DAY: Millis = 24 * 60 * 60 * 1000;

/// One trigger the bench decides on, named as the table names it.
pub struct Fixture {
    pub name: &'static str,
    pub context: model::DecisionContext,
}

/// `entered` on a `signed_up` event, a due `nudge` timer, and the `first_value` event.
pub fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            name: "entered",
            context: context(
                model::Trigger::Entered {
                    event: event(
                        "signed_up",
                        SIGNUP_AT,
                        json!({
                            "plan": "trial",
                            "source": "ads",
                            "referrer": "https://example.com/blog/launch",
                        }),
                    ),
                },
                enrollment(SIGNUP_AT, Vec::new()),
                SIGNUP_AT,
            ),
        },
        Fixture {
            name: "timer",
            context: context(
                model::Trigger::Timer {
                    name: "nudge".into(),
                },
                enrollment(SIGNUP_AT, Vec::new()),
                SIGNUP_AT + 3 * DAY,
            ),
        },
        Fixture {
            name: "event",
            context: context(
                model::Trigger::Event {
                    event: event(
                        "first_value",
                        SIGNUP_AT + DAY,
                        json!({"feature": "first_report"}),
                    ),
                },
                enrollment(
                    SIGNUP_AT,
                    vec![model::PendingTimer {
                        name: "nudge".into(),
                        due: SIGNUP_AT + 3 * DAY,
                    }],
                ),
                SIGNUP_AT + DAY,
            ),
        },
    ]
}

fn context(
    trigger: model::Trigger,
    enrollment: model::Enrollment,
    now: Millis,
) -> model::DecisionContext {
    model::DecisionContext {
        trigger,
        customer: model::Customer {
            id: "c-42".into(),
            attributes: object(json!({
                "email": "ada@example.com",
                "name": "Ada Lovelace",
                "plan": "trial",
                "country": "GB",
            })),
        },
        enrollment,
        now,
        seed: 0x5eed_cafe_f00d_0042,
    }
}

fn event(name: &str, timestamp: Millis, properties: Value) -> model::Event {
    model::Event {
        id: format!("evt-{name}-c-42"),
        customer: "c-42".into(),
        name: name.into(),
        properties: object(properties),
        timestamp,
    }
}

/// An active enrollment, read from JSON as the store reads one, so that fields the model gains
/// later with defaults need no change here.
fn enrollment(entered_at: Millis, timers: Vec<model::PendingTimer>) -> model::Enrollment {
    let mut enrollment: model::Enrollment = serde_json::from_value(json!({
        "id": "onboarding/c-42/1",
        "journey": "onboarding",
        "version": 1,
        "customer": "c-42",
        "run": 1,
        "status": "active",
        "entered_at": entered_at,
    }))
    .expect("the fixture is a valid enrollment");
    enrollment.timers = timers;
    enrollment.channels.insert(
        "webhook".to_string(),
        model::ChannelSummary {
            sent: 1,
            delivered: 1,
            ..Default::default()
        },
    );
    enrollment
}

fn object(value: Value) -> model::Object {
    match value {
        Value::Object(map) => map,
        _ => model::Object::new(),
    }
}

/// What the `stats` import returns during a call: one channel, as the runtime would pass it.
pub fn stats() -> Vec<model::ChannelStats> {
    vec![model::ChannelStats {
        channel: "webhook".into(),
        sent: 1_204,
        delivered: 1_187,
        failed: 9,
    }]
}

// ---------------------------------------------------------------------------------------------
// The two shapes the native paths take. The host's own conversions (`sandbox::convert`) produce
// the *host's* WIT types, which are other Rust types than the guest's: neither they nor anything
// else in the host's public API can feed a journey compiled natively. So the bench converts model
// values into the guest's WIT types once, here (`to_wit`), and lets the SDK's own export glue
// derive the SDK types from those (`to_sdk`), exactly as inside a component. Only `to_wit` and
// `from_sdk` are hand-written; `check_paths_agree` catches a drift in either that changes what
// the native paths decide, since the wasm paths go through the host's own conversions.
// ---------------------------------------------------------------------------------------------

/// The SDK's context for `ctx`, as the SDK's export glue builds it from the WIT-shaped context
/// inside a component: the glue runs on a journey that only records what it was given.
pub fn to_sdk(ctx: &model::DecisionContext) -> Result<waymark_guest::Context, String> {
    use std::cell::RefCell;
    use waymark_guest::{Context, Decision, Journey, Spec};

    thread_local! {
        static SEEN: RefCell<Option<Context>> = const { RefCell::new(None) };
    }
    struct Recorder;
    impl Journey for Recorder {
        fn describe() -> Spec {
            Spec::new("records the context it decides on")
        }
        fn decide(ctx: &Context) -> Result<Decision, String> {
            SEEN.with(|seen| *seen.borrow_mut() = Some(ctx.clone()));
            Ok(Decision::new())
        }
    }

    waymark_guest::__export::decide::<Recorder>(to_wit(ctx))?;
    SEEN.with(|seen| seen.borrow_mut().take())
        .ok_or_else(|| "the SDK glue did not call decide".to_string())
}

/// A native decision in the host's vocabulary, to compare with what the component returned.
/// (The host converts only its own WIT types into commands; the SDK's have no such path.)
pub fn from_sdk(commands: Vec<waymark_guest::Command>) -> Vec<model::Command> {
    use waymark_guest::Command as C;
    commands
        .into_iter()
        .map(|command| match command {
            C::Send {
                channel,
                template,
                payload,
            } => model::Command::Send(model::Send {
                channel,
                template,
                payload,
            }),
            C::Schedule { name, due } => model::Command::Schedule { name, due },
            C::Cancel(name) => model::Command::Cancel { name },
            C::Milestone(name) => model::Command::Milestone { name },
            C::SetState(state) => model::Command::SetState { state },
            C::Assign { experiment, arm } => {
                model::Command::Assign(model::VariantAssignment { experiment, arm })
            }
            C::Handoff {
                queue,
                reason,
                priority,
            } => model::Command::Handoff(model::Handoff {
                queue,
                reason,
                priority,
            }),
            C::Exit(reason) => model::Command::Exit { reason },
            C::Complete => model::Command::Complete,
        })
        .collect()
}

/// The guest's WIT-generated context for `ctx`: what the SDK's export glue receives inside the
/// component, JSON as text. Natively it lets the bench run the guest's whole side of a call
/// without wasm. It mirrors the host's `sandbox::convert::context_to_wit`, into the guest's types.
pub fn to_wit(ctx: &model::DecisionContext) -> wit::Context {
    let text = |o: &model::Object| serde_json::to_string(o).unwrap_or_else(|_| "{}".into());
    let event = |e: &model::Event| wit::Event {
        id: e.id.clone(),
        name: e.name.clone(),
        properties: text(&e.properties),
        timestamp: e.timestamp,
    };
    let trigger = match &ctx.trigger {
        model::Trigger::Entered { event: e } => wit::Trigger::Entered(event(e)),
        model::Trigger::Event { event: e } => wit::Trigger::Event(event(e)),
        model::Trigger::Timer { name } => wit::Trigger::Timer(name.clone()),
        model::Trigger::Stalled { milestone } => wit::Trigger::Stalled(milestone.clone()),
        // The bench's contexts are `decide`'s; a migration is asked of `migrate`.
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
    };
    let e = &ctx.enrollment;
    wit::Context {
        trigger,
        customer: wit::Customer {
            id: ctx.customer.id.clone(),
            attributes: text(&ctx.customer.attributes),
        },
        enrollment: wit::Enrollment {
            id: e.id.clone(),
            journey: e.journey.clone(),
            version: e.version,
            status: match e.status {
                model::EnrollmentStatus::Active => wit::EnrollmentStatus::Active,
                model::EnrollmentStatus::Completed => wit::EnrollmentStatus::Completed,
                model::EnrollmentStatus::Exited => wit::EnrollmentStatus::Exited,
            },
            entered_at: e.entered_at,
            milestones: e
                .milestones
                .iter()
                .map(|m| wit::MilestoneHit {
                    name: m.name.clone(),
                    at: m.at,
                })
                .collect(),
            state: e.state.clone(),
            timers: e
                .timers
                .iter()
                .map(|t| wit::PendingTimer {
                    name: t.name.clone(),
                    due: t.due,
                })
                .collect(),
            variants: e
                .variants
                .iter()
                .map(|v| wit::VariantAssignment {
                    experiment: v.experiment.clone(),
                    arm: v.arm.clone(),
                })
                .collect(),
        },
        now: ctx.now,
        seed: ctx.seed,
    }
}
