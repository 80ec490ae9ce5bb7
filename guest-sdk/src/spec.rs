//! What a journey declares about itself in `describe`: a [`Spec`], built fluently.
//!
//! ```
//! use waymark_guest::{days, json, Reentry, Spec};
//!
//! let spec = Spec::new("Onboarding to first value")
//!     .enter_on("signed_up")
//!     .enter_on_where("plan_changed", json!({"plan": "trial"}))
//!     .exit_on("account_deleted")
//!     .milestone("activated", Some(days(2)))
//!     .milestone("first_value", Some(days(7)))
//!     .goal("first_value")
//!     .reentry(Reentry::AfterExit)
//!     .channel("webhook")
//!     .experiment("welcome_copy", &["control", "short"]);
//!
//! assert_eq!(spec.entry.len(), 2);
//! assert_eq!(spec.goal.as_deref(), Some("first_value"));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::calendar::TimeOfDay;
use crate::time::Duration;

/// An event that enrolls a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryTrigger {
    /// The event's name.
    pub event: String,
    /// A JSON object; every key must equal the event's property of the same name.
    pub filter: Option<Value>,
}

/// A milestone the journey declares, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneSpec {
    /// The milestone's name.
    pub name: String,
    /// The time allowed to reach this milestone after the latest progress (entry, the previous
    /// milestone, or the previous stall). When it passes, the host records a stall and calls
    /// `decide` with [`Trigger::Stalled`](crate::Trigger::Stalled) naming this milestone; a
    /// customer who stays stuck stalls again after another window.
    pub stall_after: Option<Duration>,
}

/// Whether a customer may enter the same journey again.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Once per customer, ever. The default.
    #[default]
    Never,
    /// Again once the previous run has ended.
    AfterExit,
    /// On every entry trigger, beside running enrollments.
    Always,
    /// One run per distinct value of this event property (e.g. an order id).
    Keyed(String),
}

/// An A/B test on a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    /// The experiment's name.
    pub name: String,
    /// Its arms.
    pub arms: Vec<String>,
    /// How customers are allocated to its arms (contract 0.1.2): reported by the host; the
    /// journey does the allocating ([`assign_arm`](crate::assign_arm) or
    /// [`thompson_arm`](crate::thompson_arm)).
    #[serde(default)]
    pub allocation: Allocation,
}

/// How an experiment allocates customers to arms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Allocation {
    /// A fixed split: [`assign_arm`](crate::assign_arm), a hash of the customer.
    #[default]
    Fixed,
    /// Thompson sampling on `goal`, a declared milestone:
    /// [`thompson_arm`](crate::thompson_arm).
    Thompson {
        /// The milestone the experiment optimises.
        goal: String,
    },
}

/// What a journey declares about itself: entry triggers, exit events, milestones, goal,
/// re-entry policy, channels and experiments. Build one with [`Spec::new`] and the builder
/// methods; every list starts empty and re-entry starts as [`Reentry::Never`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// A human description, shown in the API.
    pub description: String,
    /// Events that enroll a customer.
    pub entry: Vec<EntryTrigger>,
    /// Events that end an enrollment without asking the journey.
    pub exit_on: Vec<String>,
    /// Milestones, in order.
    pub milestones: Vec<MilestoneSpec>,
    /// Reaching this milestone completes the enrollment.
    pub goal: Option<String>,
    /// Whether a customer may enter again.
    pub reentry: Reentry,
    /// Channels the journey sends through.
    pub channels: Vec<String>,
    /// Experiments the journey runs.
    pub experiments: Vec<ExperimentSpec>,
    /// Whose journey it is (contract 0.1.2): a customer's unless [`Spec::for_accounts`].
    pub subject: Subject,
    /// Entries the host evaluates itself (contract 0.1.2): inactivity, conditions, dates.
    pub audience: Vec<AudienceTrigger>,
}

/// Whose journey an enrollment is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subject {
    /// One enrollment per customer.
    #[default]
    Customer,
    /// One enrollment per account (set by `group`): the events of any member route to it.
    Account,
}

