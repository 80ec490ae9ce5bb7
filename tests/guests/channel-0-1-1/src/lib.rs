//! A channel adapter built against contract 0.1.1, from a frozen copy of that version's WIT
//! (`wit/waymark.wit` beside this crate, as of the last commit before 0.1.2; `wit/deps` links
//! to the workspace's WASI packages, which have not changed) with wit-bindgen alone — not the
//! channel SDK, which builds the 0.1.2 `receiving-channel` world. Its component exports only
//! `deliver`: no `feedback`, as every adapter built before provider feedback. A later host must
//! still deliver through it, and answer its webhook route 422.
//!
//! It delivers nowhere (it makes no HTTP call, so its component imports no `wasi:http`): it
//! logs through the `log` import and returns a receipt naming the message's template.

// The generated `wasi:http` bindings have constructors with many arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "wit",
    world: "waymark:journey/channel",
    // The world imports `wasi:http`; bindings for it (unused here) are generated too.
    generate_all,
});

// `DeliveryError`, `Message` and `Receipt` come with the world's `use channel-types.{...}`.
use waymark::journey::log::{log, Level};

struct Legacy;

impl Guest for Legacy {
    fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
        log(
            Level::Info,
            &format!("legacy channel delivered {}", message.id),
        );
        Ok(Receipt {
            provider_id: Some(format!("legacy-{}", message.template)),
        })
    }
}

export!(Legacy);
