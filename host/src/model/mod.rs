//! The domain vocabulary shared by every layer: customers, events, enrollments, triggers,
//! commands and specs, and (in [`settings`]) the limits and sending policy a tenant runs under.
//!
//! These follow the WIT contract (`wit/waymark.wit`) with JSON parsed into `serde_json` values,
//! plus what only the host keeps: an enrollment's customer, run, key, end, stalls, channel
//! summary and last failure are not in the WIT `enrollment`. The sandbox converts to and from
//! WIT, `api::dto` to and from HTTP, so the engine, store and API never see a wasmtime type or
//! a wire format. Not a wire format itself, except where the store keeps `Customer`,
//! `Enrollment` and `Event` as JSON: stored fields are only ever added (with
//! `#[serde(default)]`), never renamed or removed (`store/compat.rs` holds records as an earlier
//! version wrote them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub mod rollout;
// Issue 13, experiments: allocation modes and the `stats` import's arm statistics.
mod audience;
pub use audience::*;
mod experiments;
pub use experiments::*;
mod settings;
pub use settings::*;
mod state_bytes;

/// Milliseconds since the Unix epoch, UTC: the host's notion of time everywhere.
pub type Millis = i64;

/// A JSON object.
pub type Object = Map<String, Value>;

/// A customer of a tenant, as journeys see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub attributes: Object,
}

/// Something a customer did, as the tenant reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Tenant-chosen; retries with a seen id are dropped.
    pub id: String,
    pub customer: String,
    pub name: String,
    #[serde(default)]
    pub properties: Object,
    pub timestamp: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentStatus {
    Active,
    Completed,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneHit {
    pub name: String,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTimer {
    pub name: String,
    pub due: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantAssignment {
    pub experiment: String,
    pub arm: String,
}

/// Sends and their fates through one channel, for one enrollment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Decided but not sent: the customer is unsubscribed or suppressed.
    #[serde(default)]
    pub suppressed: u64,
    /// Engagement reported by tracking events naming one of this enrollment's messages.
    #[serde(default)]
    pub opened: u64,
    #[serde(default)]
    pub clicked: u64,
    #[serde(default)]
    pub replied: u64,
    #[serde(default)]
    pub bounced: u64,
    #[serde(default)]
    pub unsubscribed: u64,
}

/// Why a trigger (or a guest call) failed: stored on the enrollment, counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The guest trapped: a panic, `unreachable`, an out-of-bounds access, a stack overflow.
    Trap,
    /// The call ran past its deadline.
    Deadline,
    /// The guest tried to grow its memory past the limit.
    Memory,
    /// `decide` returned `err`.
    GuestError,
    /// `decide` returned commands the host refuses (undeclared channel or milestone, a send
    /// payload that is not a JSON object, too many commands, state too large, ...).
    InvalidCommands,
    /// `describe` returned a spec the host refuses.
    InvalidSpec,
    /// The component could not be instantiated (e.g. the instance pool is exhausted).
    Instantiate,
    /// The journey's component could not be loaded.
    Unavailable,
    /// The host could not read what the decision needs.
    Internal,
}

impl FailureReason {
    /// The wire and metric spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Trap => "trap",
            FailureReason::Deadline => "deadline",
            FailureReason::Memory => "memory",
            FailureReason::GuestError => "guest_error",
            FailureReason::InvalidCommands => "invalid_commands",
            FailureReason::InvalidSpec => "invalid_spec",
            FailureReason::Instantiate => "instantiate",
            FailureReason::Unavailable => "unavailable",
            FailureReason::Internal => "internal",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a trigger of an enrollment failed. The enrollment's `failure` is the last trigger's,
/// cleared by the next trigger that succeeds; its `failures` keep the most recent ones
/// ([`MAX_RECENT_FAILURES`]) whatever comes after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The trigger's kind (`entered`, `event`, `timer`, ...).
    pub trigger: String,
    pub reason: FailureReason,
    pub message: String,
    pub at: Millis,
}

/// One customer in one journey version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// `{journey}/{customer}/{run}`.
    pub id: String,
    pub journey: String,
    pub version: u32,
    pub customer: String,
    /// 1 for the first run of this customer in this journey, then 2, 3, ...
    pub run: u32,
    /// The re-entry key's value, for journeys keyed by an event property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub status: EnrollmentStatus,
    pub entered_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    #[serde(default)]
    pub milestones: Vec<MilestoneHit>,
    /// Every stall so far: the milestone that was not reached in time, and when.
    #[serde(default)]
    pub stalls: Vec<MilestoneHit>,
    /// The milestone this enrollment is stalled on now (cleared when a milestone is reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_on: Option<String>,
    /// The journey's own state, as its last decision set it. Stored as MessagePack binary;
    /// read from either a binary or the array of integers it was stored as before.
    #[serde(default, with = "state_bytes")]
    pub state: Vec<u8>,
    #[serde(default)]
    pub timers: Vec<PendingTimer>,
    #[serde(default)]
    pub variants: Vec<VariantAssignment>,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The most recent failed triggers, oldest first, at most [`MAX_RECENT_FAILURES`]; a later
    /// success does not clear them. (Records written before this field decode with none.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// What this enrollment ran and sent in its current loop-budget window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_window: Option<LoopWindow>,
    /// Set when the enrollment went over a loop budget: its triggers wait (queued, in order)
    /// until it is resumed through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
}