/// An entry the host evaluates itself. Each enters the customer with a synthetic event named
/// `name`, which `decide` sees as [`Trigger::Entered`](crate::Trigger::Entered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AudienceTrigger {
    /// None of `events` (any event when empty) for `quiet_for`.
    Inactive {
        /// The entry event's name.
        name: String,
        /// The events that count as activity.
        events: Vec<String>,
        /// How long without them.
        quiet_for: Duration,
    },
    /// The customer starts to match `expression`, in the host's expression language over their
    /// attributes (and `account.<trait>`), evaluated on identify, group and the clock.
    Matches {
        /// The entry event's name.
        name: String,
        /// The expression (see the host's `docs/API.md`).
        expression: String,
        /// Whether the enrollment ends when the customer stops matching.
        exit_when_unmatched: bool,
    },
    /// `offset_days` after (negative: before) the date in `attribute`, at `at` local time in
    /// the customer's time zone (attribute `timezone`, else UTC).
    Date {
        /// The entry event's name.
        name: String,
        /// The attribute holding the date (`YYYY-MM-DD` or RFC 3339).
        attribute: String,
        /// Days after the date; negative: before.
        offset_days: i32,
        /// The local time of day.
        at: TimeOfDay,
    },
}

impl Spec {
    /// An empty spec with this description.
    pub fn new(description: impl Into<String>) -> Self {
        Spec {
            description: description.into(),
            entry: Vec::new(),
            exit_on: Vec::new(),
            milestones: Vec::new(),
            goal: None,
            reentry: Reentry::Never,
            channels: Vec::new(),
            experiments: Vec::new(),
            subject: Subject::Customer,
            audience: Vec::new(),
        }
    }

    /// Makes this an account's journey (contract 0.1.2): one enrollment per account, entered
    /// and moved on by the events of any of its members.
    pub fn for_accounts(mut self) -> Self {
        self.subject = Subject::Account;
        self
    }

    /// Enrolls a customer who has done none of `events` (any event when empty) for
    /// `quiet_for`, with a synthetic entry event named `name` (contract 0.1.2).
    pub fn enter_when_inactive(
        mut self,
        name: impl Into<String>,
        events: &[&str],
        quiet_for: Duration,
    ) -> Self {
        self.audience.push(AudienceTrigger::Inactive {
            name: name.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            quiet_for,
        });
        self
    }

    /// Enrolls a customer when they start to match `expression`, with a synthetic entry event
    /// named `name`; with `exit_when_unmatched`, the enrollment ends when they stop matching
    /// (contract 0.1.2).
    pub fn enter_when(
        mut self,
        name: impl Into<String>,
        expression: impl Into<String>,
        exit_when_unmatched: bool,
    ) -> Self {
        self.audience.push(AudienceTrigger::Matches {
            name: name.into(),
            expression: expression.into(),
            exit_when_unmatched,
        });
        self
    }

    /// Enrolls a customer `offset_days` after (negative: before) the date in `attribute`, at
    /// `at` in their time zone, with a synthetic entry event named `name` (contract 0.1.2).
    pub fn enter_on_date(
        mut self,
        name: impl Into<String>,
        attribute: impl Into<String>,
        offset_days: i32,
        at: TimeOfDay,
    ) -> Self {
        self.audience.push(AudienceTrigger::Date {
            name: name.into(),
            attribute: attribute.into(),
            offset_days,
            at,
        });
        self
    }

    /// Enrolls customers on every event named `event`.
    pub fn enter_on(mut self, event: impl Into<String>) -> Self {
        self.entry.push(EntryTrigger {
            event: event.into(),
            filter: None,
        });
        self
    }

    /// Enrolls customers on events named `event` whose properties match `filter`, a JSON object
    /// whose every key must equal the event's property of the same name.
    pub fn enter_on_where(mut self, event: impl Into<String>, filter: Value) -> Self {
        self.entry.push(EntryTrigger {
            event: event.into(),
            filter: Some(filter),
        });
        self
    }

