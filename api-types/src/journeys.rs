//! Journeys (tenant): `PUT /v1/journeys/{name}` uploads a version (the component's bytes,
//! `application/wasm`, no JSON body), `GET /v1/journeys` lists them, `GET /v1/journeys/{name}`
//! shows every version, and `POST /v1/journeys/{name}/decide` asks a stored version what it
//! would decide in a given context (the dry run). The decision vocabulary — [`Spec`],
//! [`DecisionContext`], [`Trigger`], [`Command`] — mirrors the WIT contract.

use crate::customers::{Enrollment, Profile, VariantAssignment};
use crate::events::Event;
use crate::{Millis, Object};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The answer to `PUT /v1/journeys/{name}` (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UploadedJourney {
    /// The journey.
    pub name: String,
    /// The new version: 1, 2, ...
    pub version: u32,
    /// SHA-256 of the component's bytes, hex.
    pub digest: String,
    /// What the component declared through `describe`.
    pub spec: Spec,
    /// Which versions take new entrants now (a draft upload leaves the live one as it was).
    pub rollout: JourneyRollout,
}

/// Which versions of a journey new entrants enter: the answer to
/// `POST /v1/journeys/{name}/promote` and `/rollback`, and part of the journey's listings.
/// Enrollments stay on the version they entered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JourneyRollout {
    /// The journey.
    pub name: String,
    /// The newest stored version, live or draft.
    pub latest_version: u32,
    /// The version new entrants run; `null` while the journey has only drafts.
    pub live_version: Option<u32>,
    /// A version taking a share of new entrants, during a rollout.
    pub candidate: Option<RolloutCandidate>,
    /// Versions live before, oldest first: where `rollback` returns (the last one).
    pub previous_live_versions: Vec<u32>,
}

/// A version being rolled out to a share of new entrants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutCandidate {
    /// The version.
    pub version: u32,
    /// Percent of new entrants (by a stable hash of the customer id) that enter it: 1 to 99.
    pub share_percent: u8,
}

/// The body of `POST /v1/journeys/{name}/promote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// The stored version to promote.
    pub version: u32,
    /// Absent (or 100): the version goes live for every new entrant. 1 to 99: it becomes the
    /// candidate of a rollout, entered by that share of new entrants while the live version
    /// keeps the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_percent: Option<u8>,
}

/// The answer to `GET /v1/journeys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JourneyList {
    /// Every journey of the tenant.
    pub journeys: Vec<JourneySummary>,
}

/// One journey in [`JourneyList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JourneySummary {
    /// The journey.
    pub name: String,
    /// Its latest version.
    pub latest_version: u32,
    /// The version new entrants run; `null` while it has only drafts.
    #[serde(default)]
    pub live_version: Option<u32>,
    /// A version taking a share of new entrants, during a rollout.
    #[serde(default)]
    pub candidate: Option<RolloutCandidate>,
}

/// The answer to `GET /v1/journeys/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JourneyVersions {
    /// The journey.
    pub name: String,
    /// Every version, first first.
    pub versions: Vec<JourneyVersion>,
    /// Which of them take new entrants.
    pub rollout: JourneyRollout,
}

/// One stored version (the host's `store::JourneyVersion`, same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JourneyVersion {
    /// The journey.
    pub name: String,
    /// The version.
    pub version: u32,
    /// SHA-256 of the component's bytes, hex.
    pub digest: String,
    /// What it declared.
    pub spec: Spec,
    /// When it was uploaded.
    pub uploaded_at: Millis,
}

/// What a journey declares about itself through `describe`. Every field is always present;
/// `goal` is `null` when there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Spec {
    /// For people.
    pub description: String,
    /// The events that enroll a customer.
    pub entry: Vec<EntryTrigger>,
    /// Events that end an active enrollment.
    pub exit_on: Vec<String>,
    /// The outcomes the journey measures, in order.
    pub milestones: Vec<MilestoneSpec>,
    /// The milestone that completes the journey.
    pub goal: Option<String>,
    /// Whether and when a customer may enter again.
    pub reentry: Reentry,
    /// The channels it sends through.
    pub channels: Vec<String>,
    /// Its experiments.
    pub experiments: Vec<ExperimentSpec>,
    /// Whose journey it is (contract 0.1.2's `audience` export; `customer` without it).
    #[serde(default)]
    pub subject: Subject,
    /// The entries the host evaluates itself (contract 0.1.2's `audience` export).
    #[serde(default)]
    pub audience: Vec<AudienceTrigger>,
}

