//! The names a journey's commands carry, checked before they are applied: they end up in
//! trigger ids, idempotency-key inputs, store keys, headers and logs, so each must be short
//! and plain. A command that breaks a rule fails the trigger as `invalid_commands`, with a
//! message naming the command's index and the rule.
//!
//! - Channels (`send`): the API's name rule for channels, journeys and tenants (1 to
//!   [`MAX_NAME`] bytes of `a-z`, `0-9`, `-`, `_`), since a send goes through a channel
//!   registered under such a name.
//! - Templates (`send`), timers (`schedule`, `cancel`), milestones, handoff queues, experiments
//!   and arms: 1 to [`MAX_GUEST_NAME`] bytes of visible ASCII (`!` to `~`: no spaces, control
//!   characters or non-ASCII).
//!
//! Free text (an exit or handoff reason, the state, a payload) is bounded by the sandbox's
//! byte limits instead.

use super::EngineError;
use crate::model::{Command, Spec};

/// The longest channel name (the API's limit for tenant, journey and channel names).
pub const MAX_NAME: usize = 64;

/// The longest template, timer, milestone, queue, experiment or arm name a command may carry.
pub const MAX_GUEST_NAME: usize = 128;

/// Whether `name` follows the name rule of tenants, journeys and channels.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `name` follows the rule of names chosen by journeys (templates, timers, milestones,
/// queues, experiments, arms).
pub fn is_guest_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_GUEST_NAME && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks the names command `index` carries.
pub fn check_command(index: usize, command: &Command) -> Result<(), EngineError> {
    let guest = |what: &str, name: &str| {
        if is_guest_name(name) {
            Ok(())
        } else {
            Err(EngineError::Invalid {
                index,
                message: format!(
                    "{what} {} must be 1-{MAX_GUEST_NAME} bytes of visible ASCII ('!' to '~')",
                    shown(name)
                ),
            })
        }
    };
    match command {
        Command::Send(send) => {
            if !is_name(&send.channel) {
                return Err(EngineError::Invalid {
                    index,
                    message: format!(
                        "send: channel name {} must be 1-{MAX_NAME} bytes of a-z, 0-9, '-' or '_'",
                        shown(&send.channel)
                    ),
                });
            }
            guest("send: template name", &send.template)
        }
        Command::Schedule { name, .. } => guest("schedule: timer name", name),
        Command::Cancel { name } => guest("cancel: timer name", name),
        Command::Milestone { name } => guest("milestone: name", name),
        Command::Assign(assignment) => {
            guest("assign: experiment name", &assignment.experiment)?;
            guest("assign: arm name", &assignment.arm)
        }
        Command::Handoff(handoff) => guest("handoff: queue name", &handoff.queue),
        Command::SetState { .. } | Command::Exit { .. } | Command::Complete => Ok(()),
    }
}

/// Checks the names a journey declares (its `describe`) by the same rules as the commands
/// that use them, so that a journey cannot be accepted with a channel, milestone or
/// experiment that no command of it could name.
pub fn check_spec(spec: &Spec) -> Result<(), String> {
    let guest = |what: &str, name: &str| {
        if is_guest_name(name) {
            Ok(())
        } else {
            Err(format!(
                "{what} {} must be 1-{MAX_GUEST_NAME} bytes of visible ASCII ('!' to '~')",
                shown(name)
            ))
        }
    };
    for channel in &spec.channels {
        if !is_name(channel) {
            return Err(format!(
                "channel name {} must be 1-{MAX_NAME} bytes of a-z, 0-9, '-' or '_'",
                shown(channel)
            ));
        }
    }
    for milestone in &spec.milestones {
        guest("milestone name", &milestone.name)?;
    }
    for experiment in &spec.experiments {
        guest("experiment name", &experiment.name)?;
        for arm in &experiment.arms {
            guest("arm name", arm)?;
        }
    }
    Ok(())
}