    /// Ends enrollments, without asking the journey, on events named `event`.
    pub fn exit_on(mut self, event: impl Into<String>) -> Self {
        self.exit_on.push(event.into());
        self
    }

    /// Declares the next milestone, with an optional stall window: how long a customer may take
    /// to reach it (see [`MilestoneSpec::stall_after`]).
    pub fn milestone(mut self, name: impl Into<String>, stall_after: Option<Duration>) -> Self {
        self.milestones.push(MilestoneSpec {
            name: name.into(),
            stall_after,
        });
        self
    }

    /// Declares the goal milestone: reaching it completes the enrollment.
    pub fn goal(mut self, milestone: impl Into<String>) -> Self {
        self.goal = Some(milestone.into());
        self
    }

    /// Sets the re-entry policy.
    pub fn reentry(mut self, reentry: Reentry) -> Self {
        self.reentry = reentry;
        self
    }

    /// Declares a channel the journey sends through.
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channels.push(name.into());
        self
    }

    /// Declares an experiment and its arms.
    pub fn experiment(mut self, name: impl Into<String>, arms: &[&str]) -> Self {
        self.experiments.push(ExperimentSpec {
            name: name.into(),
            arms: arms.iter().map(|a| a.to_string()).collect(),
            allocation: Allocation::Fixed,
        });
        self
    }

    /// Declares an experiment whose arms are allocated adaptively: Thompson sampling on
    /// `goal_milestone` (a milestone this spec declares). Pick arms with
    /// [`thompson_arm`](crate::thompson_arm); the host's report shows the allocation as
    /// `thompson` and compares the arms on this milestone.
    pub fn adaptive_experiment(
        mut self,
        name: impl Into<String>,
        arms: &[&str],
        goal_milestone: impl Into<String>,
    ) -> Self {
        self.experiments.push(ExperimentSpec {
            name: name.into(),
            arms: arms.iter().map(|a| a.to_string()).collect(),
            allocation: Allocation::Thompson {
                goal: goal_milestone.into(),
            },
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::days;
    use serde_json::json;

    #[test]
    fn new_spec_is_empty_and_never_reenters() {
        let spec = Spec::new("d");
        assert_eq!(spec.description, "d");
        assert!(spec.entry.is_empty() && spec.exit_on.is_empty() && spec.milestones.is_empty());
        assert!(spec.channels.is_empty() && spec.experiments.is_empty());
        assert_eq!(spec.goal, None);
        assert_eq!(spec.reentry, Reentry::Never);
    }

    #[test]
    fn builder_records_everything_in_order() {
        let spec = Spec::new("d")
            .enter_on("a")
            .enter_on_where("b", json!({"plan": "pro"}))
            .exit_on("gone")
            .milestone("m1", None)
            .milestone("m2", Some(days(7)))
            .goal("m2")
            .reentry(Reentry::Keyed("order_id".into()))
            .channel("webhook")
            .channel("email")
            .experiment("copy", &["a", "b"]);
        assert_eq!(
            spec.entry,
            vec![
                EntryTrigger {
                    event: "a".into(),
                    filter: None
                },
                EntryTrigger {
                    event: "b".into(),
                    filter: Some(json!({"plan": "pro"}))
                },
            ]
        );
        assert_eq!(spec.exit_on, vec!["gone"]);
        assert_eq!(
            spec.milestones,
            vec![
                MilestoneSpec {
                    name: "m1".into(),
                    stall_after: None
                },
                MilestoneSpec {
                    name: "m2".into(),
                    stall_after: Some(days(7))
                },
            ]
        );
        assert_eq!(spec.goal.as_deref(), Some("m2"));
        assert_eq!(spec.reentry, Reentry::Keyed("order_id".into()));
        assert_eq!(spec.channels, vec!["webhook", "email"]);
        assert_eq!(
            spec.experiments,
            vec![ExperimentSpec {
                name: "copy".into(),
                arms: vec!["a".into(), "b".into()],
                allocation: Allocation::Fixed,
            }]
        );
    }
}
