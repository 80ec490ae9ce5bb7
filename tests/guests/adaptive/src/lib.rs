//! An adaptive experiment (issue 13): experiment `offer` with arms `plain` and `discount`,
//! allocated by Thompson sampling on milestone `bought`.
//!
//! - Entry: `signed_up`, once per customer. Entered: the arm is
//!   [`thompson_arm`](waymark_guest::thompson_arm)'s pick from the arms' conversion as the
//!   host reports it (`stats.by-arm`), seeded by the trigger, and recorded with `assign`.
//! - `bought` reaches milestone `bought`, the goal: the run completes.
//!
//! As customers of one arm buy, later entrants go mostly to it.

use waymark_guest::prelude::*;

/// The experiment.
pub const EXPERIMENT: &str = "offer";
/// Its arms.
pub const ARMS: [&str; 2] = ["plain", "discount"];

/// The adaptive journey.
pub struct Adaptive;

impl Journey for Adaptive {
    fn describe() -> Spec {
        Spec::new("An adaptive offer: Thompson sampling on purchases")
            .enter_on("signed_up")
            .milestone("bought", None)
            .goal("bought")
            .reentry(Reentry::Never)
            .adaptive_experiment(EXPERIMENT, &ARMS, "bought")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        Ok(match &ctx.trigger {
            Trigger::Entered(_) => {
                let arm = thompson_arm(ctx, EXPERIMENT)
                    .ok_or("the host reports no arm of the offer experiment")?;
                Decision::new().assign(EXPERIMENT, arm)
            }
            Trigger::Event(event) if event.is("bought") => Decision::new().milestone("bought"),
            _ => Decision::new(),
        })
    }
}

waymark_guest::export_journey!(Adaptive);

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_guest::stats::set_native_arm_stats;
    use waymark_guest::{ArmStats, Command};

    fn arm(arm: &str, entered: u64, converted: u64) -> ArmStats {
        ArmStats {
            experiment: EXPERIMENT.into(),
            arm: arm.into(),
            goal: "bought".into(),
            entered,
            converted,
        }
    }

    fn picked(seed: u64) -> String {
        let mut ctx = Context::entered(Event::new("signed_up"));
        ctx.seed = seed;
        match Adaptive::decide(&ctx).unwrap().commands() {
            [Command::Assign { arm, .. }] => arm.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_spec_declares_an_adaptive_experiment_on_bought() {
        let spec = Adaptive::describe();
        assert_eq!(
            spec.experiments[0].allocation,
            waymark_guest::Allocation::Thompson {
                goal: "bought".into()
            }
        );
    }

    #[test]
    fn entrants_follow_the_arm_that_converts() {
        set_native_arm_stats(vec![arm("plain", 20, 0), arm("discount", 20, 18)]);
        let discount = (0..100).filter(|s| picked(*s) == "discount").count();
        assert!(discount >= 98, "{discount}");
        set_native_arm_stats(Vec::new());
    }
}