/// How a refused name appears in the message: quoted and escaped, and cut short if long (a
/// 1 MiB name must not make a 1 MiB failure message).
fn shown(name: &str) -> String {
    const SHOWN: usize = 64;
    let cut = name
        .char_indices()
        .nth(SHOWN)
        .map_or(name, |(at, _)| &name[..at]);
    if cut.len() < name.len() {
        format!("{cut:?}... ({} bytes)", name.len())
    } else {
        format!("{name:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Handoff, Send, VariantAssignment};
    use proptest::prelude::*;
    use serde_json::json;

    fn send(channel: &str, template: &str) -> Command {
        Command::Send(Send {
            channel: channel.into(),
            template: template.into(),
            payload: json!({}),
        })
    }

    fn refused(command: Command) -> String {
        check_command(3, &command).expect_err("refused").to_string()
    }

    #[test]
    fn the_examples_names_pass() {
        for command in [
            send("email", "welcome_b"),
            send("webhook", "thank_you"),
            Command::Schedule {
                name: "t:c0001-3".into(),
                due: 1,
            },
            Command::Cancel {
                name: "never_scheduled".into(),
            },
            Command::Milestone {
                name: "first_value".into(),
            },
            Command::Assign(VariantAssignment {
                experiment: "subject".into(),
                arm: "b".into(),
            }),
            Command::Handoff(Handoff {
                queue: "sales".into(),
                reason: "a long free-text reason, with spaces\n".into(),
                priority: 1,
            }),
            Command::Exit {
                reason: "any text".into(),
            },
        ] {
            assert!(check_command(0, &command).is_ok(), "{command:?}");
        }
    }

    #[test]
    fn bad_names_are_refused_naming_the_command_and_the_rule() {
        let message = refused(Command::Schedule {
            name: "a\u{1f}b".into(),
            due: 0,
        });
        assert!(
            message.starts_with("command 3: schedule: timer name"),
            "{message}"
        );
        assert!(message.contains("visible ASCII"), "{message}");
        let message = refused(send("Email", "welcome"));
        assert!(message.contains("channel name \"Email\""), "{message}");
        assert!(message.contains("a-z, 0-9"), "{message}");
        refused(send("email", ""));
        refused(send("email", "wel come"));
        refused(Command::Milestone { name: "é".into() });
        refused(Command::Cancel { name: "".into() });
        refused(Command::Handoff(Handoff {
            queue: "x\n".into(),
            reason: String::new(),
            priority: 0,
        }));
        refused(Command::Assign(VariantAssignment {
            experiment: "x".into(),
            arm: "a b".into(),
        }));
    }

    #[test]
    fn a_huge_name_is_refused_with_a_short_message() {
        let message = refused(Command::Schedule {
            name: "n".repeat(1 << 20),
            due: 0,
        });
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains("(1048576 bytes)"), "{message}");
    }

    #[test]
    fn a_spec_declares_only_names_its_commands_may_use() {
        let mut spec = crate::engine::tests::spec();
        assert_eq!(check_spec(&spec), Ok(()));
        spec.milestones[0].name = "first value".into();
        let message = check_spec(&spec).expect_err("a space");
        assert!(
            message.starts_with("milestone name \"first value\""),
            "{message}"
        );
        let mut spec = crate::engine::tests::spec();
        spec.channels.push("E-mail".into());
        assert!(check_spec(&spec)
            .expect_err("upper case")
            .contains("channel name"));
        let mut spec = crate::engine::tests::spec();
        spec.experiments[0].arms.push("b\n".into());
        assert!(check_spec(&spec)
            .expect_err("a newline")
            .contains("arm name"));
    }

    proptest! {
        #[test]
        fn guest_names_are_exactly_short_visible_ascii(name in ".{0,200}") {
            let ok = !name.is_empty()
                && name.len() <= MAX_GUEST_NAME
                && name.chars().all(|c| ('!'..='~').contains(&c));
            prop_assert_eq!(is_guest_name(&name), ok);
            let timer = Command::Schedule { name: name.clone(), due: 0 };
            prop_assert_eq!(check_command(0, &timer).is_ok(), ok);
        }

        #[test]
        fn every_name_the_rule_accepts_is_a_guest_name(name in "[a-z0-9_-]{1,64}") {
            prop_assert!(is_name(&name));
            prop_assert!(is_guest_name(&name));
        }
    }
}