/// Triggers and sends of one enrollment since `since` (journey time), counted against the
/// tenant's loop budgets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopWindow {
    pub since: Millis,
    pub triggers: u64,
    pub sends: u64,
}

/// Why and when an enrollment was paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub at: Millis,
}

/// How many failed triggers an enrollment keeps in `failures`.
pub const MAX_RECENT_FAILURES: usize = 10;

impl Enrollment {
    pub fn is_active(&self) -> bool {
        self.status == EnrollmentStatus::Active
    }

    pub fn milestone(&self, name: &str) -> Option<&MilestoneHit> {
        self.milestones.iter().find(|m| m.name == name)
    }

    pub fn timer(&self, name: &str) -> Option<&PendingTimer> {
        self.timers.iter().find(|t| t.name == name)
    }

    /// Records `failure` as the last trigger's and among the recent ones, forgetting the
    /// oldest beyond [`MAX_RECENT_FAILURES`].
    pub fn record_failure(&mut self, failure: Failure) {
        if self.failures.len() >= MAX_RECENT_FAILURES {
            let excess = self.failures.len() + 1 - MAX_RECENT_FAILURES;
            self.failures.drain(..excess);
        }
        self.failures.push(failure.clone());
        self.failure = Some(failure);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered {
        provider_id: Option<String>,
    },
    Failed {
        reason: String,
    },
    /// Not attempted: the address was suppressed after the send was decided (issue 11). The
    /// journey hears it as `failed` with this reason (the contract's `delivery-report` has no
    /// other outcome); the enrollment counts the message suppressed instead of sent.
    Suppressed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    pub message_id: String,
    pub channel: String,
    pub template: String,
    pub outcome: DeliveryOutcome,
}

/// Why `decide` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    Entered {
        event: Event,
    },
    Event {
        event: Event,
    },
    Timer {
        name: String,
    },
    Stalled {
        milestone: String,
    },
    Delivery {
        report: DeliveryReport,
    },
    /// The enrollment moves to this version from version `from` (`POST
    /// /v1/journeys/{name}/migrate`): asked of the component's `migrate` export, not `decide`.
    /// `migration` is the request's id, so a second move between the same versions is a new
    /// trigger with keys of its own.
    Migrated {
        from: u32,
        migration: String,
    },
}

impl Trigger {
    /// The trigger's kind, as spans, metrics and failure records name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Entered { .. } => "entered",
            Trigger::Event { .. } => "event",
            Trigger::Timer { .. } => "timer",
            Trigger::Stalled { .. } => "stalled",
            Trigger::Delivery { .. } => "delivery",
            Trigger::Migrated { .. } => "migrated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Send {
    pub channel: String,
    pub template: String,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub queue: String,
    pub reason: String,
    pub priority: u8,
}

/// What `decide` asks the host to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Send(Send),
    Schedule { name: String, due: Millis },
    Cancel { name: String },
    Milestone { name: String },
    SetState { state: Vec<u8> },
    Assign(VariantAssignment),
    Handoff(Handoff),
    Exit { reason: String },
    Complete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryTrigger {
    pub event: String,
    /// Every key must equal the event's property of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Object>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", content = "property", rename_all = "snake_case")]
pub enum Reentry {
    Never,
    AfterExit,
    Always,
    Keyed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub name: String,
    pub arms: Vec<String>,
    /// Declared through the `allocation` export (contract 0.1.2); `fixed` without it.
    #[serde(default, skip_serializing_if = "Allocation::is_fixed")]
    pub allocation: Allocation,
}

/// What a journey declares about itself through `describe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub description: String,
    pub entry: Vec<EntryTrigger>,
    pub exit_on: Vec<String>,
    pub milestones: Vec<MilestoneSpec>,
    pub goal: Option<String>,
    pub reentry: Reentry,
    pub channels: Vec<String>,
    pub experiments: Vec<ExperimentSpec>,
    /// Declared through the `audience` export (contract 0.1.2); the default for a journey
    /// without it (and for versions stored before it existed): a customer's journey entered by
    /// events only.
    #[serde(default, skip_serializing_if = "Audience::is_default")]
    pub audience: Audience,
}

