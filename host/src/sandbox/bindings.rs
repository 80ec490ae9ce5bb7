//! The host side of the WIT package's shared interfaces, generated once.
//!
//! `types` (the vocabulary), `log`, `stats`, `channel-types`, `delivery-hints` and `outbound` are generated here, from a
//! world that only imports them; the two worlds' own bindings (`journey.rs`, `channel.rs`)
//! generate nothing but their exports and point at these modules with `with:`. So the
//! capabilities ([`super::capability`]) and the conversions ([`super::convert`]) depend on the
//! contract, never on a world, and a type such as `types::Customer` is one Rust type in both
//! worlds.

wasmtime::component::bindgen!({
    path: "../wit",
    inline: "
        package waymark:host;

        /// Every interface of `waymark:journey` that both worlds, the capabilities and the
        /// conversions share.
        world shared {
            import waymark:journey/types@0.1.3;
            import waymark:journey/log@0.1.3;
            import waymark:journey/stats@0.1.3;
            import waymark:journey/channel-types@0.1.3;
            import waymark:journey/delivery-hints@0.1.3;
            import waymark:journey/outbound@0.1.3;
        }
    ",
    // The one import that waits on the network.
    imports: { "waymark:journey/outbound.send": async },
});

pub(super) use waymark::journey::{channel_types, delivery_hints, log, outbound, stats};
// Public for the fuzz targets (`sandbox::conversions`).
pub use waymark::journey::types;
