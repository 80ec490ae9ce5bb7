//! The channel SDK for [Waymark]: write a channel adapter (a *plugin*) as plain Rust, and build
//! it into a WebAssembly component with `cargo build --profile guest --target wasm32-wasip2`
//! (the `guest` profile is the one `waymark-guest`'s documentation gives: LTO, stripped, no
//! debug info; the manifest's custom section survives the stripping).
//!
//! An adapter implements [`Channel`]: [`deliver`](Channel::deliver) turns a [`Message`] into a
//! request to a provider with the blocking [`http`] client and says whether it worked. The
//! shape every plugin follows (see `plugins/README.md`):
//!
//! - a pure `build_request`, reading the registration's settings and secrets as a typed struct
//!   with [`Message::config_as`] (a permanent error naming the key when one is missing or of
//!   the wrong type);
//! - the SDK's classification of the answer, [`Response::outcome`](http::Response::outcome):
//!   2xx delivered, 429 and 5xx retryable (a `Retry-After` passed on to the host, [`hints`]),
//!   anything else permanent;
//! - [`export_channel!`], and [`channel_manifest!`] to embed the plugin's `channel.toml` (its
//!   settings, secrets and default allowed hosts) for the host to check registrations against.
//!
//! ```
//! use waymark_channel::http::{ProviderId, Request};
//! use waymark_channel::prelude::*;
//!
//! #[derive(Deserialize)]
//! #[serde(crate = "waymark_channel::serde")]
//! struct Config {
//!     url: String,
//! }
//!
//! pub struct Hook;
//!
//! pub fn build_request(message: &Message) -> Result<Request, DeliveryError> {
//!     let config: Config = message.config_as()?;
//!     Ok(Request::post(config.url)
//!         .header("Idempotency-Key", message.id.as_str())
//!         .json(&json!({"template": message.template, "payload": message.payload})))
//! }
//!
//! impl Channel for Hook {
//!     fn deliver(message: Message) -> Result<Receipt, DeliveryError> {
//!         build_request(&message)?.send()?.outcome_with_id(ProviderId::JsonField("id"))
//!     }
//! }
//!
//! // In the adapter's crate (crate-type = ["cdylib", "rlib"]), beside channel.toml:
//! // waymark_channel::export_channel!(Hook);
//! // waymark_channel::channel_manifest!();
//!
//! let message = Message::new("m-1", "hook", "welcome").with_config(json!({"url": "https://h/in"}));
//! let request = build_request(&message).unwrap();
//! assert_eq!(request.header_value("idempotency-key"), Some("m-1"));
//! assert_eq!(
//!     build_request(&Message::new("m-1", "hook", "welcome")).unwrap_err(),
//!     DeliveryError::permanent("config.url is missing")
//! );
//! ```
//!
//! The customer and JSON types are the journey SDK's ([`waymark_guest`]), re-exported here.
//!
//! [Waymark]: https://github.com/waymark

#![warn(missing_docs)]

#[doc(hidden)]
pub mod bindings;
#[doc(hidden)]
pub mod export;

mod channel;
pub mod feedback; // Provider feedback (contract 0.1.2)
pub mod hints;
pub mod http;

pub use channel::{Channel, DeliveryError, Message, Receipt};
pub use waymark_guest::{json, log, serde, serde_json, Customer, JsonObject, Object};

/// Everything an adapter usually needs: `use waymark_channel::prelude::*;`.
pub mod prelude {
    pub use crate::{json, Channel, Customer, DeliveryError, Message, Object, Receipt};
    pub use serde::Deserialize;
    pub use serde_json::Value;
}

/// Exports a [`Channel`] as the component's `deliver`, converting between the contract's types
/// and the SDK's. Invoke it once, at the root of a `cdylib` crate:
///
/// ```ignore
/// pub struct Webhook;
/// impl waymark_channel::Channel for Webhook { /* ... */ }
/// waymark_channel::export_channel!(Webhook);
/// waymark_channel::channel_manifest!(); // embeds channel.toml: see `channel_manifest!`
/// ```
///
/// A message whose payload or config the host sends as malformed JSON fails permanently; it
/// never panics.
#[macro_export]
macro_rules! export_channel {
    ($channel:ty) => {
        const _: () = {
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            struct __WaymarkChannelExport;

            impl $crate::__export::channel::Guest for __WaymarkChannelExport {
                fn deliver(
                    message: $crate::__export::channel::Message,
                ) -> ::core::result::Result<
                    $crate::__export::channel::Receipt,
                    $crate::__export::channel::DeliveryError,
                > {
                    $crate::__export::deliver::<$channel>(message)
                }
            }

            impl $crate::__export::channel::exports::waymark::journey::feedback::Guest
                for __WaymarkChannelExport
            {
                fn receive(
                    request: $crate::__export::channel::exports::waymark::journey::feedback::WebhookRequest,
                ) -> ::core::result::Result<
                    $crate::__export::channel::exports::waymark::journey::feedback::Received,
                    $crate::__export::channel::exports::waymark::journey::feedback::FeedbackError,
                > {
                    $crate::__export::receive::<$channel>(request)
                }
            }

            // Only a component exports anything: a native build (a plugin's own tests and doc
            // tests, as an rlib or cdylib) would hand the linker the interface export's symbol
            // names (`cabi_post_waymark:journey/feedback@…`), which native linkers refuse.
            #[cfg(target_arch = "wasm32")]
            $crate::__export::channel::export!(
                __WaymarkChannelExport with_types_in $crate::__export::channel
            );
        };
    };
}

/// Embeds the plugin's manifest, `channel.toml` beside its `Cargo.toml` (or the file given,
/// relative to that directory), in the component, as the custom section
/// `waymark:channel-manifest` of its core module. Invoke it once, next to
/// [`export_channel!`]:
///
/// ```ignore
/// waymark_channel::export_channel!(Webhook);
/// waymark_channel::channel_manifest!(); // or channel_manifest!("manifests/channel.toml")
/// ```
///
/// The manifest travels inside the component, so the host reads it from the very bytes it is
/// asked to run: at registration it refuses a missing required setting or secret, a secret
/// passed as a setting (or the reverse) and an unknown key, and takes the manifest's
/// `allowed_hosts` when the registration gives none. The file's format is described in
/// `plugins/README.md`. A component without a manifest registers as before, unchecked.
///
/// The file is read at compile time (`include_bytes!`), so editing it rebuilds the plugin;
/// the custom section is emitted only for `wasm32` targets.
#[macro_export]
macro_rules! channel_manifest {
    () => {
        $crate::channel_manifest!("channel.toml");
    };
    ($path:literal) => {
        const _: () = {
            // A custom section holds bytes, not a reference to them: the static is the array.
            // Natively there is no section to put it in, but the file is still read, so a
            // missing manifest fails `cargo test` as well as the wasm build.
            #[cfg_attr(
                target_arch = "wasm32",
                unsafe(link_section = "waymark:channel-manifest")
            )]
            #[used]
            static __WAYMARK_CHANNEL_MANIFEST: [u8; include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/",
                $path
            ))
            .len()] = *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path));
        };
    };
}

/// The name of the custom section that [`channel_manifest!`] embeds the manifest in.
pub const CHANNEL_MANIFEST_SECTION: &str = "waymark:channel-manifest";

#[doc(hidden)]
pub use export as __export;