/// Why a journey's spec cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the spec declares no entry trigger: no customer could ever enter")]
    NoEntry,
    #[error("an entry trigger has an empty event name")]
    EmptyEntryEvent,
    #[error("a milestone has an empty name")]
    EmptyMilestone,
    #[error("milestone `{0}` is declared twice")]
    DuplicateMilestone(String),
    #[error("milestone `{0}` has a stall window that is not positive")]
    NonPositiveStallWindow(String),
    #[error("the goal `{0}` is not a declared milestone")]
    UndeclaredGoal(String),
    #[error("keyed re-entry names an empty property")]
    EmptyReentryKey,
    #[error("experiment `{0}` is unnamed or declared twice")]
    DuplicateExperiment(String),
    #[error("experiment `{0}` needs at least one arm, each named and declared once")]
    BadArms(String),
    #[error("audience trigger `{0}` is unnamed, or its name is used twice")]
    DuplicateAudienceTrigger(String),
    #[error("audience trigger `{0}`: {1}")]
    BadAudienceTrigger(String, String),
}

impl Spec {
    /// Checks what a journey declares before a version is accepted: the one place these rules
    /// live (the sandbox calls it when it reads `describe`'s answer).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.entry.is_empty() && self.audience.triggers.is_empty() {
            return Err(SpecError::NoEntry);
        }
        if self.entry.iter().any(|e| e.event.is_empty()) {
            return Err(SpecError::EmptyEntryEvent);
        }
        let mut names = std::collections::HashSet::new();
        for m in &self.milestones {
            if m.name.is_empty() {
                return Err(SpecError::EmptyMilestone);
            }
            if !names.insert(m.name.as_str()) {
                return Err(SpecError::DuplicateMilestone(m.name.clone()));
            }
            if m.stall_after.is_some_and(|w| w <= 0) {
                return Err(SpecError::NonPositiveStallWindow(m.name.clone()));
            }
        }
        if let Some(goal) = &self.goal {
            if !names.contains(goal.as_str()) {
                return Err(SpecError::UndeclaredGoal(goal.clone()));
            }
        }
        if matches!(&self.reentry, Reentry::Keyed(property) if property.is_empty()) {
            return Err(SpecError::EmptyReentryKey);
        }
        let mut experiments = std::collections::HashSet::new();
        for x in &self.experiments {
            if x.name.is_empty() || !experiments.insert(x.name.as_str()) {
                return Err(SpecError::DuplicateExperiment(x.name.clone()));
            }
            let arms: std::collections::HashSet<&str> = x.arms.iter().map(String::as_str).collect();
            if arms.is_empty() || arms.len() != x.arms.len() || arms.contains("") {
                return Err(SpecError::BadArms(x.name.clone()));
            }
        }
        self.validate_audience()
    }

    /// The shape of the audience triggers (an expression's syntax is checked where the
    /// language lives).
    fn validate_audience(&self) -> Result<(), SpecError> {
        let mut names = std::collections::HashSet::new();
        for t in &self.audience.triggers {
            let name = t.name();
            if name.is_empty() || !names.insert(name) {
                return Err(SpecError::DuplicateAudienceTrigger(name.to_owned()));
            }
            let bad = |why: &str| Err(SpecError::BadAudienceTrigger(name.to_owned(), why.into()));
            match t {
                AudienceTrigger::Inactive { quiet_for, .. } if *quiet_for <= 0 => {
                    return bad("the quiet period must be positive")
                }
                AudienceTrigger::Matches { expression, .. } if expression.trim().is_empty() => {
                    return bad("the expression is empty")
                }
                // Audience triggers (issue 12): a condition that does not parse refuses the
                // version, naming the column.
                AudienceTrigger::Matches { expression, .. } => {
                    if let Err(error) = crate::audience::expr::parse(expression) {
                        return bad(&format!("expression {expression:?}: {error}"));
                    }
                }
                AudienceTrigger::Date { attribute, .. } if attribute.is_empty() => {
                    return bad("the date attribute is unnamed")
                }
                AudienceTrigger::Date { at_minute, .. } if *at_minute >= 24 * 60 => {
                    return bad("the time of day must be under 1440 minutes after midnight")
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Everything `decide` sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionContext {
    pub trigger: Trigger,
    pub customer: Customer,
    pub enrollment: Enrollment,
    pub now: Millis,
    pub seed: u64,
}

/// Delivery counts of one channel in one journey, offered to `decide` through the `stats` import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub channel: String,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// What a channel adapter's `deliver` is handed: one message, rendered for one customer, with
/// the channel's configuration. (WIT still calls it `message`; it becomes `delivery-request`
/// at the next contract bump. In the host, "message" is the record a customer receives.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRequest {
    /// The idempotency key: stable across retries and crash replays.
    pub id: String,
    pub channel: String,
    pub customer: Customer,
    pub template: String,
    pub payload: Value,
    /// The channel registration's settings and secrets, merged into one object.
    pub config: Object,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub provider_id: Option<String>,
    /// What the adapter reported with `delivery-hints.receipt-detail` (0.1.2): a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// Why `deliver` did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum DeliveryError {
    /// Worth retrying later.
    Retryable(String),
    /// Will never succeed as sent.
    Permanent(String),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Retryable(m) => write!(f, "retryable: {m}"),
            DeliveryError::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

/// Where a human handoff stands. Serialized as `open`, `claimed` and `resolved`: the stored
/// tasks and the HTTP API use these words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for someone to take it.
    Open,
    /// Taken by an assignee, not yet resolved.
    Claimed,
    /// Done; the customer's journeys have been told.
    Resolved,
}

impl TaskStatus {
    /// Every status, in the order a task moves through them.
    pub const ALL: [TaskStatus; 3] = [TaskStatus::Open, TaskStatus::Claimed, TaskStatus::Resolved];

    /// The status's word: the same as its JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no [`TaskStatus`] (or no [`Counter`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {word:?}")]
pub struct UnknownWord {
    /// What the word should have named (`task status`, `counter`).
    pub kind: &'static str,
    /// The word as given.
    pub word: String,
}

impl std::str::FromStr for TaskStatus {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownWord {
                kind: "task status",
                word: s.to_string(),
            })
    }
}

/// A per journey and channel delivery counter (what the `stats` import reports). The names
/// are stored as they are in counter keys, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A send was decided for a customer who may receive it.
    Sent,
    /// The adapter confirmed a delivery.
    Delivered,
    /// A message failed for good (a dead letter).
    Failed,
    /// A send was decided for an unsubscribed or suppressed customer and not sent.
    Suppressed,
    /// A send counted [`Sent`](Counter::Sent) when it was decided, then not attempted: its
    /// address was suppressed before delivery (a hard bounce or complaint in between). It
    /// counts as suppressed, and reads take it back out of `sent`, so each message counts once.
    SuppressedLate,
}

impl Counter {
    /// Every counter.
    pub const ALL: [Counter; 5] = [
        Counter::Sent,
        Counter::Delivered,
        Counter::Failed,
        Counter::Suppressed,
        Counter::SuppressedLate,
    ];

    /// The counter's name, as stored in its key.
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Sent => "sent",
            Counter::Delivered => "delivered",
            Counter::Failed => "failed",
            Counter::Suppressed => "suppressed",
            Counter::SuppressedLate => "suppressed_late",
        }
    }
}

