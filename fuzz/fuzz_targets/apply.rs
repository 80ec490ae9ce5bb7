//! The engine's apply on arbitrary command lists, for arbitrary customers and triggers: a
//! decision is applied or refused with the index of the command at fault, never a panic; what
//! it applies keeps the rules (bounded header-safe keys, valid names, declared milestones,
//! one pending timer per name, nothing after the end).

#![no_main]

use libfuzzer_sys::fuzz_target;
use waymark_fuzz::ArbCommand;
use waymark_host::engine::ids::{is_header_token, MAX_MESSAGE_ID};
use waymark_host::engine::names::is_guest_name;
use waymark_host::engine::{apply, enroll, key_prefix, trigger_id, EngineError};
use waymark_host::model::{
    Command, EntryTrigger, ExperimentSpec, Handoff, MilestoneSpec, Reentry, Send, Spec, Trigger,
    VariantAssignment,
};

fn spec() -> Spec {
    Spec {
        description: String::new(),
        entry: vec![EntryTrigger {
            event: "signed_up".into(),
            filter: None,
        }],
        exit_on: vec![],
        milestones: vec![
            MilestoneSpec {
                name: "a".into(),
                stall_after: Some(1_000),
            },
            MilestoneSpec {
                name: "first_value".into(),
                stall_after: None,
            },
        ],
        goal: Some("first_value".into()),
        reentry: Reentry::Never,
        channels: vec!["webhook".into(), "email".into()],
        experiments: vec![ExperimentSpec {
            name: "subject".into(),
            arms: vec!["a".into(), "welcome".into()],
            allocation: Default::default(),
        }],
        audience: Default::default(),
    }
}

fn command(c: ArbCommand) -> Command {
    match c {
        ArbCommand::Send {
            channel,
            template,
            payload,
        } => Command::Send(Send {
            channel: channel.0,
            template: template.0,
            payload: serde_json::json!({ "text": payload }),
        }),
        ArbCommand::Schedule { name, due } => Command::Schedule { name: name.0, due },
        ArbCommand::Cancel(name) => Command::Cancel { name: name.0 },
        ArbCommand::Milestone(name) => Command::Milestone { name: name.0 },
        ArbCommand::SetState(state) => Command::SetState { state },
        ArbCommand::Assign { experiment, arm } => Command::Assign(VariantAssignment {
            experiment: experiment.0,
            arm: arm.0,
        }),
        ArbCommand::Handoff {
            queue,
            reason,
            priority,
        } => Command::Handoff(Handoff {
            queue: queue.0,
            reason,
            priority,
        }),
        ArbCommand::Exit(reason) => Command::Exit { reason },
        ArbCommand::Complete => Command::Complete,
    }
}

fuzz_target!(|input: (String, String, i64, i64, Vec<ArbCommand>)| {
    let (customer, timer, due, now, commands) = input;
    let n = commands.len();
    let commands: Vec<Command> = commands.into_iter().map(command).collect();
    let enrollment = enroll("onboarding", 1, &customer, 1, None, 0);
    let trigger = trigger_id(&Trigger::Timer { name: timer }, Some(due));
    let prefix = key_prefix("acme", &enrollment, &trigger);
    match apply(enrollment, &spec(), commands, &prefix, now) {
        Ok(applied) => {
            for send in &applied.effects.sends {
                assert!(send.id.len() <= MAX_MESSAGE_ID, "{}", send.id);
                assert!(is_header_token(&send.id), "{}", send.id);
                assert!(is_guest_name(&send.send.template));
            }
            let e = &applied.enrollment;
            let mut names: Vec<&str> = e.timers.iter().map(|t| t.name.as_str()).collect();
            let all = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(
                names.len(),
                all,
                "one pending timer per name: {:?}",
                e.timers
            );
            for t in &applied.effects.timers_set {
                assert!(is_guest_name(&t.name), "{:?}", t.name);
            }
            for m in &e.milestones {
                assert!(m.name == "a" || m.name == "first_value", "{m:?}");
            }
            if !e.is_active() {
                assert!(e.timers.is_empty(), "an ended enrollment keeps no timer");
            }
        }
        Err(
            EngineError::Invalid { index, .. }
            | EngineError::UndeclaredChannel { index, .. }
            | EngineError::UndeclaredMilestone { index, .. }
            | EngineError::UndeclaredArm { index, .. },
        ) => assert!(index < n),
    }
});
