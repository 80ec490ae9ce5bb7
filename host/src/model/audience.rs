//! What a journey declares through the `audience` export (contract 0.1.2): whose journey it is
//! ([`Subject`]) and the entries the host evaluates itself ([`AudienceTrigger`]), kept in
//! [`Spec::audience`](super::Spec::audience).

use super::Millis;
use serde::{Deserialize, Serialize};

/// Whose journey an enrollment is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// One enrollment per customer.
    #[default]
    Customer,
    /// One enrollment per account (set by `group`); the events of any member route to it.
    Account,
}

/// An entry the host evaluates itself, rather than an event the tenant posts. Each enters a
/// customer with a synthetic event of the trigger's `name` (what `decide` sees in `entered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AudienceTrigger {
    /// None of `events` (any event when empty) for `quiet_for`.
    Inactive {
        name: String,
        events: Vec<String>,
        quiet_for: Millis,
    },
    /// The customer starts to match `expression` (the host's expression language).
    Matches {
        name: String,
        expression: String,
        exit_when_unmatched: bool,
    },
    /// `offset_days` after (negative: before) the date in `attribute`, at `at_minute` after
    /// local midnight in the customer's time zone.
    Date {
        name: String,
        attribute: String,
        offset_days: i32,
        at_minute: u16,
    },
}

impl AudienceTrigger {
    /// The synthetic entry event's name.
    pub fn name(&self) -> &str {
        match self {
            AudienceTrigger::Inactive { name, .. }
            | AudienceTrigger::Matches { name, .. }
            | AudienceTrigger::Date { name, .. } => name,
        }
    }
}

/// What a journey declares through the `audience` export (contract 0.1.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    #[serde(default)]
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<AudienceTrigger>,
}

impl Audience {
    pub fn is_default(&self) -> bool {
        *self == Audience::default()
    }
}
