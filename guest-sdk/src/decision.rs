//! What `decide` returns: a [`Decision`], an ordered list of [`Command`]s built fluently.
//!
//! ```
//! use waymark_guest::{days, json, Command, Context, Decision, Event};
//!
//! let ctx = Context::entered(Event::new("signed_up")).at(1_000);
//! let decision = Decision::new()
//!     .send("webhook", "welcome", json!({"customer_id": ctx.customer.id}))
//!     .schedule_in("nudge", days(3), &ctx);
//!
//! assert_eq!(decision.commands()[1], Command::Schedule { name: "nudge".into(), due: 1_000 + days(3) });
//! assert_eq!(decision.sends().count(), 1);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::Context;
use crate::time::{Duration, Timestamp};

/// One thing a decision asks the host to do. The host applies them in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Send a message through a channel the spec declares.
    Send {
        /// The channel's name, as registered by the tenant.
        channel: String,
        /// The template the adapter renders.
        template: String,
        /// A JSON object handed to the channel adapter.
        payload: Value,
    },
    /// Set (or reset) the named timer to fire at `due`.
    Schedule {
        /// The timer's name; the `Timer` trigger carries it back.
        name: String,
        /// When it fires.
        due: Timestamp,
    },
    /// Cancel the named timer; a no-op when it is not pending.
    Cancel(String),
    /// Record a milestone; recorded once, the first time.
    Milestone(String),
    /// Replace the journey's stored state.
    SetState(Vec<u8>),
    /// Record the customer's arm of an experiment.
    Assign {
        /// The experiment's name, as the spec declares it.
        experiment: String,
        /// The arm.
        arm: String,
    },
    /// Hand the customer to a human queue.
    Handoff {
        /// The queue, e.g. `cs` or `sales`.
        queue: String,
        /// What the human should know.
        reason: String,
        /// 0 is the most urgent.
        priority: u8,
    },
    /// Leave the journey, with a reason.
    Exit(String),
    /// Finish the journey successfully.
    Complete,
}

/// The commands `decide` returns, in order. Build one with [`Decision::new`] and the builder
/// methods; an empty decision means "nothing to do".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    commands: Vec<Command>,
}

impl Decision {
    /// An empty decision: nothing to do.
    pub fn new() -> Self {
        Decision::default()
    }

    /// Appends any command.
    pub fn push(mut self, command: Command) -> Self {
        self.commands.push(command);
        self
    }

    /// Sends `template` through `channel` with `payload` (a JSON object; the host refuses
    /// anything else).
    pub fn send(
        self,
        channel: impl Into<String>,
        template: impl Into<String>,
        payload: Value,
    ) -> Self {
        self.push(Command::Send {
            channel: channel.into(),
            template: template.into(),
            payload,
        })
    }

    /// Sets (or resets) timer `name` to fire at `due`.
    pub fn schedule(self, name: impl Into<String>, due: Timestamp) -> Self {
        self.push(Command::Schedule {
            name: name.into(),
            due,
        })
    }

    /// Sets (or resets) timer `name` to fire `after` from the context's `now`.
    pub fn schedule_in(self, name: impl Into<String>, after: Duration, ctx: &Context) -> Self {
        self.schedule(name, ctx.after(after))
    }

    /// Cancels timer `name`; a no-op when it is not pending.
    pub fn cancel(self, name: impl Into<String>) -> Self {
        self.push(Command::Cancel(name.into()))
    }

    /// Records milestone `name` (once, the first time). Reaching the spec's goal completes the
    /// enrollment.
    pub fn milestone(self, name: impl Into<String>) -> Self {
        self.push(Command::Milestone(name.into()))
    }

    /// Replaces the journey's stored state, read back as
    /// [`Enrollment::state`](crate::Enrollment::state) on the next trigger.
    pub fn set_state(self, state: impl Into<Vec<u8>>) -> Self {
        self.push(Command::SetState(state.into()))
    }

    /// Replaces the journey's stored state with `state` as JSON, read back with
    /// [`Enrollment::state_json`](crate::Enrollment::state_json). A value that cannot be JSON
    /// (a map with non-string keys) stores nothing: the previous state stays.
    pub fn set_state_json<T: Serialize + ?Sized>(self, state: &T) -> Self {
        match serde_json::to_vec(state) {
            Ok(bytes) => self.set_state(bytes),
            Err(_) => self,
        }
    }

    /// Records the customer's `arm` of `experiment`, so reports split by arm.
    pub fn assign(self, experiment: impl Into<String>, arm: impl Into<String>) -> Self {
        self.push(Command::Assign {
            experiment: experiment.into(),
            arm: arm.into(),
        })
    }

