//! The WIT to model conversion of what `decide` returns: any commands a guest can send across
//! the boundary convert one for one or fail as `invalid_commands`, within the limits; a guest's
//! error is cut to a bound. Never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waymark_fuzz::ArbCommand;
use waymark_host::model::Command;
use waymark_host::sandbox::conversions::{decision_from_wit, wit};
use waymark_host::sandbox::{FailureReason, DEFAULT_LIMITS};

fn command(c: ArbCommand) -> wit::Command {
    match c {
        ArbCommand::Send {
            channel,
            template,
            payload,
        } => wit::Command::Send(wit::Send {
            channel: channel.0,
            template: template.0,
            payload,
        }),
        ArbCommand::Schedule { name, due } => {
            wit::Command::Schedule(wit::Schedule { name: name.0, due })
        }
        ArbCommand::Cancel(name) => wit::Command::Cancel(name.0),
        ArbCommand::Milestone(name) => wit::Command::Milestone(name.0),
        ArbCommand::SetState(state) => wit::Command::SetState(state),
        ArbCommand::Assign { experiment, arm } => wit::Command::Assign(wit::VariantAssignment {
            experiment: experiment.0,
            arm: arm.0,
        }),
        ArbCommand::Handoff {
            queue,
            reason,
            priority,
        } => wit::Command::Handoff(wit::Handoff {
            queue: queue.0,
            reason,
            priority,
        }),
        ArbCommand::Exit(reason) => wit::Command::Exit(reason),
        ArbCommand::Complete => wit::Command::Complete,
    }
}

fuzz_target!(|input: (Vec<ArbCommand>, Option<String>)| {
    let (commands, error) = input;
    let limits = DEFAULT_LIMITS;
    if let Some(message) = error {
        let failure = decision_from_wit(Err(message), &limits).expect_err("an error stays one");
        assert_eq!(failure.reason, FailureReason::GuestError);
        assert!(
            failure.message.len() <= 4096,
            "{} bytes",
            failure.message.len()
        );
        return;
    }
    let n = commands.len();
    let wit: Vec<wit::Command> = commands.into_iter().map(command).collect();
    match decision_from_wit(Ok(wit), &limits) {
        Ok(model) => {
            assert_eq!(model.len(), n);
            for c in &model {
                match c {
                    Command::Send(send) => assert!(send.payload.is_object()),
                    Command::SetState { state } => {
                        assert!(state.len() as u64 <= limits.max_state_bytes)
                    }
                    _ => {}
                }
            }
        }
        Err(failure) => assert_eq!(failure.reason, FailureReason::InvalidCommands),
    }
});
