//! A journey that reads a file with `std::fs`, so that its component imports
//! `wasi:filesystem`. Journeys get no files: the host must refuse this upload and store
//! nothing. (It is never run; `decide` only has to touch the filesystem for the import to be
//! there.)

use waymark_guest::prelude::*;

/// What the journey would like to read.
pub const TARGET: &str = "/etc/passwd";

/// The journey that wants files.
pub struct Files;

impl Journey for Files {
    fn describe() -> Spec {
        Spec::new("Files: reads the host's files on every signup")
            .enter_on("signed_up")
            .channel("webhook")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        match std::fs::read_to_string(TARGET) {
            Ok(text) => Ok(Decision::new().send(
                "webhook",
                "escaped",
                json!({ "customer_id": ctx.customer.id, "read": text.len() }),
            )),
            Err(e) => Err(format!("cannot read {TARGET}: {e}")),
        }
    }
}

waymark_guest::export_journey!(Files);