impl std::str::FromStr for Counter {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Counter::ALL
            .into_iter()
            .find(|counter| counter.as_str() == s)
            .ok_or_else(|| UnknownWord {
                kind: "counter",
                word: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                stall_after: None,
            }],
            goal: Some("first_value".into()),
            reentry: Reentry::Never,
            channels: vec![],
            experiments: vec![],
            audience: Default::default(),
        }
    }

    #[test]
    fn a_spec_without_entry_or_with_an_undeclared_goal_is_refused() {
        assert!(spec().validate().is_ok());
        let mut no_entry = spec();
        no_entry.entry.clear();
        assert_eq!(no_entry.validate(), Err(SpecError::NoEntry));
        let mut bad_goal = spec();
        bad_goal.goal = Some("nope".into());
        assert_eq!(
            bad_goal.validate(),
            Err(SpecError::UndeclaredGoal("nope".into()))
        );
    }

    #[test]
    fn a_milestone_declared_twice_or_a_non_positive_window_is_refused() {
        let mut twice = spec();
        twice.milestones.push(twice.milestones[0].clone());
        assert_eq!(
            twice.validate(),
            Err(SpecError::DuplicateMilestone("first_value".into()))
        );
        let mut zero = spec();
        zero.milestones[0].stall_after = Some(0);
        assert!(matches!(
            zero.validate(),
            Err(SpecError::NonPositiveStallWindow(_))
        ));
    }

    #[test]
    fn task_statuses_keep_their_stored_words() {
        for status in TaskStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
        }
        assert_eq!(
            ["open", "claimed", "resolved"],
            TaskStatus::ALL.map(TaskStatus::as_str)
        );
        assert!("closed".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn counters_keep_their_stored_names() {
        assert_eq!(
            [
                "sent",
                "delivered",
                "failed",
                "suppressed",
                "suppressed_late"
            ],
            Counter::ALL.map(Counter::as_str)
        );
        for counter in Counter::ALL {
            assert_eq!(counter.as_str().parse::<Counter>(), Ok(counter));
        }
        assert!("opened".parse::<Counter>().is_err());
    }
}
