//! A journey built against contract 0.1.0, from a frozen copy of that version's WIT
//! (`wit/waymark.wit` beside this crate) with wit-bindgen alone — not the SDK, which follows the
//! current contract. Its component imports `waymark:journey/types@0.1.0` and `log@0.1.0`; a
//! host of a later 0.1.x must resolve those to its own versions and run it unchanged.
//!
//! It enters on `signed_up`, sends a `welcome` through `webhook` naming the contract it was
//! built for, logs through the 0.1.0 `log` import, and completes on `activated`.

wit_bindgen::generate!({
    path: "wit",
    world: "waymark:journey/journey",
});

use waymark::journey::log::{log, Level};
// `Command`, `Context` and `Spec` come with the world's `use types.{...}`.
use waymark::journey::types::{EntryTrigger, MilestoneSpec, Reentry, Send, Trigger};

struct Legacy;

impl Guest for Legacy {
    fn describe() -> Spec {
        Spec {
            description: "Built for contract 0.1.0: a welcome, then activation".into(),
            entry: vec![EntryTrigger {
                event: "signed_up".into(),
                filter: None,
            }],
            exit_on: vec![],
            milestones: vec![MilestoneSpec {
                name: "activated".into(),
                stall_after: None,
            }],
            goal: Some("activated".into()),
            reentry: Reentry::Never,
            channels: vec!["webhook".into()],
            experiments: vec![],
        }
    }

    fn decide(context: Context) -> Result<Vec<Command>, String> {
        let customer = context.customer.id;
        Ok(match context.trigger {
            Trigger::Entered(_) => {
                log(Level::Info, "welcome, from a 0.1.0 component");
                vec![Command::Send(Send {
                    channel: "webhook".into(),
                    template: "welcome".into(),
                    payload: format!(r#"{{"customer_id":"{customer}","built_for":"0.1.0"}}"#),
                })]
            }
            Trigger::Event(event) if event.name == "activated" => {
                vec![Command::Milestone("activated".into())]
            }
            _ => vec![],
        })
    }
}

export!(Legacy);
