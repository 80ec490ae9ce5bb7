//! `GET /v1/customers/{id}` (tenant): a customer's attributes, their enrollments in every
//! journey, and the messages sent to them; `GET /v1/customers/{id}/events`: their latest
//! events.

use crate::messages::Message;
use crate::{Millis, Object};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The answer to `GET /v1/customers/{id}/events`: the customer's latest processed events,
/// newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CustomerEvents {
    pub events: Vec<crate::events::Event>,
}

/// The answer to `GET /v1/customers/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Customer {
    /// The tenant's id for the customer.
    pub id: String,
    /// Set by `identify` events (and `unsubscribed`).
    pub attributes: Object,
    /// Every run in every journey.
    pub enrollments: Vec<Enrollment>,
    /// Every message decided for the customer.
    pub messages: Vec<Message>,
    /// The account `group` put the customer in (issue 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl Customer {
    /// The customer's latest run in `journey`.
    pub fn enrollment(&self, journey: &str) -> Option<&Enrollment> {
        self.enrollments
            .iter()
            .filter(|e| e.journey == journey)
            .max_by_key(|e| e.run)
    }

    /// Every run of the customer in `journey`, first run first.
    pub fn enrollments_in(&self, journey: &str) -> Vec<&Enrollment> {
        let mut runs: Vec<&Enrollment> = self
            .enrollments
            .iter()
            .filter(|e| e.journey == journey)
            .collect();
        runs.sort_by_key(|e| e.run);
        runs
    }

    /// The messages of `template`, in the order they were decided.
    pub fn messages_with_template(&self, template: &str) -> Vec<&Message> {
        self.messages
            .iter()
            .filter(|m| m.template == template)
            .collect()
    }
}

/// A customer as journeys see them (`customer` of a
/// [`DecisionContext`](crate::journeys::DecisionContext); the host's `model::Customer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Profile {
    /// The tenant's id for the customer.
    pub id: String,
    /// The customer's attributes.
    #[serde(default)]
    pub attributes: Object,
}

/// One customer in one journey version (the host's `model::Enrollment`, same shape: it is
/// also the input of a dry-run decision, so the same fields default when left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Enrollment {
    /// `{journey}/{customer}/{run}`.
    pub id: String,
    /// The journey's name.
    pub journey: String,
    /// The journey version the customer entered.
    pub version: u32,
    /// The customer's id.
    pub customer: String,
    /// 1 for the first run of this customer in this journey, then 2, 3, ...
    pub run: u32,
    /// The re-entry key's value, for journeys keyed by an event property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Active, completed or exited.
    pub status: EnrollmentStatus,
    /// When the customer entered.
    pub entered_at: Millis,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Millis>,
    /// Why the run exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// Milestones reached, in order.
    #[serde(default)]
    pub milestones: Vec<MilestoneHit>,
    /// Every stall so far: the milestone not reached in time, and when.
    #[serde(default)]
    pub stalls: Vec<MilestoneHit>,
    /// The milestone the enrollment is stalled on now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_on: Option<String>,
    /// The journey's own state bytes.
    #[serde(default)]
    pub state: Vec<u8>,
    /// Timers pending.
    #[serde(default)]
    pub timers: Vec<PendingTimer>,
    /// Experiment arms the customer was assigned.
    #[serde(default)]
    pub variants: Vec<VariantAssignment>,
    /// Sends and their fates, per channel.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSummary>,
    /// Why the last trigger failed, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The most recent failed triggers (at most 10), oldest first; a later success does not
    /// clear them. Left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// Triggers and sends counted against the loop budgets in the current window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_window: Option<LoopWindow>,
    /// Set while the enrollment is paused for going over a loop budget: its triggers wait
    /// until `POST /v1/customers/{id}/enrollments/{journey}/resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
}

/// See [`Enrollment::loop_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoopWindow {
    /// When the window began (journey time).
    pub since: Millis,
    /// Triggers run in it.
    pub triggers: u64,
    /// Sends decided in it.
    pub sends: u64,
}

/// See [`Enrollment::paused`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pause {
    /// Which budget, and its numbers.
    pub reason: String,
    /// When (journey time).
    pub at: Millis,
}

impl Enrollment {
    /// The milestone `name`, if reached.
    pub fn milestone(&self, name: &str) -> Option<&MilestoneHit> {
        self.milestones.iter().find(|m| m.name == name)
    }

    /// The pending timer `name`, if any.
    pub fn timer(&self, name: &str) -> Option<&PendingTimer> {
        self.timers.iter().find(|t| t.name == name)
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentStatus {
    /// Still in the journey.
    Active,
    /// Reached the end the journey wanted.
    Completed,
    /// Left early (`exit_reason`).
    Exited,
}

/// A milestone reached (or stalled on), and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MilestoneHit {
    /// The milestone.
    pub name: String,
    /// When.
    pub at: Millis,
}

/// A timer the journey scheduled (names starting with `$` are the host's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PendingTimer {
    /// The timer's name.
    pub name: String,
    /// When it fires (journey time).
    pub due: Millis,
}

/// An experiment arm assigned to an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VariantAssignment {
    /// The experiment.
    pub experiment: String,
    /// The arm.
    pub arm: String,
}

/// Sends and their fates through one channel, for one enrollment (or one funnel of a report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelSummary {
    /// Sends decided and queued.
    pub sent: u64,
    /// Delivered by the channel.
    pub delivered: u64,
    /// Failed for good.
    pub failed: u64,
    /// Decided but not sent: the customer is unsubscribed or suppressed.
    #[serde(default)]
    pub suppressed: u64,
    /// Tracking events naming one of the messages.
    #[serde(default)]
    pub opened: u64,
    /// See `opened`.
    #[serde(default)]
    pub clicked: u64,
    /// See `opened`.
    #[serde(default)]
    pub replied: u64,
    /// See `opened`.
    #[serde(default)]
    pub bounced: u64,
    /// See `opened`.
    #[serde(default)]
    pub unsubscribed: u64,
}

/// Why a trigger of an enrollment failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Failure {
    /// The trigger's kind: `entered`, `event`, `timer`, ...
    pub trigger: String,
    /// `trap`, `deadline`, `memory`, `guest_error`, `invalid_commands`, `instantiate`, ...
    pub reason: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The trigger's now.
    pub at: Millis,
}
