//! A journey whose audience condition does not parse (`=` where `==` is meant, at column 6):
//! the host refuses its upload with 400 `invalid_spec` naming the column (issue 12).

use waymark_guest::prelude::*;

/// The journey the host refuses.
pub struct BadCondition;

/// The condition, with its mistake at column 6.
pub const EXPRESSION: &str = r#"plan = "pro""#;

impl Journey for BadCondition {
    fn describe() -> Spec {
        Spec::new("A condition that does not parse").enter_when("pro_plan", EXPRESSION, false)
    }

    fn decide(_ctx: &Context) -> Result<Decision, String> {
        Ok(Decision::new())
    }
}

waymark_guest::export_journey!(BadCondition);