/// Whose journey an enrollment is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// One enrollment per customer.
    #[default]
    Customer,
    /// One enrollment per account; the events of any member route to it.
    Account,
}

/// An entry the host evaluates itself, tagged by `kind`; each enters with a synthetic event
/// named `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AudienceTrigger {
    /// None of `events` (any event when empty) for `quiet_for` milliseconds.
    Inactive {
        /// The entry event's name.
        name: String,
        /// The events that count as activity.
        events: Vec<String>,
        /// Milliseconds without them.
        quiet_for: Millis,
    },
    /// The customer starts to match `expression`.
    Matches {
        /// The entry event's name.
        name: String,
        /// In the expression language of docs/API.md.
        expression: String,
        /// Whether the enrollment ends when the customer stops matching.
        exit_when_unmatched: bool,
    },
    /// `offset_days` after (negative: before) the date in `attribute`, at `at_minute` after
    /// local midnight.
    Date {
        /// The entry event's name.
        name: String,
        /// The attribute holding the date.
        attribute: String,
        /// Days after the date; negative: before.
        offset_days: i32,
        /// Minutes after local midnight.
        at_minute: u16,
    },
}

/// An event that enrolls a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EntryTrigger {
    /// The event's name.
    pub event: String,
    /// Every key must equal the event's property of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Object>,
}

/// A declared milestone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MilestoneSpec {
    /// Its name.
    pub name: String,
    /// The time allowed to reach it after the latest progress, before it stalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after: Option<Millis>,
}

/// The re-entry policy: `{"policy": "never" | "after_exit" | "always"}` or
/// `{"policy": "keyed", "property": name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "policy", content = "property", rename_all = "snake_case")]
pub enum Reentry {
    /// Once per customer.
    Never,
    /// Again once the previous run ended.
    AfterExit,
    /// Every entry event starts a run.
    Always,
    /// One run per value of this event property.
    Keyed(String),
}

/// A declared experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExperimentSpec {
    /// Its name.
    pub name: String,
    /// Its arms.
    pub arms: Vec<String>,
    /// How the journey allocates it (issue 13, the `allocation` export); absent: `fixed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<ExperimentAllocation>,
}

/// An experiment's declared allocation other than a fixed split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExperimentAllocation {
    /// `thompson`: Thompson sampling on `goal`.
    pub mode: String,
    /// The milestone it optimises; absent: the journey's goal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
}

/// The body of `POST /v1/journeys/{name}/decide`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// The version to ask; the latest when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// What `decide` sees.
    pub context: DecisionContext,
    /// What the `stats` import answers; none when left out.
    #[serde(default)]
    pub stats: Vec<ChannelStats>,
    /// What `stats.by-arm` answers (issue 13), in place of the journey's live arm
    /// statistics: when left out, the version's arms as a live `decide` at `context.now`
    /// reads them (counted as of the start of that hour of journey time); `[]` gives none.
    /// Each entry names an experiment and arm the version declares, at most once; the goal
    /// is the experiment's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm_stats: Option<Vec<ArmStatsGiven>>,
}

/// One arm's numbers given to a dry-run `decide` (issue 13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ArmStatsGiven {
    pub experiment: String,
    pub arm: String,
    /// Enrollments first assigned the arm.
    pub entered: u64,
    /// Of which reached the experiment's goal (at most `entered`).
    pub converted: u64,
}

/// Everything `decide` sees (the host's `model::DecisionContext`, same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DecisionContext {
    /// Why it runs.
    pub trigger: Trigger,
    /// Who it is about.
    pub customer: Profile,
    /// The customer's run in the journey.
    pub enrollment: Enrollment,
    /// The trigger's now.
    pub now: Millis,
    /// The seed of the guest's randomness.
    pub seed: u64,
}

/// Why `decide` runs, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// The event that enrolled the customer.
    Entered {
        /// The event.
        event: Event,
    },
    /// A later event of the customer.
    Event {
        /// The event.
        event: Event,
    },
    /// A timer came due.
    Timer {
        /// The timer's name.
        name: String,
    },
    /// A milestone was not reached in time.
    Stalled {
        /// The milestone.
        milestone: String,
    },
    /// A message's delivery succeeded or failed.
    Delivery {
        /// What happened.
        report: DeliveryReport,
    },
}