    /// Hands the customer to the human queue `queue`, with a `reason` and a `priority`
    /// (0 is the most urgent).
    pub fn handoff(
        self,
        queue: impl Into<String>,
        reason: impl Into<String>,
        priority: u8,
    ) -> Self {
        self.push(Command::Handoff {
            queue: queue.into(),
            reason: reason.into(),
            priority,
        })
    }

    /// Leaves the journey without completing it.
    pub fn exit(self, reason: impl Into<String>) -> Self {
        self.push(Command::Exit(reason.into()))
    }

    /// Finishes the journey successfully.
    pub fn complete(self) -> Self {
        self.push(Command::Complete)
    }

    /// The commands, in order.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// The commands, in order, by value.
    pub fn into_commands(self) -> Vec<Command> {
        self.commands
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The sends, in order, as `(channel, template, payload)`.
    pub fn sends(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.commands.iter().filter_map(|c| match c {
            Command::Send {
                channel,
                template,
                payload,
            } => Some((channel.as_str(), template.as_str(), payload)),
            _ => None,
        })
    }

    /// The timers scheduled, in order, as `(name, due)`.
    pub fn schedules(&self) -> impl Iterator<Item = (&str, Timestamp)> {
        self.commands.iter().filter_map(|c| match c {
            Command::Schedule { name, due } => Some((name.as_str(), *due)),
            _ => None,
        })
    }

    /// The milestones recorded, in order.
    pub fn milestones(&self) -> impl Iterator<Item = &str> {
        self.commands.iter().filter_map(|c| match c {
            Command::Milestone(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether the decision completes the journey.
    pub fn completes(&self) -> bool {
        self.commands.contains(&Command::Complete)
    }

    /// Whether the decision exits the journey.
    pub fn exits(&self) -> bool {
        self.commands.iter().any(|c| matches!(c, Command::Exit(_)))
    }
}

impl From<Decision> for Vec<Command> {
    fn from(decision: Decision) -> Self {
        decision.commands
    }
}

impl FromIterator<Command> for Decision {
    fn from_iter<I: IntoIterator<Item = Command>>(iter: I) -> Self {
        Decision {
            commands: iter.into_iter().collect(),
        }
    }
}

impl Extend<Command> for Decision {
    fn extend<I: IntoIterator<Item = Command>>(&mut self, iter: I) {
        self.commands.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{days, hours};
    use crate::Event;
    use serde_json::json;

    #[test]
    fn builder_keeps_commands_in_order() {
        let ctx = Context::timer("t").at(10);
        let d = Decision::new()
            .send("email", "hello", json!({"a": 1}))
            .schedule("check", 500)
            .schedule_in("nudge", hours(1), &ctx)
            .cancel("old")
            .milestone("activated")
            .set_state(vec![1, 2])
            .assign("copy", "b")
            .handoff("cs", "stuck", 1)
            .exit("unsubscribed")
            .complete();
        assert_eq!(
            d.commands(),
            &[
                Command::Send {
                    channel: "email".into(),
                    template: "hello".into(),
                    payload: json!({"a": 1})
                },
                Command::Schedule {
                    name: "check".into(),
                    due: 500
                },
                Command::Schedule {
                    name: "nudge".into(),
                    due: 10 + hours(1)
                },
                Command::Cancel("old".into()),
                Command::Milestone("activated".into()),
                Command::SetState(vec![1, 2]),
                Command::Assign {
                    experiment: "copy".into(),
                    arm: "b".into()
                },
                Command::Handoff {
                    queue: "cs".into(),
                    reason: "stuck".into(),
                    priority: 1
                },
                Command::Exit("unsubscribed".into()),
                Command::Complete,
            ]
        );
    }

    #[test]
    fn empty_decision_does_nothing() {
        let d = Decision::new();
        assert!(d.is_empty());
        assert!(!d.completes() && !d.exits());
        assert_eq!(d.into_commands(), vec![]);
    }

    #[test]
    fn schedule_in_is_relative_to_now() {
        let ctx = Context::entered(Event::new("signed_up")).at(1_000);
        let d = Decision::new().schedule_in("nudge", days(3), &ctx);
        assert_eq!(
            d.schedules().collect::<Vec<_>>(),
            vec![("nudge", 1_000 + days(3))]
        );
    }

    #[test]
    fn inspection_helpers_filter_by_kind() {
        let d = Decision::new()
            .send("webhook", "welcome", json!({}))
            .milestone("first_value")
            .complete();
        assert_eq!(
            d.sends().map(|(c, t, _)| (c, t)).collect::<Vec<_>>(),
            vec![("webhook", "welcome")]
        );
        assert_eq!(d.milestones().collect::<Vec<_>>(), vec!["first_value"]);
        assert!(d.completes());
    }

    #[test]
    fn decisions_collect_and_extend() {
        let mut d: Decision = vec![Command::Complete].into_iter().collect();
        d.extend([Command::Exit("x".into())]);
        assert_eq!(Vec::from(d).len(), 2);
    }
}