/// The fate of one message, as `decide` hears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeliveryReport {
    /// The message.
    pub message_id: String,
    /// Its channel.
    pub channel: String,
    /// Its template.
    pub template: String,
    /// Delivered or failed.
    pub outcome: DeliveryOutcome,
}

/// Delivered or failed, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The channel took it.
    Delivered {
        /// The provider's id, if it gave one.
        provider_id: Option<String>,
    },
    /// For good.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Delivery counts of one channel in one journey, as the `stats` import answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelStats {
    /// The channel.
    pub channel: String,
    /// Sends.
    pub sent: u64,
    /// Deliveries.
    pub delivered: u64,
    /// Failures.
    pub failed: u64,
}

/// The answer to `POST /v1/journeys/{name}/decide`: what the version decided, with no effect
/// on anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Decided {
    /// The journey.
    pub name: String,
    /// The version that decided: the one asked for, or the latest.
    pub version: u32,
    /// The commands, in order.
    pub commands: Vec<Command>,
}

impl Decided {
    /// The payloads of the sends of `template`, in order.
    pub fn payloads(&self, template: &str) -> Vec<&Value> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::Send(send) if send.template == template => Some(&send.payload),
                _ => None,
            })
            .collect()
    }
}

/// What `decide` asks the host to do, tagged by `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Send a message.
    Send(Send),
    /// Set (or move) a timer.
    Schedule {
        /// The timer's name.
        name: String,
        /// When it fires.
        due: Millis,
    },
    /// Cancel a timer.
    Cancel {
        /// The timer's name.
        name: String,
    },
    /// Record a milestone.
    Milestone {
        /// The milestone.
        name: String,
    },
    /// Replace the enrollment's state.
    SetState {
        /// The new state bytes.
        state: Vec<u8>,
    },
    /// Assign an experiment arm.
    Assign(VariantAssignment),
    /// Hand the customer to people: a task in a queue.
    Handoff(Handoff),
    /// End the run early.
    Exit {
        /// Why.
        reason: String,
    },
    /// End the run as completed.
    Complete,
}

/// A send decided by a journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Send {
    /// The channel.
    pub channel: String,
    /// The template.
    pub template: String,
    /// The template's data.
    pub payload: Value,
}

/// A handoff to a human queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Handoff {
    /// The queue.
    pub queue: String,
    /// Why, for the person who picks it up.
    pub reason: String,
    /// Lower is more urgent.
    pub priority: u8,
}

// Migrations (issue 13) -----------------------------------------------------------------------

/// The body of `POST /v1/journeys/{name}/migrate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Migrate {
    /// The version enrollments leave: every active enrollment on it moves.
    pub from: u32,
    /// The version they move to; its component must export `migration` (contract 0.1.1).
    pub to: u32,
    /// Only these customers' enrollments (at most 10,000); absent: every customer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers: Option<Vec<String>>,
}

/// A migration: as requested, and what became of its enrollments so far
/// (`POST /v1/journeys/{name}/migrate` answers it with nothing done yet;
/// `GET /v1/journeys/{name}/migrations/{id}` as it goes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MigrationStatus {
    pub id: String,
    pub journey: String,
    pub from: u32,
    pub to: u32,
    /// When it was requested, in journey time.
    pub requested_at: Millis,
    /// Enrollments queued to move.
    pub queued: u64,
    /// Moved to `to`, adapted by its `migrate`.
    pub moved: u64,
    /// Refused by `to`'s `migrate` (an `err`, a trap, a deadline, refused commands): still on
    /// `from`, untouched.
    pub refused: u64,
    /// No longer active on `from` when their turn came.
    pub skipped: u64,
    /// Not processed yet.
    pub pending: u64,
    /// Each refusal, in customer order (the first 1,000).
    pub refusals: Vec<MigrationRefusal>,
}

/// One enrollment a migration could not move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MigrationRefusal {
    pub customer: String,
    pub run: u32,
    /// As trigger failures name it: `guest_error`, `trap`, `deadline`, `memory`,
    /// `invalid_commands`, ...
    pub reason: String,
    pub message: String,
}
